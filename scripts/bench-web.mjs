// `npm run bench:web`: training speed in headless Chromium next to the native
// CLI, on the same workloads (`webpeft::bench`: LoRA r 8 on MiniLM seq-cls
// 16x64 and SmolLM2 causal-lm 4x128), plus an f32 matmul GFLOPS probe on each
// backend. A measurement, never a test. Run through scripts/bench-web.sh, which
// builds what this needs.
//
//   node scripts/bench-web.mjs [--configs minilm,smollm2] [--backends webgpu,cpu,cpu1]
//                              [--native cpu,gpu] [--iters 2] [--matmul 1024]
// `cpu` is the CPU backend on every core (the threads build), `cpu1` on one thread.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { parseArgs } from "node:util";
import { ROOT, startServer } from "./serve.mjs";
import { launch } from "./chromium.mjs";

const { values: args } = parseArgs({
  options: {
    configs: { type: "string", default: "minilm,smollm2" },
    backends: { type: "string", default: "webgpu,cpu,cpu1" },
    native: { type: "string", default: "cpu,gpu" },
    iters: { type: "string", default: "2" },
    matmul: { type: "string", default: "1024" },
  },
});
const iters = Number(args.iters);
const matmul = Number(args.matmul);
const list = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);

// The batch shape is the core's default for the task (webpeft::bench::default_shape),
// on both sides; each row reports the shape it ran.
const CONFIGS = {
  minilm: {
    name: "all-MiniLM-L6-v2",
    task: "seq-cls",
    urls: ["config.json", "tokenizer.json", "model.safetensors"].map((f) => `/models/all-MiniLM-L6-v2/${f}`),
  },
  smollm2: {
    name: "SmolLM2-135M (Q4_1)",
    task: "causal-lm",
    urls: ["/models/SmolLM2-135M-Instruct.Q4_1.gguf"],
  },
};
for (const c of list(args.configs)) if (!CONFIGS[c]) throw new Error(`--configs: unknown config '${c}' (minilm, smollm2)`);

const BIN = process.env.WEBPEFT_BIN || join(process.env.CARGO_TARGET_DIR || join(homedir(), ".cache/webpeft/target"), "release/webpeft");
const rows = []; // { config, work, where, msPerStep, tokensPerSecond, gflops } or { config, where, error }

// ---- native: `webpeft bench train`, one process per config (clean memory figures) ----
if (list(args.native).length) {
  if (!existsSync(BIN)) throw new Error(`${BIN}: the native CLI is not built (cargo build --release --features cli -p webpeft)`);
  for (const c of list(args.configs)) {
    const { stdout } = await promisify(execFile)(
      BIN,
      ["bench", "train", "--configs", c, "--devices", args.native, "--iters", String(iters), "--matmul", String(matmul)],
      { cwd: ROOT, maxBuffer: 1 << 24 },
    );
    for (const line of stdout.split("\n")) {
      // "all-MiniLM-L6-v2  cpu  LoRA seq-cls 16x64  443.7  2307.8  367" / "matmul probe  cpu  f32 1024x1024  8.5  251.2 GFLOPS"
      const m = line.match(/^(.*?)\s{2,}(cpu|gpu)\s+(.*?)\s{2,}([\d.]+)\s+([\d.]+)/);
      if (!m) continue;
      const where = `native ${m[2]}`;
      if (m[1] === "matmul probe") {
        const r = rows.find((r) => r.config === c && r.where === where);
        if (r) r.gflops = Number(m[5]);
      } else {
        rows.push({ config: c, work: m[3], where, msPerStep: Number(m[4]), tokensPerSecond: Number(m[5]) });
      }
    }
  }
}

// ---- browser: the npm package in headless Chromium, one fresh browser per run ----
const server = await startServer({ root: ROOT });
try {
  for (const backend of list(args.backends)) {
    for (const c of list(args.configs)) {
      const cfg = CONFIGS[c];
      const browser = await launch();
      try {
        await browser.page.goto(server.url + "/tests/web/page/blank.html");
        const r = await browser.page.evaluate(
          async ({ cfg, backend, iters, matmul }) => {
            const { Tuner } = await import("/web/dist/index.js");
            const tuner = await Tuner.load({ urls: cfg.urls }, backend === "cpu1" ? { backend: "cpu", threads: 1 } : { backend });
            try {
              const b = await tuner.benchmark({ task: cfg.task, steps: iters, matmulSize: matmul });
              return { ...b, device: tuner.device };
            } finally {
              tuner.dispose();
            }
          },
          { cfg, backend, iters, matmul },
        );
        const threads = r.device.threads ?? 1;
        const dev = r.device.backend === "webgpu" ? `webgpu, ${r.device.adapter ?? "unknown adapter"}` : `cpu, wasm Flex, ${threads} thread${threads > 1 ? "s" : ""}`;
        rows.push({ config: c, work: `LoRA ${r.task} ${r.batch}x${r.seq}`, where: `browser ${dev}`, msPerStep: r.msPerStep, tokensPerSecond: r.tokensPerSecond, gflops: r.matmul?.gflops });
      } catch (e) {
        rows.push({ config: c, where: `browser ${backend}`, error: String(e?.message ?? e).split("\n")[0] });
      } finally {
        await browser.close();
      }
    }
  }
} finally {
  await server.close();
}

// ---- the table ----
const pad = (s, n) => String(s).padEnd(n);
const num = (x, d = 1) => (x === undefined || Number.isNaN(x) ? "n/a" : x.toFixed(d));
console.log(`\nLoRA r 8 training step, ${iters} timed step(s) after one warm-up; matmul probe f32 ${matmul}x${matmul}\n`);
console.log(`${pad("model", 22)} ${pad("workload", 22)} ${pad("where", 40)} ${"ms/step".padStart(10)} ${"tokens/s".padStart(10)} ${"GFLOPS".padStart(8)}`);
for (const c of list(args.configs)) {
  const cfg = CONFIGS[c];
  for (const r of rows.filter((r) => r.config === c)) {
    if (r.error) {
      console.log(`${pad(cfg.name, 22)} ${pad(`LoRA ${cfg.task}`, 22)} ${pad(r.where, 40)} failed: ${r.error}`);
    } else {
      console.log(`${pad(cfg.name, 22)} ${pad(r.work, 22)} ${pad(r.where, 40)} ${num(r.msPerStep).padStart(10)} ${num(r.tokensPerSecond).padStart(10)} ${num(r.gflops).padStart(8)}`);
    }
  }
}

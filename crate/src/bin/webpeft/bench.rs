//! `webpeft bench`: speed measurements printed as a table. These are
//! measurements, never tests; the PyTorch side lives in `scripts/bench_torch.py`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Subcommand;
use webpeft::device::Backend;
use webpeft::bench::{default_shape, ids, MatmulProbe, TrainBench};
use webpeft::generate::read_f32;
use webpeft::models::KvCache;
use webpeft::train::data::Task;
use webpeft::train::freeze;
use webpeft::{Model, Result};

use crate::{block, load};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Forward-pass throughput: MiniLM (batch 16 x 64) and SmolLM2 (1 x 128 prefill, then decode);
    /// with `--configs qwen0.5b`, Qwen2.5-Coder-0.5B Q4_K_M's prefill and decode.
    Forward {
        /// `minilm`, `smollm2`, `qwen0.5b` (fetched by `scripts/fetch-models.sh --big`), comma-separated.
        #[arg(long, default_value = "minilm,smollm2")]
        configs: String,
        /// Folder holding the bundled models (see scripts/fetch-models.sh).
        #[arg(long, default_value = "models")]
        models: PathBuf,
        /// Comma-separated devices to measure.
        #[arg(long, default_value = "cpu,gpu")]
        devices: String,
        /// Timed iterations after one warm-up.
        #[arg(long, default_value_t = 3)]
        iters: usize,
        /// Decode steps for the SmolLM2 decode measurement.
        #[arg(long, default_value_t = 16)]
        decode_tokens: usize,
    },
    /// Training-step speed: LoRA (r 8, PEFT's default targets) on MiniLM seq-cls
    /// (batch 16 x 64) and SmolLM2 causal-lm (batch 4 x 128); ms/step, tokens/s, peak memory.
    Train {
        #[arg(long, default_value = "models")]
        models: PathBuf,
        /// `minilm`, `smollm2`, `qwen0.5b` (Qwen2.5-Coder-0.5B Q4_K_M, 4 x 128), comma-separated.
        /// Run one per process for a clean peak-memory figure.
        #[arg(long, default_value = "minilm,smollm2")]
        configs: String,
        #[arg(long, default_value = "cpu,gpu")]
        devices: String,
        /// Timed steps after one warm-up step.
        #[arg(long, default_value_t = 3)]
        iters: usize,
        /// Also time an n x n f32 matmul (GFLOPS) on each device; 0 skips it.
        #[arg(long, default_value_t = 1024)]
        matmul: usize,
        /// Recompute each decoder layer in the backward pass (`--gradient-checkpointing` of train).
        #[arg(long)]
        gradient_checkpointing: bool,
        /// Also time DP-SGD steps on the same rows: per-example gradients from one batched
        /// backward pass, and from a backward pass per example.
        #[arg(long)]
        dp: bool,
    },
}

pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Forward { configs, models, devices, iters, decode_tokens } => {
            println!("{:<22} {:<6} {:<22} {:>10} {:>10}", "model", "device", "workload", "ms/iter", "tokens/s");
            for dev in devices.split(',') {
                let backend: Backend = dev.trim().parse()?;
                for cfg in configs.split(',') {
                    let (file, task, name) = config(cfg)?;
                    if task == Task::SeqCls {
                        let minilm = load(&models.join(file), backend)?;
                        let ms = time(iters, || run_batch(&minilm, 16, 64))?;
                        row(name, dev, "forward 16x64", ms, 16.0 * 64.0);
                        continue;
                    }
                    let m = load(&models.join(file), backend)?;
                    let ms = time(iters, || run_batch(&m, 1, 128))?;
                    row(name, dev, "prefill 1x128", ms, 128.0);
                    decode(&m, 128, decode_tokens)?; // warm-up
                    let mut ms = 0.0;
                    for _ in 0..iters {
                        ms += decode(&m, 128, decode_tokens)? / iters.max(1) as f64;
                    }
                    row(name, dev, &format!("decode {decode_tokens} tokens"), ms / decode_tokens as f64, 1.0);
                }
            }
            Ok(())
        }
        BenchCommand::Train { models, configs, devices, iters, matmul, gradient_checkpointing, dp } => {
            println!("{:<22} {:<6} {:<34} {:>10} {:>10} {:>14}", "model", "device", "workload", "ms/step", "tokens/s", "peak RSS MiB");
            for dev in devices.split(',') {
                let backend: Backend = dev.trim().parse()?;
                for cfg in configs.split(',') {
                    let (path, task, name) = config(cfg)?;
                    let (batch, seq) = default_shape(task);
                    let modes: &[Option<bool>] = if dp { &[None, Some(false), Some(true)] } else { &[None] };
                    for &mode in modes {
                        let ms = train_steps(&models.join(path), backend, task, batch, seq, iters, gradient_checkpointing, mode)?;
                        let work = format!("LoRA {} {batch}x{seq}{}", task.name(), match mode {
                            None => "",
                            Some(false) => " DP batched",
                            Some(true) => " DP per-example",
                        });
                        println!("{:<22} {:<6} {:<34} {:>10.1} {:>10.1} {:>14}", name, dev, work, ms, (batch * seq) as f64 / (ms / 1000.0), peak_rss_mib().map_or("n/a".into(), |m| format!("{m:.0}")));
                    }
                }
                if matmul > 0 {
                    let probe = MatmulProbe::new(&webpeft::device::native(backend)?, matmul);
                    let reps = 4;
                    let ms = time(1, || block(probe.run(reps)))? / reps as f64;
                    println!("{:<22} {:<6} {:<34} {:>10.1} {:>10.1} GFLOPS", "matmul probe", dev, format!("f32 {matmul}x{matmul}"), ms, probe.flops() / (ms / 1000.0) / 1e9);
                }
            }
            Ok(())
        }
    }
}

/// A benchmark config's model (under `--models`), task and display name.
fn config(name: &str) -> Result<(&'static str, Task, &'static str)> {
    Ok(match name.trim() {
        "minilm" => ("all-MiniLM-L6-v2", Task::SeqCls, "all-MiniLM-L6-v2"),
        "smollm2" => ("SmolLM2-135M-Instruct.Q4_1.gguf", Task::CausalLm, "SmolLM2-135M (Q4_1)"),
        // Fetched by `scripts/fetch-models.sh --big`.
        "qwen0.5b" => ("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", Task::CausalLm, "Qwen2.5-Coder-0.5B (Q4_K_M)"),
        other => return Err(webpeft::Error::input("--configs", format!("unknown config '{other}' (minilm, smollm2, qwen0.5b)"))),
    })
}

/// Mean milliseconds of one LoRA training step (forward, backward, AdamW,
/// loss read back) on fixed token rows: the workload of `webpeft::bench`.
/// `dp`: a DP-SGD step instead, `Some(true)` with a backward pass per example.
#[allow(clippy::too_many_arguments)]
fn train_steps(path: &std::path::Path, backend: Backend, task: Task, batch: usize, seq: usize, iters: usize, checkpointing: bool, dp: Option<bool>) -> Result<f64> {
    let device = webpeft::device::native(backend)?.autodiff();
    let m = freeze(crate::load_files(&crate::read_model_files(path)?, &device)?);
    let mut bench = TrainBench::new(m, task, batch, seq, checkpointing)?;
    match dp {
        None => time(iters, || block(bench.step()).map(|_| ())),
        Some(per_example) => time(iters, || block(bench.dp_step(per_example)).map(|_| ())),
    }
}

/// The process's peak resident memory (Linux `VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn row(model: &str, dev: &str, work: &str, ms: f64, tokens: f64) {
    println!("{:<22} {:<6} {:<22} {:>10.1} {:>10.1}", model, dev, work, ms, tokens / (ms / 1000.0));
}

/// Mean milliseconds of `f` over `iters` runs after one warm-up.
fn time(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let start = Instant::now();
    for _ in 0..iters {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() * 1000.0 / iters.max(1) as f64)
}

/// One forward pass, waiting for the result to reach the host.
fn run_batch(m: &Model, batch: usize, seq: usize) -> Result<()> {
    let out = m.forward(&ids(batch, seq, m.info.vocab_size), None, None, None)?;
    let t = out.token_logits.map(|l| l.sum()).unwrap_or_else(|| out.last_hidden_state.sum());
    block(read_f32(t)).map(|_| ())
}

/// Prefills `prompt` tokens, then decodes `n` tokens one at a time; returns
/// the milliseconds of the decode loop alone.
fn decode(m: &Model, prompt: usize, n: usize) -> Result<f64> {
    let mut cache = KvCache::new(m.num_layers());
    let p = ids(1, prompt, m.info.vocab_size);
    let out = m.forward(&p, None, None, Some(&mut cache))?;
    block(read_f32(out.last_hidden_state.sum()))?;
    let start = Instant::now();
    let mut next = vec![vec![p[0][0]]];
    for _ in 0..n {
        let out = m.forward(&next, None, None, Some(&mut cache))?;
        let logits = block(read_f32(out.token_logits.expect("causal model")))?;
        next = vec![vec![webpeft::generate::argmax(&logits)]];
    }
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}

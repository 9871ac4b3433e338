// The harness itself: the static server's headers and MIME types, and headless
// Chromium exposing a WebGPU adapter (SwiftShader where there is no GPU) that
// can run a compute shader. These need neither the wasm nor the package.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, launch } from "./harness.mjs";

test("static server: MIME types and cross-origin isolation headers", async () => {
  const server = await startServer();
  try {
    for (const [path, type] of [
      ["/tests/web/page/index.html", "text/html"],
      ["/tests/web/page/app.js", "text/javascript"],
      ["/tests/fixtures/tiny-llama/config.json", "application/json"],
      ["/tests/fixtures/tiny-llama/model.safetensors", "application/octet-stream"],
    ]) {
      const r = await fetch(server.url + path);
      assert.equal(r.status, 200, path);
      assert.ok(r.headers.get("content-type").startsWith(type), `${path}: ${r.headers.get("content-type")}`);
      assert.equal(r.headers.get("cross-origin-opener-policy"), "same-origin");
      assert.equal(r.headers.get("cross-origin-embedder-policy"), "require-corp");
      await r.arrayBuffer();
    }
    const wasmType = await fetch(server.url + "/nope.wasm");
    assert.equal(wasmType.status, 404);
    // Path traversal: tests/web/serve.test.mjs (raw requests; fetch() normalises `/../`).
  } finally {
    await server.close();
  }
});

test("headless Chromium: WebGPU adapter and a compute shader", async () => {
  const server = await startServer();
  const b = await launch();
  try {
    await b.page.goto(server.url + "/tests/web/page/blank.html");
    const r = await b.page.evaluate(async () => {
      if (!navigator.gpu) return { error: "no navigator.gpu" };
      const adapter = await navigator.gpu.requestAdapter();
      if (!adapter) return { error: "no adapter" };
      const info = adapter.info || {};
      const device = await adapter.requestDevice();
      const module = device.createShaderModule({
        code: `@group(0) @binding(0) var<storage, read_write> v: array<f32>;
               @compute @workgroup_size(4) fn main(@builtin(global_invocation_id) i: vec3u) { v[i.x] = v[i.x] * 2.0 + 1.0; }`,
      });
      const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
      const buf = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
      device.queue.writeBuffer(buf, 0, new Float32Array([1, 2, 3, 4]));
      const read = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const bind = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] });
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bind);
      pass.dispatchWorkgroups(1);
      pass.end();
      enc.copyBufferToBuffer(buf, 0, read, 0, 16);
      device.queue.submit([enc.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const out = Array.from(new Float32Array(read.getMappedRange()));
      return {
        vendor: info.vendor, architecture: info.architecture, description: info.description,
        fallback: info.isFallbackAdapter ?? adapter.isFallbackAdapter,
        features: [...adapter.features], maxBufferSize: adapter.limits.maxBufferSize,
        out, isolated: crossOriginIsolated,
      };
    });
    console.log("WebGPU adapter:", JSON.stringify(r));
    assert.equal(r.error, undefined, r.error);
    assert.deepEqual(r.out, [3, 5, 7, 9]);
    assert.equal(r.isolated, true, "page is cross-origin isolated (COOP/COEP)");
  } finally {
    await b.close();
    await server.close();
  }
});

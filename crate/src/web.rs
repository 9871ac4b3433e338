//! JavaScript bindings (wasm-bindgen), used by the `webpeft` npm package's
//! Web Worker. Everything that touches the GPU is `async` and reads results
//! with `into_data_async`: a synchronous read would hang the tab.
//!
//! Errors reach JS as `Error` objects whose message is `source: message` and
//! which carry a `kind` property (`format`, `unsupported`, `input`, `device`, `io`).

use std::cell::RefCell;

use burn::tensor::Device;
use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::api::{Classification, ModelSummary};
use crate::error::{Error, ErrorKind, Result};
use crate::formats::tokenizer::Message;
use crate::generate::{generate_async, read_f32, stop_ids, GenerateOptions};
use crate::models::{Model, ModelFiles};
use crate::peft::export::export_adapter;
use crate::peft::{load_adapter, model_labels, set_label_names, Sidecar};
use crate::train::checkpoint::save_state;
use crate::train::data::{self, Task};
use crate::train::freeze;
use crate::train::run::Run;
use crate::train::session::{prepare, TrainSpec};

thread_local! {
    static DEVICE: RefCell<Option<(Device, &'static str)>> = const { RefCell::new(None) };
}

fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    let kind = match e.kind {
        ErrorKind::Format => "format",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::Input => "input",
        ErrorKind::Device => "device",
        ErrorKind::Io => "io",
    };
    let _ = Reflect::set(&err, &"kind".into(), &kind.into());
    let _ = Reflect::set(&err, &"source".into(), &e.source.into());
    err.into()
}

fn to_js<T: Serialize>(v: &T) -> std::result::Result<JsValue, JsValue> {
    // JSON-compatible objects (maps as plain objects), not JS Maps.
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| js_error(Error::io("bindings", e.to_string())))
}

fn set(obj: &Object, key: &str, value: &JsValue) {
    let _ = Reflect::set(obj, &key.into(), value);
}

fn bytes(b: &[u8]) -> JsValue {
    Uint8Array::from(b).into()
}

/// Sets up logging and readable panics (once per worker).
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    let _ = console_log::init_with_level(log::Level::Warn);
}

// The threads build: `initThreadPool(n)` starts rayon's pool of Web Workers
// (sharing this module's memory); call it once before `initDevice("cpu")`.
#[cfg(feature = "web-threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// The threads build: where a crash on a pool worker is reported. A panic or
/// trap there ends that Web Worker, and the calling thread (the package's
/// worker) waits for its job forever, blocked in `Atomics.wait`, so it can
/// neither see nor report it. Called once after `initThreadPool`,
/// `watchThreadPool(name)` makes every pool worker post
/// `{type: "crash", message}` on the `BroadcastChannel` `name` when it
/// panics (the panic message) or traps (an uncaught error), for the page's
/// side of the package to fail the pending call and end the worker.
#[cfg(feature = "web-threads")]
#[wasm_bindgen(js_name = watchThreadPool)]
pub fn watch_thread_pool(channel: String) {
    if let Ok(mut c) = CRASH_CHANNEL.lock() {
        *c = Some(channel.clone());
    }
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        // The package's worker reports its own panics (it is not blocked).
        if rayon::current_thread_index().is_some() {
            let name = CRASH_CHANNEL.try_lock().ok().and_then(|c| c.clone());
            if let Some(name) = name {
                let _ = post_crash(&name, &format!("a thread-pool worker panicked: {info}"));
            }
        }
    }));
    // A trap that is not a panic: the pool worker's uncaught error. The listener
    // is plain JS (a bound postMessage), so it runs no wasm after the trap.
    rayon::broadcast(|_| {
        let _ = listen_for_traps(&channel);
    });
}

#[cfg(feature = "web-threads")]
static CRASH_CHANNEL: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

#[cfg(feature = "web-threads")]
fn crash_channel(name: &str) -> std::result::Result<(Object, Function), JsValue> {
    let ctor: Function = Reflect::get(&js_sys::global(), &"BroadcastChannel".into())?.dyn_into()?;
    let channel: Object = Reflect::construct(&ctor, &Array::of1(&name.into()))?.dyn_into()?;
    let post: Function = Reflect::get(&channel, &"postMessage".into())?.dyn_into()?;
    Ok((channel, post))
}

#[cfg(feature = "web-threads")]
fn crash_message(message: &str) -> JsValue {
    let msg = Object::new();
    set(&msg, "type", &"crash".into());
    set(&msg, "message", &message.into());
    msg.into()
}

#[cfg(feature = "web-threads")]
fn post_crash(name: &str, message: &str) -> std::result::Result<(), JsValue> {
    let (channel, post) = crash_channel(name)?;
    post.call1(&channel, &crash_message(message))?;
    Ok(())
}

#[cfg(feature = "web-threads")]
fn listen_for_traps(name: &str) -> std::result::Result<(), JsValue> {
    let (channel, post) = crash_channel(name)?;
    let listener = post.bind1(&channel, &crash_message("a thread-pool worker stopped with an uncaught error (a wasm trap)"));
    let global = js_sys::global();
    let add: Function = Reflect::get(&global, &"addEventListener".into())?.dyn_into()?;
    add.call2(&global, &"error".into(), &listener)?;
    Ok(())
}

/// Test hook (threads build only, not part of the API): panics on a pool
/// worker while this thread waits for it, the hang `watchThreadPool` turns
/// into a `crash` error. The package calls it only from its own tests.
#[cfg(feature = "web-threads")]
#[doc(hidden)]
#[wasm_bindgen(js_name = __panicOnThreadPool)]
pub fn panic_on_thread_pool() {
    // Called from outside the pool, join runs on a pool worker and this
    // thread blocks until it is done.
    rayon::join(|| panic!("webpeft test hook: a panic on a thread-pool worker"), || ());
}

/// Threads the CPU backend's kernels run on: 1, or the rayon pool's size in
/// the threads build.
#[wasm_bindgen(js_name = cpuThreads)]
pub fn cpu_threads() -> usize {
    #[cfg(feature = "web-threads")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "web-threads"))]
    1
}

/// Checks a dataset file (`name` picks the format, as in training) without a
/// model: the detected format, the rows and labels that parsed, and every
/// problem (up to 100) with its file and line, as training would report them.
/// `options`: `{task?, seq_len?}`. Returns `data::Validation` (camelCase).
#[wasm_bindgen(js_name = validateData)]
pub fn validate_data(name: String, bytes: Vec<u8>, options: JsValue) -> std::result::Result<JsValue, JsValue> {
    to_js(&data::validate(&name, &bytes, None, &validate_options(options)?))
}

fn validate_options(options: JsValue) -> std::result::Result<data::ValidateOptions, JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok(Default::default());
    }
    serde_wasm_bindgen::from_value(options).map_err(|e| js_error(Error::input("options", e.to_string())))
}

/// Initialises the backend: `"webgpu"` (asynchronous adapter and device
/// set-up) or `"cpu"` (burn's Flex compiled to wasm). Call once, before
/// loading a model.
#[wasm_bindgen(js_name = initDevice)]
pub async fn init_device(backend: String) -> std::result::Result<JsValue, JsValue> {
    let (device, name) = match backend.as_str() {
        #[cfg(feature = "gpu")]
        "webgpu" => (crate::device::gpu_async().await.map_err(js_error)?, "webgpu"),
        #[cfg(not(feature = "gpu"))]
        "webgpu" => return Err(js_error(Error::device("this is the CPU-only (threads) build of the core; load the main build for WebGPU"))),
        "cpu" => (crate::device::cpu(), "cpu"),
        other => return Err(js_error(Error::input("backend", format!("'{other}' is not a backend (use webgpu or cpu)")))),
    };
    DEVICE.with(|d| *d.borrow_mut() = Some((device, name)));
    let info = Object::new();
    set(&info, "backend", &name.into());
    Ok(info.into())
}

/// Milliseconds from the worker's (or page's) `performance.now()`.
fn now_ms() -> f64 {
    let perf = Reflect::get(&js_sys::global(), &"performance".into()).ok();
    let now = perf.as_ref().and_then(|p| Reflect::get(p, &"now".into()).ok()).and_then(|f| f.dyn_into::<Function>().ok());
    match (perf, now) {
        (Some(p), Some(f)) => f.call0(&p).ok().and_then(|v| v.as_f64()).unwrap_or_else(js_sys::Date::now),
        _ => js_sys::Date::now(),
    }
}

/// Times `reps` `n`×`n` f32 matmuls on the initialised device (after one
/// warm-up run, which compiles the kernels); returns milliseconds per matmul.
#[wasm_bindgen(js_name = benchMatmul)]
pub async fn bench_matmul(n: usize, reps: usize) -> std::result::Result<f64, JsValue> {
    if n == 0 || reps == 0 {
        return Err(js_error(Error::input("benchmark", "matmul size and repetitions must be positive")));
    }
    let probe = crate::bench::MatmulProbe::new(&device().map_err(js_error)?, n);
    probe.run(1).await.map_err(js_error)?;
    let start = now_ms();
    probe.run(reps).await.map_err(js_error)?;
    Ok((now_ms() - start) / reps as f64)
}

fn device() -> Result<Device> {
    DEVICE.with(|d| d.borrow().as_ref().map(|(d, _)| d.clone())).ok_or_else(|| Error::device("call initDevice first"))
}

/// The memory plan of a model from the first bytes of its files (`names[i]`
/// holds `heads[i]`, the start of a file of `lens[i]` bytes; JSON files whole),
/// for a training job `options` (a `TrainSpec`, or `undefined` for loading
/// only), against `limits` (`{memory_bytes, memory_name, max_buffer_bytes,
/// device_is_host}`). Returns `{need: [{name, bytes}]}` while some header is
/// not complete yet, else the plan with `fits`, `host_peak_bytes` and, when it
/// does not fit, the typed `error` (kind `device`) to refuse with. Malformed
/// headers throw, as loading would. Nothing is loaded or allocated on the device.
#[wasm_bindgen(js_name = planModel)]
pub fn plan_model(names: Vec<String>, heads: Array, lens: Vec<f64>, options: JsValue, limits: JsValue, quantize: Option<String>) -> std::result::Result<JsValue, JsValue> {
    use crate::plan::{bytes_needed, plan_with, FileHead, Limits};
    let quantize = quantize_of(quantize).map_err(js_error)?;
    let mut files = vec![];
    let mut need = vec![];
    for (i, name) in names.iter().enumerate() {
        let b: Uint8Array = heads.get(i as u32).dyn_into().map_err(|_| js_error(Error::input(name, "a header must be a Uint8Array")))?;
        let len = lens.get(i).copied().unwrap_or(0.0).max(0.0) as u64;
        let bytes = b.to_vec();
        if let Some(n) = bytes_needed(name, &bytes, len) {
            need.push(serde_json::json!({ "name": name, "bytes": n }));
        }
        files.push(FileHead { name: name.clone(), bytes, len });
    }
    if !need.is_empty() {
        return to_js(&serde_json::json!({ "need": need }));
    }
    let spec: Option<TrainSpec> = if options.is_undefined() || options.is_null() {
        None
    } else {
        Some(serde_wasm_bindgen::from_value(options).map_err(|e| js_error(Error::input("options", e.to_string())))?)
    };
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct JsLimits {
        memory_bytes: Option<f64>,
        memory_name: Option<String>,
        max_buffer_bytes: Option<f64>,
        device_is_host: bool,
    }
    let l: JsLimits = if limits.is_undefined() || limits.is_null() {
        JsLimits::default()
    } else {
        serde_wasm_bindgen::from_value(limits).map_err(|e| js_error(Error::input("limits", e.to_string())))?
    };
    let positive = |v: Option<f64>| v.filter(|b| b.is_finite() && *b > 0.0).map(|b| b as u64);
    let limits = Limits {
        memory_bytes: positive(l.memory_bytes),
        memory_name: l.memory_name.unwrap_or_default(),
        max_buffer_bytes: positive(l.max_buffer_bytes),
        device_is_host: l.device_is_host,
    };
    let p = plan_with(&files, spec.as_ref(), quantize).map_err(js_error)?;
    to_js(&crate::api::PlanReport::new(p, limits))
}

/// The `quantize` load option from JavaScript (`none` when absent).
fn quantize_of(q: Option<String>) -> crate::error::Result<crate::models::Quantize> {
    match q {
        None => Ok(Default::default()),
        Some(s) => serde_json::from_value(serde_json::Value::String(s.clone()))
            .map_err(|_| Error::input("quantize", format!("'{s}' is not a quantize option (none, f32, q8_0 or q4_0)"))),
    }
}

enum State {
    Idle(Model),
    Training(Box<Run>),
    /// Only while a state transition is in flight.
    Empty,
}

/// A loaded model and, while training, its run.
#[wasm_bindgen]
pub struct Session {
    state: State,
    /// The model as loaded, without an adapter (a cheap copy: burn tensors are
    /// shared handles): what a new adapter is built on and `resetAdapter` returns to.
    base: Model,
    /// `seq-cls` or `causal-lm`, for the adapter sidecar.
    task: Option<Task>,
    labels: Option<Vec<String>>,
    /// The DP record of the last finished run (for `webpeft.json`).
    dp: Option<crate::train::dp::DpRecord>,
    /// The running job's options (for a GPU job).
    spec: Option<TrainSpec>,
    /// The device's largest bindable buffer, when it has one (WebGPU).
    max_tensor_bytes: Option<usize>,
}

impl Session {
    async fn generate_from(&self, ids: Vec<u32>, max_new_tokens: usize, temperature: f32, top_p: f32, seed: u32, on_token: Function) -> std::result::Result<String, JsValue> {
        let m = self.model().map_err(js_error)?;
        let tok = m.tokenizer.as_ref().ok_or_else(|| js_error(Error::format("model", "the model has no tokenizer")))?;
        let stop_ids = stop_ids(m);
        let opts = GenerateOptions { max_new_tokens, temperature, top_p, seed: seed as u64, stop_ids: stop_ids.clone() };
        let mut out: Vec<u32> = vec![];
        let mut sent = 0usize;
        generate_async(m, &ids, &opts, |id| {
            if !stop_ids.contains(&id) {
                out.push(id);
            }
            let mut piece = String::new();
            if let Ok(text) = tok.decode(&out) {
                if text.len() > sent && text.is_char_boundary(sent) {
                    piece = text[sent..].to_string();
                    sent = text.len();
                }
            }
            // A callback that throws is ignored (as before); only `false` stops.
            let answer = on_token.call1(&JsValue::NULL, &piece.into());
            async move {
                match answer.map(|v| v.dyn_into::<js_sys::Promise>()) {
                    Ok(Ok(p)) => JsFuture::from(p).await.map(|v| v.as_bool() != Some(false)).unwrap_or(false),
                    Ok(Err(v)) => v.as_bool() != Some(false),
                    Err(_) => true,
                }
            }
        })
        .await
        .map_err(js_error)?;
        tok.decode(&out).map_err(js_error)
    }

    fn model(&self) -> Result<&Model> {
        match &self.state {
            State::Idle(m) => Ok(m),
            State::Training(r) => Ok(r.trainer.model()),
            State::Empty => Err(Error::input("session", "the session is busy")),
        }
    }

    fn model_mut(&mut self) -> Result<&mut Model> {
        match &mut self.state {
            State::Idle(m) => Ok(m),
            State::Training(r) => Ok(r.trainer.model_mut()),
            State::Empty => Err(Error::input("session", "the session is busy")),
        }
    }

    fn sidecar(&self) -> Vec<u8> {
        let dp = match &self.state {
            State::Training(r) => r.dp_record(),
            _ => self.dp.clone(),
        };
        let base = self.model().ok().map(|m| m.base.clone());
        Sidecar { dp, base, ..Sidecar::new(self.task.map(Task::name), self.labels.clone()) }.to_bytes()
    }
}

/// A file's bytes in a JavaScript `Uint8Array`, outside wasm memory.
struct JsBytes(Uint8Array);

impl crate::formats::source::ByteSource for JsBytes {
    fn len(&self) -> u64 {
        self.0.length() as u64
    }
    fn read_at(&self, file: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        crate::formats::source::check_range(file, offset, len, self.len())?;
        // In range, so both ends fit the array's u32 length.
        Ok(self.0.subarray(offset as u32, (offset + len as u64) as u32).to_vec())
    }
}

#[wasm_bindgen]
impl Session {
    /// Loads a model from its files (`names[i]` holds `files[i]`): an HF
    /// directory's files, or one `.gguf`. `max_tensor_bytes` (on WebGPU, the
    /// device's `maxStorageBufferBindingSize`) refuses a model with a larger
    /// weight before anything reaches the device.
    pub fn load(names: Vec<String>, files: Array, max_tensor_bytes: Option<f64>, quantize: Option<String>) -> std::result::Result<Session, JsValue> {
        let quantize = quantize_of(quantize).map_err(js_error)?;
        let mut mf = ModelFiles::default();
        for (i, name) in names.iter().enumerate() {
            let b: Uint8Array = files.get(i as u32).dyn_into().map_err(|_| js_error(Error::input(name, "file contents must be a Uint8Array")))?;
            // Weight files stay in JavaScript's memory and are copied in a tensor at a time, so
            // wasm32's 4 GiB never holds a whole file next to the weights made from it.
            if name.ends_with(".gguf") || name.ends_with(".safetensors") {
                mf.add_source(name, std::sync::Arc::new(JsBytes(b)));
            } else {
                mf.add(name, b.to_vec());
            }
        }
        // Training needs gradients; a frozen model costs nothing extra to run.
        let device = device().map_err(js_error)?.autodiff();
        let limit = max_tensor_bytes.filter(|b| b.is_finite() && *b > 0.0).map(|b| b as usize);
        let opts = crate::models::LoadOptions { max_tensor_bytes: limit, quantize };
        let model = freeze(Model::load_with(&mf, &device, &opts).map_err(js_error)?);
        Ok(Session { state: State::Idle(model.clone()), base: model, task: None, labels: None, dp: None, spec: None, max_tensor_bytes: limit })
    }

    /// Architecture, sizes and whether an adapter is attached.
    pub fn info(&self) -> std::result::Result<JsValue, JsValue> {
        let m = self.model().map_err(js_error)?;
        let peft_type = m.adapter_config.as_ref().and_then(|c| c.get("peft_type")).and_then(|v| v.as_str()).map(String::from);
        to_js(&ModelSummary { info: m.info.clone(), estimated_bytes: m.info.weight_bytes as usize, has_adapter: m.adapter_config.is_some(), peft_type })
    }

    /// Checks a dataset file as `validateData` does, and with this model's
    /// tokenizer also encodes it (chat template, truncation at `seq_len`) and
    /// counts its tokens. The model is not touched.
    #[wasm_bindgen(js_name = validateData)]
    pub fn validate_data(&self, name: String, bytes: Vec<u8>, options: JsValue) -> std::result::Result<JsValue, JsValue> {
        let tok = self.model().map_err(js_error)?.tokenizer.as_ref();
        to_js(&data::validate(&name, &bytes, tok, &validate_options(options)?))
    }

    /// Starts training on a dataset (and an optional eval file) with `options`
    /// (the CLI's flags in snake_case, see `TrainSpec`; `adapter`: `new` or
    /// `continue`, by default `continue` when the attached adapter has the
    /// options' settings, see `prepare`). The run trains a copy of the model:
    /// when starting fails (bad options, data, lengths, labels) the model and
    /// its adapter stay exactly as they were.
    #[wasm_bindgen(js_name = startTraining)]
    pub fn start_training(&mut self, train_name: String, train_bytes: Vec<u8>, eval_name: Option<String>, eval_bytes: Option<Vec<u8>>, options: JsValue) -> std::result::Result<JsValue, JsValue> {
        let State::Idle(current) = &self.state else {
            return Err(js_error(Error::input("session", "training is already running")));
        };
        let spec = TrainSpec::from_options(serde_wasm_bindgen::Deserializer::from(options)).map_err(js_error)?;
        let train = data::parse(&train_name, &train_bytes).map_err(js_error)?;
        let eval = match (eval_name, eval_bytes) {
            (Some(n), Some(b)) => Some(data::parse(&n, &b).map_err(js_error)?),
            _ => None,
        };
        // Activations too large for the device are refused before anything runs on it.
        if let Some(limit) = self.max_tensor_bytes {
            spec.check_activation_sizes(current, limit).map_err(js_error)?;
        }
        let (run, prep) = prepare(current, &self.base, &spec, &train, eval.as_ref()).map_err(js_error)?;
        self.task = Some(spec.task);
        self.labels = prep.labels.clone();
        self.spec = Some(spec);
        // A new run (DP or not) replaces the record: its guarantee is its own.
        self.dp = None;
        self.state = State::Training(Box::new(run));
        to_js(&prep)
    }

    /// Drops the adapter (attached, trained or loaded): the model is the base
    /// model as loaded again. Not while training.
    #[wasm_bindgen(js_name = resetAdapter)]
    pub fn reset_adapter(&mut self) -> std::result::Result<(), JsValue> {
        if !matches!(self.state, State::Idle(_)) {
            return Err(js_error(Error::input("session", "finish training before resetting the adapter")));
        }
        self.state = State::Idle(self.base.clone());
        self.task = None;
        self.labels = None;
        self.dp = None;
        Ok(())
    }

    /// True while a run is in progress.
    #[wasm_bindgen(js_name = isTraining)]
    pub fn is_training(&self) -> bool {
        matches!(&self.state, State::Training(r) if !r.is_finished())
    }

    /// One optimiser step; returns its events (step, eval, done).
    #[wasm_bindgen(js_name = trainStep)]
    pub async fn train_step(&mut self) -> std::result::Result<JsValue, JsValue> {
        let State::Training(run) = &mut self.state else {
            return Err(js_error(Error::input("session", "no training run (call startTraining)")));
        };
        let now = || js_sys::Date::now() / 1000.0;
        let events = run.next(&now).await.map_err(js_error)?;
        to_js(&events)
    }

    /// Ends the run; the model keeps the trained adapter.
    #[wasm_bindgen(js_name = finishTraining)]
    pub fn finish_training(&mut self) {
        if let State::Training(run) = std::mem::replace(&mut self.state, State::Empty) {
            self.dp = run.dp_record();
            self.state = State::Idle(run.into_model());
        } else if let State::Empty = self.state {
            // nothing to restore
        }
    }

    /// The adapter as PEFT files: `{config, weights, sidecar}` (bytes).
    #[wasm_bindgen(js_name = exportAdapter)]
    pub async fn export_adapter_js(&mut self) -> std::result::Result<JsValue, JsValue> {
        let sidecar = self.sidecar();
        let files = export_adapter(self.model_mut().map_err(js_error)?).await.map_err(js_error)?;
        let out = Object::new();
        set(&out, "config", &bytes(&files.config));
        set(&out, "weights", &bytes(&files.weights));
        set(&out, "sidecar", &bytes(&sidecar));
        Ok(out.into())
    }

    /// The LoRA adapter as llama.cpp's GGUF LoRA (`peft::gguf_lora`), bytes.
    #[wasm_bindgen(js_name = exportAdapterGguf)]
    pub async fn export_adapter_gguf_js(&mut self) -> std::result::Result<JsValue, JsValue> {
        let gguf = crate::peft::gguf_lora::export_gguf_lora(self.model_mut().map_err(js_error)?).await.map_err(js_error)?;
        Ok(bytes(&gguf))
    }

    /// Attaches a PEFT adapter (`adapter_config.json`, `adapter_model.safetensors`,
    /// and optionally webpeft's `webpeft.json` with label names).
    #[wasm_bindgen(js_name = loadAdapter)]
    pub fn load_adapter_js(&mut self, config: Vec<u8>, weights: Vec<u8>, sidecar: Option<Vec<u8>>) -> std::result::Result<JsValue, JsValue> {
        let labels = sidecar.as_deref().and_then(Sidecar::parse).and_then(|s| s.labels);
        let State::Idle(m) = &mut self.state else {
            return Err(js_error(Error::input("session", "finish training before loading an adapter")));
        };
        if m.adapter_config.is_some() {
            return Err(js_error(Error::input("session", "this model already has an adapter; call resetAdapter() first to use another")));
        }
        // Attached to a copy, kept only when it loads whole: a bad adapter leaves the model as it was.
        let mut adapted = m.clone();
        if let Some(l) = &labels {
            set_label_names(&mut adapted.config, l);
        }
        let summary = load_adapter(&mut adapted, &config, &weights).map_err(js_error)?;
        *m = adapted;
        self.labels = labels;
        self.task = Some(if m.info.num_labels.is_some() { Task::SeqCls } else { Task::CausalLm });
        to_js(&summary)
    }

    /// Switches the adapter off (base model outputs) or on, as PEFT's
    /// `disable_adapter()`; for side-by-side comparisons. Not while training.
    #[wasm_bindgen(js_name = setAdapterEnabled)]
    pub fn set_adapter_enabled(&mut self, on: bool) -> std::result::Result<(), JsValue> {
        match &mut self.state {
            State::Idle(m) => {
                m.set_adapter_enabled(on);
                Ok(())
            }
            _ => Err(js_error(Error::input("session", "finish training before switching the adapter"))),
        }
    }

    /// Generates text after `prompt` (wrapped in the chat template when `chat`),
    /// calling `on_token` once per new token with the new piece of text (`""`
    /// while a character is still incomplete, and for a stop token); returns
    /// the whole text. `on_token` may answer `false`, or a Promise of `false`,
    /// to stop: a Promise is awaited before the next token, which lets the
    /// worker's event loop run (and see an abort) even on the CPU backend,
    /// whose reads never yield.
    #[allow(clippy::too_many_arguments)]
    pub async fn generate(&self, prompt: String, chat: bool, max_new_tokens: usize, temperature: f32, top_p: f32, seed: u32, on_token: Function) -> std::result::Result<String, JsValue> {
        let m = self.model().map_err(js_error)?;
        let tok = m.tokenizer.as_ref().ok_or_else(|| js_error(Error::format("model", "the model has no tokenizer")))?;
        let ids = if chat {
            let text = tok.apply_chat_template(&[Message { role: "user".into(), content: prompt }], true).map_err(js_error)?;
            tok.encode(&text, false).map_err(js_error)?
        } else {
            tok.encode(&prompt, true).map_err(js_error)?
        };
        self.generate_from(ids, max_new_tokens, temperature, top_p, seed, on_token).await
    }

    /// Generates the next assistant turn after `messages` (a JSON array of
    /// `{role, content}`), rendered with the model's chat template and its
    /// generation prompt; otherwise as `generate`.
    #[allow(clippy::too_many_arguments)]
    #[wasm_bindgen(js_name = generateChat)]
    pub async fn generate_chat(&self, messages: String, max_new_tokens: usize, temperature: f32, top_p: f32, seed: u32, on_token: Function) -> std::result::Result<String, JsValue> {
        let m = self.model().map_err(js_error)?;
        let tok = m.tokenizer.as_ref().ok_or_else(|| js_error(Error::format("model", "the model has no tokenizer")))?;
        let msgs: Vec<Message> = serde_json::from_str(&messages).map_err(|e| js_error(Error::input("messages", format!("expected [{{role, content}}]: {e}"))))?;
        let text = tok.apply_chat_template(&msgs, true).map_err(js_error)?;
        let ids = tok.encode(&text, false).map_err(js_error)?;
        self.generate_from(ids, max_new_tokens, temperature, top_p, seed, on_token).await
    }

    /// The chat template's rendering of `messages` (a JSON array of `{role, content}`),
    /// with the generation prompt when `add_generation_prompt`.
    #[wasm_bindgen(js_name = renderChat)]
    pub fn render_chat(&self, messages: String, add_generation_prompt: bool) -> std::result::Result<String, JsValue> {
        let m = self.model().map_err(js_error)?;
        let tok = m.tokenizer.as_ref().ok_or_else(|| js_error(Error::format("model", "the model has no tokenizer")))?;
        let msgs: Vec<Message> = serde_json::from_str(&messages).map_err(|e| js_error(Error::input("messages", format!("expected [{{role, content}}]: {e}"))))?;
        tok.apply_chat_template(&msgs, add_generation_prompt).map_err(js_error)
    }

    /// Token ids of `text` with the model's tokenizer (with its special tokens,
    /// such as BOS, when `special_tokens`), as the native `webpeft tokenize`.
    pub fn tokenize(&self, text: String, special_tokens: bool) -> std::result::Result<Vec<u32>, JsValue> {
        let m = self.model().map_err(js_error)?;
        let tok = m.tokenizer.as_ref().ok_or_else(|| js_error(Error::format("model", "the model has no tokenizer")))?;
        tok.encode(&text, special_tokens).map_err(js_error)
    }

    /// One-button training settings for `rows` rows of data (`train::suggest`): the options
    /// (snake_case, as `startTraining` reads them) and one sentence saying what was chosen and
    /// why. `task` defaults to the model's (`seq-cls` for a classifier, else `causal-lm`);
    /// `held_out`: the rows the caller holds out itself, if it does.
    #[wasm_bindgen(js_name = suggestOptions)]
    pub fn suggest_options(&self, task: Option<String>, rows: usize, held_out: Option<usize>) -> std::result::Result<JsValue, JsValue> {
        let m = self.model().map_err(js_error)?;
        let task = match task {
            Some(t) => Task::parse(&t).map_err(js_error)?,
            None if m.info.task == "seq-cls" || m.facts().encoder => Task::SeqCls,
            None => Task::CausalLm,
        };
        to_js(&crate::train::suggest::suggest(&m.info, task, rows, held_out))
    }

    /// Class probabilities for each text (sequence classification).
    pub async fn classify(&self, texts: Vec<String>) -> std::result::Result<JsValue, JsValue> {
        let m = self.model().map_err(js_error)?;
        let k = m.info.num_labels.ok_or_else(|| js_error(Error::input("classify", "the model has no classification head")))?;
        let names = match &self.labels {
            Some(l) if l.len() == k => l.clone(),
            _ => model_labels(&m.config, k),
        };
        let tok = m.tokenizer.as_ref().ok_or_else(|| js_error(Error::format("model", "the model has no tokenizer")))?;
        let mut results = vec![];
        for text in &texts {
            let mut ids = tok.encode(text, true).map_err(js_error)?;
            ids.truncate(m.info.context_length - m.extra_positions());
            let out = m.forward(&[ids], None, None, None).map_err(js_error)?;
            let logits = read_f32(out.class_logits.expect("checked: the model has a head")).await.map_err(js_error)?;
            let max = logits.iter().cloned().fold(f32::MIN, f32::max);
            let exp: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
            let sum: f32 = exp.iter().sum();
            let best = crate::generate::argmax(&logits) as usize;
            let probs = names.iter().zip(&exp).map(|(n, e)| (n.clone(), serde_json::json!(e / sum))).collect();
            results.push(Classification { label: names[best].clone(), probs });
        }
        to_js(&results)
    }

    /// Logits for one row of token ids, flattened (token logits of a causal
    /// LM, class logits of a classifier).
    pub async fn forward(&self, ids: Vec<u32>) -> std::result::Result<js_sys::Float32Array, JsValue> {
        let m = self.model().map_err(js_error)?;
        let out = m.forward(&[ids], None, None, None).map_err(js_error)?;
        // A classifier's class logits, else the token logits (as transformers names them).
        let t = match (out.class_logits, out.token_logits) {
            (Some(c), _) => c.reshape([-1]),
            (None, Some(t)) => t.reshape([-1]),
            _ => out.last_hidden_state.reshape([-1]),
        };
        let v = read_f32(t).await.map_err(js_error)?;
        Ok(js_sys::Float32Array::from(v.as_slice()))
    }

    /// Times LoRA training steps (`crate::bench::TrainBench`: r 8, AdamW, on
    /// fixed pseudo-random rows) on a copy of the model, which stays as it
    /// was. `task` is `causal-lm` or `seq-cls`; `batch` and `seq` default to
    /// `crate::bench::default_shape`. Returns `{batch, seq, ms}`, `ms` holding
    /// milliseconds per step, the first being the warm-up step (kernel
    /// compilation included).
    #[wasm_bindgen(js_name = benchTrain)]
    pub async fn bench_train(&self, task: String, batch: Option<usize>, seq: Option<usize>, steps: usize) -> std::result::Result<JsValue, JsValue> {
        let State::Idle(m) = &self.state else {
            return Err(js_error(Error::input("benchmark", "finish training before benchmarking")));
        };
        let task = Task::parse(&task).map_err(js_error)?;
        let (default_batch, default_seq) = crate::bench::default_shape(task);
        let (batch, seq) = (batch.unwrap_or(default_batch), seq.unwrap_or(default_seq));
        let mut bench = crate::bench::TrainBench::new(m.clone(), task, batch, seq, false).map_err(js_error)?;
        let mut times = vec![];
        for _ in 0..steps + 1 {
            let start = now_ms();
            bench.step().await.map_err(js_error)?;
            times.push(now_ms() - start);
        }
        let out = Object::new();
        set(&out, "batch", &(batch as f64).into());
        set(&out, "seq", &(seq as f64).into());
        set(&out, "ms", &js_sys::Float64Array::from(times.as_slice()).into());
        Ok(out.into())
    }

    /// A full checkpoint of the running job: adapter files plus optimiser
    /// state and `trainer_state.json` (for OPFS).
    pub async fn checkpoint(&mut self) -> std::result::Result<JsValue, JsValue> {
        let sidecar = self.sidecar();
        let State::Training(run) = &mut self.state else {
            return Err(js_error(Error::input("session", "no training run to checkpoint")));
        };
        let (optimizer, state) = save_state(run).await.map_err(js_error)?;
        let files = export_adapter(run.trainer.model_mut()).await.map_err(js_error)?;
        let out = Object::new();
        set(&out, "config", &bytes(&files.config));
        set(&out, "weights", &bytes(&files.weights));
        set(&out, "sidecar", &bytes(&sidecar));
        set(&out, "optimizer", &bytes(&optimizer));
        set(&out, "state", &bytes(&state));
        Ok(out.into())
    }

    /// "Continue on a GPU machine": the running (paused) job where it stands, as the files of a
    /// directory that transformers' Trainer + PEFT continue (`train.py`; see
    /// `train::gpu_job`), by path. The data files are included as given.
    #[wasm_bindgen(js_name = gpuJob)]
    pub async fn gpu_job(&mut self, train_name: String, train_bytes: Vec<u8>, eval_name: Option<String>, eval_bytes: Option<Vec<u8>>) -> std::result::Result<JsValue, JsValue> {
        let labels = self.labels.clone();
        let (State::Training(run), Some(spec)) = (&mut self.state, &self.spec) else {
            return Err(js_error(Error::input("session", "no training run to continue elsewhere (start one, and pause it)")));
        };
        let mut data = vec![(train_name, train_bytes)];
        if let (Some(n), Some(b)) = (eval_name, eval_bytes) {
            data.push((n, b));
        }
        let files = crate::train::gpu_job::gpu_job_files(run, spec, labels, &data).await.map_err(js_error)?;
        let out = Object::new();
        for (name, b) in &files {
            set(&out, name, &bytes(b));
        }
        Ok(out.into())
    }

    /// Restores a checkpoint into a run started (with `startTraining`) from
    /// the checkpoint's adapter: the optimiser state and the step.
    #[wasm_bindgen(js_name = restoreCheckpoint)]
    pub fn restore_checkpoint(&mut self, optimizer: Vec<u8>, state: Vec<u8>) -> std::result::Result<(), JsValue> {
        let State::Training(run) = &mut self.state else {
            return Err(js_error(Error::input("session", "start the run (from the checkpoint's adapter) first")));
        };
        crate::train::checkpoint::load_state(run, &optimizer, &state).map_err(js_error)
    }
}

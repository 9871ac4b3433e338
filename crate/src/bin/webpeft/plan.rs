//! `webpeft plan`: the memory plan of loading (and training) a model, read
//! from the files' headers only.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use clap::Args;
use webpeft::device::Backend;
use webpeft::plan::{bytes_needed, plan_with, FileHead, Limits, MemoryPlan, WASM32_MEMORY};
use webpeft::train::session::{Method, OptimizerName, Task, TrainSpec};
use webpeft::{Error, ModelFiles, Result};

/// Options of `webpeft plan`. Training is planned when `--task` or `--method` is given. The
/// training flags are a subset of `webpeft train`'s, with `TrainSpec`'s values and defaults.
#[derive(Args)]
pub struct PlanArgs {
    /// A model directory or .gguf file.
    pub model: PathBuf,
    #[arg(long, value_enum)]
    pub task: Option<Task>,
    #[arg(long, value_enum)]
    pub method: Option<Method>,
    #[arg(long)]
    pub r: Option<usize>,
    /// Comma-separated module names, or `re:<regex>`.
    #[arg(long)]
    pub targets: Option<String>,
    #[arg(long)]
    pub virtual_tokens: Option<usize>,
    #[arg(long, default_value_t = TrainSpec::default().batch)]
    pub batch: usize,
    #[arg(long, default_value_t = TrainSpec::default().seq_len)]
    pub seq_len: usize,
    #[arg(long, value_enum, default_value_t = TrainSpec::default().optimizer)]
    pub optimizer: OptimizerName,
    #[arg(long, default_value_t = TrainSpec::default().momentum)]
    pub momentum: f64,
    /// Plan training that recomputes each decoder layer in the backward pass.
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// Memory limit in bytes (default: wasm32's 4 GiB, what a browser tab can hold).
    #[arg(long)]
    pub memory: Option<u64>,
    /// Largest single buffer in bytes (WebGPU's maxStorageBufferBindingSize); none by default.
    #[arg(long)]
    pub max_buffer: Option<u64>,
    /// cpu: device memory is host memory (weights and training state count against --memory).
    #[arg(long, default_value = "cpu")]
    pub device: Backend,
    #[arg(long)]
    pub json: bool,
}

fn io(p: &Path, e: std::io::Error) -> Error {
    Error::io(p.display().to_string(), e.to_string())
}

/// Reads only as much of `path` as the plan needs (headers; JSON files whole).
fn head(path: &Path) -> Result<FileHead> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let len = f.metadata().map_err(|e| io(path, e))?.len();
    let mut bytes = vec![];
    while let Some(want) = bytes_needed(&name, &bytes, len) {
        let have = bytes.len() as u64;
        f.seek(SeekFrom::Start(have)).map_err(|e| io(path, e))?;
        (&mut f).take(want - have).read_to_end(&mut bytes).map_err(|e| io(path, e))?;
        if bytes.len() as u64 == have {
            break; // the file ended early; parsing reports it
        }
    }
    Ok(FileHead { name, bytes, len })
}

/// The headers of a model directory's weights and its small JSON files, or a .gguf's header.
pub fn read_heads(path: &Path) -> Result<Vec<FileHead>> {
    if path.is_file() {
        return Ok(vec![head(path)?]);
    }
    let shown = path.display().to_string();
    let list: Vec<String> = std::fs::read_dir(path)
        .map_err(|e| io(path, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let needed = ModelFiles::needed_from_listing(&list, || std::fs::read(path.join("model.safetensors.index.json")).ok())
        .map_err(|e| Error { source: format!("{shown}/{}", e.source), ..e })?;
    needed.iter().filter(|n| !n.starts_with("tokenizer")).map(|n| head(&path.join(n))).collect()
}

impl PlanArgs {
    fn spec(&self) -> Result<Option<TrainSpec>> {
        if self.task.is_none() && self.method.is_none() {
            return Ok(None);
        }
        let d = TrainSpec::default();
        Ok(Some(TrainSpec {
            task: self.task.unwrap_or(d.task),
            method: self.method.unwrap_or(d.method),
            r: self.r,
            targets: self.targets.as_deref().map(crate::train::split_targets),
            virtual_tokens: self.virtual_tokens,
            batch: self.batch,
            seq_len: self.seq_len,
            optimizer: self.optimizer,
            momentum: self.momentum,
            gradient_checkpointing: self.gradient_checkpointing,
            ..d
        }))
    }
}

fn print_text(p: &MemoryPlan, limits: &Limits) {
    let mb = |b: u64| format!("{:>10.1} MB", b as f64 / 1e6);
    println!("model:                 {} ({}), {} layers, hidden {}, vocab {}", p.model_type, p.format, p.num_layers, p.hidden_size, p.vocab_size);
    println!("files:                 {}", mb(p.file_bytes));
    let w = &p.weights;
    println!("weights stored:        {} ({}, {} values)", mb(w.stored_bytes), w.stored_dtypes.join(", "), w.parameters);
    println!("weights on device:     {} ({}, {} values)", mb(w.device_bytes), w.device_dtype, w.device_parameters);
    println!("largest weight:        {} ({} {:?})", mb(w.largest.bytes), w.largest.name, w.largest.shape);
    println!("host while loading:    {}", mb(p.host_load_bytes));
    if let Some(t) = &p.training {
        println!("training:              {} {}, batch {} x {} positions", t.task, t.method, t.batch, t.positions);
        println!("  adapter + optimiser: {} ({} trainable values)", mb(t.adapter_bytes), t.trainable_parameters);
        let ckpt = if t.gradient_checkpointing { " (gradient checkpointing: layer inputs and one layer)" } else { "" };
        println!("  activations:         {}{ckpt}", mb(t.activations_bytes));
        println!("  LM head (logits):    {}", mb(t.logits_bytes));
        println!("  largest buffer:      {} ({} {:?})", mb(t.largest_activation.bytes), t.largest_activation.name, t.largest_activation.shape);
    }
    println!("device total:          {}", mb(p.device_bytes));
    println!("host peak:             {}", mb(p.host_peak_bytes(limits.device_is_host)));
}

/// `webpeft plan`: prints the plan, then fails (exit 1) when it does not fit the limits.
pub fn run(a: PlanArgs) -> Result<()> {
    let heads = read_heads(&a.model)?;
    let spec = a.spec()?;
    let p = plan_with(&heads, spec.as_ref(), crate::load_options().quantize)?;
    let limits = Limits {
        memory_bytes: Some(a.memory.unwrap_or(WASM32_MEMORY)),
        memory_name: if a.memory.is_some() { "the --memory limit".into() } else { "the wasm32 memory (4 GiB)".into() },
        max_buffer_bytes: a.max_buffer,
        device_is_host: a.device == Backend::Cpu,
    };
    let checked = p.check(&limits);
    if a.json {
        let mut v = serde_json::to_value(&p).expect("plan serialises");
        v["host_peak_bytes"] = p.host_peak_bytes(limits.device_is_host).into();
        v["limits"] = serde_json::to_value(&limits).expect("limits serialise");
        v["fits"] = checked.is_ok().into();
        if let Err(e) = &checked {
            v["error"] = serde_json::json!({ "kind": "device", "source": e.source, "message": e.message });
        }
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        print_text(&p, &limits);
    }
    checked
}

//! `webpeft train`, `eval` and `merge`: files and flags around the core's
//! trainer. Each training step prints one JSON line to stdout.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use webpeft::device::{self, Backend};
use webpeft::peft::export::export_adapter;
use webpeft::peft::{load_adapter, model_labels, set_label_names, Sidecar};
use webpeft::train::checkpoint::{load_state, save_state};
use webpeft::train::data::{self, LabelMap, Task};
use webpeft::train::run::evaluate;
use webpeft::train::session::{encode_for, prepare, AdapterMode, TrainSpec};
use webpeft::train::dp::{DpRecord, DpSpec};
use webpeft::train::freeze;
use webpeft::{Error, Model, Result};

use crate::{block, read_model_files};

/// Options of `webpeft train`.
#[derive(Args)]
pub struct TrainArgs {
    /// A model directory or .gguf file.
    pub model: PathBuf,
    /// Training data: .jsonl (text, prompt/completion, messages, text+label), .csv (text,label) or .txt.
    #[arg(long)]
    pub data: PathBuf,
    /// Eval data (same formats). Without it, --eval-split holds out a share of --data.
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// The training job's options (`TrainSpec`: the same names and defaults as the npm
    /// package's `TrainOptions`).
    #[command(flatten)]
    pub spec: TrainSpec,
    /// Comma-separated module names, or `re:<regex>`.
    #[arg(long)]
    pub targets: Option<String>,
    /// Write a full checkpoint (adapter + optimiser state) to OUT/checkpoint every N steps.
    #[arg(long, default_value_t = 50)]
    pub save_every: usize,
    /// Start from an existing PEFT adapter instead of a new one.
    #[arg(long)]
    pub init_adapter: Option<PathBuf>,
    /// Resume from a checkpoint directory written by --save-every.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Differentially private training (DP-SGD with Poisson sampling, Opacus's accounting: PRV, or RDP with --accountant rdp).
    #[arg(long)]
    pub dp: bool,
    #[command(flatten)]
    pub dp_options: DpSpec,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: Backend,
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| Error::io(p.display().to_string(), e.to_string()))
}

fn write(p: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(p, bytes).map_err(|e| Error::io(p.display().to_string(), e.to_string()))
}

fn parse_data(path: &Path) -> Result<data::Dataset> {
    let name = path.display().to_string();
    data::parse(&name, &read(path)?)
}

/// The `webpeft.json` next to an adapter, if there is one.
fn sidecar(dir: &Path) -> Option<Sidecar> {
    std::fs::read(dir.join(Sidecar::FILE)).ok().and_then(|b| Sidecar::parse(&b))
}

/// Puts the labels recorded next to an adapter into the model config, so a
/// head created for the adapter gets its names.
pub fn labels_from_sidecar(m: &mut Model, dir: &Path) {
    if let Some(labels) = sidecar(dir).and_then(|s| s.labels) {
        set_label_names(&mut m.config, &labels);
    }
}

fn load_adapter_dir(m: &mut Model, dir: &Path) -> Result<()> {
    labels_from_sidecar(m, dir);
    load_adapter(m, &read(&dir.join("adapter_config.json"))?, &read(&dir.join("adapter_model.safetensors"))?)
        .map_err(|e| Error { source: format!("{}/{}", dir.display(), e.source), ..e })?;
    Ok(())
}

/// Writes the adapter (and `webpeft.json`) into `dir`, through a temporary
/// directory renamed into place, so a crash never leaves half a checkpoint.
fn save_adapter(m: &mut Model, dir: &Path, task: Task, labels: Option<&LabelMap>, dp: Option<DpRecord>, extra: &[(&str, Vec<u8>)]) -> Result<()> {
    let files = block(export_adapter(m))?;
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(tmp.display().to_string(), e.to_string()))?;
    write(&tmp.join("adapter_config.json"), &files.config)?;
    write(&tmp.join("adapter_model.safetensors"), &files.weights)?;
    let side = Sidecar { dp, base: Some(m.base.clone()), ..Sidecar::new(Some(task.name()), labels.map(|l| l.names.clone())) };
    write(&tmp.join(Sidecar::FILE), &side.to_bytes())?;
    for (name, bytes) in extra {
        write(&tmp.join(name), bytes)?;
    }
    // Keep anything else the user put in `dir`; replace only our files.
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display().to_string(), e.to_string()))?;
    for entry in std::fs::read_dir(&tmp).map_err(|e| Error::io(tmp.display().to_string(), e.to_string()))?.flatten() {
        let to = dir.join(entry.file_name());
        std::fs::rename(entry.path(), &to).map_err(|e| Error::io(to.display().to_string(), e.to_string()))?;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

impl TrainArgs {
    /// The flags as the core's job description.
    fn spec(&self) -> TrainSpec {
        TrainSpec {
            // An --init-adapter or --resume adapter is trained further, as it is.
            adapter: (self.init_adapter.is_some() || self.resume.is_some()).then_some(AdapterMode::Continue),
            targets: self.targets.as_deref().map(split_targets),
            base_model: self.model.display().to_string(),
            dp: self.dp.then(|| self.dp_options.clone()),
            ..self.spec.clone()
        }
    }
}

/// `--targets`: comma-separated module names, or one `re:<regex>` (which may contain commas).
pub fn split_targets(t: &str) -> Vec<String> {
    match t.strip_prefix("re:") {
        Some(_) => vec![t.to_string()],
        None => t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
    }
}

/// `webpeft train`.
pub fn train(a: TrainArgs) -> Result<()> {
    let spec = a.spec();
    let task = spec.task;
    let device = device::native(a.device)?.autodiff();
    let base = freeze(crate::load_files(&read_model_files(&a.model)?, &device)?);
    let train_ds = parse_data(&a.data)?;
    let eval_ds = a.eval.as_deref().map(parse_data).transpose()?;
    let mut m = base.clone();
    if let Some(dir) = a.resume.as_ref().or(a.init_adapter.as_ref()) {
        load_adapter_dir(&mut m, dir)?;
    }
    let (mut run, prep) = prepare(&m, &base, &spec, &train_ds, eval_ds.as_ref())?;
    drop((m, base));
    for w in &prep.warnings {
        eprintln!("warning: {w}");
    }
    let labels = prep.labels.clone().map(|names| LabelMap { names });
    if let Some(dir) = &a.resume {
        load_state(&mut run, &read(&dir.join("optimizer.safetensors"))?, &read(&dir.join("trainer_state.json"))?)?;
        eprintln!("resumed from {} at step {}", dir.display(), run.step);
    }
    eprintln!(
        "training {} on {} examples ({} eval): {} trainable parameters ({:.3}% of {}), {} steps",
        a.spec.method.name(),
        prep.train_examples,
        prep.eval_examples,
        prep.trainable_parameters,
        100.0 * prep.trainable_parameters as f64 / prep.total_parameters.max(1) as f64,
        prep.total_parameters,
        prep.total_steps
    );
    if let Some(p) = run.dp_plan() {
        eprintln!(
            "DP-SGD: noise multiplier {}, max grad norm {}, sample rate {:.6}, delta {:e}; epsilon after {} steps: {:.4} ({} accountant)",
            p.noise_multiplier, p.max_grad_norm, p.sample_rate, p.delta, p.steps, p.epsilon(p.steps)?, p.accountant.name()
        );
    }
    let clock = Instant::now();
    let checkpoint_dir = a.out.join("checkpoint");
    while !run.is_finished() {
        let events = match block(run.next(&|| clock.elapsed().as_secs_f64())) {
            Ok(e) => e,
            Err(e) => {
                // The adapter keeps its last good values (the failing update was not applied).
                let dp = run.dp_record();
                let mut m = run.into_model();
                save_adapter(&mut m, &a.out, task, labels.as_ref(), dp, &[])?;
                return Err(Error { message: format!("{}; the last good adapter is in {}", e.message, a.out.display()), ..e });
            }
        };
        for ev in &events {
            println!("{}", serde_json::to_string(ev).expect("events serialise"));
        }
        if a.save_every > 0 && run.step % a.save_every == 0 && !run.is_finished() {
            let (opt, state) = block(save_state(&mut run))?;
            let dp = run.dp_record();
            save_adapter(run.trainer.model_mut(), &checkpoint_dir, task, labels.as_ref(), dp, &[("optimizer.safetensors", opt), ("trainer_state.json", state)])?;
        }
    }
    let dp = run.dp_record();
    let mut m = run.into_model();
    save_adapter(&mut m, &a.out, task, labels.as_ref(), dp, &[])?;
    eprintln!("adapter written to {}", a.out.display());
    Ok(())
}

/// `webpeft gpu-job`: the run checkpointed in `--resume`, as a directory (`--out`) that
/// transformers' Trainer and PEFT continue (`train.py`). Takes `webpeft train`'s flags, as the
/// run was started.
pub fn gpu_job(a: TrainArgs) -> Result<()> {
    let dir = a.resume.as_ref().ok_or_else(|| Error::input("--resume", "name the checkpoint directory to continue from (OUT/checkpoint of a run with --save-every)"))?;
    let spec = a.spec();
    let device = device::native(a.device)?.autodiff();
    let base = freeze(crate::load_files(&read_model_files(&a.model)?, &device)?);
    let train_ds = parse_data(&a.data)?;
    let eval_ds = a.eval.as_deref().map(parse_data).transpose()?;
    let mut m = base.clone();
    load_adapter_dir(&mut m, dir)?;
    let (mut run, prep) = prepare(&m, &base, &spec, &train_ds, eval_ds.as_ref())?;
    drop((m, base));
    load_state(&mut run, &read(&dir.join("optimizer.safetensors"))?, &read(&dir.join("trainer_state.json"))?)?;
    let mut data_files = vec![(a.data.display().to_string(), read(&a.data)?)];
    if let Some(e) = &a.eval {
        data_files.push((e.display().to_string(), read(e)?));
    }
    let files = block(webpeft::train::gpu_job::gpu_job_files(&mut run, &spec, prep.labels.clone(), &data_files))?;
    for (name, bytes) in &files {
        let path = a.out.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent.display().to_string(), e.to_string()))?;
        }
        write(&path, bytes)?;
    }
    eprintln!("GPU job written to {} (step {} of {}): run `accelerate launch train.py` there", a.out.display(), run.step, run.total_steps);
    Ok(())
}

/// `webpeft eval`: metrics of a model (and adapter) on a data file, as JSON.
pub fn eval(model: &Path, adapter: Option<&Path>, data_file: &Path, task: Option<Task>, seq_len: usize, batch: usize, backend: Backend) -> Result<()> {
    let mut m = crate::load_files(&read_model_files(model)?, &device::native(backend)?)?;
    if let Some(dir) = adapter {
        load_adapter_dir(&mut m, dir)?;
    }
    let side_task = adapter.and_then(sidecar).and_then(|s| s.task);
    let side_task = side_task.map(|t| Task::parse(&t)).transpose()?;
    let task = match task.or(side_task) {
        Some(t) => t,
        None if m.info.num_labels.is_some() => Task::SeqCls,
        None => Task::CausalLm,
    };
    let labels = match task {
        Task::SeqCls => {
            let k = m.info.num_labels.ok_or_else(|| Error::input("--task", "seq-cls evaluation needs a classification head (in the model or the adapter)"))?;
            Some(LabelMap { names: model_labels(&m.config, k) })
        }
        Task::CausalLm => None,
    };
    let ds = parse_data(data_file)?;
    let (ex, warnings) = encode_for(&m, &ds, task, seq_len, labels.as_ref())?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let pad_id = data::pad_id(m.tokenizer.as_ref().expect("checked by encode"));
    let metrics = block(evaluate(&m, &ex, task, batch, pad_id))?;
    println!("{}", serde_json::to_string_pretty(&metrics).expect("metrics serialise"));
    Ok(())
}

/// `webpeft merge`: writes the merged model as an HF directory.
pub fn merge(model: &Path, adapter: &Path, out: &Path) -> Result<()> {
    let mut m = crate::load_files(&read_model_files(model)?, &device::cpu())?;
    load_adapter_dir(&mut m, adapter)?;
    let files = block(webpeft::peft::merge::merge(&m))?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out.display().to_string(), e.to_string()))?;
    for (name, bytes) in files {
        write(&out.join(&name), &bytes)?;
    }
    // A Hugging Face source keeps its own tokenizer files (exact round trip).
    if model.is_dir() {
        for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "merges.txt", "vocab.json"] {
            let p = model.join(name);
            if p.exists() {
                std::fs::copy(&p, out.join(name)).map_err(|e| Error::io(p.display().to_string(), e.to_string()))?;
            }
        }
    }
    eprintln!("merged model written to {}", out.display());
    Ok(())
}

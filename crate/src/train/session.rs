//! One description of a training job ([`TrainSpec`]), shared by the CLI's
//! flags and the browser's options object, and [`prepare`], which turns it
//! and the data into a ready [`Run`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::data::{self, Dataset, EncodeOptions, Example, LabelMap};
pub use super::data::Task;
use super::run::{Run, RunConfig};
pub use super::Schedule;
use super::{OptimizerKind, TrainOptions};
use crate::error::{human_bytes, Error, Result};
use crate::models::Model;
use crate::peft::create::{create_adapter, AdapterSpec};
pub use crate::peft::create::Method;
use crate::peft::{set_label_names, TargetModules};

/// The optimiser a job asks for (`adamw` or `sgd`); its settings are the
/// spec's `weight_decay` and `momentum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli-cpu", derive(clap::ValueEnum))]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "Optimizer"))]
pub enum OptimizerName {
    /// PyTorch's AdamW (betas 0.9, 0.999, eps 1e-8).
    Adamw,
    /// PyTorch's SGD, with `momentum`.
    Sgd,
}

/// Which adapter a run trains when the model already carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli-cpu", derive(clap::ValueEnum))]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "AdapterChoice"))]
pub enum AdapterMode {
    /// A fresh adapter built from the options on the adapter-free base model;
    /// the attached adapter is set aside (the run does not change it).
    New,
    /// The attached adapter, trained further with its own method and
    /// settings (options that disagree with it are reported as warnings).
    Continue,
}

/// A training job: the CLI's flags (snake_case here and in JSON, camelCase in
/// the npm package's options). An unset field takes the method's PEFT default.
/// The choice fields are enums with the CLI's spellings (`causal-lm`, `ia3`,
/// `adamw`, ...), so the CLI's flags and the browser's options object share
/// one definition; an unknown value is refused when the spec is read, before
/// a model is touched.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "cli-cpu", derive(clap::Args))]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename_all = "camelCase", optional_fields))]
pub struct TrainSpec {
    /// `causal-lm` (next-token prediction) or `seq-cls` (classification).
    #[cfg_attr(feature = "cli-cpu", arg(long, value_enum))]
    pub task: Task,
    /// The PEFT method.
    #[cfg_attr(feature = "cli-cpu", arg(long, value_enum))]
    pub method: Method,
    /// With an adapter already on the model: `new` or `continue`. Unset, it
    /// is `continue` when the adapter these options would create has the
    /// attached adapter's settings (see `prepare`), else `new`.
    #[cfg_attr(feature = "cli-cpu", arg(skip))]
    pub adapter: Option<AdapterMode>,
    /// LoRA rank (PEFT's default 8).
    #[cfg_attr(feature = "cli-cpu", arg(long))]
    pub r: Option<usize>,
    /// LoRA alpha (PEFT's default 8).
    #[cfg_attr(feature = "cli-cpu", arg(long))]
    pub alpha: Option<f64>,
    /// LoRA dropout, applied in training steps only.
    #[cfg_attr(feature = "cli-cpu", arg(long, default_value_t = defaults().dropout))]
    pub dropout: f64,
    /// Module names, or one `re:<regex>` (the CLI's `--targets` takes them comma-separated).
    #[cfg_attr(feature = "cli-cpu", arg(skip))]
    pub targets: Option<Vec<String>>,
    /// rsLoRA: scale by alpha / sqrt(r) instead of alpha / r.
    #[cfg_attr(feature = "cli-cpu", arg(long = "rslora"))]
    pub rslora: bool,
    /// LoRA init `gaussian` instead of kaiming-uniform.
    #[cfg_attr(feature = "cli-cpu", arg(long))]
    pub gaussian_init: bool,
    /// Prompt / prefix tuning length (default 8).
    #[cfg_attr(feature = "cli-cpu", arg(long))]
    pub virtual_tokens: Option<usize>,
    /// Prompt tuning: initialise from this text's token embeddings.
    #[cfg_attr(feature = "cli-cpu", arg(long))]
    pub init_text: Option<String>,
    #[cfg_attr(feature = "cli-cpu", arg(long, default_value_t = defaults().epochs))]
    pub epochs: usize,
    /// Optimiser steps (overrides epochs).
    #[cfg_attr(feature = "cli-cpu", arg(long))]
    pub steps: Option<usize>,
    #[cfg_attr(feature = "cli-cpu", arg(long, default_value_t = defaults().lr))]
    pub lr: f64,
    #[cfg_attr(feature = "cli-cpu", arg(long, default_value_t = defaults().batch))]
    pub batch: usize,
    #[cfg_attr(feature = "cli-cpu", arg(long, default_value_t = defaults().seq_len))]
    pub seq_len: usize,
    /// Warm-up steps (linear from 0).
    #[cfg_attr(feature = "cli-cpu", arg(long, default_value_t = defaults().warmup))]
    pub warmup: usize,
    #[cfg_attr(feature = "cli-cpu", arg(long, value_enum, default_value_t = defaults().schedule))]
    pub schedule: Schedule,
    #[cfg_attr(feature = "cli-cpu", arg(long, value_enum, default_value_t = defaults().optimizer))]
    pub optimizer: OptimizerName,
    #[cfg_attr(feature = "cli-cpu", arg(long, default_value_t = defaults().weight_decay))]
    pub weight_decay: f64,
    /// SGD momentum.
    #[cfg_attr(feature = "cli-cpu", arg(long, default_value_t = defaults().momentum))]
    pub momentum: f64,
    #[cfg_attr(feature = "cli-cpu", arg(long, default_value_t = defaults().seed))]
    pub seed: u64,
    /// Shuffle the training rows each epoch (the CLI's `--no-shuffle` turns it off).
    #[cfg_attr(feature = "cli-cpu", arg(long = "no-shuffle", action = clap::ArgAction::SetFalse))]
    pub shuffle: bool,
    /// Micro-batches per optimiser step.
    #[cfg_attr(feature = "cli-cpu", arg(long, default_value_t = defaults().grad_accum))]
    pub grad_accum: usize,
    /// Clip the global gradient norm.
    #[cfg_attr(feature = "cli-cpu", arg(long))]
    pub clip: Option<f64>,
    /// Evaluate every N steps (and always at the end).
    #[cfg_attr(feature = "cli-cpu", arg(long))]
    pub eval_every: Option<usize>,
    /// Share of the training data held out for eval when no eval file is given.
    #[cfg_attr(feature = "cli-cpu", arg(long, default_value_t = defaults().eval_split))]
    pub eval_split: f64,
    /// Early stopping: evaluations without improvement of the eval loss.
    #[cfg_attr(feature = "cli-cpu", arg(long))]
    pub patience: Option<usize>,
    /// Written to `base_model_name_or_path` (the CLI writes the model's path).
    #[cfg_attr(feature = "cli-cpu", arg(skip))]
    pub base_model: String,
    /// Differentially private training (DP-SGD); unset trains normally (the CLI's `--dp`).
    #[cfg_attr(feature = "cli-cpu", arg(skip))]
    pub dp: Option<super::dp::DpSpec>,
    /// Recompute each decoder layer (the layer-stack families) in the backward pass instead of
    /// keeping its activations: about one layer's activations in memory, for a second forward
    /// pass. Not with LoRA dropout or prefix tuning (those train without it).
    #[cfg_attr(feature = "cli-cpu", arg(long))]
    pub gradient_checkpointing: bool,
}

/// The defaults, which the CLI's flags show too.
#[cfg(feature = "cli-cpu")]
fn defaults() -> TrainSpec {
    TrainSpec::default()
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            task: Task::CausalLm,
            method: Method::Lora,
            adapter: None,
            r: None,
            alpha: None,
            dropout: 0.0,
            targets: None,
            rslora: false,
            gaussian_init: false,
            virtual_tokens: None,
            init_text: None,
            epochs: 1,
            steps: None,
            lr: 2e-4,
            batch: 8,
            seq_len: 128,
            warmup: 0,
            schedule: Schedule::Linear,
            optimizer: OptimizerName::Adamw,
            weight_decay: 0.01,
            momentum: 0.0,
            seed: 0,
            shuffle: true,
            grad_accum: 1,
            clip: None,
            eval_every: None,
            eval_split: 0.0,
            patience: None,
            base_model: String::new(),
            dp: None,
            gradient_checkpointing: false,
        }
    }
}

impl TrainSpec {
    /// Reads a job from an options object (JSON, or a JS object through
    /// serde-wasm-bindgen). A bad field is an input error whose source names
    /// it: `method: unknown variant `lorax`, expected one of `lora`, ...`.
    pub fn from_options<'de, D: serde::Deserializer<'de>>(options: D) -> Result<Self> {
        serde_path_to_error::deserialize(options).map_err(|e| {
            let path = e.path().to_string();
            let source = if path.is_empty() || path == "." { "options".to_string() } else { path };
            Error::input(source, e.into_inner().to_string())
        })
    }

    /// The new adapter these options describe.
    fn adapter_spec(&self, labels: Option<&LabelMap>) -> AdapterSpec {
        let mut a = AdapterSpec::new(self.method);
        a.r = self.r;
        a.alpha = self.alpha;
        a.dropout = self.dropout;
        a.use_rslora = self.rslora;
        a.gaussian_init = self.gaussian_init;
        a.targets = self.targets.as_ref().map(|t| match t.as_slice() {
            [one] if one.starts_with("re:") => TargetModules::Regex(one[3..].to_string()),
            names => TargetModules::Names(names.to_vec()),
        });
        a.virtual_tokens = self.virtual_tokens;
        a.init_text = self.init_text.clone();
        a.seq_cls = self.task == Task::SeqCls;
        a.labels = labels.map(|l| l.names.clone());
        a.base_model = self.base_model.clone();
        a.seed = self.seed;
        a
    }

    /// Fails when one micro-batch's largest activation (token logits,
    /// attention scores or the MLP's hidden layer, as f32) would exceed
    /// `limit` bytes: on WebGPU, the largest buffer a shader can bind
    /// (`maxStorageBufferBindingSize`). Checked before training starts, so the
    /// user can lower `batch` or `seq_len` instead of meeting a device error.
    pub fn check_activation_sizes(&self, model: &Model, limit: usize) -> Result<()> {
        let cfg = |keys: &[&str]| keys.iter().find_map(|k| model.config.get(*k).and_then(|v| v.as_u64())).map(|v| v as usize);
        let hidden = model.info.hidden_size;
        let heads = cfg(&["num_attention_heads", "n_head"]).unwrap_or(1);
        let inner = cfg(&["intermediate_size", "n_inner"]).unwrap_or(4 * hidden);
        let virtual_tokens = match self.method {
            Method::Prompt | Method::Prefix => self.virtual_tokens.unwrap_or(0),
            _ => 0,
        };
        let (b, t) = (self.batch, self.seq_len + model.extra_positions() + virtual_tokens);
        let mut parts = vec![("attention scores", vec![b, heads, t, t]), ("MLP activations", vec![b, t, inner])];
        if self.task == Task::CausalLm {
            parts.push(("token logits", vec![b, t, model.info.vocab_size]));
        }
        let bytes = |shape: &[usize]| shape.iter().product::<usize>() * 4;
        let (what, shape) = parts.into_iter().max_by_key(|(_, s)| bytes(s)).expect("three candidates");
        if bytes(&shape) <= limit {
            return Ok(());
        }
        Err(Error::device(format!(
            "one micro-batch's {what} {shape:?} take {} as f32, above this device's largest buffer binding (maxStorageBufferBindingSize) of {}; lower batch (grad_accum keeps the effective batch) or seq_len",
            human_bytes(bytes(&shape)),
            human_bytes(limit),
        ))
        .in_source("options"))
    }
}

/// Tokenises `ds` with `model`'s tokenizer; warnings come back prefixed with
/// the file name.
pub fn encode_for(model: &Model, ds: &Dataset, task: Task, seq_len: usize, labels: Option<&LabelMap>) -> Result<(Vec<Example>, Vec<String>)> {
    let tok = model.tokenizer.as_ref().ok_or_else(|| Error::format("model", "the model has no tokenizer"))?;
    let e = data::encode(ds, tok, &EncodeOptions { task, seq_len }, labels)?;
    Ok((e.examples, e.warnings.into_iter().map(|w| format!("{}: {w}", ds.source)).collect()))
}

/// What [`prepare`] reports before the first step (the start event of a run).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "TrainStart", rename_all = "camelCase"))]
pub struct Prepared {
    pub trainable_parameters: usize,
    pub total_parameters: usize,
    pub total_steps: usize,
    pub train_examples: usize,
    pub eval_examples: usize,
    pub warnings: Vec<String>,
    pub labels: Option<Vec<String>>,
    /// Whether the run trains a new adapter or continues the attached one.
    pub adapter: AdapterMode,
}

/// The label names of a classification job: the model head's own names when
/// it has real ones, else the training data's.
pub fn job_labels(model: &Model, train: &Dataset) -> Result<LabelMap> {
    match LabelMap::from_config(&model.config).filter(|l| !l.is_placeholder() && model.info.num_labels.is_some()) {
        Some(l) => Ok(l),
        None => data::label_map(train),
    }
}

/// `adapter_config.json` fields that name or initialise an adapter rather
/// than define what is trained: they never make two adapters different.
const NOT_SETTINGS: [&str; 13] = [
    "base_model_name_or_path",
    "revision",
    "inference_mode",
    "peft_version",
    "auto_mapping",
    "init_lora_weights",
    "init_ia3_weights",
    "init_weights",
    "prompt_tuning_init",
    "prompt_tuning_init_text",
    "tokenizer_name_or_path",
    "tokenizer_kwargs",
    "loftq_config",
];

/// A config value in a comparable form: numbers as f64 (PEFT writes
/// `lora_alpha` 16 or 16.0), lists of names as sorted sets (PEFT saves sets).
fn normalized(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map_or(Value::Null, |f| serde_json::json!(f)),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let mut names: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            names.sort_unstable();
            names.dedup();
            serde_json::json!(names)
        }
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), normalized(v))).collect()),
        other => other.clone(),
    }
}

/// The settings in which `wanted` (a new adapter's PEFT config) differs from
/// `attached`, as `key: attached vs wanted`. Fields `attached` lacks (an
/// older PEFT) and fields in [`NOT_SETTINGS`] are not compared.
pub fn adapter_differences(wanted: &Value, attached: &Value) -> Vec<String> {
    let Some(wanted) = wanted.as_object() else { return vec![] };
    let mut out = vec![];
    for (key, w) in wanted {
        if NOT_SETTINGS.contains(&key.as_str()) {
            continue;
        }
        if let Some(a) = attached.get(key) {
            if normalized(a) != normalized(w) {
                out.push(format!("{key}: {a} (attached) vs {w}"));
            }
        }
    }
    out
}

/// `model` with a new adapter for `spec` (on a copy: `model` is not changed).
fn with_new_adapter(model: &Model, spec: &TrainSpec, train: &Dataset) -> Result<(Model, Option<LabelMap>)> {
    let mut m = model.clone();
    let labels = match spec.task {
        Task::SeqCls => Some(job_labels(&m, train)?),
        Task::CausalLm => None,
    };
    create_adapter(&mut m, &spec.adapter_spec(labels.as_ref()))?;
    // The head's classes are these labels from now on (an existing head may carry
    // placeholder names): a later run compares against them, and `classify` shows them.
    if let Some(l) = &labels {
        set_label_names(&mut m.config, &l.names);
    }
    Ok((m, labels))
}

/// The settings (and, for `seq-cls`, the labels) in which the new adapter
/// `fresh` differs from the one on `current`.
fn differences(fresh: &Model, fresh_labels: Option<&LabelMap>, current: &Model, spec: &TrainSpec, train: &Dataset) -> Vec<String> {
    let (Some(w), Some(a)) = (&fresh.adapter_config, &current.adapter_config) else { return vec![] };
    let mut diffs = adapter_differences(w, a);
    if let (Some(new), Task::SeqCls) = (fresh_labels, spec.task) {
        if let Ok(old) = job_labels(current, train) {
            if old.names != new.names {
                diffs.push(format!("labels: {:?} (attached) vs {:?}", old.names, new.names));
            }
        }
    }
    diffs
}

/// The model a run trains: a copy of `current` (continuing its adapter) or
/// of `base` with a new adapter, per [`TrainSpec::adapter`]; with the job's
/// labels for `seq-cls`.
fn start_model(current: &Model, base: &Model, spec: &TrainSpec, train: &Dataset, warnings: &mut Vec<String>) -> Result<(Model, AdapterMode, Option<LabelMap>)> {
    let continued = |m: &Model| -> Result<(Model, AdapterMode, Option<LabelMap>)> {
        let labels = match spec.task {
            Task::SeqCls => Some(job_labels(m, train)?),
            Task::CausalLm => None,
        };
        Ok((m.clone(), AdapterMode::Continue, labels))
    };
    if current.adapter_config.is_none() {
        if spec.adapter == Some(AdapterMode::Continue) {
            return Err(Error::input("adapter", "'continue' needs an adapter on the model (load one, or train one first); use 'new' to create one"));
        }
        let (m, labels) = with_new_adapter(current, spec, train)?;
        return Ok((m, AdapterMode::New, labels));
    }
    match spec.adapter {
        Some(AdapterMode::New) => {
            let (m, labels) = with_new_adapter(base, spec, train)?;
            Ok((m, AdapterMode::New, labels))
        }
        Some(AdapterMode::Continue) => {
            // Say which options the attached adapter overrides (never silently).
            if let Ok((fresh, labels)) = with_new_adapter(base, spec, train) {
                for d in differences(&fresh, labels.as_ref(), current, spec, train) {
                    warnings.push(format!("continuing the attached adapter, whose settings differ from the options: {d}"));
                }
            }
            continued(current)
        }
        None => {
            let (fresh, labels) = with_new_adapter(base, spec, train)?;
            if differences(&fresh, labels.as_ref(), current, spec, train).is_empty() {
                continued(current)
            } else {
                Ok((fresh, AdapterMode::New, labels))
            }
        }
    }
}

/// Builds a run for `spec` on the data, on a copy of the model: `current`
/// and `base` are never changed, so a failure at any point leaves the
/// caller's model and adapter as they were (copies are cheap: burn tensors
/// are shared handles, and a step makes new tensors rather than writing into
/// shared ones).
///
/// `current` is the model as it stands (possibly with an adapter attached);
/// `base` is the same model without any adapter (pass `current` again when
/// it has none). The adapter trained is, by [`TrainSpec::adapter`]:
/// - `current` has no adapter: a new one (`continue` is an error);
/// - `new`: a new one on a copy of `base`;
/// - `continue`: `current`'s adapter, with its own settings; options that
///   disagree with it come back as warnings;
/// - not given: `continue` when the adapter these options would create has
///   the same PEFT config as the attached one (every `adapter_config.json`
///   field except those that only name or initialise it: `peft_type`,
///   `task_type`, `r`, `lora_alpha`, `target_modules`, `lora_dropout`,
///   `use_rslora`, `use_dora`, `bias`, `num_virtual_tokens`, ...) and, for
///   `seq-cls`, the same labels; otherwise `new`.
///
/// Options, lengths, labels and the data's encoding are checked before the
/// run exists. The models must be frozen and on an autodiff device.
pub fn prepare(current: &Model, base: &Model, spec: &TrainSpec, train: &Dataset, eval: Option<&Dataset>) -> Result<(Run, Prepared)> {
    let task = spec.task;
    if spec.batch == 0 || spec.grad_accum == 0 {
        return Err(Error::input("batch", "batch size and gradient accumulation must be at least 1"));
    }
    if spec.seq_len > current.info.context_length {
        return Err(Error::input("seq_len", format!("{} is longer than the model's context length of {}", spec.seq_len, current.info.context_length)));
    }
    let mut warnings = vec![];
    let (model, mode, labels) = start_model(current, base, spec, train, &mut warnings)?;
    if spec.seq_len + model.extra_positions() > model.info.context_length {
        return Err(Error::input(
            "seq_len",
            format!("{} plus the adapter's {} virtual tokens exceeds the context length {}", spec.seq_len, model.extra_positions(), model.info.context_length),
        ));
    }
    let mut encode = |ds: &Dataset| -> Result<Vec<Example>> {
        let (examples, w) = encode_for(&model, ds, task, spec.seq_len, labels.as_ref())?;
        warnings.extend(w);
        Ok(examples)
    };
    let mut train_ex = encode(train)?;
    let eval_ex = match eval {
        Some(ds) => encode(ds)?,
        None if spec.eval_split > 0.0 => {
            let (tr, ev) = data::split(train_ex.len(), spec.eval_split, spec.seed);
            let held: Vec<Example> = ev.iter().map(|&i| train_ex[i].clone()).collect();
            train_ex = tr.iter().map(|&i| train_ex[i].clone()).collect();
            held
        }
        None => vec![],
    };
    let pad_id = data::pad_id(model.tokenizer.as_ref().expect("encode_for checked the tokenizer"));
    let optimizer = match spec.optimizer {
        OptimizerName::Adamw => OptimizerKind::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: spec.weight_decay },
        OptimizerName::Sgd => OptimizerKind::Sgd { momentum: spec.momentum, weight_decay: spec.weight_decay },
    };
    let config = RunConfig {
        task,
        batch: spec.batch,
        grad_accum: spec.grad_accum,
        steps: spec.steps,
        epochs: spec.epochs,
        shuffle: spec.shuffle,
        seed: spec.seed,
        eval_every: spec.eval_every,
        patience: spec.patience,
        pad_id,
        dp: spec.dp.clone(),
        optim: TrainOptions { optimizer, lr: spec.lr, schedule: spec.schedule, warmup_steps: spec.warmup, total_steps: 1, clip: spec.clip, dropout_in_use: false, gradient_checkpointing: spec.gradient_checkpointing },
    };
    let total_parameters = model.info.num_parameters;
    let (train_examples, eval_examples) = (train_ex.len(), eval_ex.len());
    let run = Run::new(model, train_ex, eval_ex, config)?;
    let prepared = Prepared {
        trainable_parameters: run.trainer.trainable_parameters(),
        total_parameters,
        total_steps: run.total_steps,
        train_examples,
        eval_examples,
        warnings,
        labels: labels.map(|l| l.names),
        adapter: mode,
    };
    Ok((run, prepared))
}

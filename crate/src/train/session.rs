//! One description of a training job ([`TrainSpec`]), shared by the CLI's
//! flags and the browser's options object, and [`prepare`], which turns it
//! and the data into a ready [`Run`].

use serde::{Deserialize, Serialize};

use super::data::{self, Dataset, EncodeOptions, Example, LabelMap, Task};
use super::run::{Run, RunConfig};
use super::{OptimizerKind, Schedule, TrainOptions};
use crate::error::{human_bytes, Error, Result};
use crate::models::Model;
use crate::peft::create::{create_adapter, AdapterSpec, Method};
use crate::peft::TargetModules;

/// A training job. Field names are the CLI's flags in snake_case; `None`
/// takes the method's PEFT default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSpec {
    /// `causal-lm` or `seq-cls`.
    pub task: String,
    /// `lora`, `dora`, `bitfit`, `ia3`, `prompt` or `prefix`.
    pub method: String,
    pub r: Option<usize>,
    pub alpha: Option<f64>,
    pub dropout: f64,
    /// Module names, or one `re:<regex>`.
    pub targets: Option<Vec<String>>,
    pub rslora: bool,
    pub gaussian_init: bool,
    pub virtual_tokens: Option<usize>,
    pub init_text: Option<String>,
    pub epochs: usize,
    pub steps: Option<usize>,
    pub lr: f64,
    pub batch: usize,
    pub seq_len: usize,
    pub warmup: usize,
    /// `constant`, `linear` or `cosine`.
    pub schedule: String,
    /// `adamw` or `sgd`.
    pub optimizer: String,
    pub weight_decay: f64,
    pub momentum: f64,
    pub seed: u64,
    pub shuffle: bool,
    pub grad_accum: usize,
    pub clip: Option<f64>,
    pub eval_every: Option<usize>,
    /// Share of the training data held out for eval when no eval file is given.
    pub eval_split: f64,
    pub patience: Option<usize>,
    /// Written to `base_model_name_or_path`.
    pub base_model: String,
    /// Differentially private training (DP-SGD); `None` trains normally.
    pub dp: Option<super::dp::DpSpec>,
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            task: "causal-lm".into(),
            method: "lora".into(),
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
            schedule: "linear".into(),
            optimizer: "adamw".into(),
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
        }
    }
}

impl TrainSpec {
    /// The task as the data module names it.
    pub fn task(&self) -> Result<Task> {
        Task::parse(&self.task)
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
        let virtual_tokens = match self.method.as_str() {
            "prompt" | "prefix" => self.virtual_tokens.unwrap_or(0),
            _ => 0,
        };
        let (b, t) = (self.batch, self.seq_len + model.extra_positions() + virtual_tokens);
        let mut parts = vec![("attention scores", vec![b, heads, t, t]), ("MLP activations", vec![b, t, inner])];
        if self.task()? == Task::CausalLm {
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

/// What [`prepare`] reports before the first step.
#[derive(Debug, Clone, Serialize)]
pub struct Prepared {
    pub trainable_parameters: usize,
    pub total_parameters: usize,
    pub total_steps: usize,
    pub train_examples: usize,
    pub eval_examples: usize,
    pub warnings: Vec<String>,
    pub labels: Option<Vec<String>>,
}

/// The label names of a classification job: the model head's own names when
/// it has real ones, else the training data's.
pub fn job_labels(model: &Model, train: &Dataset) -> Result<LabelMap> {
    match LabelMap::from_config(&model.config).filter(|l| !l.is_placeholder() && model.info.num_labels.is_some()) {
        Some(l) => Ok(l),
        None => data::label_map(train),
    }
}

/// Attaches a new adapter for `spec` (unless `model` already carries one, e.g.
/// from `--init-adapter`), tokenises the data and builds the run. `model`
/// must be frozen and on an autodiff device.
pub fn prepare(mut model: Model, spec: &TrainSpec, train: &Dataset, eval: Option<&Dataset>) -> Result<(Run, Prepared)> {
    let task = spec.task()?;
    if spec.seq_len > model.info.context_length {
        return Err(Error::input("seq_len", format!("{} is longer than the model's context length of {}", spec.seq_len, model.info.context_length)));
    }
    let labels = match task {
        Task::SeqCls => Some(job_labels(&model, train)?),
        Task::CausalLm => None,
    };
    if model.adapter_config.is_none() {
        let mut a = AdapterSpec::new(Method::parse(&spec.method)?);
        a.r = spec.r;
        a.alpha = spec.alpha;
        a.dropout = spec.dropout;
        a.use_rslora = spec.rslora;
        a.gaussian_init = spec.gaussian_init;
        a.targets = spec.targets.as_ref().map(|t| match t.as_slice() {
            [one] if one.starts_with("re:") => TargetModules::Regex(one[3..].to_string()),
            names => TargetModules::Names(names.to_vec()),
        });
        a.virtual_tokens = spec.virtual_tokens;
        a.init_text = spec.init_text.clone();
        a.seq_cls = task == Task::SeqCls;
        a.labels = labels.as_ref().map(|l| l.names.clone());
        a.base_model = spec.base_model.clone();
        a.seed = spec.seed;
        create_adapter(&mut model, &a)?;
    }
    if spec.seq_len + model.extra_positions() > model.info.context_length {
        return Err(Error::input(
            "seq_len",
            format!("{} plus the adapter's {} virtual tokens exceeds the context length {}", spec.seq_len, model.extra_positions(), model.info.context_length),
        ));
    }
    let mut warnings = vec![];
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
    let optimizer = match spec.optimizer.as_str() {
        "adamw" => OptimizerKind::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: spec.weight_decay },
        "sgd" => OptimizerKind::Sgd { momentum: spec.momentum, weight_decay: spec.weight_decay },
        other => return Err(Error::input("optimizer", format!("unknown optimizer '{other}' (use adamw or sgd)"))),
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
        optim: TrainOptions { optimizer, lr: spec.lr, schedule: Schedule::parse(&spec.schedule)?, warmup_steps: spec.warmup, total_steps: 1, clip: spec.clip, lora_dropout_in_use: false },
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
    };
    Ok((run, prepared))
}

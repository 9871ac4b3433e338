//! New adapters: the method option ([`Method`]), what to create ([`AdapterSpec`]), and the
//! steps every method shares around its own `create` (`Tuner::create`, in its module): a
//! classification head made or checked, `modules_to_save`, the head trained whole, and the
//! base tensors made trainable remembered for switching the adapter off.
//!
//! Each method initialises as PEFT does (in its module): LoRA A kaiming-uniform (a = sqrt 5,
//! so U(±1/sqrt(in))) or Gaussian N(0, 1/r), B zero, DoRA magnitude = the row norms of W;
//! (IA)³ ones; prompt and prefix tables N(0, 1) (`nn.Embedding`), or a prompt copied from the
//! init text's token embeddings.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::TargetModules;
use crate::error::{Error, Result};
use crate::formats::safetensors::HostTensor;
use crate::models::layers::{param, Linear, LinearWeight};
use crate::models::{in_head, Model, Original};

/// The methods webpeft can create, written `lora`, `dora`, `bitfit`, `ia3`,
/// `prompt` or `prefix` (CLI flags and JS options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli-cpu", derive(clap::ValueEnum))]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum Method {
    Lora,
    Dora,
    Bitfit,
    Ia3,
    Prompt,
    Prefix,
}

impl Method {
    /// Parses the CLI / JS name (`lora`, `dora`, `bitfit`, `ia3`, `prompt`, `prefix`).
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "lora" => Self::Lora,
            "dora" => Self::Dora,
            "bitfit" => Self::Bitfit,
            "ia3" => Self::Ia3,
            "prompt" => Self::Prompt,
            "prefix" => Self::Prefix,
            other => return Err(Error::input("--method", format!("unknown method '{other}' (use lora, dora, bitfit, ia3, prompt or prefix)"))),
        })
    }

    /// The CLI / JS name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lora => "lora",
            Self::Dora => "dora",
            Self::Bitfit => "bitfit",
            Self::Ia3 => "ia3",
            Self::Prompt => "prompt",
            Self::Prefix => "prefix",
        }
    }
}

/// What to create. `None` fields take PEFT's defaults.
#[derive(Debug, Clone)]
pub struct AdapterSpec {
    pub method: Method,
    /// LoRA rank (default 8).
    pub r: Option<usize>,
    /// LoRA alpha (default 8, PEFT's default).
    pub alpha: Option<f64>,
    pub dropout: f64,
    pub use_rslora: bool,
    /// `init_lora_weights="gaussian"` instead of kaiming-uniform.
    pub gaussian_init: bool,
    pub targets: Option<TargetModules>,
    pub layers_to_transform: Option<Vec<usize>>,
    /// LoRA `bias`: `none`, `all` or `lora_only`.
    pub bias: Option<String>,
    /// Prompt / prefix tuning length (default 8).
    pub virtual_tokens: Option<usize>,
    /// Prompt tuning TEXT init.
    pub init_text: Option<String>,
    /// True for sequence classification (`SEQ_CLS`): the head is trained and saved.
    pub seq_cls: bool,
    /// Labels of a new classification head (index order).
    pub labels: Option<Vec<String>>,
    /// Written to `base_model_name_or_path`.
    pub base_model: String,
    pub seed: u64,
}

impl AdapterSpec {
    /// A spec for `method` with PEFT's defaults.
    pub fn new(method: Method) -> Self {
        Self {
            method,
            r: None,
            alpha: None,
            dropout: 0.0,
            use_rslora: false,
            gaussian_init: false,
            targets: None,
            layers_to_transform: None,
            bias: None,
            virtual_tokens: None,
            init_text: None,
            seq_cls: false,
            labels: None,
            base_model: String::new(),
            seed: 0,
        }
    }
}

pub(crate) fn uniform(rng: &mut StdRng, n: usize, bound: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

/// Standard normal samples (Box-Muller; rand 0.9 has no normal distribution).
pub(crate) fn normal(rng: &mut StdRng, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f32 = rng.random_range(f32::EPSILON..1.0);
            let u2: f32 = rng.random();
            std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect()
}

pub(crate) fn host(shape: Vec<usize>, data: Vec<f32>) -> HostTensor {
    HostTensor::new(shape, data, "F32", "new adapter")
}

/// Makes a base parameter trainable (PEFT: a trained bias or a saved head),
/// remembering its value for [`Model::set_adapter_enabled`].
pub(crate) fn train_linear(name: &str, l: &mut Linear, weight: bool, originals: &mut Vec<Original>) {
    if weight && !l.weight_trained() {
        let w = l.dense_weight();
        let [i, o] = w.dims();
        originals.push(Original { module: name.to_string(), kind: "weight", value: w.val().detach().reshape([i * o]) });
        *w = w.clone().set_require_grad(true);
    }
    if let Some(b) = l.bias.as_ref().filter(|b| !b.val().is_require_grad()) {
        originals.push(Original { module: name.to_string(), kind: "bias", value: b.val().detach() });
    }
    l.bias = l.bias.take().map(|b| b.set_require_grad(true));
}

/// Sorted target list as PEFT saves it (it keeps a set).
pub(crate) fn targets_json(t: &TargetModules) -> Value {
    match t {
        TargetModules::Names(n) => {
            let mut n = n.clone();
            n.sort();
            n.dedup();
            json!(n)
        }
        TargetModules::Regex(r) => json!(r),
    }
}

/// What a method's `create` shares with the code around it: the random numbers, the
/// task's fields of `adapter_config.json`, and the base tensors it makes trainable.
pub struct NewAdapter {
    pub rng: StdRng,
    /// `CAUSAL_LM` or `SEQ_CLS`.
    pub task_type: &'static str,
    /// `modules_to_save`: the classification heads, or null.
    pub heads: Value,
    /// Base tensors made trainable, with their values (see [`Model::set_adapter_enabled`]).
    pub originals: Vec<Original>,
    /// Tensors written back verbatim (see `Model::adapter_extras`).
    pub extras: Vec<(String, burn::tensor::Tensor<1>)>,
}

/// Attaches a freshly initialised adapter to `model` (which should be frozen
/// first, see [`crate::train::freeze`]) and records its PEFT config.
pub fn create_adapter(model: &mut Model, spec: &AdapterSpec) -> Result<()> {
    if model.adapter_config.is_some() {
        return Err(Error::input("adapter", "the model already has an adapter attached"));
    }
    if !spec.seq_cls && !model.is_causal() {
        return Err(Error::input("--task", format!("{} is an encoder: use --task seq-cls", model.info.architecture)));
    }
    let tuner = spec.method.tuner();
    let mut rng = StdRng::seed_from_u64(spec.seed);
    if spec.seq_cls {
        ensure_head(model, spec, &mut rng)?;
    }
    // PEFT appends the heads twice for prompt learning.
    let heads = match (spec.seq_cls, tuner.prompt_learning()) {
        (false, _) => Value::Null,
        (true, false) => json!(["classifier", "score"]),
        (true, true) => json!(["classifier", "score", "classifier", "score"]),
    };
    let task_type = if spec.seq_cls { "SEQ_CLS" } else { "CAUSAL_LM" };
    let mut new = NewAdapter { rng, task_type, heads, originals: vec![], extras: vec![] };
    let config = tuner.create(model, spec, &mut new)?;
    // A classification head is trained and saved whole, whatever the method (`modules_to_save`).
    if spec.seq_cls {
        for (name, lin) in model.named_layers().linears {
            if in_head(&name) {
                train_linear(&name, lin, true, &mut new.originals);
            }
        }
    }
    model.adapter_config = Some(config);
    model.adapter_originals = new.originals;
    model.adapter_extras = new.extras;
    Ok(())
}

/// Gives a model without a classification head a new one (`classifier` for
/// BERT, `score` for decoders), unless it has one with the right labels.
fn ensure_head(model: &mut Model, spec: &AdapterSpec, rng: &mut StdRng) -> Result<()> {
    if let Some(existing) = model.info.num_labels {
        if let Some(labels) = &spec.labels {
            if labels.len() != existing {
                return Err(Error::input(
                    "labels",
                    format!("the data has {} labels, but the model's classifier has {existing}", labels.len()),
                ));
            }
        }
        return Ok(());
    }
    let labels = spec.labels.clone().ok_or_else(|| Error::input("labels", "a new classification head needs the label names"))?;
    attach_head(model, &labels, rng)
}

/// Gives a BERT encoder a new `classifier` for `labels`, initialised as
/// transformers does (N(0, initializer_range), zero bias), and records the
/// labels in its config.
pub fn attach_head(model: &mut Model, labels: &[String], rng: &mut StdRng) -> Result<()> {
    if labels.len() < 2 {
        return Err(Error::input("labels", format!("classification needs at least 2 labels; the data has {}", labels.len())));
    }
    let (h, k) = (model.info.hidden_size, labels.len());
    let std = model.config.get("initializer_range").and_then(Value::as_f64).unwrap_or(0.02) as f32;
    // Drawn in HF's [out, in] order, stored [in, out].
    // Weights drawn in HF's [out, in] order (N(0, initializer_range)), stored [in, out]; zero biases.
    let device = model.device.clone();
    let mut new_linear = |out: usize, inp: usize, bias: bool| Linear {
        weight: LinearWeight::Dense(param(host(vec![out, inp], normal(rng, out * inp, std)).transposed(), &device)),
        bias: bias.then(|| param(host(vec![out], vec![0.0; out]), &device)),
        adapters: vec![],
    };
    let current = model.info.architecture.clone();
    let arch = model.network.family_mut().attach_head(k, h, &mut new_linear, &current)?;
    super::set_label_names(&mut model.config, labels);
    if let Some(c) = model.config.as_object_mut() {
        c.insert("architectures".into(), json!([arch]));
    }
    model.info.architecture = arch;
    model.info.num_labels = Some(k);
    model.info.task = "seq-cls".into();
    Ok(())
}

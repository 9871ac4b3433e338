//! New adapters: PEFT's targets, initialisation and `adapter_config.json`
//! for a method, attached to a (frozen) model ready to train.
//!
//! Initialisation follows PEFT: LoRA A kaiming-uniform (a = sqrt 5, so
//! U(±1/sqrt(in))) or Gaussian N(0, 1/r), B zero, DoRA magnitude = the row norms
//! of W; (IA)³ ones; prompt and prefix tables N(0, 1) (`nn.Embedding`), or a
//! prompt copied from the init text's token embeddings.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::ia3::Ia3Layer;
use super::lora::{LoraConfig, LoraLayer};
use super::prefix::PrefixEncoder;
use super::prompt::{init_text_ids, PromptEmbedding};
use super::{layer_index, matches_targets, TargetModules};
use crate::error::{Error, Result};
use crate::formats::safetensors::HostTensor;
use crate::models::layers::{param, Linear, LinearWeight};
use crate::models::{Model, Original};

/// The methods webpeft can create, written `lora`, `dora`, `bitfit`, `ia3`,
/// `prompt` or `prefix` (CLI flags and JS options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
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

/// PEFT's default LoRA targets for the model's family (webpeft's where PEFT has none).
pub fn default_lora_targets(model: &Model) -> Vec<String> {
    model.facts().lora_targets.iter().map(|s| s.to_string()).collect()
}

/// PEFT's default (IA)³ targets and feed-forward modules per architecture; `None` where PEFT has
/// none (XLM-RoBERTa), so that it asks for them.
pub fn default_ia3_targets(model: &Model) -> Option<(Vec<String>, Vec<String>)> {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let (targets, feedforward) = model.facts().ia3_targets?;
    Some((v(targets), v(feedforward)))
}

use crate::models::in_head as is_head;

fn uniform(rng: &mut StdRng, n: usize, bound: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-bound..bound)).collect()
}

/// Standard normal samples (Box-Muller; rand 0.9 has no normal distribution).
fn normal(rng: &mut StdRng, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f32 = rng.random_range(f32::EPSILON..1.0);
            let u2: f32 = rng.random();
            std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect()
}

fn host(shape: Vec<usize>, data: Vec<f32>) -> HostTensor {
    HostTensor::new(shape, data, "F32", "new adapter")
}

/// Makes a base parameter trainable (PEFT: a trained bias or a saved head),
/// remembering its value for [`Model::set_adapter_enabled`].
fn train_linear(name: &str, l: &mut Linear, weight: bool, originals: &mut Vec<Original>) {
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
fn targets_json(t: &TargetModules) -> Value {
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

/// Attaches a freshly initialised adapter to `model` (which should be frozen
/// first, see [`crate::train::freeze`]) and records its PEFT config.
pub fn create_adapter(model: &mut Model, spec: &AdapterSpec) -> Result<()> {
    if model.adapter_config.is_some() {
        return Err(Error::input("adapter", "the model already has an adapter attached"));
    }
    if !spec.seq_cls && !model.is_causal() {
        return Err(Error::input("--task", format!("{} is an encoder: use --task seq-cls", model.info.architecture)));
    }
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let device = model.device.clone();
    if spec.seq_cls {
        ensure_head(model, spec, &mut rng)?;
    }
    let task_type = if spec.seq_cls { "SEQ_CLS" } else { "CAUSAL_LM" };
    let heads = if spec.seq_cls { json!(["classifier", "score"]) } else { Value::Null };
    let fan_in_fan_out = model.facts().fan_in_fan_out;
    let arch = model.info.architecture.clone();
    let (num_layers, hidden) = (model.info.num_layers, model.info.hidden_size);
    let heads_count = model.config.get("num_attention_heads").or(model.config.get("n_head")).and_then(Value::as_u64).unwrap_or(0);

    let mut originals = vec![];
    let config = match spec.method {
        Method::Lora | Method::Dora | Method::Bitfit => {
            let bitfit = spec.method == Method::Bitfit;
            let r = if bitfit { 1 } else { spec.r.unwrap_or(8) };
            let alpha = if bitfit { 1.0 } else { spec.alpha.unwrap_or(8.0) };
            let bias = if bitfit { "all".to_string() } else { spec.bias.clone().unwrap_or_else(|| "none".into()) };
            if !["none", "all", "lora_only"].contains(&bias.as_str()) {
                return Err(Error::input("bias", format!("'{bias}' is not one of none, all, lora_only")));
            }
            let targets = spec.targets.clone().unwrap_or_else(|| TargetModules::Names(default_lora_targets(model)));
            if spec.layers_to_transform.is_some() && matches!(targets, TargetModules::Regex(_)) {
                return Err(Error::input("--targets", "layers_to_transform needs a list of target names, not a regex (as in PEFT)"));
            }
            let cfg_json = json!({
                "alora_invocation_tokens": null, "alpha_pattern": {}, "arrow_config": null, "auto_mapping": null,
                "base_model_name_or_path": spec.base_model, "bias": bias, "corda_config": null,
                "ensure_weight_tying": false, "eva_config": null, "exclude_modules": null,
                "fan_in_fan_out": fan_in_fan_out, "inference_mode": true,
                "init_lora_weights": if spec.gaussian_init { json!("gaussian") } else { json!(true) },
                "kasa_config": null, "layer_replication": null, "layers_pattern": null,
                "layers_to_transform": spec.layers_to_transform, "loftq_config": {},
                // PEFT's lora_alpha is an int unless set otherwise.
                "lora_alpha": if alpha.fract() == 0.0 { json!(alpha as i64) } else { json!(alpha) },
                "lora_bias": false, "lora_dropout": spec.dropout, "lora_ga_config": null, "megatron_config": null,
                "megatron_core": "megatron.core", "modules_to_save": heads, "monteclora_config": null,
                "peft_type": "LORA", "peft_version": super::PEFT_VERSION, "qalora_group_size": 16, "r": r, "rank_pattern": {},
                "revision": null, "target_modules": targets_json(&targets), "target_parameters": null,
                "task_type": task_type, "trainable_token_indices": null, "use_bdlora": null,
                "use_dora": spec.method == Method::Dora, "use_qalora": false, "use_rslora": spec.use_rslora,
                "velora_config": null
            });
            let cfg: LoraConfig = serde_json::from_value(cfg_json.clone()).map_err(|e| Error::input("adapter", e.to_string()))?;
            let named = model.named_layers();
            let mut n = 0;
            let mut extras = vec![];
            for (name, lin) in named.linears {
                let targeted = !is_head(&name)
                    && matches_targets(Some(&targets), &name)
                    && spec.layers_to_transform.as_ref().is_none_or(|ls| layer_index(&name).is_some_and(|i| ls.contains(&i)));
                if targeted {
                    let (d_in, d_out) = lin.dims();
                    let (a, b) = if bitfit {
                        (vec![0.0; d_in * r], vec![0.0; r * d_out])
                    } else if spec.gaussian_init {
                        (normal(&mut rng, d_in * r, 1.0 / r as f32), vec![0.0; r * d_out])
                    } else {
                        (uniform(&mut rng, d_in * r, 1.0 / (d_in as f32).sqrt()), vec![0.0; r * d_out])
                    };
                    // Stored [in, r] / [r, out]; the values are drawn in PEFT's [r, in] order.
                    let a = host(vec![r, d_in], a).transposed();
                    let magnitude = (spec.method == Method::Dora)
                        .then(|| burn::module::Param::from_tensor(lin.weight().detach().square().sum_dim(0).sqrt().reshape([d_out])));
                    lin.lora = Some(LoraLayer {
                        lora_a: param(a, &device),
                        lora_b: param(host(vec![r, d_out], b), &device),
                        scaling: cfg.scaling_for(&name),
                        magnitude,
                        dropout: cfg.lora_dropout,
                        training: false,
                        enabled: true,
                    });
                    n += 1;
                    if bias == "lora_only" {
                        train_linear(&name, lin, false, &mut originals);
                    }
                }
                if bias == "all" {
                    train_linear(&name, lin, false, &mut originals);
                }
                if spec.seq_cls && is_head(&name) {
                    if let (true, Some(b)) = (bias == "all", &lin.bias) {
                        // PEFT saves the frozen original's bias too (see export).
                        extras.push((format!("base_model.model.{}", crate::models::head_param(&name, "original_module", "bias")), b.val().detach()));
                    }
                    train_linear(&name, lin, true, &mut originals);
                }
            }
            if bias == "all" {
                for (name, norm) in model.named_layers().norms {
                    if let Some(b) = norm.bias.as_mut() {
                        originals.push(Original { module: name, kind: "bias", value: b.val().detach() });
                        *b = b.clone().set_require_grad(true);
                    }
                }
            }
            if n == 0 {
                return Err(Error::input("--targets", format!("no module of {arch} matches target_modules {}", targets_json(&targets))));
            }
            model.adapter_extras = extras;
            cfg_json
        }
        Method::Ia3 => {
            let (t, f) = default_ia3_targets(model).ok_or_else(|| {
                Error::unsupported("--method", format!("PEFT has no default (IA)³ target and feed-forward modules for {}, and webpeft takes no feed-forward list", model.info.model_type))
            })?;
            let targets = spec.targets.clone().unwrap_or(TargetModules::Names(t));
            let ff = TargetModules::Names(f);
            let mut n = 0;
            for (name, lin) in model.named_layers().linears {
                if spec.seq_cls && is_head(&name) {
                    train_linear(&name, lin, true, &mut originals);
                    continue;
                }
                if !matches_targets(Some(&targets), &name) {
                    continue;
                }
                // PEFT matches feedforward_modules with a plain `endswith`.
                let feedforward = match &ff {
                    TargetModules::Names(f) => f.iter().any(|x| name.ends_with(x.as_str())),
                    TargetModules::Regex(_) => false,
                };
                let (d_in, d_out) = lin.dims();
                let len = if feedforward { d_in } else { d_out };
                lin.ia3 = Some(Ia3Layer { vector: param(host(vec![len], vec![1.0; len]), &device), feedforward, enabled: true });
                n += 1;
            }
            if n == 0 {
                return Err(Error::input("--targets", format!("no module of {arch} matches target_modules {}", targets_json(&targets))));
            }
            json!({
                "auto_mapping": null, "base_model_name_or_path": spec.base_model, "exclude_modules": null,
                "fan_in_fan_out": fan_in_fan_out, "feedforward_modules": targets_json(&ff), "inference_mode": true,
                "init_ia3_weights": true, "modules_to_save": heads, "peft_type": "IA3", "peft_version": super::PEFT_VERSION,
                "revision": null, "target_modules": targets_json(&targets), "task_type": task_type
            })
        }
        Method::Prompt | Method::Prefix => {
            let t = spec.virtual_tokens.unwrap_or(8);
            if t == 0 {
                return Err(Error::input("--virtual-tokens", "must be at least 1"));
            }
            if spec.seq_cls {
                for (name, lin) in model.named_layers().linears {
                    if is_head(&name) {
                        train_linear(&name, lin, true, &mut originals);
                    }
                }
            }
            // PEFT appends the heads twice for prompt learning.
            let heads = if spec.seq_cls { json!(["classifier", "score", "classifier", "score"]) } else { Value::Null };
            if spec.method == Method::Prompt {
                let data = match &spec.init_text {
                    Some(text) => {
                        let tok = model.tokenizer.as_ref().ok_or_else(|| Error::input("--init-text", "the model has no tokenizer"))?;
                        let ids = init_text_ids(&tok.encode(text, false)?, t);
                        if ids.is_empty() {
                            return Err(Error::input("--init-text", "the init text gives no tokens"));
                        }
                        embedding_rows(model, &ids)
                    }
                    None => burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(normal(&mut rng, t * hidden, 1.0), [t, hidden]), &device),
                };
                model.prompt = Some(PromptEmbedding { weight: burn::module::Param::from_tensor(data) });
                json!({
                    "auto_mapping": null, "base_model_name_or_path": spec.base_model, "inference_mode": true,
                    "modules_to_save": heads, "num_attention_heads": heads_count, "num_layers": num_layers,
                    "num_transformer_submodules": 1, "num_virtual_tokens": t, "peft_type": "PROMPT_TUNING",
                    "peft_version": super::PEFT_VERSION,
                    "prompt_tuning_init": if spec.init_text.is_some() { "TEXT" } else { "RANDOM" },
                    "prompt_tuning_init_text": spec.init_text, "revision": null, "task_type": task_type,
                    "token_dim": hidden, "tokenizer_kwargs": null,
                    "tokenizer_name_or_path": spec.init_text.as_ref().map(|_| spec.base_model.clone())
                })
            } else {
                let (layers, kv_heads, head_dim) = model
                    .kv_layout()
                    .ok_or_else(|| Error::unsupported("--method", format!("prefix tuning needs a decoder; {arch} has no key/value cache (PEFT refuses it too)")))?;
                let width = layers * 2 * kv_heads * head_dim;
                model.prefix = Some(PrefixEncoder { weight: param(host(vec![t, width], normal(&mut rng, t * width, 1.0)), &device), num_layers: layers, kv_heads, head_dim });
                json!({
                    "auto_mapping": null, "base_model_name_or_path": spec.base_model, "encoder_hidden_size": kv_heads * head_dim,
                    "inference_mode": true, "init_weights": null, "modules_to_save": heads, "num_attention_heads": kv_heads,
                    "num_layers": layers, "num_transformer_submodules": 1, "num_virtual_tokens": t, "peft_type": "PREFIX_TUNING",
                    "peft_version": super::PEFT_VERSION, "prefix_projection": false, "revision": null, "task_type": task_type,
                    "token_dim": kv_heads * head_dim
                })
            }
        }
    };
    model.adapter_config = Some(config);
    model.adapter_originals = originals;
    Ok(())
}

/// Rows of the input embedding table (prompt tuning's TEXT init), detached.
fn embedding_rows(model: &Model, ids: &[u32]) -> burn::tensor::Tensor<2> {
    let table = model.network.family().input_embeddings();
    let idx: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    let idx = burn::tensor::Tensor::<1, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(idx, [ids.len()]), &model.device);
    table.detach().select(0, idx)
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
        lora: None,
        ia3: None,
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

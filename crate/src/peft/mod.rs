//! Parameter-efficient fine-tuning methods with Hugging Face PEFT's file
//! format and semantics. Each method has its own module (config, layer);
//! this file reads an adapter (`adapter_config.json` +
//! `adapter_model.safetensors`) and attaches it to a model by PEFT's names.

pub mod create;
pub mod export;
pub mod gguf_lora;
pub mod ia3;
pub mod merge;
pub mod lora;
pub mod prefix;
pub mod prompt;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::formats::safetensors::{HostTensor, WeightMap};
use crate::models::layers::{param, LayerNorm, Linear, LinearWeight};
use crate::models::{Model, Original};
use ia3::{Ia3Config, Ia3Layer};
use lora::{LoraConfig, LoraLayer};
use prefix::{PrefixEncoder, PrefixTuningConfig};
use prompt::{PromptEmbedding, PromptTuningConfig};

const CONFIG: &str = "adapter_config.json";
/// The PEFT release whose file format webpeft reads and writes (`peft_version`).
pub const PEFT_VERSION: &str = "0.21.2";
const WEIGHTS: &str = "adapter_model.safetensors";

/// `target_modules`: a list of names (matched as PEFT does, by `.`-suffix) or a regex
/// (matched against the whole module path).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum TargetModules {
    Names(Vec<String>),
    Regex(String),
}

/// What an adapter load attached.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterSummary {
    pub peft_type: String,
    /// Modules that received LoRA / DoRA / (IA)^3 layers.
    pub adapted_modules: usize,
    /// Base tensors replaced (trained biases, `modules_to_save` heads).
    pub replaced_tensors: usize,
    /// Prompt or prefix tuning's virtual tokens.
    pub virtual_tokens: usize,
}

/// The kinds of tensor an adapter file holds, recognised by PEFT's key suffixes.
enum Part {
    LoraA,
    LoraB,
    Magnitude,
    Ia3,
    /// A whole tensor of the base model (trained bias, saved head): `weight` or `bias`.
    Base(&'static str),
    /// Prompt or prefix tuning's table.
    PromptEmbeddings,
}

fn classify(key: &str) -> (String, Part) {
    if key == "prompt_embeddings" {
        return (String::new(), Part::PromptEmbeddings);
    }
    for (suffix, part) in [
        (".lora_A.weight", Part::LoraA),
        (".lora_B.weight", Part::LoraB),
        (".lora_magnitude_vector", Part::Magnitude),
        (".ia3_l", Part::Ia3),
        (".base_layer.bias", Part::Base("bias")),
        (".base_layer.weight", Part::Base("weight")),
        (".bias", Part::Base("bias")),
        (".weight", Part::Base("weight")),
    ] {
        if let Some(module) = key.strip_suffix(suffix) {
            return (module.to_string(), part);
        }
    }
    (key.to_string(), Part::Base(""))
}

/// Reads a PEFT adapter and attaches it to `model`.
///
/// Supported: LoRA (with rsLoRA, DoRA, `rank_pattern`/`alpha_pattern`, trained
/// biases from `bias="all"|"lora_only"`) and (IA)^3, plus `modules_to_save`
/// heads. Every tensor must find its module, with the shape the config implies.
pub fn load_adapter(model: &mut Model, config_json: &[u8], weights: &[u8]) -> Result<AdapterSummary> {
    let config: serde_json::Value =
        serde_json::from_slice(config_json).map_err(|e| Error::format(CONFIG, format!("invalid JSON: {e}")))?;
    let peft_type = config.get("peft_type").and_then(|v| v.as_str()).unwrap_or("").to_string();
    let parse_err = |e: serde_json::Error| Error::format(CONFIG, e.to_string());
    let (mut lora_cfg, mut ia3_cfg, mut prompt_cfg, mut prefix_cfg) = (None, None, None, None);
    match peft_type.as_str() {
        "LORA" => lora_cfg = Some(serde_json::from_value::<LoraConfig>(config.clone()).map_err(parse_err)?),
        "IA3" => ia3_cfg = Some(serde_json::from_value::<Ia3Config>(config.clone()).map_err(parse_err)?),
        "PROMPT_TUNING" => prompt_cfg = Some(serde_json::from_value::<PromptTuningConfig>(config.clone()).map_err(parse_err)?),
        "PREFIX_TUNING" => prefix_cfg = Some(serde_json::from_value::<PrefixTuningConfig>(config.clone()).map_err(parse_err)?),
        "" => return Err(Error::format(CONFIG, "peft_type is missing")),
        other => {
            return Err(Error::unsupported(
                CONFIG,
                format!("peft_type {other} is not supported yet (supported: LORA, IA3, PROMPT_TUNING, PREFIX_TUNING)"),
            ))
        }
    };
    if prefix_cfg.as_ref().is_some_and(|_| model.kv_layout().is_none()) {
        return Err(Error::unsupported(CONFIG, format!("prefix tuning needs a decoder; {} has no key/value cache (PEFT refuses it too)", model.info.architecture)));
    }
    if lora_cfg.as_ref().is_some_and(|c| c.lora_bias) {
        return Err(Error::unsupported(CONFIG, "lora_bias=true is not supported yet"));
    }

    let mut w = WeightMap::new(WEIGHTS);
    w.add_safetensors(WEIGHTS, weights)?;
    // A head saved with the adapter (`modules_to_save`) on an encoder loaded
    // without one (e.g. sentence-transformers' BertModel): make room for it.
    let head_name = model.network.family().head_weight();
    let head = w.names().into_iter().find(|k| k.ends_with(head_name) && !k.contains(".original_module.")).map(String::from);
    if let (Some(key), None) = (head, model.info.num_labels) {
        // Checked before the head is made: a scalar once panicked here, and [huge, 0]
        // (no data) made a head of that many labels until memory ran out (both
        // reproduced with the fuzz/ adapter target).
        let hidden = model.info.hidden_size;
        let k = match w.shape(&key) {
            Some(&[k, h]) if k > 0 && h == hidden => k,
            s => {
                let s = s.unwrap_or_default();
                return Err(Error::format(WEIGHTS, format!("tensor {key} has shape {s:?}, but a classification head's weight is [num_labels, {hidden}] (the model's hidden size)")));
            }
        };
        let labels = model_labels(&model.config, k);
        create::attach_head(model, &labels, &mut rand::SeedableRng::seed_from_u64(0))?;
    }
    let device = model.device.clone();
    let arch = model.info.architecture.clone();
    let named = model.named_layers();
    let mut linears: HashMap<String, &mut Linear> = named.linears.into_iter().collect();
    let mut norms: HashMap<String, &mut LayerNorm> = named.norms.into_iter().collect();

    let shape_err = |key: &str, got: &[usize], want: &[usize], why: &str| {
        Error::format(WEIGHTS, format!("tensor {key} has shape {got:?}, but {why} implies {want:?}"))
    };
    // LoRA factors arrive as separate tensors; collect them per module first.
    let mut lora_parts: BTreeMap<String, (Option<HostTensor>, Option<HostTensor>, Option<HostTensor>)> = BTreeMap::new();
    let mut replaced = 0;
    let mut ia3_modules = 0;
    let mut prompt_table = None;
    let mut extras = vec![];
    let mut originals = vec![];
    for key in w.names().into_iter().map(String::from).collect::<Vec<_>>() {
        let t = w.remove(&key).expect("listed");
        // Prompt learning's `base_model` is the HF model itself (no `.model.`).
        let path = key.strip_prefix("base_model.model.").or_else(|| key.strip_prefix("base_model.")).unwrap_or(&key);
        // With bias="all", PEFT also saves a `modules_to_save` head's trained copy
        // under `.modules_to_save.` and its frozen original under `.original_module.`.
        if path.contains(".original_module.") {
            if t.shape.len() == 1 {
                extras.push((key.clone(), crate::models::layers::tensor(t, &device)));
            }
            continue;
        }
        // (`.modules_to_save.default.` inside a head of several layers, see `models::head_param`.)
        let path = path.replace(".modules_to_save.default.", ".").replace(".modules_to_save.", ".");
        let (module, part) = classify(&path);
        let missing = || {
            Error::format(WEIGHTS, format!("tensor {key} targets module '{module}', which does not exist in this model ({arch})"))
        };
        match part {
            Part::LoraA | Part::LoraB | Part::Magnitude => {
                if lora_cfg.is_none() {
                    return Err(Error::format(WEIGHTS, format!("tensor {key} is a LoRA tensor but peft_type is {peft_type}")));
                }
                let entry = lora_parts.entry(module).or_default();
                match part {
                    Part::LoraA => entry.0 = Some(t),
                    Part::LoraB => entry.1 = Some(t),
                    _ => entry.2 = Some(t),
                }
            }
            Part::Ia3 => {
                let cfg = ia3_cfg.as_ref().ok_or_else(|| Error::format(WEIGHTS, format!("tensor {key} is an IA3 tensor but peft_type is {peft_type}")))?;
                let lin = linears.get_mut(&module).ok_or_else(missing)?;
                let (d_in, d_out) = lin.dims();
                let feedforward = matches_targets(cfg.feedforward_modules.as_ref(), &module);
                let want = if feedforward { vec![1, d_in] } else { vec![d_out, 1] };
                if t.shape != want {
                    let why = if feedforward { "a feed-forward module's input size" } else { "the module's output size" };
                    return Err(shape_err(&key, &t.shape, &want, why));
                }
                let n = t.data.len();
                lin.ia3 = Some(Ia3Layer { vector: param(HostTensor { shape: vec![n], ..t }, &device), feedforward, enabled: true });
                ia3_modules += 1;
            }
            Part::PromptEmbeddings => {
                if prompt_cfg.is_none() && prefix_cfg.is_none() {
                    return Err(Error::format(WEIGHTS, format!("tensor {key} belongs to prompt or prefix tuning, but peft_type is {peft_type}")));
                }
                prompt_table = Some(t);
            }
            Part::Base("") => return Err(Error::format(WEIGHTS, format!("unrecognised tensor {key}"))),
            Part::Base(kind) => {
                if let Some(lin) = linears.get_mut(&module) {
                    let (d_in, d_out) = lin.dims();
                    match kind {
                        "bias" => {
                            if t.shape != [d_out] {
                                return Err(shape_err(&key, &t.shape, &[d_out], "the module's output size"));
                            }
                            if let Some(b) = lin.bias.as_ref().filter(|_| first(&originals, &module, "bias")) {
                                originals.push(Original { module: module.clone(), kind: "bias", value: b.val().detach() });
                            }
                            lin.bias = Some(param(t, &device));
                        }
                        _ => {
                            if t.shape != [d_out, d_in] {
                                return Err(shape_err(&key, &t.shape, &[d_out, d_in], "the module's [out, in] size"));
                            }
                            if first(&originals, &module, "weight") {
                                originals.push(Original { module: module.clone(), kind: "weight", value: lin.weight().detach().reshape([d_in * d_out]) });
                            }
                            lin.weight = LinearWeight::Dense(param(t.transposed(), &device));
                        }
                    }
                } else if let Some(norm) = norms.get_mut(&module) {
                    let d = norm.weight.dims()[0];
                    if t.shape != [d] {
                        return Err(shape_err(&key, &t.shape, &[d], "the norm's size"));
                    }
                    match kind {
                        "bias" => {
                            let Some(b) = norm.bias.as_mut() else {
                                return Err(Error::format(WEIGHTS, format!("tensor {key}: the model's {module} has no bias")));
                            };
                            if first(&originals, &module, "bias") {
                                originals.push(Original { module: module.clone(), kind: "bias", value: b.val().detach() });
                            }
                            *b = param(t, &device);
                        }
                        _ => {
                            if first(&originals, &module, "weight") {
                                originals.push(Original { module: module.clone(), kind: "weight", value: norm.weight.val().detach() });
                            }
                            norm.weight = param(t, &device);
                        }
                    }
                } else {
                    return Err(missing());
                }
                replaced += 1;
            }
        }
    }

    let lora_modules = lora_parts.len();
    if let Some(cfg) = &lora_cfg {
        for (module, (a, b, m)) in lora_parts {
            let lin = linears.get_mut(&module).ok_or_else(|| {
                Error::format(WEIGHTS, format!("LoRA tensors target module '{module}', which does not exist in this model ({arch})"))
            })?;
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(Error::format(WEIGHTS, format!("module {module} needs both lora_A.weight and lora_B.weight"))),
            };
            let (d_in, d_out) = lin.dims();
            let r = cfg.rank_for(&module);
            let why = format!("r={r} from {CONFIG} and the module's size");
            if a.shape != [r, d_in] {
                return Err(shape_err(&format!("{module}.lora_A.weight"), &a.shape, &[r, d_in], &why));
            }
            if b.shape != [d_out, r] {
                return Err(shape_err(&format!("{module}.lora_B.weight"), &b.shape, &[d_out, r], &why));
            }
            let magnitude = match (cfg.use_dora, m) {
                (true, Some(m)) if m.shape == [d_out] => Some(param(m, &device)),
                (true, Some(m)) => return Err(shape_err(&format!("{module}.lora_magnitude_vector"), &m.shape, &[d_out], "the module's output size")),
                (true, None) => return Err(Error::format(WEIGHTS, format!("use_dora is set but {module}.lora_magnitude_vector is missing"))),
                (false, Some(_)) => return Err(Error::format(WEIGHTS, format!("{module}.lora_magnitude_vector is present but use_dora is false"))),
                (false, None) => None,
            };
            lin.lora = Some(LoraLayer {
                lora_a: param(a.transposed(), &device),
                lora_b: param(b.transposed(), &device),
                scaling: cfg.scaling_for(&module),
                magnitude,
                dropout: cfg.lora_dropout,
                training: false,
                enabled: true,
            });
        }
    }
    let mut virtual_tokens = 0;
    if prompt_cfg.is_some() || prefix_cfg.is_some() {
        let t = prompt_table.ok_or_else(|| Error::format(WEIGHTS, "prompt_embeddings is missing"))?;
        let n = prompt_cfg.as_ref().map(|c| c.num_virtual_tokens).or(prefix_cfg.as_ref().map(|c| c.num_virtual_tokens)).unwrap_or(0);
        if let Some(cfg) = &prefix_cfg {
            let (layers, kv_heads, head_dim) = model.kv_layout().expect("checked above");
            let want = [n, layers * 2 * kv_heads * head_dim];
            if t.shape != want {
                let why = format!("num_virtual_tokens={n} and the model's {layers} layers x 2 x {kv_heads} KV heads x {head_dim}");
                return Err(shape_err("prompt_embeddings", &t.shape, &want, &why));
            }
            if cfg.num_layers.is_some_and(|l| l != layers) {
                return Err(Error::format(CONFIG, format!("num_layers is {}, but the model has {layers} layers", cfg.num_layers.unwrap_or(0))));
            }
            model.prefix = Some(PrefixEncoder { weight: param(t, &device), num_layers: layers, kv_heads, head_dim });
        } else {
            let want = [n, model.info.hidden_size];
            if t.shape != want {
                return Err(shape_err("prompt_embeddings", &t.shape, &want, "num_virtual_tokens and the model's hidden size"));
            }
            model.prompt = Some(PromptEmbedding { weight: param(t, &device) });
        }
        virtual_tokens = n;
    }
    model.adapter_config = Some(config);
    model.adapter_extras = extras;
    model.adapter_originals = originals;
    Ok(AdapterSummary { peft_type, adapted_modules: lora_modules + ia3_modules, replaced_tensors: replaced, virtual_tokens })
}

/// True if `module` is selected by `targets`, as PEFT decides: a list entry
/// equal to the module path or to a `.`-suffix of it; a string as a regex
/// matching the whole path.
pub fn matches_targets(targets: Option<&TargetModules>, module: &str) -> bool {
    match targets {
        None => false,
        Some(TargetModules::Names(names)) => names.iter().any(|n| module == n || module.ends_with(&format!(".{n}"))),
        Some(TargetModules::Regex(re)) => regex_full_match(re, module),
    }
}

fn regex_full_match(re: &str, text: &str) -> bool {
    fancy_regex::Regex::new(&format!("^(?:{re})$")).ok().and_then(|r| r.is_match(text).ok()).unwrap_or(false)
}

/// The layer index PEFT's `layers_to_transform` reads from a module path: the
/// first all-digit component after the first one (`model.layers.3.mlp` -> 3).
pub fn layer_index(module: &str) -> Option<usize> {
    module.split('.').skip(1).find_map(|c| c.parse().ok())
}

/// Label names for a `k`-class head: the config's `id2label` when it has `k`
/// entries, else transformers' `LABEL_i`.
pub fn model_labels(config: &serde_json::Value, k: usize) -> Vec<String> {
    let from_config = config.get("id2label").and_then(|m| m.as_object()).filter(|m| m.len() == k).map(|m| {
        (0..k).map(|i| m.get(&i.to_string()).and_then(|v| v.as_str()).map(String::from).unwrap_or_else(|| format!("LABEL_{i}"))).collect()
    });
    from_config.unwrap_or_else(|| (0..k).map(|i| format!("LABEL_{i}")).collect())
}

/// True if `module`'s `kind` tensor has not been replaced yet (PEFT may save
/// a head's bias twice: under its path and under `modules_to_save`).
fn first(originals: &[Original], module: &str, kind: &str) -> bool {
    !originals.iter().any(|o| o.module == module && o.kind == kind)
}

/// `webpeft.json`, kept next to an adapter: what PEFT's files cannot say (the
/// task, and the label names of a new classification head). The CLI and the
/// browser read and write the same file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sidecar {
    /// `causal-lm` or `seq-cls`.
    pub task: Option<String>,
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub written_by: Option<String>,
    /// Set when the adapter was trained with differential privacy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<crate::train::dp::DpRecord>,
    /// The base model the adapter was trained on: its files and how its weights were held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<crate::models::BaseRecord>,
}

impl Sidecar {
    pub const FILE: &'static str = "webpeft.json";

    pub fn new(task: Option<&str>, labels: Option<Vec<String>>) -> Self {
        Self { task: task.map(String::from), labels, written_by: Some(concat!("webpeft ", env!("CARGO_PKG_VERSION")).into()), dp: None, base: None }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a sidecar serialises")
    }

    /// The sidecar in `bytes`, or `None` when it is not one (it is optional).
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Records class names in a model config as transformers does (`id2label`,
/// `label2id`), so heads and merged models carry them.
pub fn set_label_names(config: &mut serde_json::Value, labels: &[String]) {
    let id2label: serde_json::Map<String, serde_json::Value> = labels.iter().enumerate().map(|(i, l)| (i.to_string(), l.clone().into())).collect();
    let label2id: serde_json::Map<String, serde_json::Value> = labels.iter().enumerate().map(|(i, l)| (l.clone(), i.into())).collect();
    if let Some(c) = config.as_object_mut() {
        c.insert("id2label".into(), id2label.into());
        c.insert("label2id".into(), label2id.into());
    }
}

//! Parameter-efficient fine-tuning methods with Hugging Face PEFT's file
//! format and semantics.
//!
//! Each method is one module, like PEFT's `tuners/<method>/`: its config (PEFT's field
//! names), its layer (the code behind a [`crate::models::hooks`] trait), and its
//! create/load/export, behind the [`Tuner`] trait. [`METHODS`] registers them. This file
//! holds what the methods share: reading an adapter (`adapter_config.json` +
//! `adapter_model.safetensors`) and attaching it by PEFT's names, and the base tensors
//! an adapter replaces (trained biases, `modules_to_save` heads).

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
use serde_json::Value;

use crate::error::{Error, Result};
use crate::formats::safetensors::{HostTensor, WeightMap};
use crate::models::layers::{param, LayerNorm, Linear, LinearWeight, NamedTensor};
use crate::models::{Model, Original};
use create::{AdapterSpec, Method, NewAdapter};

pub(crate) const CONFIG: &str = "adapter_config.json";
/// The PEFT release whose file format webpeft reads and writes (`peft_version`).
pub const PEFT_VERSION: &str = "0.21.2";
pub(crate) const WEIGHTS: &str = "adapter_model.safetensors";

/// `target_modules`: a list of names (matched as PEFT does, by `.`-suffix) or a regex
/// (matched against the whole module path).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum TargetModules {
    Names(Vec<String>),
    Regex(String),
}

/// The registry: each method's name in the CLI and the package (the [`Method`] option)
/// and the module that implements it. DoRA and BitFit are PEFT's LoRA with other settings.
pub const METHODS: &[(Method, &dyn Tuner)] = &[
    (Method::Lora, &lora::LoraTuner),
    (Method::Dora, &lora::LoraTuner),
    (Method::Bitfit, &lora::LoraTuner),
    (Method::Ia3, &ia3::Ia3Tuner),
    (Method::Prompt, &prompt::PromptTuner),
    (Method::Prefix, &prefix::PrefixTuner),
];

impl Method {
    /// The module that implements this method ([`METHODS`]).
    pub fn tuner(self) -> &'static dyn Tuner {
        METHODS.iter().find(|(m, _)| *m == self).map(|(_, t)| *t).expect("every method is registered")
    }
}

/// The registered method for PEFT's `peft_type`.
pub fn tuner_for(peft_type: &str) -> Option<&'static dyn Tuner> {
    METHODS.iter().map(|(_, t)| *t).find(|t| t.peft_type() == peft_type)
}

/// The `peft_type`s webpeft reads, in registry order.
fn peft_types() -> Vec<&'static str> {
    let mut types: Vec<&str> = METHODS.iter().map(|(_, t)| t.peft_type()).collect();
    types.dedup();
    types
}

/// A method's tensors in a loaded adapter file, by module path (`""` for prompt learning's
/// table) and then by key suffix (`lora_A.weight`).
pub type Owned = BTreeMap<String, BTreeMap<&'static str, HostTensor>>;

/// A PEFT method: what `peft/tuners/<method>/` gives PEFT. Classification heads, trained
/// biases and `modules_to_save` are handled around it, the same for every method.
pub trait Tuner: Sync {
    /// PEFT's `peft_type` (`LORA`).
    fn peft_type(&self) -> &'static str;

    /// True for prompt learning (PEFT's `is_prompt_learning`): its keys start `base_model.`,
    /// not `base_model.model.`, and it lists a head twice in `modules_to_save`.
    fn prompt_learning(&self) -> bool {
        false
    }

    /// The key suffixes of its tensors in `adapter_model.safetensors` (`lora_A.weight`), or
    /// a whole key (`prompt_embeddings`).
    fn tensor_keys(&self) -> &'static [&'static str];

    /// Checks a loaded `adapter_config.json` against the model before anything changes.
    fn check(&self, model: &Model, config: &Value) -> Result<()>;

    /// Attaches a new adapter of `spec` to `model` and returns its `adapter_config.json`.
    fn create(&self, model: &mut Model, spec: &AdapterSpec, new: &mut NewAdapter) -> Result<Value>;

    /// Attaches a loaded adapter's own tensors (already checked to be this method's).
    fn load(&self, model: &mut Model, config: &Value, own: Owned) -> Result<()>;

    /// Its tensors under PEFT's keys (`base_model.model.<module>.lora_A.weight`), in PEFT's layouts.
    fn export(&self, model: &mut Model) -> Result<Vec<NamedTensor>>;
}

/// The module path `key` names with `suffix` (a whole key gives `""`).
fn split_key<'a>(key: &'a str, suffix: &str) -> Option<&'a str> {
    if key == suffix {
        return Some("");
    }
    key.strip_suffix(suffix)?.strip_suffix('.')
}

/// `(suffix, tuner)` when `key` is a registered method's tensor, trying `first` before the rest.
fn method_key(key: &str, first: &'static dyn Tuner) -> Option<(String, &'static str, &'static dyn Tuner)> {
    let tuners = std::iter::once(first).chain(METHODS.iter().map(|(_, t)| *t));
    tuners.flat_map(|t| t.tensor_keys().iter().map(move |s| (t, *s))).find_map(|(t, s)| split_key(key, s).map(|m| (m.to_string(), s, t)))
}

pub(crate) fn shape_err(key: &str, got: &[usize], want: &[usize], why: &str) -> Error {
    Error::format(WEIGHTS, format!("tensor {key} has shape {got:?}, but {why} implies {want:?}"))
}

/// Prompt learning's one table, `prompt_embeddings`.
pub(crate) fn take_table(mut own: Owned) -> Result<HostTensor> {
    own.remove("").and_then(|mut m| m.remove("prompt_embeddings")).ok_or_else(|| Error::format(WEIGHTS, "prompt_embeddings is missing"))
}

/// Prompt learning's export: the virtual-token table as `prompt_embeddings`.
pub(crate) fn export_table(model: &Model) -> Result<Vec<NamedTensor>> {
    let v = model.virtual_tokens.as_ref().ok_or_else(|| Error::input("adapter", "the adapter has no prompt table"))?;
    Ok(vec![NamedTensor::new("prompt_embeddings", v.table.val())])
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

/// Reads a PEFT adapter and attaches it to `model`.
///
/// Supported: the methods in [`METHODS`], plus trained biases (`bias="all"|"lora_only"`)
/// and `modules_to_save` heads. Every tensor must find its module, with the shape the
/// config implies.
pub fn load_adapter(model: &mut Model, config_json: &[u8], weights: &[u8]) -> Result<AdapterSummary> {
    let config: Value = serde_json::from_slice(config_json).map_err(|e| Error::format(CONFIG, format!("invalid JSON: {e}")))?;
    let peft_type = config.get("peft_type").and_then(|v| v.as_str()).unwrap_or("").to_string();
    let tuner = match peft_type.as_str() {
        "" => return Err(Error::format(CONFIG, "peft_type is missing")),
        other => tuner_for(other).ok_or_else(|| {
            Error::unsupported(CONFIG, format!("peft_type {other} is not supported yet (supported: {})", peft_types().join(", ")))
        })?,
    };
    tuner.check(model, &config)?;

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

    let mut own = Owned::new();
    let mut replaced = 0;
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
        if let Some((module, suffix, owner)) = method_key(&path, tuner) {
            if owner.peft_type() != tuner.peft_type() {
                return Err(Error::format(WEIGHTS, format!("tensor {key} is a {} tensor but peft_type is {peft_type}", owner.peft_type())));
            }
            own.entry(module).or_default().insert(suffix, t);
            continue;
        }
        let (module, kind) = match path.strip_suffix(".base_layer.bias").or_else(|| path.strip_suffix(".bias")) {
            Some(m) => (m.to_string(), "bias"),
            None => match path.strip_suffix(".base_layer.weight").or_else(|| path.strip_suffix(".weight")) {
                Some(m) => (m.to_string(), "weight"),
                None => return Err(Error::format(WEIGHTS, format!("unrecognised tensor {key}"))),
            },
        };
        let missing = || Error::format(WEIGHTS, format!("tensor {key} targets module '{module}', which does not exist in this model ({arch})"));
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
    tuner.load(model, &config, own)?;
    let adapted_modules = model.named_layers().linears.iter().filter(|(_, l)| !l.adapters.is_empty()).count();
    let virtual_tokens = model.virtual_tokens.as_ref().map_or(0, |v| v.len());
    model.adapter_config = Some(config);
    model.adapter_extras = extras;
    model.adapter_originals = originals;
    Ok(AdapterSummary { peft_type, adapted_modules, replaced_tensors: replaced, virtual_tokens })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method the CLI and the package offer has a module in the registry, and each
    /// registered `peft_type` finds that module again (a load of its adapters would).
    #[test]
    fn every_method_is_registered_once() {
        let all = [Method::Lora, Method::Dora, Method::Bitfit, Method::Ia3, Method::Prompt, Method::Prefix];
        assert_eq!(METHODS.len(), all.len(), "a method in METHODS twice, or one missing");
        for m in all {
            let t = m.tuner();
            assert!(std::ptr::addr_eq(tuner_for(t.peft_type()).expect("registered"), t), "{}", m.name());
        }
        assert_eq!(peft_types(), ["LORA", "IA3", "PROMPT_TUNING", "PREFIX_TUNING"]);
    }

    /// A tensor key finds its method's module path, and only at a `.` boundary.
    #[test]
    fn keys_split_at_module_boundaries() {
        assert_eq!(split_key("model.layers.0.q_proj.lora_A.weight", "lora_A.weight"), Some("model.layers.0.q_proj"));
        assert_eq!(split_key("prompt_embeddings", "prompt_embeddings"), Some(""));
        assert_eq!(split_key("model.x_lora_A.weight", "lora_A.weight"), None);
        let lora = Method::Lora.tuner();
        let (module, suffix, owner) = method_key("h.0.ia3_l", lora).expect("an (IA)³ key");
        assert_eq!((module.as_str(), suffix, owner.peft_type()), ("h.0", "ia3_l", "IA3"));
        assert!(method_key("h.0.attn.c_attn.bias", lora).is_none(), "a base tensor is no method's");
    }
}

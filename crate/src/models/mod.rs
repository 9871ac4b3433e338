//! Model families and the code that builds one from a model's files.
//!
//! A model is a Hugging Face directory (`config.json`, `*.safetensors`,
//! `tokenizer.json`) or one `.gguf` file. The core never touches the file
//! system: callers hand it the bytes ([`ModelFiles`]), so the browser and the
//! CLI share this code.

pub mod bert;
pub mod blocks;
pub mod family;
pub mod gemma3;
pub mod gpt2;
pub mod hooks;
pub mod layers;
pub mod llama;
pub mod modernbert;
pub mod phi3;
pub mod taps;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::formats::gguf::{self, GgufFamily};
use crate::formats::source::{self, ByteSource};
use crate::formats::safetensors::{shard_files, HostTensor, WeightMap};
use crate::formats::tokenizer::TextTokenizer;
pub use family::{Facts, Family};
pub use layers::{FrozenHead, KvCache};
use hooks::{TokenPlace, VirtualTokens};

/// The files of one model by file name: in memory, or read on demand (a weight file on disk, or
/// a buffer the JavaScript side keeps) so that loading reads it a tensor at a time.
#[derive(Default, Clone)]
pub struct ModelFiles {
    pub files: BTreeMap<String, Arc<dyn ByteSource>>,
}

impl std::fmt::Debug for ModelFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.files.iter().map(|(n, s)| (n, s.len()))).finish()
    }
}

impl ModelFiles {
    /// Adds a file held in memory under its base name.
    pub fn add(&mut self, name: &str, bytes: Vec<u8>) {
        self.add_source(name, Arc::new(bytes));
    }

    /// Adds a file read on demand under its base name.
    pub fn add_source(&mut self, name: &str, src: Arc<dyn ByteSource>) {
        let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
        self.files.insert(base.to_string(), src);
    }

    /// Name, size and sha256 of each weight file (`.gguf`, `.safetensors`).
    pub fn weight_digests(&self) -> Result<Vec<BaseFile>> {
        self.files
            .iter()
            .filter(|(n, _)| n.ends_with(".gguf") || n.ends_with(".safetensors"))
            .map(|(n, b)| Ok(BaseFile { name: n.clone(), bytes: b.len(), sha256: source::sha256(n, b.as_ref())? }))
            .collect()
    }

    /// A whole file (the JSON ones), reading it when it is not in memory.
    fn get(&self, name: &str) -> Result<Option<Cow<'_, [u8]>>> {
        let Some(src) = self.files.get(name) else { return Ok(None) };
        Ok(Some(match src.as_slice() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(src.read_at(name, 0, src.len() as usize)?),
        }))
    }

    fn source(&self, name: &str) -> Option<&dyn ByteSource> {
        self.files.get(name).map(|s| s.as_ref())
    }

    fn gguf(&self) -> Option<(&str, &dyn ByteSource)> {
        self.files.iter().find(|(n, _)| n.ends_with(".gguf")).map(|(n, b)| (n.as_str(), b.as_ref()))
    }

    /// The files a model directory needs: config, tokenizer, and the weights
    /// (the shards an index names, else `model.safetensors`). `list` gives the
    /// directory's file names; `read_index` returns the index file's bytes.
    pub fn needed_from_listing(list: &[String], read_index: impl FnOnce() -> Option<Vec<u8>>) -> Result<Vec<String>> {
        if let Some(g) = list.iter().find(|n| n.ends_with(".gguf")) {
            return Ok(vec![g.clone()]);
        }
        let mut need: Vec<String> = ["config.json", "tokenizer.json", "tokenizer_config.json"]
            .iter()
            .filter(|n| list.iter().any(|f| f == *n))
            .map(|n| n.to_string())
            .collect();
        if list.iter().any(|f| f == "model.safetensors.index.json") {
            let bytes = read_index().ok_or_else(|| Error::io("model.safetensors.index.json", "could not be read"))?;
            need.push("model.safetensors.index.json".into());
            need.extend(shard_files("model.safetensors.index.json", &bytes)?);
        } else if list.iter().any(|f| f == "model.safetensors") {
            need.push("model.safetensors".into());
        } else {
            return Err(Error::format("model directory", "no model.safetensors, model.safetensors.index.json or .gguf file found"));
        }
        Ok(need)
    }
}

/// Mutable references to a network's layers, by HF module path, so adapters
/// can attach to them by the names PEFT uses.
#[derive(Default)]
pub struct NamedLayers<'a> {
    pub linears: Vec<(String, &'a mut layers::Linear)>,
    pub norms: Vec<(String, &'a mut layers::LayerNorm)>,
}

impl<'a> NamedLayers<'a> {
    /// A Llama-style decoder layer's projections under HF's names: `{prefix}.self_attn.{q,k,v,o}_proj`
    /// and `{prefix}.mlp.{gate,up,down}_proj`.
    pub fn push_decoder_layer(&mut self, prefix: &str, attn: [&'a mut layers::Linear; 4], mlp: [&'a mut layers::Linear; 3]) {
        for (name, l) in ["q_proj", "k_proj", "v_proj", "o_proj"].into_iter().zip(attn) {
            self.linears.push((format!("{prefix}.self_attn.{name}"), l));
        }
        for (name, l) in ["gate_proj", "up_proj", "down_proj"].into_iter().zip(mlp) {
            self.linears.push((format!("{prefix}.mlp.{name}"), l));
        }
    }

    /// A decoder's `lm_head` (when untied) and `score` (a classifier), when present.
    pub fn push_heads(&mut self, lm_head: Option<&'a mut layers::Linear>, score: Option<&'a mut layers::Linear>) {
        self.linears.extend(lm_head.map(|h| ("lm_head".to_string(), h)));
        self.linears.extend(score.map(|s| ("score".to_string(), s)));
    }
}

/// The registered families, one line each: a [`Network`] variant and the family's type. The
/// macro makes the `Network` enum (a burn `Module`, so training handles every family through it)
/// and its dispatch to [`Family`].
macro_rules! families {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// The architecture-specific network.
        #[derive(Module, Debug)]
        pub enum Network {
            $($variant($ty)),*
        }

        impl Network {
            /// The family's code.
            pub fn family(&self) -> &dyn Family {
                match self {
                    $(Network::$variant(m) => m),*
                }
            }

            /// The family's code, mutably.
            pub fn family_mut(&mut self) -> &mut dyn Family {
                match self {
                    $(Network::$variant(m) => m),*
                }
            }

        }

        /// What webpeft knows of `model_type`'s family, if one is registered for it.
        pub fn facts(model_type: &str) -> Option<Facts> {
            $(if <$ty as Family>::model_types().contains(&model_type) {
                return Some(<$ty as Family>::facts(model_type));
            })*
            None
        }

        /// The HF `model_type` values of every family.
        pub fn model_types() -> Vec<&'static str> {
            [$(<$ty as Family>::model_types()),*].concat()
        }

        /// Loads the family that handles `model_type`.
        fn load_family(model_type: &str, config: &serde_json::Value, w: &mut WeightMap, device: &Device) -> Result<(Network, ModelInfo)> {
            $(if <$ty as Family>::model_types().contains(&model_type) {
                let (net, info) = <$ty as Family>::load(config, w, device)?;
                return Ok((Network::$variant(net), info));
            })*
            Err(no_family(model_type, "config.json"))
        }

        /// The family that reads GGUF `general.architecture` `arch`, if one is registered.
        pub fn gguf_family(arch: &str) -> Option<&'static dyn GgufFamily> {
            $(if let Some(f) = <$ty as Family>::gguf().filter(|f| f.architectures().iter().any(|(a, _)| *a == arch)) {
                return Some(f);
            })*
            None
        }

        /// The GGUF architecture of HF `model_type` and the family that writes it (GGUF LoRA export).
        pub fn gguf_architecture(model_type: &str) -> Option<(&'static str, &'static dyn GgufFamily)> {
            $(if let Some(f) = <$ty as Family>::gguf() {
                if let Some((a, _)) = f.architectures().iter().find(|(a, _)| f.model_type(a) == model_type || *a == model_type) {
                    return Some((a, f));
                }
            })*
            None
        }

        /// The GGUF architectures every family reads.
        pub fn gguf_architectures() -> Vec<&'static str> {
            [$(<$ty as Family>::gguf().map_or(&[][..], |f| f.architectures())),*].concat().iter().map(|(a, _)| *a).collect()
        }

        /// The error for a GGUF architecture no family reads, naming `file` and the supported ones.
        pub fn no_gguf_family(arch: &str, file: &str) -> Error {
            Error::unsupported(file, format!("unsupported GGUF architecture '{arch}' (general.architecture; supported: {})", gguf_architectures().join(", ")))
        }

        /// The error for a `model_type` no family loads, naming `file` and the supported ones.
        pub fn no_family(model_type: &str, file: &str) -> Error {
            match model_type {
                "" => Error::format(file, "model_type is missing"),
                other => Error::unsupported(file, format!("unknown model_type '{other}' (supported: {})", model_types().join(", "))),
            }
        }
    };
}

families! {
    Llama(llama::LlamaForCausalLM),
    Gemma3(gemma3::Gemma3ForCausalLM),
    Gpt2(gpt2::Gpt2LMHeadModel),
    Bert(bert::BertForSequenceClassification),
    Phi3(phi3::Phi3ForCausalLM),
    ModernBert(modernbert::ModernBertForSequenceClassification),
}

impl Network {
    /// The decoder's layers one at a time, for families that support gradient checkpointing.
    pub fn layer_stack(&self) -> Option<&dyn layers::LayerStack> {
        self.family().layer_stack()
    }

    /// A decoder's token embeddings (scaled as the family does).
    pub fn embed(&self, ids: Tensor<2, Int>) -> Option<Tensor<3>> {
        let f = self.family();
        f.kv_layout().is_some().then(|| f.embed(ids))
    }
}

/// Heads PEFT trains and saves whole for `SEQ_CLS` (`modules_to_save`).
pub const HEADS: [&str; 2] = ["classifier", "score"];

/// The HF module `path` and the modules containing it, outermost first (`a`, `a.b`, `a.b.c`).
pub fn module_and_parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('.').map(move |(i, _)| &path[..i]).chain([path])
}

/// Whether PEFT's `modules_to_save` matching (a plain `endswith`) picks one of `names` for the
/// module `path` or a module containing it.
pub fn saved_module<'a>(path: &str, names: impl Iterator<Item = &'a str> + Clone) -> bool {
    module_and_parents(path).any(|m| names.clone().any(|h| m.ends_with(h)))
}

/// Whether the HF module `path` belongs to a classification head: it, or a module containing it,
/// ends with one of [`HEADS`], as PEFT's `endswith` picks the modules it wraps (RoBERTa's
/// `classifier.dense` and `classifier.out_proj` are both in its `classifier`).
pub fn in_head(path: &str) -> bool {
    saved_module(path, HEADS.into_iter())
}

/// The name PEFT gives a head parameter inside its `modules_to_save` wrapper (`wrapper` is
/// `modules_to_save` or `original_module`): `classifier.modules_to_save.bias` for a head that
/// is one layer, `classifier.modules_to_save.default.dense.bias` for a layer inside one (PEFT
/// drops the adapter name only before a final parameter name), `classifier.original_module.dense.bias`.
pub fn head_param(path: &str, wrapper: &str, param: &str) -> String {
    // A module containing `path` (not `path` itself) that is a head.
    let head = module_and_parents(path).find(|m| m.len() < path.len() && HEADS.iter().any(|h| m.ends_with(h)));
    match head {
        Some(h) if wrapper == "modules_to_save" => format!("{h}.{wrapper}.default.{}.{param}", &path[h.len() + 1..]),
        Some(h) => format!("{h}.{wrapper}.{}.{param}", &path[h.len() + 1..]),
        None => format!("{path}.{wrapper}.{param}"),
    }
}

/// Facts about a loaded model, as `webpeft info` prints them.
#[derive(Debug, Clone, Default, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename_all = "camelCase"))]
pub struct ModelInfo {
    /// transformers class, e.g. `LlamaForCausalLM`.
    pub architecture: String,
    pub model_type: String,
    /// `causal-lm`, `feature-extraction` or `seq-cls`.
    pub task: String,
    pub num_parameters: usize,
    /// Dtypes as stored in the files (`F32`, `BF16`, `Q4_1`...).
    pub dtypes: Vec<String>,
    /// Block formats kept quantized on the device (`Q4_K`...); empty when every weight is f32.
    pub device_blocks: Vec<String>,
    /// Bytes the base weights take on the device: f32 values plus quantized blocks.
    #[cfg_attr(test, ts(type = "number"))]
    pub weight_bytes: u64,
    pub format: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub context_length: usize,
    pub num_labels: Option<usize>,
    pub has_chat_template: bool,
}

/// A model ready to run: its network, tokenizer and description.
#[derive(Debug, Clone)]
pub struct Model {
    pub network: Network,
    pub tokenizer: Option<TextTokenizer>,
    pub info: ModelInfo,
    /// `config.json` as loaded (or as mapped from GGUF metadata).
    pub config: serde_json::Value,
    pub device: Device,
    /// Prompt or prefix tuning's virtual tokens, when such an adapter is attached.
    pub virtual_tokens: Option<VirtualTokens>,
    /// The files it was loaded from and how its weights are held, for `webpeft.json`.
    pub base: BaseRecord,
    /// `adapter_config.json` of the attached adapter (what an export writes back).
    pub adapter_config: Option<serde_json::Value>,
    /// Adapter tensors kept only to be written back verbatim (PEFT's
    /// `original_module` copies of a saved head's bias under `bias="all"`).
    pub adapter_extras: Vec<(String, Tensor<1>)>,
    /// Base tensors the adapter replaced or trains, with their other value
    /// (the base's while the adapter is on), for [`Model::set_adapter_enabled`].
    pub adapter_originals: Vec<Original>,
    /// False while the adapter is switched off.
    pub adapter_enabled: bool,
}

/// A base tensor an adapter replaces (trained bias, saved head), by module
/// path, `weight` or `bias`, flattened.
#[derive(Debug, Clone)]
pub struct Original {
    pub module: String,
    pub kind: &'static str,
    pub value: Tensor<1>,
}

/// Output of [`Model::forward`] for a batch.
#[derive(Debug, Clone)]
pub struct ForwardOutput {
    /// `[batch, seq, hidden]`.
    pub last_hidden_state: Tensor<3>,
    /// Causal LMs: `[batch, seq, vocab]`.
    pub token_logits: Option<Tensor<3>>,
    /// Classifiers: `[batch, num_labels]`.
    pub class_logits: Option<Tensor<2>>,
    /// Prompt-tuning positions at the start of `token_logits` and
    /// `last_hidden_state` (0 without prompt tuning, and on cached steps).
    pub virtual_tokens: usize,
}

/// Fails, naming the largest weight, when any weight's largest device buffer (its f32 values,
/// or a block weight's codes) takes more than `limit` bytes.
fn check_tensor_sizes(w: &WeightMap, limit: usize) -> Result<()> {
    use crate::error::human_bytes;
    let size = |n: &str| w.buffer_bytes(n);
    let too_big: Vec<&str> = w.names().into_iter().filter(|n| size(n) > limit).collect();
    let Some(largest) = too_big.iter().copied().max_by_key(|n| size(n)) else {
        return Ok(());
    };
    let others = match too_big.len() - 1 {
        0 => String::new(),
        1 => " (1 other weight is too large too)".to_string(),
        k => format!(" ({k} other weights are too large too)"),
    };
    Err(Error::device(format!(
        "tensor '{largest}' {:?} takes {} on the device, above this device's largest buffer binding (maxStorageBufferBindingSize) of {}{others}; use a smaller model or a device with higher limits",
        w.shape(largest).unwrap_or(&[]),
        human_bytes(size(largest)),
        human_bytes(limit),
    ))
    .in_source(&w.source))
}

/// A family's `Config` from `config.json` (or the config mapped from GGUF metadata).
pub(crate) fn parse_config<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T> {
    serde_json::from_value(value.clone()).map_err(|e| Error::format("config.json", format!("{e}")))
}

/// How the frozen base's weights are held on the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "cli-cpu", derive(clap::ValueEnum))]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum Quantize {
    /// As stored: GGUF block formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K) stay in
    /// their blocks and are dequantised on the fly; float weights are held as f32.
    #[default]
    None,
    /// Every weight widened to f32 (the reference the block path is checked against).
    F32,
    /// Float linear and embedding weights quantized to Q8_0 on load (GGUF blocks stay as stored).
    #[serde(rename = "q8_0")]
    #[cfg_attr(feature = "cli-cpu", value(name = "q8_0"))]
    Q8_0,
    /// Float linear and embedding weights quantized to Q4_0 on load.
    #[serde(rename = "q4_0")]
    #[cfg_attr(feature = "cli-cpu", value(name = "q4_0"))]
    Q4_0,
}

impl Quantize {
    /// The block type float weights are quantized to, if any.
    pub fn gguf_type(self) -> Option<gguf::GgmlType> {
        match self {
            Self::Q8_0 => Some(gguf::GgmlType::Q8_0),
            Self::Q4_0 => Some(gguf::GgmlType::Q4_0),
            Self::None | Self::F32 => None,
        }
    }
}

/// One base model file, as `webpeft.json` records it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BaseFile {
    pub name: String,
    pub bytes: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// The base model an adapter was trained on: its weight files, and how the weights were held
/// (a QLoRA adapter's base stayed quantized; PEFT loads it on the 16/32-bit base).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BaseRecord {
    pub files: Vec<BaseFile>,
    pub quantize: Quantize,
    /// Block formats kept quantized on the device (`Q4_K`...).
    pub device_blocks: Vec<String>,
}

/// Options for [`Model::load_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Refuse, before anything reaches the device, a model with a weight buffer larger than
    /// this (on WebGPU, the device's `maxStorageBufferBindingSize`).
    pub max_tensor_bytes: Option<usize>,
    pub quantize: Quantize,
}

impl Model {
    /// Loads a model from its files onto `device`.
    pub fn load(files: &ModelFiles, device: &Device) -> Result<Self> {
        Self::load_with(files, device, &LoadOptions::default())
    }

    /// [`Model::load`], refusing before anything reaches the device when a
    /// weight is larger than `max_tensor_bytes`.
    pub fn load_within(files: &ModelFiles, device: &Device, max_tensor_bytes: Option<usize>) -> Result<Self> {
        Self::load_with(files, device, &LoadOptions { max_tensor_bytes, ..LoadOptions::default() })
    }

    /// [`Model::load`] with options.
    pub fn load_with(files: &ModelFiles, device: &Device, opts: &LoadOptions) -> Result<Self> {
        let mut model = Self::load_files(files, device, opts)?;
        model.base = BaseRecord { files: files.weight_digests()?, quantize: opts.quantize, device_blocks: model.info.device_blocks.clone() };
        Ok(model)
    }

    fn load_files(files: &ModelFiles, device: &Device, opts: &LoadOptions) -> Result<Self> {
        let max_tensor_bytes = opts.max_tensor_bytes;
        if let Some((name, bytes)) = files.gguf() {
            return Self::load_gguf(name, bytes, device, opts);
        }
        let config_bytes = files.get("config.json")?.ok_or_else(|| Error::format("model", "config.json is missing"))?;
        let config: serde_json::Value =
            serde_json::from_slice(&config_bytes).map_err(|e| Error::format("config.json", format!("invalid JSON: {e}")))?;
        let mut weights = WeightMap::new("model.safetensors");
        // F16/BF16 matrices stay 16-bit unless `quantize` asks otherwise; `[in, out]` weights
        // (GPT-2's Conv1D) would be widened again.
        let model_type = config.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        weights.keep_half = opts.quantize == Quantize::None && !facts(model_type).is_some_and(|f| f.fan_in_fan_out);
        if let Some(index) = files.get("model.safetensors.index.json")? {
            let shards = shard_files("model.safetensors.index.json", &index)?;
            weights.source = shards.join(", ");
            for shard in shards {
                let src = files.source(&shard).ok_or_else(|| Error::format(&shard, "shard named by model.safetensors.index.json is missing"))?;
                weights.add_safetensors_source(&shard, src)?;
            }
        } else {
            let src = files.source("model.safetensors").ok_or_else(|| Error::format("model", "model.safetensors is missing"))?;
            weights.add_safetensors_source("model.safetensors", src)?;
        }
        let tokenizer = match files.get("tokenizer.json")? {
            Some(t) => Some(TextTokenizer::from_hf(&t, files.get("tokenizer_config.json")?.as_deref())?),
            None => None,
        };
        if let Some(dtype) = opts.quantize.gguf_type() {
            // `[in, out]` weights (GPT-2's Conv1D) would be widened again.
            if !facts(model_type).is_some_and(|f| f.fan_in_fan_out) {
                weights.quantize(dtype);
            }
        }
        Self::build(config, weights, tokenizer, "safetensors", device, max_tensor_bytes)
    }

    fn load_gguf(name: &str, src: &dyn ByteSource, device: &Device, opts: &LoadOptions) -> Result<Self> {
        let max_tensor_bytes = opts.max_tensor_bytes;
        let g = gguf::parse_source(src, name).map_err(|e| Error::format(name, strip_source(&e.to_string(), name)))?;
        let mut dtypes: Vec<String> = g.tensors.iter().map(|t| format!("{:?}", t.dtype)).collect();
        dtypes.sort();
        dtypes.dedup();
        let arch = gguf::architecture(&g).map_err(|e| Error::format(name, strip_source(&e.to_string(), name)))?;
        let family = gguf_family(arch).ok_or_else(|| no_gguf_family(arch, name))?;
        let hf = gguf::to_hf_with(&g, family, opts.quantize != Quantize::F32).map_err(|e| {
            let msg = strip_source(&e.to_string(), name);
            if msg.contains("unsupported") {
                Error::unsupported(name, msg)
            } else {
                Error::format(name, msg)
            }
        })?;
        let mut weights = WeightMap::new(name);
        for (tname, shape, data) in hf.tensors {
            weights.insert(tname, HostTensor::new(shape, data, "F32", name));
        }
        for (tname, shape, blocks) in hf.blocks {
            weights.insert(tname, HostTensor::from_blocks(shape, blocks, name));
        }
        if let Some(dtype) = opts.quantize.gguf_type() {
            weights.quantize(dtype);
        }
        let tokenizer = TextTokenizer {
            inner: hf.tokenizer,
            chat_template: hf.chat_template,
            bos_token: hf.bos_token,
            eos_token: hf.eos_token,
            source: name.to_string(),
        };
        let mut model = Self::build(hf.config, weights, Some(tokenizer), "gguf", device, max_tensor_bytes)?;
        model.info.dtypes = dtypes;
        Ok(model)
    }

    fn build(config: serde_json::Value, mut w: WeightMap, tokenizer: Option<TextTokenizer>, format: &str, device: &Device, max_tensor_bytes: Option<usize>) -> Result<Self> {
        if let Some(limit) = max_tensor_bytes {
            check_tensor_sizes(&w, limit)?;
        }
        let model_type = config.get("model_type").and_then(|v| v.as_str()).unwrap_or("").to_string();
        let num_parameters = w.num_values();
        let block_bytes = w.block_bytes();
        let device_blocks = w.block_formats();
        let dtypes = w.dtypes();
        let (network, info) = load_family(&model_type, &config, &mut w, device)?;
        let info = ModelInfo {
            num_parameters,
            weight_bytes: network.num_params() as u64 * 4 + block_bytes,
            device_blocks,
            dtypes,
            format: format.to_string(),
            has_chat_template: tokenizer.as_ref().is_some_and(|t| t.chat_template.is_some()),
            ..info
        };
        Ok(Self { network, tokenizer, info, config, device: device.clone(), virtual_tokens: None, base: BaseRecord::default(), adapter_config: None, adapter_extras: vec![], adapter_originals: vec![], adapter_enabled: true })
    }

    /// The network's dense and norm layers by HF module path.
    pub fn named_layers(&mut self) -> NamedLayers<'_> {
        self.network.family_mut().named_layers()
    }

    /// What webpeft knows of the model's family.
    pub fn facts(&self) -> Facts {
        facts(&self.info.model_type).expect("a loaded model's family is registered")
    }

    /// A decoder's `(layers, kv_heads, head_dim)`: the shape of its KV cache.
    pub fn kv_layout(&self) -> Option<(usize, usize, usize)> {
        self.network.family().kv_layout()
    }

    /// True for decoders that predict the next token.
    pub fn is_causal(&self) -> bool {
        self.kv_layout().is_some()
    }

    /// Number of decoder layers (for a KV cache).
    pub fn num_layers(&self) -> usize {
        self.info.num_layers
    }

    /// The attached virtual tokens that prepend embeddings (prompt tuning), while switched on.
    pub fn prompt(&self) -> Option<&VirtualTokens> {
        self.virtual_tokens.as_ref().filter(|v| self.adapter_enabled && v.method.place() == TokenPlace::Embeddings)
    }

    /// The attached virtual tokens that fill the key/value cache (prefix tuning), while switched on.
    pub fn prefix(&self) -> Option<&VirtualTokens> {
        self.virtual_tokens.as_ref().filter(|v| self.adapter_enabled && v.method.place() == TokenPlace::KeyValues)
    }

    /// Positions a prompt- or prefix-tuning adapter adds before the real tokens.
    pub fn extra_positions(&self) -> usize {
        if !self.adapter_enabled {
            return 0;
        }
        self.virtual_tokens.as_ref().map_or(0, |v| v.len())
    }

    /// Switches the attached adapter off (the base model's outputs) or back on,
    /// as PEFT's `disable_adapter()` does. Not during training.
    pub fn set_adapter_enabled(&mut self, on: bool) {
        if on == self.adapter_enabled {
            return;
        }
        self.adapter_enabled = on;
        let mut originals = std::mem::take(&mut self.adapter_originals);
        let named = self.named_layers();
        let mut linears: std::collections::HashMap<String, &mut layers::Linear> = named.linears.into_iter().collect();
        let mut norms: std::collections::HashMap<String, &mut layers::LayerNorm> = named.norms.into_iter().collect();
        for lin in linears.values_mut() {
            for a in lin.adapters.iter_mut() {
                a.enabled = on;
            }
        }
        // Swap each replaced tensor with its stored counterpart.
        for o in originals.iter_mut() {
            // Stored values are detached copies; each parameter keeps its
            // trainability (on an autodiff device a tracked non-leaf cannot
            // become a parameter).
            let swap1 = |p: &mut burn::module::Param<Tensor<1>>, v: &mut Tensor<1>| {
                let current = p.val();
                let trainable = current.is_require_grad();
                *p = burn::module::Param::from_tensor(v.clone().detach()).set_require_grad(trainable);
                *v = current.detach();
            };
            if let Some(lin) = linears.get_mut(&o.module) {
                match o.kind {
                    "bias" => {
                        if let Some(b) = lin.bias.as_mut() {
                            swap1(b, &mut o.value);
                        }
                    }
                    _ => {
                        let w = lin.dense_weight();
                        let [i, out] = w.dims();
                        let trainable = w.val().is_require_grad();
                        let current = w.val().detach().reshape([i * out]);
                        *w = burn::module::Param::from_tensor(o.value.clone().detach().reshape([i, out])).set_require_grad(trainable);
                        o.value = current;
                    }
                }
            } else if let Some(n) = norms.get_mut(&o.module) {
                match o.kind {
                    "bias" => {
                        if let Some(b) = n.bias.as_mut() {
                            swap1(b, &mut o.value)
                        }
                    }
                    _ => swap1(&mut n.weight, &mut o.value),
                }
            }
        }
        self.adapter_originals = originals;
    }

    /// Runs a batch of equal-length token rows. `attention_mask` (1 = real
    /// token) and `token_type_ids` are optional; a cache makes a decoder
    /// continue from its past positions. Masks cover the real tokens only: a
    /// prompt or prefix adapter's positions are always attended, as in PEFT.
    pub fn forward(&self, ids: &[Vec<u32>], attention_mask: Option<&[Vec<u32>]>, token_type_ids: Option<&[Vec<u32>]>, cache: Option<&mut KvCache>) -> Result<ForwardOutput> {
        self.forward_with(ids, attention_mask, token_type_ids, cache, true)
    }

    /// A decoder's LM head as `[hidden, vocab]`, when it is a plain frozen
    /// projection: training then computes the loss chunk by chunk from the
    /// hidden states ([`Model::forward_hidden`]) instead of from whole logits.
    pub fn frozen_lm_head(&self) -> Option<FrozenHead> {
        self.network.family().frozen_head()
    }

    /// [`Model::forward`] without the LM head: `token_logits` is `None`, so no
    /// `[batch, seq, vocab]` tensor is made.
    pub fn forward_hidden(&self, ids: &[Vec<u32>], attention_mask: Option<&[Vec<u32>]>) -> Result<ForwardOutput> {
        self.forward_with(ids, attention_mask, None, None, false)
    }

    /// Checks a batch of token rows before a forward pass after `past` cached positions.
    fn check_input(&self, ids: &[Vec<u32>], past: usize) -> Result<()> {
        let seq = ids.first().map_or(0, Vec::len);
        if ids.is_empty() || seq == 0 {
            return Err(Error::input("input", "no tokens to run"));
        }
        if ids.iter().any(|r| r.len() != seq) {
            return Err(Error::input("input", "all rows of a batch must have the same length (pad them)"));
        }
        let added = if past == 0 { self.extra_positions() } else { 0 };
        if past + added + seq > self.info.context_length {
            let extra = if added > 0 { format!(" (including {added} virtual tokens of the adapter)") } else { String::new() };
            return Err(Error::input(
                "input",
                format!("sequence of {} tokens{extra} exceeds the model's context length of {}", past + added + seq, self.info.context_length),
            ));
        }
        if let Some(bad) = ids.iter().flatten().find(|&&t| t as usize >= self.info.vocab_size) {
            return Err(Error::input("input", format!("token id {bad} is outside the vocabulary of {}", self.info.vocab_size)));
        }
        if self.prefix().is_some() && !self.is_causal() {
            return Err(Error::unsupported("adapter", "prefix tuning needs a decoder's key/value cache; encoders are not supported (as in PEFT)"));
        }
        Ok(())
    }

    /// The caller's attention mask with ones before it for the adapter's virtual positions, as
    /// PEFT prefixes it.
    fn extend_mask(&self, m: &[Vec<u32>]) -> Vec<Vec<u32>> {
        let ones = vec![1u32; self.extra_positions()];
        m.iter().map(|r| [ones.as_slice(), r].concat()).collect()
    }

    /// What a checkpointed training step needs of a decoder without prefix tuning: the layer
    /// stack, the token embeddings with any prompt-tuning positions (on the autodiff graph),
    /// the number of those positions, and the attention mask extended over them.
    pub fn embed_stage(&self, ids: &[Vec<u32>], attention_mask: Option<&[Vec<u32>]>) -> Result<Option<(&dyn layers::LayerStack, Tensor<3>, usize, Option<Vec<Vec<u32>>>)>> {
        let Some(stack) = self.network.layer_stack() else { return Ok(None) };
        if self.prefix().is_some() {
            return Ok(None);
        }
        self.check_input(ids, 0)?;
        let x = self.network.embed(int_tensor(ids, &self.device)).expect("a decoder embeds tokens");
        let prompt = self.prompt();
        let virtual_tokens = prompt.map_or(0, |p| p.len());
        let x = match prompt {
            Some(p) => p.method.prepend(p, x),
            None => x,
        };
        Ok(Some((stack, x, virtual_tokens, attention_mask.map(|m| self.extend_mask(m)))))
    }

    fn forward_with(&self, ids: &[Vec<u32>], attention_mask: Option<&[Vec<u32>]>, token_type_ids: Option<&[Vec<u32>]>, cache: Option<&mut KvCache>, logits: bool) -> Result<ForwardOutput> {
        let batch = ids.len();
        let past = cache.as_ref().map_or(0, |c| c.offset());
        self.check_input(ids, past)?;
        let fresh = past == 0;
        let caller_mask = attention_mask;
        // PEFT prefixes the caller's mask with ones for the virtual positions.
        let extended;
        let attention_mask = match attention_mask {
            Some(m) if self.extra_positions() > 0 => {
                extended = self.extend_mask(m);
                Some(extended.as_slice())
            }
            m => m,
        };
        let input = int_tensor(ids, &self.device);
        let prompt = self.prompt().filter(|_| fresh);
        let virtual_tokens = prompt.map_or(0, |p| p.len());
        // Prefix tuning: the learned keys and values fill the cache first.
        let mut local = None;
        let prefix = self.prefix();
        let cache = match (cache, prefix) {
            (Some(c), Some(p)) if fresh => {
                *c = p.method.key_values(p, batch);
                Some(c)
            }
            (None, Some(p)) => Some(local.insert(p.method.key_values(p, batch))),
            (c, _) => c,
        };
        // Token types: the virtual tokens get type 0, as PEFT pads them.
        let token_type_ids = token_type_ids.map(|t| {
            let rows: Vec<Vec<u32>> = t.iter().map(|r| [vec![0; virtual_tokens], r.clone()].concat()).collect();
            int_tensor(&rows, &self.device)
        });
        let family = self.network.family();
        let x = family.embed(input);
        let x = match prompt {
            Some(p) => p.method.prepend(p, x),
            None => x,
        };
        let inputs = family::Inputs {
            ids: (virtual_tokens == 0).then_some(ids),
            attention_mask,
            caller_mask,
            token_type_ids,
            virtual_tokens,
            logits,
        };
        Ok(family.forward(x, inputs, cache))
    }
}

/// A `[rows, cols]` integer tensor from token rows.
pub fn int_tensor(rows: &[Vec<u32>], device: &Device) -> Tensor<2, Int> {
    let (b, s) = (rows.len(), rows.first().map_or(0, Vec::len));
    let flat: Vec<i64> = rows.iter().flatten().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(flat, [b, s]), device)
}

/// The GGUF module's messages start with the file name; avoid saying it twice.
fn strip_source(msg: &str, name: &str) -> String {
    msg.strip_prefix(&format!("{name}: ")).unwrap_or(msg).to_string()
}

//! The memory plan: what loading a model and training it will take, worked
//! out from the files' headers alone, before anything is read in full or
//! allocated.
//!
//! Inputs are the first bytes of each model file (a safetensors header, a GGUF
//! header with its tensor table) with the file's full length, small JSON files
//! (`config.json`, the shard index) whole, and optionally the training job
//! ([`TrainSpec`]), and the load's `quantize` option. The plan describes what
//! `Model::load_with` does: the files are read whole; GGUF block formats are
//! unpacked into blocks of the same size and kept so on the device (unless
//! `quantize` is `f32`), float matrices are quantized when `quantize` asks, and
//! every other weight is widened to f32.
//! [`MemoryPlan::check`] compares it with a device's [`Limits`] and refuses,
//! naming the largest item and what would fit.


use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::formats::blocks;
use crate::formats::gguf::{self, GgmlType};
use crate::models::{facts, Facts};
use crate::models::Quantize;
use crate::peft::{matches_targets, TargetModules};
use crate::train::session::TrainSpec;
use crate::train::LOGITS_CHUNK;

/// wasm32's address space: the most a browser tab's core can ever hold.
pub const WASM32_MEMORY: u64 = 4 << 30;

/// Bytes of an f32.
const F32: u64 = 4;

/// The start of one model file and its whole length.
#[derive(Debug, Clone)]
pub struct FileHead {
    /// The file's base name (`model.safetensors`, `config.json`, `x.gguf`).
    pub name: String,
    /// The first bytes of the file (all of it for JSON files).
    pub bytes: Vec<u8>,
    /// The file's full length in bytes.
    pub len: u64,
}

pub use crate::formats::source::bytes_needed;

/// One weight as the plan sees it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "PlanTensor", rename_all = "camelCase"))]
pub struct TensorSize {
    /// Hugging Face name (GGUF names are mapped).
    pub name: String,
    /// PyTorch-order shape.
    pub shape: Vec<usize>,
    /// Bytes as held on the device.
    pub bytes: u64,
}

/// The weights: as stored, and as they will be held.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename_all = "camelCase"))]
pub struct WeightsPlan {
    /// Values of every float tensor in the files (as `ModelInfo::num_parameters` counts them).
    pub parameters: u64,
    /// Values the network keeps on the device (a tied checkpoint's stored
    /// `lm_head` and GGUF's `rope_freqs` are not kept).
    pub device_parameters: u64,
    /// Dtypes in the files (`F32`, `BF16`, `Q4_1`...).
    pub stored_dtypes: Vec<String>,
    /// Bytes of tensor data in the files.
    pub stored_bytes: u64,
    /// How weights are held on the device: `F32`, and the block formats kept quantized
    /// (`F32+Q4_K+Q6_K`).
    pub device_dtype: String,
    /// Bytes the weights take on the device.
    pub device_bytes: u64,
    /// The weight with the largest device buffer (f32 values, or a block weight's codes; it
    /// must fit one buffer).
    pub largest: TensorSize,
}

/// One training micro-batch's memory.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename_all = "camelCase"))]
pub struct TrainingPlan {
    pub method: String,
    pub task: String,
    pub batch: usize,
    pub seq_len: usize,
    /// Positions per row: `seq_len` plus prompt tuning's virtual tokens.
    pub positions: usize,
    /// Trainable values (adapter, trained biases, a classification head).
    pub trainable_parameters: u64,
    /// Trainable values with their gradients and optimiser state (AdamW: two
    /// moments; SGD: momentum when it is set).
    pub adapter_bytes: u64,
    /// Activations of one micro-batch saved for the backward pass (an estimate per layer).
    pub activations_bytes: u64,
    /// The LM head's loss: with a frozen head, one chunk of at most
    /// `train::LOGITS_CHUNK` logits (logits, log-softmax, their gradients) and the
    /// rows' hidden-state gradient; else the whole `[batch, positions, vocab]`
    /// logits, scored copy, log-softmax and gradients (0 for classification).
    pub logits_bytes: u64,
    /// The largest single buffer of one micro-batch (token logits, attention scores, MLP activations).
    pub largest_activation: TensorSize,
    /// Prompt tuning's virtual tokens (extra positions) and prefix tuning's (extra keys).
    /// Whether each layer is recomputed in the backward pass (asked for, and applicable).
    pub gradient_checkpointing: bool,
    #[serde(skip)]
    head_frozen: bool,
    #[serde(skip)]
    checkpointable: bool,
    #[serde(skip)]
    prompt_tokens: usize,
    #[serde(skip)]
    prefix_tokens: usize,
}

/// What loading (and training) a model will take.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "CoreMemoryPlan", rename_all = "camelCase"))]
pub struct MemoryPlan {
    /// `safetensors` or `gguf`.
    pub format: String,
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    /// Bytes of all model files together.
    pub file_bytes: u64,
    pub weights: WeightsPlan,
    /// Host memory while loading: the weights as they will be held (f32 values, unpacked
    /// blocks), the largest tensor as stored (weight files are read a tensor at a time), the JSON
    /// files, and one f32 weight's transposed copy.
    pub host_load_bytes: u64,
    /// The training job's memory, when a job was given.
    pub training: Option<TrainingPlan>,
    /// Device memory after loading, with training: weights, adapter state, activations and logits.
    pub device_bytes: u64,
    /// The file holding the largest weight, for messages.
    #[serde(skip)]
    weights_source: String,
    #[serde(skip)]
    quantize: Quantize,
    #[serde(skip)]
    dims: Dims,
}

/// What a device can hold.
#[derive(Debug, Clone, Serialize, Default)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "DeviceLimits", rename_all = "camelCase"))]
pub struct Limits {
    /// Host memory the core may use (wasm32: 4 GiB at most).
    pub memory_bytes: Option<u64>,
    /// How messages name `memory_bytes` (`the wasm32 memory`, `the maxBytes limit`).
    pub memory_name: String,
    /// Largest single buffer (WebGPU: `maxStorageBufferBindingSize`, at most `maxBufferSize`).
    pub max_buffer_bytes: Option<u64>,
    /// True when device memory is host memory (the CPU backend): weights and
    /// training state then count against `memory_bytes` as well.
    pub device_is_host: bool,
}

/// A tensor as a header describes it.
#[derive(Debug, Clone)]
struct Meta {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    stored: u64,
    file: String,
    float: bool,
}

/// The dimensions the plan needs from `config.json` or GGUF metadata.
#[derive(Debug, Clone, Default)]
struct Dims {
    model_type: String,
    /// The family's facts (targets, layout); defaults for a `model_type` no family loads.
    facts: Facts,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_dim: usize,
    inner: usize,
    vocab: usize,
    context: usize,
    tied: bool,
    labels: Option<usize>,
}

fn num(v: &Value, keys: &[&str]) -> Option<usize> {
    keys.iter().find_map(|k| v.get(*k).and_then(Value::as_u64)).map(|n| n as usize)
}

fn dims_from_config(c: &Value) -> Result<Dims> {
    let model_type = c.get("model_type").and_then(Value::as_str).unwrap_or("").to_string();
    let need = |keys: &[&str]| num(c, keys).ok_or_else(|| Error::format("config.json", format!("{} is missing", keys[0])));
    let hidden = need(&["hidden_size", "n_embd"])?;
    let heads = need(&["num_attention_heads", "n_head"])?.max(1);
    let head_dim = num(c, &["head_dim"]).unwrap_or(hidden / heads);
    let kv_heads = num(c, &["num_key_value_heads"]).unwrap_or(heads);
    let labels = c.get("id2label").and_then(Value::as_object).map(|m| m.len()).or_else(|| num(c, &["num_labels"]));
    let f = family_facts(&model_type, "config.json")?;
    Ok(Dims {
        // transformers' default per family when config.json does not say.
        tied: c.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(f.tied_by_default),
        facts: f,
        model_type,
        hidden,
        layers: need(&["num_hidden_layers", "n_layer"])?,
        heads,
        kv_dim: kv_heads * head_dim,
        inner: num(c, &["intermediate_size", "n_inner"]).unwrap_or(4 * hidden),
        vocab: need(&["vocab_size"])?,
        context: num(c, &["max_position_embeddings", "n_positions"]).unwrap_or(usize::MAX),
        labels,
    })
}

fn read_gguf(f: &FileHead) -> Result<(Dims, Vec<Meta>)> {
    let g = gguf::parse(&f.bytes, &f.name).map_err(|e| Error::format(&f.name, e.to_string().trim_start_matches(&format!("{}: ", f.name)).to_string()))?;
    let arch = g.metadata.get("general.architecture").and_then(|v| v.as_str()).unwrap_or("").to_string();
    let key = |k: &str| g.metadata.get(&format!("{arch}.{k}")).and_then(|v| v.as_u64()).map(|n| n as usize);
    let need = |k: &str| key(k).ok_or_else(|| Error::format(&f.name, format!("metadata {arch}.{k} is missing")));
    let hidden = need("embedding_length")?;
    let heads = need("attention.head_count")?.max(1);
    // qwen3 and gemma3 give head_dim as the key length; llama as the rotary dimension.
    let head_dim = key("attention.key_length").or_else(|| key("rope.dimension_count")).unwrap_or(hidden / heads);
    let vocab = match key("vocab_size") {
        Some(v) => v,
        None => g.metadata.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()).map(|a| a.len()).ok_or_else(|| Error::format(&f.name, "missing vocab_size and tokenizer.ggml.tokens"))?,
    };
    let family = crate::models::gguf_family(&arch).ok_or_else(|| crate::models::no_gguf_family(&arch, &f.name))?;
    let dims = Dims {
        facts: family_facts(family.model_type(&arch), &f.name)?,
        model_type: arch.clone(),
        hidden,
        layers: need("block_count")?,
        heads,
        kv_dim: key("attention.head_count_kv").unwrap_or(heads) * head_dim,
        inner: need("feed_forward_length")?,
        vocab,
        context: key("context_length").unwrap_or(2048),
        tied: !g.tensors.iter().any(|t| t.name == "output.weight"),
        labels: None,
    };
    let mut metas = vec![];
    for t in &g.tensors {
        let elements: u64 = t.dims.iter().product();
        let stored = t.dtype.stored_bytes(elements).ok_or_else(|| {
            Error::unsupported(&f.name, format!("tensor {} has unsupported type {}", t.name, t.dtype.name()))
        })?;
        // Only the header is read here, so bound each tensor by the file's length (as the
        // safetensors reader below does): a declared [32, 2^56] tensor once overflowed the
        // byte totals (found by fuzzing).
        if t.offset.checked_add(stored).is_none_or(|end| end > f.len) {
            return Err(Error::format(
                &f.name,
                format!("tensor {} ({:?}, {}) needs {stored} bytes at data offset {}, beyond the file's {} bytes", t.name, t.dims, t.dtype.name(), t.offset, f.len),
            ));
        }
        let shape: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
        let float = !matches!(t.dtype, GgmlType::Other(_));
        // Tensors with no HF counterpart (rope_freqs) are read but not kept.
        let name = family.tensor_name(&arch, &t.name, dims.layers as u64).unwrap_or_else(|| format!("(gguf) {}", t.name));
        metas.push(Meta { name, shape, dtype: t.dtype.name(), stored, file: f.name.clone(), float });
    }
    Ok((dims, metas))
}

fn read_safetensors(f: &FileHead) -> Result<Vec<Meta>> {
    let entries = crate::formats::safetensors::read_header(&f.name, &f.bytes, f.len)?;
    Ok(entries
        .into_iter()
        .map(|e| Meta { float: e.is_float(), stored: e.end - e.start, name: e.name, shape: e.shape, dtype: e.dtype, file: f.name.clone() })
        .collect())
}

/// A linear module the adapter may target: HF module path, `(in, out)`, and whether it has a bias.
struct Linear {
    module: String,
    d_in: usize,
    d_out: usize,
}

fn is_embedding(name: &str) -> bool {
    ["embed_tokens", "wte", "wpe", "word_embeddings", "position_embeddings", "token_type_embeddings"].iter().any(|e| name.contains(e))
}

fn is_head(module: &str) -> bool {
    crate::models::in_head(module) || module == "lm_head" || module.ends_with(".lm_head")
}


/// The facts of the family that loads `model_type`, or the loader's error for one none loads.
fn family_facts(model_type: &str, file: &str) -> Result<Facts> {
    facts(model_type).ok_or_else(|| crate::models::no_family(model_type, file))
}

/// The training job's fields, read through its serialised form so the plan
/// keeps working while `TrainSpec`'s field types change (strings to enums).
struct Job {
    task: String,
    method: String,
    batch: usize,
    seq_len: usize,
    r: usize,
    targets: Option<TargetModules>,
    virtual_tokens: usize,
    optimizer: String,
    momentum: f64,
    dropout: f64,
    gradient_checkpointing: bool,
}

fn job(spec: &TrainSpec) -> Result<Job> {
    let v = serde_json::to_value(spec).map_err(|e| Error::input("options", e.to_string()))?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_lowercase().replace('_', "-");
    let u = |k: &str| v.get(k).and_then(Value::as_u64).map(|n| n as usize);
    let targets = v.get("targets").and_then(Value::as_array).map(|a| {
        let names: Vec<String> = a.iter().filter_map(|x| x.as_str().map(String::from)).collect();
        match names.as_slice() {
            [one] if one.starts_with("re:") => TargetModules::Regex(one[3..].to_string()),
            _ => TargetModules::Names(names),
        }
    });
    let method = s("method");
    Ok(Job {
        task: s("task"),
        batch: u("batch").unwrap_or(1).max(1),
        seq_len: u("seq_len").unwrap_or(1).max(1),
        r: if method == "bitfit" { 1 } else { u("r").unwrap_or(8) },
        targets,
        virtual_tokens: match method.as_str() {
            "prompt" | "prefix" => u("virtual_tokens").unwrap_or(8),
            _ => 0,
        },
        optimizer: s("optimizer"),
        momentum: v.get("momentum").and_then(Value::as_f64).unwrap_or(0.0),
        dropout: v.get("dropout").and_then(Value::as_f64).unwrap_or(0.0),
        gradient_checkpointing: v.get("gradient_checkpointing").and_then(Value::as_bool).unwrap_or(false),
        method,
    })
}

/// Trainable values of `job` on a model with these linears and biases.
fn trainable(d: &Dims, linears: &[Linear], bias_values: u64, job: &Job) -> u64 {
    let seq_cls = job.task == "seq-cls";
    // The defaults `peft::create` picks (no (IA)³ defaults: creating one fails, so count none).
    let (default_t, ff): (&[&str], &[&str]) = match job.method.as_str() {
        "ia3" => d.facts.ia3_targets.unwrap_or((&[], &[])),
        _ => (d.facts.lora_targets, &[]),
    };
    let targets = job.targets.clone().unwrap_or_else(|| TargetModules::Names(default_t.iter().map(|s| s.to_string()).collect()));
    let targeted = || linears.iter().filter(|l| !is_head(&l.module) && matches_targets(Some(&targets), &l.module));
    let mut n: u64 = match job.method.as_str() {
        "lora" => targeted().map(|l| (job.r * (l.d_in + l.d_out)) as u64).sum(),
        "dora" => targeted().map(|l| (job.r * (l.d_in + l.d_out) + l.d_out) as u64).sum(),
        // BitFit is LoRA r=1 (zero A/B, trained as well) with every bias trained.
        "bitfit" => bias_values + targeted().map(|l| (l.d_in + l.d_out) as u64).sum::<u64>(),
        "ia3" => targeted().map(|l| if ff.iter().any(|f| l.module.ends_with(f)) { l.d_in } else { l.d_out } as u64).sum(),
        "prompt" => (job.virtual_tokens * d.hidden) as u64,
        "prefix" => (job.virtual_tokens * d.layers * 2 * d.kv_dim) as u64,
        _ => 0,
    };
    if seq_cls {
        let labels = d.labels.unwrap_or(2);
        n += (d.facts.seq_cls_head)(d.hidden, labels) as u64;
    }
    n
}

/// `(activations, logits, largest buffer)` of one micro-batch of `b` rows of `t` positions.
/// Per layer and token, the values autodiff keeps for the backward pass:
/// norms' inputs and outputs, q/k/v (and GQA's repeated k/v), the rotated q/k,
/// attention output and projection, residuals, and the MLP's inputs and
/// activations; per row and head, the scores, masked scores and softmax.
/// With `checkpointed`, only each layer's input is kept and one layer's activations at a time.
fn micro_batch(d: &Dims, b: usize, t: usize, keys: usize, causal: bool, head_frozen: bool, checkpointed: bool) -> (u64, u64, TensorSize) {
    let (h, i, kv) = (d.hidden as u64, d.inner as u64, d.kv_dim as u64);
    // GPT-2 and the encoders have a plain two-matrix MLP; the layer-stack decoders a gated one
    // and grouped-query attention.
    let per_token = if d.facts.layer_stack { 14 * h + 3 * kv + 4 * i } else { 14 * h + 6 * i };
    let (b64, t64, k64) = (b as u64, t as u64, keys as u64);
    let scores = b64 * d.heads as u64 * t64 * k64;
    let per_layer = b64 * t64 * per_token + 3 * scores;
    let layers = if checkpointed { d.layers as u64 * b64 * t64 * h + per_layer } else { d.layers as u64 * per_layer };
    let activations = F32 * (layers + b64 * t64 * 3 * h);
    // A frozen head (every method here unless LoRA targets lm_head): the loss runs over chunks
    // of at most LOGITS_CHUNK logits: a chunk's logits, log-softmax, their gradients (4 of
    // them), plus the rows' hidden-state gradient [rows, hidden] that autodiff keeps.
    // Otherwise the whole [b, t, vocab]: logits, the scored copy, log-softmax and gradients.
    let logits_rows = if head_frozen { (LOGITS_CHUNK / d.vocab.max(1)).clamp(1, b * t) } else { b * t };
    let logits_one = logits_rows as u64 * d.vocab as u64 * F32;
    let logits = match (causal, head_frozen) {
        (false, _) => 0,
        (true, true) => 4 * logits_one + b64 * t64 * h * F32,
        (true, false) => 5 * logits_one,
    };
    let mut parts = vec![
        TensorSize { name: "attention scores".into(), shape: vec![b, d.heads, t, keys], bytes: scores * F32 },
        TensorSize { name: "MLP activations".into(), shape: vec![b, t, d.inner], bytes: b64 * t64 * i * F32 },
    ];
    if causal && head_frozen {
        parts.push(TensorSize { name: "token logits (one chunk of rows)".into(), shape: vec![logits_rows, d.vocab], bytes: logits_one });
    } else if causal {
        parts.push(TensorSize { name: "token logits".into(), shape: vec![b, t, d.vocab], bytes: logits_one });
    }
    let largest = parts.into_iter().max_by_key(|p| p.bytes).expect("candidates");
    (activations, logits, largest)
}

/// A file whose tensors the loader reads one at a time.
fn is_weight_file(name: &str) -> bool {
    name.ends_with(".gguf") || name.ends_with(".safetensors")
}

/// Plans loading `files` (and training `train`, when given) from headers
/// alone. Fails with a `format` error naming the file when a header or
/// `config.json` is malformed, and with `unsupported` for a GGUF quant type the
/// loader cannot read.
pub fn plan(files: &[FileHead], train: Option<&TrainSpec>) -> Result<MemoryPlan> {
    plan_with(files, train, Quantize::None)
}

/// How one weight is held on the device under `quantize`: (block format or `F32`, bytes, bytes
/// of its largest buffer), as `Model::load_with` holds it.
fn held(m: &Meta, format: &str, in_out: bool, quantize: Quantize) -> (String, u64, u64) {
    let values = m.shape.iter().product::<usize>() as u64;
    let f32s = ("F32".to_string(), values * F32, values * F32);
    let matrix = m.shape.len() == 2 && m.name.ends_with(".weight");
    let cols = m.shape.last().copied().unwrap_or(0) as u64;
    let stored = GgmlType::from_name(&m.dtype);
    let kind = match quantize {
        Quantize::F32 => None,
        _ if format == "gguf" && matrix && blocks::kept(stored, cols as usize) => Some(stored),
        _ if format == "safetensors" && in_out => None,
        // A safetensors F16/BF16 matrix stays 16-bit unless asked otherwise.
        Quantize::None if blocks::quantizable(&m.name, &m.shape) && blocks::kept(stored, cols as usize) => Some(stored),
        q if blocks::quantizable(&m.name, &m.shape) => q.gguf_type(),
        _ => None,
    };
    match kind.and_then(|k| Some((k, blocks::layout(k)?))) {
        Some((k, (bits, _, _, _))) => {
            let largest = blocks::largest_buffer(bits, values / cols, cols, crate::models::blocks::MAX_PART_BYTES as u64);
            (k.name(), blocks::device_bytes(k, values / cols, cols).expect("a block layout"), largest)
        }
        None => f32s,
    }
}

/// [`plan`] for a model loaded with `quantize` (`Model::load_with`'s option).
pub fn plan_with(files: &[FileHead], train: Option<&TrainSpec>, quantize: Quantize) -> Result<MemoryPlan> {
    let file_bytes: u64 = files.iter().map(|f| f.len).sum();
    let by_name = |n: &str| files.iter().find(|f| f.name == n);
    let (format, dims, metas) = if let Some(g) = files.iter().find(|f| f.name.ends_with(".gguf")) {
        let (d, m) = read_gguf(g)?;
        ("gguf", d, m)
    } else {
        let cfg = by_name("config.json").ok_or_else(|| Error::format("model", "config.json is missing"))?;
        let config: Value = serde_json::from_slice(&cfg.bytes).map_err(|e| Error::format("config.json", format!("invalid JSON: {e}")))?;
        let dims = dims_from_config(&config)?;
        let shards = match by_name("model.safetensors.index.json") {
            Some(i) => crate::formats::safetensors::shard_files(&i.name, &i.bytes)?,
            None => vec!["model.safetensors".to_string()],
        };
        let mut metas = vec![];
        for s in &shards {
            let f = by_name(s).ok_or_else(|| Error::format(s, "is missing"))?;
            metas.extend(read_safetensors(f)?);
        }
        ("safetensors", dims, metas)
    };
    let floats: Vec<&Meta> = metas.iter().filter(|m| m.float).collect();
    let values = |m: &Meta| m.shape.iter().product::<usize>() as u64;
    let parameters: u64 = floats.iter().map(|m| values(m)).sum();
    // What the network keeps: not GGUF's extra tensors, not a tied checkpoint's stored head.
    let kept: Vec<&Meta> = floats.iter().copied().filter(|m| !m.name.starts_with("(gguf)") && !(dims.tied && m.name == "lm_head.weight")).collect();
    let device_parameters: u64 = kept.iter().map(|m| values(m)).sum();
    let holds: Vec<(String, u64, u64)> = kept.iter().map(|m| held(m, format, dims.facts.fan_in_fan_out, quantize)).collect();
    let (largest, hold) = kept.iter().zip(&holds).max_by_key(|(_, h)| h.2).ok_or_else(|| Error::format("model", "the files hold no weights"))?;
    let mut stored_dtypes: Vec<String> = floats.iter().map(|m| m.dtype.clone()).collect();
    stored_dtypes.sort();
    stored_dtypes.dedup();
    let mut device_dtypes: Vec<String> = holds.iter().map(|h| h.0.clone()).collect();
    device_dtypes.sort();
    device_dtypes.dedup();
    let device_bytes: u64 = holds.iter().map(|h| h.1).sum();
    let largest_f32 = kept.iter().zip(&holds).filter(|(_, h)| h.0 == "F32").map(|(m, _)| values(m) * F32).max().unwrap_or(0);
    let weights = WeightsPlan {
        parameters,
        device_parameters,
        stored_dtypes,
        stored_bytes: metas.iter().map(|m| m.stored).sum(),
        device_dtype: device_dtypes.join("+"),
        device_bytes,
        largest: TensorSize { name: largest.name.clone(), shape: largest.shape.clone(), bytes: hold.2 },
    };
    // Loading: the weight files are read a tensor at a time (the JSON files whole), the f32
    // weights widened and the blocks unpacked (all at once), and one transposed f32 copy at a
    // time.
    let json_bytes: u64 = files.iter().filter(|f| !is_weight_file(&f.name)).map(|f| f.len).sum();
    let largest_stored = metas.iter().map(|m| m.stored).max().unwrap_or(0);
    let host_load_bytes = json_bytes + largest_stored + device_bytes + largest_f32;

    let training = match train {
        None => None,
        Some(spec) => {
            let job = job(spec)?;
            let in_out = dims.facts.fan_in_fan_out;
            let linears: Vec<Linear> = kept
                .iter()
                .filter(|m| m.shape.len() == 2 && m.name.ends_with(".weight") && !is_embedding(&m.name))
                .map(|m| {
                    let (d_in, d_out) = if in_out { (m.shape[0], m.shape[1]) } else { (m.shape[1], m.shape[0]) };
                    Linear { module: m.name.trim_end_matches(".weight").to_string(), d_in, d_out }
                })
                .collect();
            // Heads are counted whole below (a seq-cls head is trained and saved).
            let bias_values: u64 = kept.iter().filter(|m| m.name.ends_with(".bias") && !is_head(m.name.trim_end_matches(".bias"))).map(|m| values(m)).sum();
            let trainable_parameters = trainable(&dims, &linears, bias_values, &job);
            // Value, gradient, and the optimiser's state.
            let state = match (job.optimizer.as_str(), job.momentum) {
                ("sgd", m) if m == 0.0 => 2,
                ("sgd", _) => 3,
                _ => 4,
            };
            let positions = job.seq_len + if job.method == "prompt" { job.virtual_tokens } else { 0 };
            if job.seq_len + job.virtual_tokens > dims.context {
                return Err(Error::input("seq_len", format!("{} (plus {} virtual tokens) is longer than the model's context length of {}", job.seq_len, job.virtual_tokens, dims.context)));
            }
            let keys = positions + if job.method == "prefix" { job.virtual_tokens } else { 0 };
            let causal = job.task != "seq-cls";
            // The chunked loss needs a frozen head; LoRA on lm_head makes it trainable.
            let head_frozen = !job.targets.as_ref().is_some_and(|t| matches_targets(Some(t), "lm_head"));
            // As `train::checkpointed` applies it: layer-stack decoders, causal LM, no prefix
            // tuning, no LoRA dropout.
            let checkpointable = causal && job.method != "prefix" && job.dropout == 0.0 && dims.facts.layer_stack;
            let gradient_checkpointing = job.gradient_checkpointing && checkpointable;
            let (activations_bytes, logits_bytes, largest_activation) = micro_batch(&dims, job.batch, positions, keys, causal, head_frozen, gradient_checkpointing);
            Some(TrainingPlan {
                method: job.method,
                task: if causal { "causal-lm".into() } else { "seq-cls".into() },
                batch: job.batch,
                seq_len: job.seq_len,
                positions,
                trainable_parameters,
                adapter_bytes: trainable_parameters * F32 * state,
                activations_bytes,
                logits_bytes,
                largest_activation,
                head_frozen,
                gradient_checkpointing,
                checkpointable,
                prompt_tokens: positions - job.seq_len,
                prefix_tokens: keys - positions,
            })
        }
    };
    let device_bytes = weights.device_bytes + training.as_ref().map_or(0, |t| t.adapter_bytes + t.activations_bytes + t.logits_bytes);
    Ok(MemoryPlan {
        format: format.into(),
        model_type: dims.model_type.clone(),
        vocab_size: dims.vocab,
        hidden_size: dims.hidden,
        num_layers: dims.layers,
        file_bytes,
        weights,
        host_load_bytes,
        training,
        device_bytes,
        weights_source: largest.file.clone(),
        quantize,
        dims,
    })
}

/// `123.4 MB (123400000 bytes)`, in u64 (wasm32's usize cannot hold 4 GiB).
fn mb(b: u64) -> String {
    format!("{:.1} MB ({b} bytes)", b as f64 / 1e6)
}

impl MemoryPlan {
    /// Host memory at its peak: while loading, and on the CPU backend (whose
    /// device memory is host memory) while training.
    pub fn host_peak_bytes(&self, device_is_host: bool) -> u64 {
        if device_is_host {
            self.host_load_bytes.max(self.device_bytes)
        } else {
            self.host_load_bytes
        }
    }

    /// Training memory for `batch` rows of `seq_len` tokens: `(device bytes,
    /// largest buffer)`, with this plan's model and adapter.
    fn training_at(&self, t: &TrainingPlan, batch: usize, seq_len: usize) -> (u64, TensorSize) {
        let positions = seq_len + t.prompt_tokens;
        let (act, logits, largest) = micro_batch(&self.dims, batch, positions, positions + t.prefix_tokens, t.task == "causal-lm", t.head_frozen, t.gradient_checkpointing);
        (self.weights.device_bytes + t.adapter_bytes + act + logits, largest)
    }

    fn training_fits(&self, t: &TrainingPlan, limits: &Limits, batch: usize, seq_len: usize) -> bool {
        let (device, largest) = self.training_at(t, batch, seq_len);
        limits.max_buffer_bytes.is_none_or(|m| largest.bytes <= m)
            && (!limits.device_is_host || limits.memory_bytes.is_none_or(|m| device <= m))
    }

    /// What would fit instead of this job's shape: the largest batch at its
    /// seq_len, and the largest seq_len at its batch (or at batch 1).
    fn suggestion(&self, t: &TrainingPlan, limits: &Limits) -> String {
        let batch = (1..t.batch).rev().find(|&b| self.training_fits(t, limits, b, t.seq_len));
        let seq_at = |b: usize| {
            // Memory grows with seq_len, so the largest that fits is a binary search.
            let (mut lo, mut hi) = (0usize, t.seq_len - 1);
            while lo < hi {
                let mid = (lo + hi).div_ceil(2);
                if self.training_fits(t, limits, b, mid) {
                    lo = mid;
                } else {
                    hi = mid - 1;
                }
            }
            (lo > 0).then_some(lo)
        };
        let mut ways = vec![];
        if t.checkpointable && !t.gradient_checkpointing {
            let recomputed = TrainingPlan { gradient_checkpointing: true, ..t.clone() };
            if self.training_fits(&recomputed, limits, t.batch, t.seq_len) {
                ways.push(format!("gradient_checkpointing (each layer recomputed in the backward pass) at batch {} x seq_len {}", t.batch, t.seq_len));
            }
        }
        if let Some(b) = batch {
            ways.push(format!("batch {b} (grad_accum keeps the effective batch)"));
        }
        if let Some(s) = seq_at(t.batch) {
            ways.push(format!("seq_len {s}"));
        } else if batch.is_none() {
            if let Some(s) = seq_at(1) {
                ways.push(format!("batch 1 with seq_len {s}"));
            }
        }
        if ways.is_empty() {
            format!("no batch or seq_len fits. {}", self.smaller_weights())
        } else {
            format!("what fits: {}", ways.join(", or "))
        }
    }

    /// What would make the weights smaller: quantizing the f32 ones on load, while some are f32.
    fn smaller_weights(&self) -> String {
        if self.quantize != Quantize::Q4_0 && self.weights.device_dtype.split('+').any(|d| d == "F32") {
            "Load it with quantize q4_0 (or q8_0) to hold the float weights in 4-bit (8-bit) blocks, or use a smaller model or a device with more memory".into()
        } else {
            "Use a smaller model or a device with more memory".into()
        }
    }

    /// Checks the plan against `limits`; a plan that does not fit is a
    /// `device` error naming the largest item and what would fit.
    pub fn check(&self, limits: &Limits) -> Result<()> {
        let memory_name = if limits.memory_name.is_empty() { "the memory limit" } else { limits.memory_name.as_str() };
        // One weight larger than a buffer can never be bound.
        if let Some(max) = limits.max_buffer_bytes {
            let w = &self.weights.largest;
            if w.bytes > max {
                return Err(Error::device(format!(
                    "tensor '{}' {:?} takes {} on the device, above this device's largest buffer binding (maxStorageBufferBindingSize) of {}; {}",
                    w.name, w.shape, mb(w.bytes), mb(max), self.smaller_weights()
                ))
                .in_source(&self.weights_source));
            }
        }
        if let Some(max) = limits.memory_bytes {
            if self.host_load_bytes > max {
                let held = self.weights.device_bytes;
                let largest = format!("the largest item is the weights as held ({}, {})", self.weights.device_dtype, mb(held));
                return Err(Error::device(format!(
                    "loading needs about {} of memory, above {memory_name} of {}: {largest}. {}",
                    mb(self.host_load_bytes), mb(max), self.smaller_weights()
                ))
                .in_source("model"));
            }
        }
        let Some(t) = &self.training else { return Ok(()) };
        if let Some(max) = limits.max_buffer_bytes {
            let a = &t.largest_activation;
            if a.bytes > max {
                return Err(Error::device(format!(
                    "one micro-batch's {} {:?} take {} as f32, above this device's largest buffer binding (maxStorageBufferBindingSize) of {}; {}",
                    a.name, a.shape, mb(a.bytes), mb(max), self.suggestion(t, limits)
                ))
                .in_source("options"));
            }
        }
        if let (true, Some(max)) = (limits.device_is_host, limits.memory_bytes) {
            if self.device_bytes > max {
                let items = [
                    ("the weights as f32", self.weights.device_bytes),
                    ("the LM head's loss (logits, log-softmax, gradients)", t.logits_bytes),
                    ("the activations saved for backward", t.activations_bytes),
                    ("the adapter with its gradients and optimiser state", t.adapter_bytes),
                ];
                let (what, bytes) = items.iter().max_by_key(|(_, b)| *b).expect("items");
                return Err(Error::device(format!(
                    "training batch {} x seq_len {} needs about {} of memory, above {memory_name} of {}; the largest item is {what} ({}); {}",
                    t.batch, t.seq_len, mb(self.device_bytes), mb(max), mb(*bytes), self.suggestion(t, limits)
                ))
                .in_source("options"));
            }
        }
        Ok(())
    }
}

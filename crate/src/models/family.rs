//! What a model family implements. Each family is one file (`llama.rs`, `gemma3.rs`, ...) with
//! its serde `Config`, its modules named as in transformers, and an `impl Family`; the
//! `families!` table in `models/mod.rs` registers it with one line. Everything outside the
//! family's file (loading, adapters, training, merging) goes through this trait.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::layers::{FrozenHead, KvCache, LayerStack, Linear, NamedTensor, WeightLayout};
use super::{ForwardOutput, ModelInfo, NamedLayers};
use crate::error::Result;
use crate::formats::gguf::GgufFamily;
use crate::formats::safetensors::WeightMap;

/// A forward pass's inputs besides the input embeddings.
pub struct Inputs<'a> {
    /// The real tokens' ids (RoBERTa's positions follow them); `None` when virtual tokens
    /// precede them in the embeddings.
    pub ids: Option<&'a [Vec<u32>]>,
    /// 1 = attend, over any virtual, cached and new positions.
    pub attention_mask: Option<&'a [Vec<u32>]>,
    /// The caller's mask over the real tokens only (a decoder's classifier reads each row's
    /// last real token).
    pub caller_mask: Option<&'a [Vec<u32>]>,
    /// Encoders' token types, with type 0 for virtual tokens.
    pub token_type_ids: Option<Tensor<2, Int>>,
    /// Prompt-tuning positions before the real tokens.
    pub virtual_tokens: usize,
    /// Whether to compute a decoder's `[batch, seq, vocab]` logits.
    pub logits: bool,
}

/// PEFT's default (IA)³ targets and its feed-forward modules among them.
pub type Ia3Defaults = (&'static [&'static str], &'static [&'static str]);

/// What the rest of webpeft knows of a family by its `model_type`, before (or without) loading a
/// model: the memory plan and new adapters read it.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// PEFT's default LoRA targets (`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`), or
    /// webpeft's choice where PEFT has none (the adapter config then names them).
    pub lora_targets: &'static [&'static str],
    /// PEFT's default (IA)³ targets and feed-forward modules; `None` where PEFT has none and
    /// webpeft does not choose, so that creating one fails with a clear error.
    pub ia3_targets: Option<Ia3Defaults>,
    /// Dense weights stored `[in, out]` (GPT-2's `Conv1D`; PEFT's `fan_in_fan_out`). Such weights
    /// are widened to f32 on load.
    pub fan_in_fan_out: bool,
    /// An encoder (classification only, no KV cache).
    pub encoder: bool,
    /// Runs its layers one at a time ([`LayerStack`]), so it can train with gradient checkpointing.
    pub layer_stack: bool,
    /// transformers' default for `tie_word_embeddings` when `config.json` does not say.
    pub tied_by_default: bool,
    /// The values of a new classification head for `(hidden_size, labels)`, which `seq-cls`
    /// training trains and saves whole (PEFT's `modules_to_save`).
    pub seq_cls_head: fn(usize, usize) -> usize,
}

/// A decoder's `score`: `[labels, hidden]`, no bias.
pub fn score_head(hidden: usize, labels: usize) -> usize {
    hidden * labels
}

/// A `classifier` linear layer with a bias.
pub fn classifier_head(hidden: usize, labels: usize) -> usize {
    hidden * labels + labels
}

impl Default for Facts {
    /// What the plan assumes of a `model_type` no family loads (it refuses those first).
    fn default() -> Self {
        Self { lora_targets: &[], ia3_targets: None, fan_in_fan_out: false, encoder: false, layer_stack: false, tied_by_default: true, seq_cls_head: score_head }
    }
}

/// A model family: one transformers architecture (or a few that share code, like Llama, Qwen2
/// and Qwen3), loaded from HF-named weights.
pub trait Family {
    /// The HF `model_type` values this family loads.
    fn model_types() -> &'static [&'static str]
    where
        Self: Sized;

    /// Builds the network from `config.json` and HF-named weights, checking every shape.
    /// The returned info has the architecture, task and sizes; the loader fills in the rest.
    fn load(config: &serde_json::Value, w: &mut WeightMap, device: &Device) -> Result<(Self, ModelInfo)>
    where
        Self: Sized;

    /// What webpeft knows of the family's `model_type` without loading a model.
    fn facts(model_type: &str) -> Facts
    where
        Self: Sized;

    /// How the family reads llama.cpp's GGUF files (config from metadata, tensor names), if
    /// it does.
    fn gguf() -> Option<&'static dyn GgufFamily>
    where
        Self: Sized,
    {
        None
    }

    /// Token embeddings of `[batch, seq]` ids, as the family scales them.
    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3>;

    /// The input embedding table `[vocab, hidden]` as the embedding module outputs it
    /// (prompt tuning's text initialisation reads its rows).
    fn input_embeddings(&self) -> Tensor<2>;

    /// Runs the network on input embeddings `[batch, seq, hidden]`.
    fn forward(&self, x: Tensor<3>, inputs: Inputs<'_>, cache: Option<&mut KvCache>) -> ForwardOutput;

    /// Every dense and norm layer by its HF module path, for adapters.
    fn named_layers(&mut self) -> NamedLayers<'_>;

    /// Every weight under its HF name, adapters merged (`webpeft merge`).
    fn hf_tensors(&self) -> Vec<NamedTensor>;

    /// A decoder's `(layers, kv_heads, head_dim)`, the shape of its KV cache; `None` for encoders.
    fn kv_layout(&self) -> Option<(usize, usize, usize)>;

    /// The decoder's layers one at a time, for gradient checkpointing.
    fn layer_stack(&self) -> Option<&dyn LayerStack> {
        None
    }

    /// The LM head as `[hidden, vocab]` when it is a plain frozen projection (chunked loss).
    fn frozen_head(&self) -> Option<FrozenHead> {
        None
    }

    /// The HF name of the classification head's weight (PEFT saves it in `modules_to_save`).
    fn head_weight(&self) -> &'static str {
        "score.weight"
    }

    /// Gives the network a new classification head of `labels` outputs, built by
    /// `new_linear(out, in, bias)` in transformers' initialisation order, and returns the
    /// transformers class of the result. `architecture` is the current class.
    fn attach_head(&mut self, labels: usize, hidden: usize, new_linear: &mut dyn FnMut(usize, usize, bool) -> Linear, architecture: &str) -> Result<String>;
}

/// What a decoder returns: logits when asked, and a classifier's logits read at each row's
/// last real token (transformers' `*ForSequenceClassification`), after any virtual tokens.
pub fn decoder_output(hidden: Tensor<3>, score: Option<&Linear>, lm_head: impl FnOnce(Tensor<3>) -> Tensor<3>, inputs: &Inputs<'_>) -> ForwardOutput {
    let class_logits = score.map(|s| {
        let [b, p, h] = hidden.dims();
        let seq = p - inputs.virtual_tokens;
        let rows: Vec<i64> = (0..b)
            .map(|r| {
                let real = inputs.caller_mask.map_or(seq, |m| m[r].iter().rposition(|&v| v != 0).map_or(seq, |i| i + 1));
                (r * p + inputs.virtual_tokens + real.max(1) - 1) as i64
            })
            .collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(rows, [b]), &hidden.device());
        s.forward(hidden.clone().reshape([b * p, h]).select(0, idx))
    });
    let token_logits = inputs.logits.then(|| lm_head(hidden.clone()));
    ForwardOutput { last_hidden_state: hidden, token_logits, class_logits, virtual_tokens: inputs.virtual_tokens }
}

/// A decoder's info: `causal` is its transformers class; a checkpoint with a `score` head of
/// `k` outputs is a sequence classifier (`classifier` is that class).
pub fn decoder_info(causal: &str, classifier: &str, model_type: &str, score: Option<&Linear>, sizes: [usize; 4]) -> ModelInfo {
    let [vocab_size, hidden_size, num_layers, context_length] = sizes;
    let labels = score.map(|s| s.dims().1);
    ModelInfo {
        architecture: if labels.is_some() { classifier } else { causal }.into(),
        model_type: model_type.into(),
        task: if labels.is_some() { "seq-cls" } else { "causal-lm" }.into(),
        vocab_size,
        hidden_size,
        num_layers,
        context_length,
        num_labels: labels,
        ..ModelInfo::default()
    }
}

/// A decoder's untied `lm_head` and classifier `score` under their HF names, when present.
pub fn head_tensors(lm_head: Option<&Linear>, score: Option<&Linear>) -> Vec<NamedTensor> {
    let mut t = vec![];
    for (name, l) in [("lm_head", lm_head), ("score", score)] {
        t.extend(l.map(|l| l.hf_tensors(name, WeightLayout::OutIn)).unwrap_or_default());
    }
    t
}

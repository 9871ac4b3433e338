//! Gemma 3 text models (`model_type` `gemma3_text`; GGUF `gemma3`), e.g. Gemma-3-270M and 1B.
//! Module and field names follow transformers' `modeling_gemma3.py`, so checkpoint names map
//! one to one. What sets Gemma 3 apart from Llama:
//! - RMSNorm scales by `(1 + w)`, and each layer has four of them (before and after attention
//!   and the MLP);
//! - token embeddings are multiplied by `sqrt(hidden_size)`; the tied LM head is not;
//! - the MLP is GeGLU with `gelu_pytorch_tanh`;
//! - per-head RMSNorm on queries and keys, and scores scaled by `query_pre_attn_scalar^-1/2`;
//! - sliding-window and global layers interleave (`layer_types`), each kind with its own RoPE base;
//! - `final_logit_softcapping` squashes the logits with `tanh`.
//!
//! transformers' Gemma 3 attention does not apply `attn_logit_softcapping` (Gemma 2 did), and no
//! released Gemma 3 sets it; like transformers, it is ignored here.

use burn::module::{Module, Param};
use burn::tensor::activation::{gelu_approximate, softmax};
use burn::tensor::{Device, Int, Tensor};
use serde::Deserialize;

use super::layers::{causal_mask_window, merge_heads, param, repeat_kv, split_heads, DecoderMasks, Embedding, FrozenHead, KvCache, LayerStack, Linear, NamedTensor, Rope, WeightLayout};
use super::family::{head_tensors, score_head, decoder_info, decoder_output, Facts, Family, Inputs};
use super::{ForwardOutput, ModelInfo, NamedLayers};
use crate::error::{Error, Result};
use crate::formats::gguf::{self, Gguf, GgufError, GgufFamily, GgufValue};
use crate::formats::safetensors::WeightMap;
use serde_json::{json, Value};

/// `config.json` of a Gemma 3 text model (the fields webpeft uses), with `Gemma3TextConfig`'s defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct Gemma3Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default = "default_head_dim")]
    pub head_dim: usize,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_scalar")]
    pub query_pre_attn_scalar: f64,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// `sliding_attention` or `full_attention` per layer; when absent, every
    /// `sliding_window_pattern`-th layer (default 6) is global.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    #[serde(default)]
    pub sliding_window_pattern: Option<usize>,
    /// transformers 5: `{"full_attention": {rope_theta, rope_type}, "sliding_attention": {...}}`.
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    /// transformers 4 style: the global base, the local base and the global scaling.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_local_base_freq: Option<f64>,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default = "default_act")]
    pub hidden_activation: String,
    #[serde(default)]
    pub use_bidirectional_attention: Option<bool>,
}

fn default_head_dim() -> usize {
    256
}
fn default_rms_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    131_072
}
fn default_scalar() -> f64 {
    256.0
}
fn default_true() -> bool {
    true
}
fn default_act() -> String {
    "gelu_pytorch_tanh".into()
}

impl Gemma3Config {
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Whether layer `i` attends within the sliding window.
    pub fn is_sliding(&self, i: usize) -> bool {
        match &self.layer_types {
            Some(t) => t.get(i).is_some_and(|k| k == "sliding_attention"),
            None => (i + 1) % self.sliding_window_pattern.unwrap_or(6).max(1) != 0,
        }
    }

    /// RoPE base of the global (`full_attention`) and local (`sliding_attention`) layers.
    pub fn rope_thetas(&self) -> Result<(f32, f32)> {
        let kind = |k: &str| self.rope_parameters.as_ref().and_then(|p| p.get(k));
        for (name, p) in [("full_attention", kind("full_attention")), ("sliding_attention", kind("sliding_attention"))] {
            let t = p.and_then(|p| p.get("rope_type")).and_then(|v| v.as_str()).unwrap_or("default");
            if t != "default" {
                return Err(Error::unsupported("config.json", format!("rope type '{t}' of the {name} layers (supported: default)")));
            }
        }
        if let Some(s) = self.rope_scaling.as_ref().filter(|v| !v.is_null()) {
            let t = s.get("rope_type").or_else(|| s.get("type")).and_then(|v| v.as_str()).unwrap_or("default");
            if t != "default" {
                return Err(Error::unsupported("config.json", format!("rope_scaling '{t}' (supported: default)")));
            }
        }
        let theta = |p: Option<&serde_json::Value>| p.and_then(|p| p.get("rope_theta")).and_then(|v| v.as_f64());
        let global = theta(kind("full_attention")).or(self.rope_theta).unwrap_or(1_000_000.0);
        let local = theta(kind("sliding_attention")).or(self.rope_local_base_freq).unwrap_or(10_000.0);
        Ok((global as f32, local as f32))
    }

    /// Checks the values the forward pass relies on.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.hidden_activation.as_str(), "gelu_pytorch_tanh" | "gelu_new") {
            return Err(Error::unsupported("config.json", format!("hidden_activation '{}' (Gemma 3 uses gelu_pytorch_tanh)", self.hidden_activation)));
        }
        if self.use_bidirectional_attention == Some(true) {
            return Err(Error::unsupported("config.json", "use_bidirectional_attention (EmbeddingGemma) is not supported"));
        }
        if self.num_attention_heads == 0 || self.kv_heads() == 0 || self.num_attention_heads % self.kv_heads() != 0 {
            return Err(Error::format(
                "config.json",
                format!("num_attention_heads {} is not a multiple of num_key_value_heads {}", self.num_attention_heads, self.kv_heads()),
            ));
        }
        if let Some(t) = &self.layer_types {
            if t.len() != self.num_hidden_layers || t.iter().any(|k| k != "sliding_attention" && k != "full_attention") {
                return Err(Error::format(
                    "config.json",
                    format!("layer_types must list {} entries of sliding_attention or full_attention", self.num_hidden_layers),
                ));
            }
        }
        if (0..self.num_hidden_layers).any(|i| self.is_sliding(i)) && self.sliding_window.is_none_or(|w| w == 0) {
            return Err(Error::format("config.json", "sliding layers need a sliding_window of at least 1"));
        }
        // The RoPE tables are built for every position up front; refuse absurd sizes.
        if self.max_position_embeddings == 0 || self.max_position_embeddings > 1 << 21 {
            return Err(Error::format(
                "config.json",
                format!("max_position_embeddings {} is out of range (1..=2097152)", self.max_position_embeddings),
            ));
        }
        if self.head_dim == 0 || self.head_dim % 2 != 0 {
            return Err(Error::format("config.json", format!("head_dim {} must be even for RoPE", self.head_dim)));
        }
        if self.query_pre_attn_scalar <= 0.0 {
            return Err(Error::format("config.json", "query_pre_attn_scalar must be positive"));
        }
        self.rope_thetas().map(|_| ())
    }
}

/// Gemma's RMSNorm: normalises, then scales by `1 + weight` (so a zero weight is the identity).
#[derive(Module, Debug)]
pub struct Gemma3RmsNorm {
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
}

impl Gemma3RmsNorm {
    fn load(w: &mut WeightMap, prefix: &str, dim: usize, eps: f64, device: &Device) -> Result<Self> {
        Ok(Self { weight: param(w.take(&format!("{prefix}.weight"), &[dim], "config.json")?, device), eps })
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let variance = x.clone().square().mean_dim(2);
        let x = x * (variance + self.eps).sqrt().recip();
        x * (self.weight.val() + 1.0).unsqueeze::<3>()
    }
}

#[derive(Module, Debug)]
pub struct Gemma3Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub q_norm: Gemma3RmsNorm,
    pub k_norm: Gemma3RmsNorm,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub scaling: f64,
    pub is_sliding: bool,
}

/// RMSNorm over each head of `[batch, seq, heads*head_dim]`.
fn head_norm(norm: &Gemma3RmsNorm, x: Tensor<3>, heads: usize) -> Tensor<3> {
    let [b, s, d] = x.dims();
    norm.forward(x.reshape([b * s, heads, d / heads])).reshape([b, s, d])
}

impl Gemma3Attention {
    fn forward(&self, x: Tensor<3>, rope: &Rope, mask: &Tensor<4>, offset: usize, layer: usize, cache: Option<&mut KvCache>) -> Tensor<3> {
        let q = head_norm(&self.q_norm, self.q_proj.forward(x.clone()), self.num_heads);
        let k = head_norm(&self.k_norm, self.k_proj.forward(x.clone()), self.num_kv_heads);
        let q = rope.apply(split_heads(q, self.num_heads), offset);
        let k = rope.apply(split_heads(k, self.num_kv_heads), offset);
        let v = split_heads(self.v_proj.forward(x), self.num_kv_heads);
        let (k, v) = match cache {
            Some(c) => c.update(layer, k, v),
            None => (k, v),
        };
        let rep = self.num_heads / self.num_kv_heads;
        let scores = q.matmul(repeat_kv(k, rep).swap_dims(2, 3)) * self.scaling + mask.clone();
        let out = softmax(scores, 3).matmul(repeat_kv(v, rep));
        self.o_proj.forward(merge_heads(out))
    }
}

#[derive(Module, Debug)]
pub struct Gemma3Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Gemma3Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.down_proj.forward(gelu_approximate(self.gate_proj.forward(x.clone())) * self.up_proj.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct Gemma3DecoderLayer {
    pub self_attn: Gemma3Attention,
    pub mlp: Gemma3Mlp,
    pub input_layernorm: Gemma3RmsNorm,
    pub post_attention_layernorm: Gemma3RmsNorm,
    pub pre_feedforward_layernorm: Gemma3RmsNorm,
    pub post_feedforward_layernorm: Gemma3RmsNorm,
}

#[derive(Module, Debug)]
pub struct Gemma3TextModel {
    pub embed_tokens: Embedding,
    /// `sqrt(hidden_size)`, as f32 (transformers casts it to the embedding dtype).
    pub embed_scale: f32,
    pub layers: Vec<Gemma3DecoderLayer>,
    pub norm: Gemma3RmsNorm,
    /// RoPE of the global layers.
    pub rotary_emb: Rope,
    /// RoPE of the sliding-window layers.
    pub rotary_emb_local: Rope,
    pub sliding_window: usize,
}

/// A Gemma 3 decoder with its language-model head.
#[derive(Module, Debug)]
pub struct Gemma3ForCausalLM {
    pub model: Gemma3TextModel,
    /// `None` when the head is tied to `embed_tokens` (every released Gemma 3).
    pub lm_head: Option<Linear>,
    /// Sequence classification (`score`, no bias), read at each row's last real token.
    pub score: Option<Linear>,
    pub final_logit_softcapping: Option<f64>,
}

impl Gemma3ForCausalLM {
    /// Builds the model from HF-named weights, checking every shape against `cfg`.
    pub fn from_config(cfg: &Gemma3Config, w: &mut WeightMap, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.kv_heads());
        let bias = cfg.attention_bias;
        let lin = |w: &mut WeightMap, name: String, i: usize, o: usize, bias: bool| {
            Linear::load(w, &name, i, o, bias, WeightLayout::OutIn, "config.json", device)
        };
        let norm = |w: &mut WeightMap, name: String, dim: usize| Gemma3RmsNorm::load(w, &name, dim, cfg.rms_norm_eps, device);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(Gemma3DecoderLayer {
                self_attn: Gemma3Attention {
                    q_proj: lin(w, format!("{p}.self_attn.q_proj"), h, nh * hd, bias)?,
                    k_proj: lin(w, format!("{p}.self_attn.k_proj"), h, nkv * hd, bias)?,
                    v_proj: lin(w, format!("{p}.self_attn.v_proj"), h, nkv * hd, bias)?,
                    o_proj: lin(w, format!("{p}.self_attn.o_proj"), nh * hd, h, bias)?,
                    q_norm: norm(w, format!("{p}.self_attn.q_norm"), hd)?,
                    k_norm: norm(w, format!("{p}.self_attn.k_norm"), hd)?,
                    num_heads: nh,
                    num_kv_heads: nkv,
                    head_dim: hd,
                    scaling: cfg.query_pre_attn_scalar.powf(-0.5),
                    is_sliding: cfg.is_sliding(i),
                },
                mlp: Gemma3Mlp {
                    gate_proj: lin(w, format!("{p}.mlp.gate_proj"), h, cfg.intermediate_size, false)?,
                    up_proj: lin(w, format!("{p}.mlp.up_proj"), h, cfg.intermediate_size, false)?,
                    down_proj: lin(w, format!("{p}.mlp.down_proj"), cfg.intermediate_size, h, false)?,
                },
                input_layernorm: norm(w, format!("{p}.input_layernorm"), h)?,
                post_attention_layernorm: norm(w, format!("{p}.post_attention_layernorm"), h)?,
                pre_feedforward_layernorm: norm(w, format!("{p}.pre_feedforward_layernorm"), h)?,
                post_feedforward_layernorm: norm(w, format!("{p}.post_feedforward_layernorm"), h)?,
            });
        }
        let (global, local) = cfg.rope_thetas()?;
        let embed_tokens = Embedding::load(w, "model.embed_tokens.weight", cfg.vocab_size, h, "config.json", device)?;
        let lm_head = if cfg.tie_word_embeddings { None } else { Some(lin(w, "lm_head".into(), h, cfg.vocab_size, false)?) };
        let score = match w.shape("score.weight").map(|s| s[0]) {
            Some(k) => Some(lin(w, "score".into(), h, k, false)?),
            None => None,
        };
        Ok(Self {
            model: Gemma3TextModel {
                embed_tokens,
                embed_scale: (h as f64).sqrt() as f32,
                layers,
                norm: norm(w, "model.norm".into(), h)?,
                rotary_emb: Rope::new(hd, cfg.max_position_embeddings, global, None, device),
                rotary_emb_local: Rope::new(hd, cfg.max_position_embeddings, local, None, device),
                sliding_window: cfg.sliding_window.unwrap_or(usize::MAX),
            },
            lm_head,
            score,
            final_logit_softcapping: cfg.final_logit_softcapping,
        })
    }

    /// The LM head (with the final softcapping): `[.., hidden]` to `[.., vocab]` logits.
    pub fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        let logits = self.model.embed_tokens.lm_logits(self.lm_head.as_ref(), hidden);
        match self.final_logit_softcapping {
            Some(cap) => (logits / cap).tanh() * cap,
            None => logits,
        }
    }

}

impl LayerStack for Gemma3ForCausalLM {
    fn num_layers(&self) -> usize {
        self.model.layers.len()
    }

    fn masks(&self, x: &Tensor<3>, attention_mask: Option<&[Vec<u32>]>, offset: usize) -> DecoderMasks {
        let [b, s, _] = x.dims();
        let device = x.device();
        let global = causal_mask_window(b, s, offset, attention_mask, None, &device);
        // While every key is inside the window (prompts shorter than it), the two masks are equal.
        let local = (offset + s > self.model.sliding_window).then(|| causal_mask_window(b, s, offset, attention_mask, Some(self.model.sliding_window), &device));
        DecoderMasks { global, local, offset }
    }

    fn layer(&self, i: usize, x: Tensor<3>, masks: &DecoderMasks, cache: Option<&mut KvCache>) -> Tensor<3> {
        let layer = &self.model.layers[i];
        let a = &layer.self_attn;
        let (rope, mask) = if a.is_sliding { (&self.model.rotary_emb_local, masks.local.as_ref().unwrap_or(&masks.global)) } else { (&self.model.rotary_emb, &masks.global) };
        let h = a.forward(layer.input_layernorm.forward(x.clone()), rope, mask, masks.offset, i, cache);
        let x = x + layer.post_attention_layernorm.forward(h);
        let h = layer.mlp.forward(layer.pre_feedforward_layernorm.forward(x.clone()));
        x + layer.post_feedforward_layernorm.forward(h)
    }

    fn final_norm(&self, x: Tensor<3>) -> Tensor<3> {
        self.model.norm.forward(x)
    }

    fn lm_logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.head(hidden)
    }
}

impl Family for Gemma3ForCausalLM {
    fn embed(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        self.model.embed_tokens.forward(input_ids) * self.model.embed_scale
    }

    fn frozen_head(&self) -> Option<FrozenHead> {
        if self.final_logit_softcapping.is_some() {
            return None;
        }
        self.model.embed_tokens.frozen_lm_head(self.lm_head.as_ref())
    }

    fn named_layers(&mut self) -> NamedLayers<'_> {
        let mut n = NamedLayers::default();
        for (i, l) in self.model.layers.iter_mut().enumerate() {
            let p = format!("model.layers.{i}");
            let (a, m) = (&mut l.self_attn, &mut l.mlp);
            n.push_decoder_layer(&p, [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.o_proj], [&mut m.gate_proj, &mut m.up_proj, &mut m.down_proj]);
        }
        n.push_heads(self.lm_head.as_mut(), self.score.as_mut());
        n
    }

    fn kv_layout(&self) -> Option<(usize, usize, usize)> {
        self.model.layers.first().map(|l| (self.model.layers.len(), l.self_attn.num_kv_heads, l.self_attn.head_dim))
    }

    fn hf_tensors(&self) -> Vec<NamedTensor> {
        let mut t = vec![NamedTensor::new("model.embed_tokens.weight", self.model.embed_tokens.table())];
        for (i, l) in self.model.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let a = &l.self_attn;
            for (name, lin) in [("q_proj", &a.q_proj), ("k_proj", &a.k_proj), ("v_proj", &a.v_proj), ("o_proj", &a.o_proj)] {
                t.extend(lin.hf_tensors(&format!("{p}.self_attn.{name}"), WeightLayout::OutIn));
            }
            t.push(NamedTensor::new(format!("{p}.self_attn.q_norm.weight"), a.q_norm.weight.val()));
            t.push(NamedTensor::new(format!("{p}.self_attn.k_norm.weight"), a.k_norm.weight.val()));
            for (name, lin) in [("gate_proj", &l.mlp.gate_proj), ("up_proj", &l.mlp.up_proj), ("down_proj", &l.mlp.down_proj)] {
                t.extend(lin.hf_tensors(&format!("{p}.mlp.{name}"), WeightLayout::OutIn));
            }
            for (name, n) in [
                ("input_layernorm", &l.input_layernorm),
                ("post_attention_layernorm", &l.post_attention_layernorm),
                ("pre_feedforward_layernorm", &l.pre_feedforward_layernorm),
                ("post_feedforward_layernorm", &l.post_feedforward_layernorm),
            ] {
                t.push(NamedTensor::new(format!("{p}.{name}.weight"), n.weight.val()));
            }
        }
        t.push(NamedTensor::new("model.norm.weight", self.model.norm.weight.val()));
        t.extend(head_tensors(self.lm_head.as_ref(), self.score.as_ref()));
        t
    }

    fn model_types() -> &'static [&'static str] {
        &["gemma3_text"]
    }

    fn gguf() -> Option<&'static dyn GgufFamily> {
        Some(&Gemma3Gguf)
    }

    fn facts(_model_type: &str) -> Facts {
        Facts {
            lora_targets: &["q_proj", "v_proj"],
            ia3_targets: Some((&["down_proj", "q_proj", "v_proj"], &["down_proj"])),
            fan_in_fan_out: false,
            encoder: false,
            layer_stack: true,
            tied_by_default: true,
            seq_cls_head: score_head,
        }
    }

    fn load(config: &serde_json::Value, w: &mut WeightMap, device: &Device) -> Result<(Self, ModelInfo)> {
        let cfg: Gemma3Config = super::parse_config(config)?;
        let net = Self::from_config(&cfg, w, device)?;
        let sizes = [cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.max_position_embeddings];
        // transformers' class for a text-only Gemma 3 classifier.
        let info = decoder_info("Gemma3ForCausalLM", "Gemma3TextForSequenceClassification", "gemma3_text", net.score.as_ref(), sizes);
        Ok((net, info))
    }

    fn input_embeddings(&self) -> Tensor<2> {
        // PEFT initialises prompt tuning from the embedding module's output, which Gemma scales.
        self.model.embed_tokens.table() * self.model.embed_scale
    }

    fn forward(&self, x: Tensor<3>, inputs: Inputs<'_>, cache: Option<&mut KvCache>) -> ForwardOutput {
        let hidden = self.run(x, inputs.attention_mask, cache);
        decoder_output(hidden, self.score.as_ref(), |h| self.head(h), &inputs)
    }

    fn layer_stack(&self) -> Option<&dyn LayerStack> {
        Some(self)
    }

    fn attach_head(&mut self, labels: usize, hidden: usize, new_linear: &mut dyn FnMut(usize, usize, bool) -> Linear, _architecture: &str) -> Result<String> {
        self.score = Some(new_linear(labels, hidden, false));
        Ok("Gemma3TextForSequenceClassification".into())
    }
}

/// How llama.cpp's `gemma3` GGUFs map onto this family.
pub struct Gemma3Gguf;

impl GgufFamily for Gemma3Gguf {
    fn architectures(&self) -> &'static [(&'static str, &'static str)] {
        &[("gemma3", "Gemma3ForCausalLM")]
    }

    fn model_type(&self, _arch: &str) -> &'static str {
        "gemma3_text"
    }

    /// transformers' `Gemma3TextConfig` from `gemma3.*` metadata. Values GGUF does not store take
    /// llama.cpp's choices, which are also transformers' defaults for every released size but 27B:
    /// global layers every 6th (`sliding_window_pattern`), a local RoPE base of 10000, and
    /// `query_pre_attn_scalar = head_dim` (llama.cpp uses hidden/heads for the 62-layer 27B, where
    /// transformers' default of 256 is wrong; we follow llama.cpp).
    fn config(&self, g: &Gguf, _arch: &str, _class: &str, n_tokens: Option<usize>, has_output: bool) -> std::result::Result<Value, GgufError> {
        let key = |k: &str| format!("gemma3.{k}");
        let hidden = g.required_u64(&key("embedding_length"))?;
        let n_head = g.required_u64(&key("attention.head_count"))?;
        if n_head == 0 {
            return Err(g.invalid("gemma3.attention.head_count is 0"));
        }
        let n_layers = g.required_u64(&key("block_count"))?;
        let head_dim = g.meta_u64(&key("attention.key_length"))?.unwrap_or(256);
        let scalar = if n_layers == 62 { hidden / n_head } else { head_dim };
        let vocab_size = gguf::vocab_size(g, "gemma3", n_tokens)?;
        if let Some(kind) = g.meta_str(&key("rope.scaling.type"))? {
            if kind != "none" {
                return Err(g.invalid(format!("unsupported RoPE scaling '{kind}' (gemma3.rope.scaling.type)")));
            }
        }
        let theta = g.meta_as(&key("rope.freq_base"), "a number", GgufValue::as_f64)?.unwrap_or(1_000_000.0);
        let mut config = json!({
            "architectures": ["Gemma3ForCausalLM"],
            "model_type": "gemma3_text",
            "hidden_size": hidden,
            "intermediate_size": g.required_u64(&key("feed_forward_length"))?,
            "num_hidden_layers": n_layers,
            "num_attention_heads": n_head,
            "num_key_value_heads": g.meta_u64(&key("attention.head_count_kv"))?.unwrap_or(n_head),
            "head_dim": head_dim,
            "query_pre_attn_scalar": scalar,
            "rms_norm_eps": g.meta_as(&key("attention.layer_norm_rms_epsilon"), "a number", GgufValue::as_f64)?.unwrap_or(1e-6),
            "sliding_window": g.meta_u64(&key("attention.sliding_window"))?.unwrap_or(4096),
            "sliding_window_pattern": 6,
            "layer_types": (0..n_layers).map(|i| if (i + 1) % 6 == 0 { "full_attention" } else { "sliding_attention" }).collect::<Vec<_>>(),
            "rope_parameters": {
                "full_attention": {"rope_type": "default", "rope_theta": theta},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            },
            "max_position_embeddings": g.meta_u64(&key("context_length"))?.unwrap_or(131_072),
            "vocab_size": vocab_size,
            "tie_word_embeddings": !has_output,
            "bos_token_id": g.meta_u64("tokenizer.ggml.bos_token_id")?.unwrap_or(2),
            "eos_token_id": g.meta_u64("tokenizer.ggml.eos_token_id")?.unwrap_or(1),
            "hidden_activation": "gelu_pytorch_tanh",
            "attention_bias": false,
            "final_logit_softcapping": null,
            "torch_dtype": "float32",
            "dtype": "float32",
        });
        gguf::insert_token_ids(g, &mut config, &[("tokenizer.ggml.padding_token_id", "pad_token_id")])?;
        Ok(config)
    }

    /// Gemma 3 norms the attention and MLP outputs too, and its `ffn_norm` is the pre-MLP norm.
    fn tensor_name(&self, _arch: &str, name: &str, n_layers: u64) -> Option<String> {
        gguf::decoder_tensor_name(name, n_layers, |part, kind| match (part, kind) {
            ("attn_q_norm", "weight") => Some("self_attn.q_norm"),
            ("attn_k_norm", "weight") => Some("self_attn.k_norm"),
            ("post_attention_norm", "weight") => Some("post_attention_layernorm"),
            ("ffn_norm", "weight") => Some("pre_feedforward_layernorm"),
            ("post_ffw_norm", "weight") => Some("post_feedforward_layernorm"),
            _ => None,
        })
    }

    /// llama.cpp's Gemma converters store norm weights as (1 + w); HF keeps w.
    fn fix_values(&self, _arch: &str, gguf_name: &str, values: &mut [f32]) {
        if gguf_name.ends_with("norm.weight") {
            values.iter_mut().for_each(|v| *v -= 1.0);
        }
    }
}

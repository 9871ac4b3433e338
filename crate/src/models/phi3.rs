//! Phi-3, Phi-3.5 and Phi-4-mini (`model_type` `phi3`). Module and field names follow
//! transformers' `modeling_phi3.py`, so checkpoint names (and PEFT's LoRA target names) map one
//! to one. What sets Phi-3 apart from Llama:
//! - one fused `qkv_proj` (queries, then keys, then values) and one fused `gate_up_proj` (gate,
//!   then up), so LoRA on `qkv_proj` adapts all three projections with one pair of matrices;
//! - a partial rotary embedding (`partial_rotary_factor`: Phi-4-mini rotates 3/4 of each head);
//! - LongRoPE scaling: short or long frequency factors, chosen per forward pass by whether the
//!   positions reach past `original_max_position_embeddings` (as transformers does, so cached keys
//!   keep the factors they were computed with), and cos/sin scaled by an attention factor;
//! - an optional sliding window over every layer.

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor};
use serde::Deserialize;
use serde_json::{json, Value};

use super::family::{head_tensors, score_head, decoder_info, decoder_output, Facts, Family, Inputs};
use super::layers::{attention, causal_mask_window, merge_heads, repeat_kv, split_heads, DecoderMasks, Embedding, FrozenHead, KvCache, LayerStack, Linear, NamedTensor, RmsNorm, Rope, WeightLayout};
use super::{ForwardOutput, ModelInfo, NamedLayers};
use crate::error::{Error, Result};
use crate::formats::gguf::{self, Gguf, GgufError, GgufFamily, GgufValue};
use crate::formats::safetensors::WeightMap;

/// `config.json` of a Phi-3 model (the fields webpeft uses), with `Phi3Config`'s defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct Phi3Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
    #[serde(default)]
    pub partial_rotary_factor: Option<f64>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// transformers 4's scaling dict (`type: longrope`, `short_factor`, `long_factor`).
    #[serde(default)]
    pub rope_scaling: Option<Value>,
    /// transformers 5 keeps the RoPE settings here.
    #[serde(default)]
    pub rope_parameters: Option<Value>,
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_max_pos() -> usize {
    4096
}
fn default_act() -> String {
    "silu".into()
}

/// The inverse frequencies of the rotary dimensions and how they are scaled.
struct RopeSettings {
    /// Rotated dimensions of each head (`head_dim * partial_rotary_factor`).
    dims: usize,
    short: Vec<f32>,
    /// LongRoPE's long-context frequencies, and the position count beyond which they are used.
    long: Option<(Vec<f32>, usize)>,
    /// LongRoPE's attention factor on cos and sin (1 otherwise).
    scaling: f32,
}

impl Phi3Config {
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// RoPE settings from either config style (transformers' `_compute_longrope_parameters`).
    fn rope(&self) -> Result<RopeSettings> {
        let params = self.rope_parameters.as_ref().or(self.rope_scaling.as_ref()).filter(|v| !v.is_null());
        let get = |k: &str| params.and_then(|p| p.get(k)).filter(|v| !v.is_null());
        let theta = get("rope_theta").and_then(Value::as_f64).or(self.rope_theta).unwrap_or(10000.0) as f32;
        let partial = get("partial_rotary_factor").and_then(Value::as_f64).or(self.partial_rotary_factor).unwrap_or(1.0);
        let dims = (self.head_dim() as f64 * partial) as usize;
        if dims == 0 || dims % 2 != 0 || dims > self.head_dim() {
            return Err(Error::format("config.json", format!("partial_rotary_factor {partial} gives {dims} rotary dimensions of head_dim {}; they must be even and at most head_dim", self.head_dim())));
        }
        let base = |factors: Option<&[f32]>| -> Vec<f32> {
            (0..dims / 2).map(|i| 1.0 / (factors.map_or(1.0, |f| f[i]) * theta.powf((2 * i) as f32 / dims as f32))).collect()
        };
        let kind = get("rope_type").or_else(|| get("type")).and_then(Value::as_str).unwrap_or("default");
        match kind {
            "default" => Ok(RopeSettings { dims, short: base(None), long: None, scaling: 1.0 }),
            // transformers reads Phi-3's older names as longrope.
            "longrope" | "su" | "yarn" => {
                let factors = |k: &str| -> Result<Vec<f32>> {
                    let v: Vec<f32> = get(k)
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_f64).map(|x| x as f32).collect())
                        .ok_or_else(|| Error::format("config.json", format!("longrope scaling lacks {k}")))?;
                    if v.len() != dims / 2 {
                        return Err(Error::format("config.json", format!("longrope {k} has {} values; {dims} rotary dimensions need {}", v.len(), dims / 2)));
                    }
                    Ok(v)
                };
                let original = get("original_max_position_embeddings")
                    .and_then(Value::as_u64)
                    .map(|v| v as usize)
                    .or(self.original_max_position_embeddings)
                    .filter(|&v| v > 1)
                    .ok_or_else(|| Error::format("config.json", "longrope scaling needs original_max_position_embeddings"))?;
                let factor = get("factor").and_then(Value::as_f64).unwrap_or(self.max_position_embeddings as f64 / original as f64);
                let scaling = get("attention_factor").and_then(Value::as_f64).unwrap_or(if factor <= 1.0 {
                    1.0
                } else {
                    (1.0 + factor.ln() / (original as f64).ln()).sqrt()
                });
                Ok(RopeSettings { dims, short: base(Some(&factors("short_factor")?)), long: Some((base(Some(&factors("long_factor")?)), original)), scaling: scaling as f32 })
            }
            other => Err(Error::unsupported("config.json", format!("rope scaling type '{other}' is not supported for Phi-3 (supported: default, longrope)"))),
        }
    }

    /// Checks the values the forward pass relies on.
    pub fn validate(&self) -> Result<()> {
        if self.hidden_act != "silu" {
            return Err(Error::unsupported("config.json", format!("hidden_act '{}' (Phi-3 uses silu)", self.hidden_act)));
        }
        if self.num_attention_heads == 0 || self.kv_heads() == 0 || self.num_attention_heads % self.kv_heads() != 0 {
            return Err(Error::format("config.json", format!("num_attention_heads {} is not a multiple of num_key_value_heads {}", self.num_attention_heads, self.kv_heads())));
        }
        // The RoPE tables are built for every position up front; refuse absurd sizes.
        if self.max_position_embeddings == 0 || self.max_position_embeddings > 1 << 21 {
            return Err(Error::format("config.json", format!("max_position_embeddings {} is out of range (1..=2097152)", self.max_position_embeddings)));
        }
        self.rope().map(|_| ())
    }
}

/// Rotary embedding of the first `dims` dimensions of each head, with LongRoPE's two tables.
#[derive(Module, Debug)]
pub struct Phi3RotaryEmbedding {
    pub short: Rope,
    pub long: Option<Rope>,
    /// Positions up to this many use `short`; a forward pass reaching further uses `long`.
    pub original_max_position_embeddings: usize,
    pub dims: usize,
}

impl Phi3RotaryEmbedding {
    /// Rotates `x` `[batch, heads, seq, head_dim]` at positions `offset..offset+seq`.
    fn apply(&self, x: Tensor<4>, offset: usize) -> Tensor<4> {
        let [_, _, seq, d] = x.dims();
        let rope = match &self.long {
            Some(long) if offset + seq > self.original_max_position_embeddings => long,
            _ => &self.short,
        };
        if self.dims == d {
            return rope.apply(x, offset);
        }
        let rotated = rope.apply(x.clone().slice_dim(3, 0..self.dims), offset);
        Tensor::cat(vec![rotated, x.slice_dim(3, self.dims..d)], 3)
    }
}

#[derive(Module, Debug)]
pub struct Phi3Attention {
    /// Queries, keys and values in one projection, in that order.
    pub qkv_proj: Linear,
    pub o_proj: Linear,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl Phi3Attention {
    fn forward(&self, x: Tensor<3>, rope: &Phi3RotaryEmbedding, mask: &Tensor<4>, offset: usize, layer: usize, cache: Option<&mut KvCache>) -> Tensor<3> {
        let qkv = self.qkv_proj.forward(x);
        let (q_end, k_end) = (self.num_heads * self.head_dim, (self.num_heads + self.num_kv_heads) * self.head_dim);
        let q = rope.apply(split_heads(qkv.clone().slice_dim(2, 0..q_end), self.num_heads), offset);
        let k = rope.apply(split_heads(qkv.clone().slice_dim(2, q_end..k_end), self.num_kv_heads), offset);
        let v = split_heads(qkv.slice_dim(2, k_end..k_end + self.num_kv_heads * self.head_dim), self.num_kv_heads);
        let (k, v) = match cache {
            Some(c) => c.update(layer, k, v),
            None => (k, v),
        };
        let rep = self.num_heads / self.num_kv_heads;
        let out = attention(q, repeat_kv(k, rep), repeat_kv(v, rep), Some(mask.clone()), 1.0 / (self.head_dim as f64).sqrt());
        self.o_proj.forward(merge_heads(out))
    }
}

#[derive(Module, Debug)]
pub struct Phi3Mlp {
    /// The gate, then the up projection, in one.
    pub gate_up_proj: Linear,
    pub down_proj: Linear,
}

impl Phi3Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate_up = self.gate_up_proj.forward(x);
        let inner = gate_up.dims()[2] / 2;
        let gate = gate_up.clone().slice_dim(2, 0..inner);
        let up = gate_up.slice_dim(2, inner..2 * inner);
        self.down_proj.forward(up * silu(gate))
    }
}

#[derive(Module, Debug)]
pub struct Phi3DecoderLayer {
    pub self_attn: Phi3Attention,
    pub mlp: Phi3Mlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
}

#[derive(Module, Debug)]
pub struct Phi3Model {
    pub embed_tokens: Embedding,
    pub layers: Vec<Phi3DecoderLayer>,
    pub norm: RmsNorm,
    pub rotary_emb: Phi3RotaryEmbedding,
    /// Keys this many or more positions behind a query are hidden (`usize::MAX`: none).
    pub sliding_window: usize,
}

/// A Phi-3 decoder with its language-model head.
#[derive(Module, Debug)]
pub struct Phi3ForCausalLM {
    pub model: Phi3Model,
    /// `None` when the head is tied to `embed_tokens` (Phi-4-mini).
    pub lm_head: Option<Linear>,
    /// Sequence classification (`Phi3ForSequenceClassification.score`, no bias).
    pub score: Option<Linear>,
}

impl Phi3ForCausalLM {
    /// Builds the model from HF-named weights, checking every shape against `cfg`.
    pub fn from_config(cfg: &Phi3Config, w: &mut WeightMap, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let (nh, nkv) = (cfg.num_attention_heads, cfg.kv_heads());
        let why = "config.json";
        let lin = |w: &mut WeightMap, name: String, i: usize, o: usize| Linear::load(w, &name, i, o, false, WeightLayout::OutIn, why, device);
        let norm = |w: &mut WeightMap, name: String| RmsNorm::load(w, &name, h, cfg.rms_norm_eps, why, device);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(Phi3DecoderLayer {
                self_attn: Phi3Attention {
                    qkv_proj: lin(w, format!("{p}.self_attn.qkv_proj"), h, (nh + 2 * nkv) * hd)?,
                    o_proj: lin(w, format!("{p}.self_attn.o_proj"), nh * hd, h)?,
                    num_heads: nh,
                    num_kv_heads: nkv,
                    head_dim: hd,
                },
                mlp: Phi3Mlp {
                    gate_up_proj: lin(w, format!("{p}.mlp.gate_up_proj"), h, 2 * cfg.intermediate_size)?,
                    down_proj: lin(w, format!("{p}.mlp.down_proj"), cfg.intermediate_size, h)?,
                },
                input_layernorm: norm(w, format!("{p}.input_layernorm"))?,
                post_attention_layernorm: norm(w, format!("{p}.post_attention_layernorm"))?,
            });
        }
        let rope = cfg.rope()?;
        let max_pos = cfg.max_position_embeddings;
        let table = |f: &[f32]| Rope::from_inv_freq(f, max_pos, rope.scaling, device);
        let rotary_emb = Phi3RotaryEmbedding {
            short: table(&rope.short),
            long: rope.long.as_ref().map(|(f, _)| table(f)),
            original_max_position_embeddings: rope.long.as_ref().map_or(usize::MAX, |(_, n)| *n),
            dims: rope.dims,
        };
        let embed_tokens = Embedding::load(w, "model.embed_tokens.weight", cfg.vocab_size, h, why, device)?;
        let lm_head = if cfg.tie_word_embeddings { None } else { Some(lin(w, "lm_head".into(), h, cfg.vocab_size)?) };
        let score = match w.shape("score.weight").map(|s| s[0]) {
            Some(k) => Some(lin(w, "score".into(), h, k)?),
            None => None,
        };
        Ok(Self {
            model: Phi3Model { embed_tokens, layers, norm: norm(w, "model.norm".into())?, rotary_emb, sliding_window: cfg.sliding_window.unwrap_or(usize::MAX) },
            lm_head,
            score,
        })
    }

    /// The LM head: `[.., hidden]` to `[.., vocab]` logits.
    pub fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.model.embed_tokens.lm_logits(self.lm_head.as_ref(), hidden)
    }
}

impl LayerStack for Phi3ForCausalLM {
    fn num_layers(&self) -> usize {
        self.model.layers.len()
    }

    fn masks(&self, x: &Tensor<3>, attention_mask: Option<&[Vec<u32>]>, offset: usize) -> DecoderMasks {
        let [b, s, _] = x.dims();
        // Every layer slides; while all keys are inside the window the mask is the causal one.
        let window = (offset + s > self.model.sliding_window).then_some(self.model.sliding_window);
        DecoderMasks { global: causal_mask_window(b, s, offset, attention_mask, window, &x.device()), local: None, offset }
    }

    fn layer(&self, i: usize, x: Tensor<3>, masks: &DecoderMasks, cache: Option<&mut KvCache>) -> Tensor<3> {
        let layer = &self.model.layers[i];
        let a = layer.self_attn.forward(layer.input_layernorm.forward(x.clone()), &self.model.rotary_emb, &masks.global, masks.offset, i, cache);
        let x = x + a;
        x.clone() + layer.mlp.forward(layer.post_attention_layernorm.forward(x))
    }

    fn final_norm(&self, x: Tensor<3>) -> Tensor<3> {
        self.model.norm.forward(x)
    }

    fn lm_logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.head(hidden)
    }
}

impl Family for Phi3ForCausalLM {
    fn model_types() -> &'static [&'static str] {
        &["phi3"]
    }

    fn gguf() -> Option<&'static dyn GgufFamily> {
        Some(&Phi3Gguf)
    }

    /// PEFT has no default LoRA or (IA)³ targets for `phi3` (it asks for them). webpeft takes the
    /// fused `qkv_proj`, the counterpart of the q/v projections PEFT picks for Llama, and for
    /// (IA)³ also the MLP's `down_proj` (feed-forward); the adapter config names them.
    fn facts(_model_type: &str) -> Facts {
        Facts {
            lora_targets: &["qkv_proj"],
            ia3_targets: Some((&["qkv_proj", "down_proj"], &["down_proj"])),
            fan_in_fan_out: false,
            encoder: false,
            layer_stack: true,
            tied_by_default: false,
            seq_cls_head: score_head,
        }
    }

    fn load(config: &Value, w: &mut WeightMap, device: &Device) -> Result<(Self, ModelInfo)> {
        let cfg: Phi3Config = super::parse_config(config)?;
        let net = Self::from_config(&cfg, w, device)?;
        let sizes = [cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.max_position_embeddings];
        let info = decoder_info("Phi3ForCausalLM", "Phi3ForSequenceClassification", "phi3", net.score.as_ref(), sizes);
        Ok((net, info))
    }

    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.model.embed_tokens.forward(ids)
    }

    fn input_embeddings(&self) -> Tensor<2> {
        self.model.embed_tokens.table()
    }

    fn forward(&self, x: Tensor<3>, inputs: Inputs<'_>, cache: Option<&mut KvCache>) -> ForwardOutput {
        let hidden = self.run(x, inputs.attention_mask, cache);
        decoder_output(hidden, self.score.as_ref(), |h| self.head(h), &inputs)
    }

    fn named_layers(&mut self) -> NamedLayers<'_> {
        let mut n = NamedLayers::default();
        for (i, l) in self.model.layers.iter_mut().enumerate() {
            let p = format!("model.layers.{i}");
            n.linears.push((format!("{p}.self_attn.qkv_proj"), &mut l.self_attn.qkv_proj));
            n.linears.push((format!("{p}.self_attn.o_proj"), &mut l.self_attn.o_proj));
            n.linears.push((format!("{p}.mlp.gate_up_proj"), &mut l.mlp.gate_up_proj));
            n.linears.push((format!("{p}.mlp.down_proj"), &mut l.mlp.down_proj));
        }
        n.push_heads(self.lm_head.as_mut(), self.score.as_mut());
        n
    }

    fn hf_tensors(&self) -> Vec<NamedTensor> {
        let mut t = vec![NamedTensor::new("model.embed_tokens.weight", self.model.embed_tokens.table())];
        for (i, l) in self.model.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            t.extend(l.self_attn.qkv_proj.hf_tensors(&format!("{p}.self_attn.qkv_proj"), WeightLayout::OutIn));
            t.extend(l.self_attn.o_proj.hf_tensors(&format!("{p}.self_attn.o_proj"), WeightLayout::OutIn));
            t.extend(l.mlp.gate_up_proj.hf_tensors(&format!("{p}.mlp.gate_up_proj"), WeightLayout::OutIn));
            t.extend(l.mlp.down_proj.hf_tensors(&format!("{p}.mlp.down_proj"), WeightLayout::OutIn));
            t.push(NamedTensor::new(format!("{p}.input_layernorm.weight"), l.input_layernorm.weight.val()));
            t.push(NamedTensor::new(format!("{p}.post_attention_layernorm.weight"), l.post_attention_layernorm.weight.val()));
        }
        t.push(NamedTensor::new("model.norm.weight", self.model.norm.weight.val()));
        t.extend(head_tensors(self.lm_head.as_ref(), self.score.as_ref()));
        t
    }

    fn kv_layout(&self) -> Option<(usize, usize, usize)> {
        self.model.layers.first().map(|l| (self.model.layers.len(), l.self_attn.num_kv_heads, l.self_attn.head_dim))
    }

    fn layer_stack(&self) -> Option<&dyn LayerStack> {
        Some(self)
    }

    fn frozen_head(&self) -> Option<FrozenHead> {
        self.model.embed_tokens.frozen_lm_head(self.lm_head.as_ref())
    }

    fn attach_head(&mut self, labels: usize, hidden: usize, new_linear: &mut dyn FnMut(usize, usize, bool) -> Linear, _architecture: &str) -> Result<String> {
        self.score = Some(new_linear(labels, hidden, false));
        Ok("Phi3ForSequenceClassification".into())
    }
}

/// How llama.cpp's `phi3` GGUFs (Phi-3, Phi-3.5, Phi-4-mini) map onto this family.
pub struct Phi3Gguf;

impl GgufFamily for Phi3Gguf {
    fn architectures(&self) -> &'static [(&'static str, &'static str)] {
        &[("phi3", "Phi3ForCausalLM")]
    }

    /// The fused `qkv_proj` and `gate_up_proj` are `attn_qkv` and `ffn_up`.
    fn projection_parts(&self) -> &'static [&'static str] {
        &["attn_qkv", "attn_output", "ffn_up", "ffn_down"]
    }

    /// transformers' `Phi3Config` from what llama.cpp's `Phi3MiniModel` converter writes:
    /// `rope.dimension_count` is the rotated part of each head (Phi-4-mini rotates 3/4), a
    /// `sliding_window` of 0 means none, and a longrope model's factors are the
    /// `rope_factors_long`/`rope_factors_short` tensors with `rope.scaling.attn_factor`.
    /// (transformers' own GGUF loader reads none of these for `phi3`.)
    fn config(&self, g: &Gguf, _arch: &str, _class: &str, n_tokens: Option<usize>, has_output: bool) -> std::result::Result<Value, GgufError> {
        let key = |k: &str| format!("phi3.{k}");
        let hidden = g.required_u64(&key("embedding_length"))?;
        let n_head = g.required_u64(&key("attention.head_count"))?;
        if n_head == 0 || hidden % n_head != 0 {
            return Err(g.invalid(format!("phi3.embedding_length {hidden} does not split into {n_head} heads (phi3.attention.head_count)")));
        }
        let head_dim = hidden / n_head;
        let rotated = g.meta_u64(&key("rope.dimension_count"))?.unwrap_or(head_dim);
        if rotated == 0 || rotated > head_dim {
            return Err(g.invalid(format!("phi3.rope.dimension_count {rotated} is not within the head size {head_dim}")));
        }
        let theta = g.meta_as(&key("rope.freq_base"), "a number", GgufValue::as_f64)?.unwrap_or(10000.0);
        let max_pos = g.meta_u64(&key("context_length"))?.unwrap_or(4096);
        let original = g.meta_u64(&key("rope.scaling.original_context_length"))?.unwrap_or(max_pos);
        let mut rope = json!({
            "rope_type": "default",
            "rope_theta": theta,
            "partial_rotary_factor": rotated as f64 / head_dim as f64,
            "original_max_position_embeddings": original,
        });
        let has = |name: &str| g.tensors.iter().any(|t| t.name == name);
        if has("rope_factors_long.weight") || has("rope_factors_short.weight") {
            let factors = |name: &str| -> std::result::Result<Vec<f32>, GgufError> {
                let (_, v) = g.tensor_f32(name)?;
                if v.len() as u64 != rotated / 2 {
                    return Err(g.invalid(format!("{name} has {} values; {rotated} rotated dimensions need {}", v.len(), rotated / 2)));
                }
                Ok(v)
            };
            let p = rope.as_object_mut().expect("an object");
            p.insert("rope_type".into(), "longrope".into());
            p.insert("long_factor".into(), json!(factors("rope_factors_long.weight")?));
            p.insert("short_factor".into(), json!(factors("rope_factors_short.weight")?));
            if let Some(f) = g.meta_as(&key("rope.scaling.attn_factor"), "a number", GgufValue::as_f64)? {
                p.insert("attention_factor".into(), f.into());
            }
        }
        let window = g.meta_u64(&key("attention.sliding_window"))?.filter(|&w| w > 0);
        let mut config = json!({
            "architectures": ["Phi3ForCausalLM"],
            "model_type": "phi3",
            "hidden_size": hidden,
            "intermediate_size": g.required_u64(&key("feed_forward_length"))?,
            "num_hidden_layers": g.required_u64(&key("block_count"))?,
            "num_attention_heads": n_head,
            "num_key_value_heads": g.meta_u64(&key("attention.head_count_kv"))?.unwrap_or(n_head),
            "rms_norm_eps": g.meta_as(&key("attention.layer_norm_rms_epsilon"), "a number", GgufValue::as_f64)?.unwrap_or(1e-5),
            "rope_parameters": rope,
            "max_position_embeddings": max_pos,
            "original_max_position_embeddings": original,
            "sliding_window": window,
            "vocab_size": gguf::vocab_size(g, "phi3", n_tokens)?,
            "tie_word_embeddings": !has_output,
            "bos_token_id": g.meta_u64("tokenizer.ggml.bos_token_id")?.unwrap_or(1),
            "eos_token_id": g.meta_u64("tokenizer.ggml.eos_token_id")?.unwrap_or(32000),
            "hidden_act": "silu",
            "torch_dtype": "float32",
            "dtype": "float32",
        });
        gguf::insert_token_ids(g, &mut config, &[("tokenizer.ggml.padding_token_id", "pad_token_id")])?;
        Ok(config)
    }

    /// Phi-3's fused projections: `attn_qkv` (queries, keys, values) and `ffn_up` (gate, then up).
    fn tensor_name(&self, _arch: &str, name: &str, n_layers: u64) -> Option<String> {
        gguf::decoder_tensor_name(name, n_layers, |part, kind| match (part, kind) {
            ("attn_qkv", "weight") => Some("self_attn.qkv_proj"),
            ("ffn_up", "weight") => Some("mlp.gate_up_proj"),
            _ => None,
        })
    }

    /// The longrope factors, already in the config.
    fn skipped(&self, _arch: &str, gguf_name: &str) -> bool {
        matches!(gguf_name, "rope_factors_long.weight" | "rope_factors_short.weight")
    }
}

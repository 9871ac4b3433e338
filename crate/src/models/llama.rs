//! The Llama family: Llama 2/3, SmolLM2, TinyLlama, Qwen2/2.5 and Qwen3
//! (`model_type` `llama`, `qwen2` or `qwen3`). Module and field names follow
//! transformers' `modeling_llama.py` (and `modeling_qwen3.py` for the q/k
//! norms), so checkpoint names map one to one.

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Int, Tensor};
use serde::Deserialize;

use super::layers::{NamedTensor, attention, causal_mask, merge_heads, repeat_kv, split_heads, DecoderMasks, Embedding, FrozenHead, KvCache, LayerStack, Linear, Llama3Scaling, RmsNorm, Rope, WeightLayout};
use super::family::{head_tensors, score_head, decoder_info, decoder_output, Facts, Family, Inputs};
use super::{ForwardOutput, ModelInfo};
use crate::error::{Error, Result};
use crate::formats::gguf::{self, Gguf, GgufError, GgufFamily, GgufValue};
use crate::formats::safetensors::WeightMap;
use serde_json::{json, Value};
use super::NamedLayers;

/// `config.json` of a Llama, Qwen2 or Qwen3 model (the fields webpeft uses).
#[derive(Debug, Clone, Deserialize)]
pub struct LlamaConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub rope_theta: Option<f32>,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// transformers 5 keeps `rope_theta` and scaling here instead.
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama, Qwen3: bias on q/k/v/o. Qwen2 always has q/k/v bias and no o bias.
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    2048
}
fn default_act() -> String {
    "silu".into()
}

impl LlamaConfig {
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }
    fn qkv_bias(&self) -> bool {
        self.model_type == "qwen2" || self.attention_bias
    }
    fn o_bias(&self) -> bool {
        self.model_type != "qwen2" && self.attention_bias
    }
    /// Qwen3 normalises each query and key head (RMSNorm over `head_dim`) before RoPE.
    fn qk_norm(&self) -> bool {
        self.model_type == "qwen3"
    }

    /// RoPE base and optional llama3 scaling, from either config style.
    pub fn rope(&self) -> Result<(f32, Option<Llama3Scaling>)> {
        let params = self.rope_parameters.as_ref();
        let theta = self
            .rope_theta
            .or_else(|| params.and_then(|p| p.get("rope_theta")).and_then(|v| v.as_f64()).map(|v| v as f32))
            .unwrap_or(10000.0);
        let scaling = self.rope_scaling.as_ref().filter(|v| !v.is_null()).or(params);
        let Some(s) = scaling else { return Ok((theta, None)) };
        let kind = s.get("rope_type").or_else(|| s.get("type")).and_then(|v| v.as_str()).unwrap_or("default");
        match kind {
            "default" => Ok((theta, None)),
            "llama3" => {
                let f = |k: &str| {
                    s.get(k).and_then(|v| v.as_f64()).map(|v| v as f32).ok_or_else(|| {
                        Error::format("config.json", format!("rope_scaling of type llama3 lacks {k}"))
                    })
                };
                Ok((
                    theta,
                    Some(Llama3Scaling {
                        factor: f("factor")?,
                        low_freq_factor: f("low_freq_factor")?,
                        high_freq_factor: f("high_freq_factor")?,
                        original_max_position_embeddings: f("original_max_position_embeddings")?,
                    }),
                ))
            }
            other => Err(Error::unsupported(
                "config.json",
                format!("rope scaling type '{other}' is not supported (supported: default, llama3)"),
            )),
        }
    }

    /// Checks the values the forward pass relies on.
    pub fn validate(&self) -> Result<()> {
        if self.hidden_act != "silu" {
            return Err(Error::unsupported("config.json", format!("hidden_act '{}' (Llama models use silu)", self.hidden_act)));
        }
        if self.num_attention_heads == 0 || self.kv_heads() == 0 || self.num_attention_heads % self.kv_heads() != 0 {
            return Err(Error::format(
                "config.json",
                format!("num_attention_heads {} is not a multiple of num_key_value_heads {}", self.num_attention_heads, self.kv_heads()),
            ));
        }
        // The RoPE tables are built for every position up front; refuse absurd sizes.
        if self.max_position_embeddings == 0 || self.max_position_embeddings > 1 << 21 {
            return Err(Error::format(
                "config.json",
                format!("max_position_embeddings {} is out of range (1..=2097152)", self.max_position_embeddings),
            ));
        }
        if self.head_dim() % 2 != 0 {
            return Err(Error::format("config.json", format!("head_dim {} must be even for RoPE", self.head_dim())));
        }
        self.rope().map(|_| ())
    }
}

#[derive(Module, Debug)]
pub struct LlamaAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    /// Qwen3's per-head RMSNorm on queries and keys (weight `[head_dim]`).
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl LlamaAttention {
    /// `offset` is the number of past positions (read once per forward pass:
    /// the cache grows as each layer appends to it).
    fn forward(&self, x: Tensor<3>, rope: &Rope, mask: &Tensor<4>, offset: usize, layer: usize, cache: Option<&mut KvCache>) -> Tensor<3> {
        let q = head_norm(self.q_norm.as_ref(), self.q_proj.forward(x.clone()), self.num_heads);
        let k = head_norm(self.k_norm.as_ref(), self.k_proj.forward(x.clone()), self.num_kv_heads);
        let q = rope.apply(split_heads(q, self.num_heads), offset);
        let k = rope.apply(split_heads(k, self.num_kv_heads), offset);
        let v = split_heads(self.v_proj.forward(x), self.num_kv_heads);
        let (k, v) = match cache {
            Some(c) => c.update(layer, k, v),
            None => (k, v),
        };
        let rep = self.num_heads / self.num_kv_heads;
        let out = attention(q, repeat_kv(k, rep), repeat_kv(v, rep), Some(mask.clone()), 1.0 / (self.head_dim as f64).sqrt());
        self.o_proj.forward(merge_heads(out))
    }
}

/// RMSNorm over each head of `[batch, seq, heads*head_dim]` (Qwen3's q/k norm), or `x` unchanged.
fn head_norm(norm: Option<&RmsNorm>, x: Tensor<3>, heads: usize) -> Tensor<3> {
    let Some(norm) = norm else { return x };
    let [b, s, d] = x.dims();
    norm.forward(x.reshape([b * s, heads, d / heads])).reshape([b, s, d])
}

#[derive(Module, Debug)]
pub struct LlamaMlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl LlamaMlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.down_proj.forward(silu(self.gate_proj.forward(x.clone())) * self.up_proj.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct LlamaDecoderLayer {
    pub self_attn: LlamaAttention,
    pub mlp: LlamaMlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
}

#[derive(Module, Debug)]
pub struct LlamaModel {
    pub embed_tokens: Embedding,
    pub layers: Vec<LlamaDecoderLayer>,
    pub norm: RmsNorm,
    pub rotary_emb: Rope,
}

/// A Llama-family decoder with its language-model head.
#[derive(Module, Debug)]
pub struct LlamaForCausalLM {
    pub model: LlamaModel,
    /// `None` when the head is tied to `embed_tokens`.
    pub lm_head: Option<Linear>,
    /// Sequence classification (`LlamaForSequenceClassification.score`, no bias),
    /// read at each row's last real token.
    pub score: Option<Linear>,
}

impl LlamaForCausalLM {
    /// Builds the model from HF-named weights, checking every shape against `cfg`.
    pub fn from_config(cfg: &LlamaConfig, w: &mut WeightMap, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let (nh, nkv) = (cfg.num_attention_heads, cfg.kv_heads());
        let why = "config.json";
        let lin = |w: &mut WeightMap, name: String, i: usize, o: usize, bias: bool| {
            Linear::load(w, &name, i, o, bias, WeightLayout::OutIn, why, device)
        };
        let norm = |w: &mut WeightMap, name: String, dim: usize| RmsNorm::load(w, &name, dim, cfg.rms_norm_eps, why, device);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let (q_norm, k_norm) = if cfg.qk_norm() {
                (Some(norm(w, format!("{p}.self_attn.q_norm"), hd)?), Some(norm(w, format!("{p}.self_attn.k_norm"), hd)?))
            } else {
                (None, None)
            };
            layers.push(LlamaDecoderLayer {
                self_attn: LlamaAttention {
                    q_proj: lin(w, format!("{p}.self_attn.q_proj"), h, nh * hd, cfg.qkv_bias())?,
                    k_proj: lin(w, format!("{p}.self_attn.k_proj"), h, nkv * hd, cfg.qkv_bias())?,
                    v_proj: lin(w, format!("{p}.self_attn.v_proj"), h, nkv * hd, cfg.qkv_bias())?,
                    o_proj: lin(w, format!("{p}.self_attn.o_proj"), nh * hd, h, cfg.o_bias())?,
                    q_norm,
                    k_norm,
                    num_heads: nh,
                    num_kv_heads: nkv,
                    head_dim: hd,
                },
                mlp: LlamaMlp {
                    gate_proj: lin(w, format!("{p}.mlp.gate_proj"), h, cfg.intermediate_size, cfg.mlp_bias)?,
                    up_proj: lin(w, format!("{p}.mlp.up_proj"), h, cfg.intermediate_size, cfg.mlp_bias)?,
                    down_proj: lin(w, format!("{p}.mlp.down_proj"), cfg.intermediate_size, h, cfg.mlp_bias)?,
                },
                input_layernorm: RmsNorm::load(w, &format!("{p}.input_layernorm"), h, cfg.rms_norm_eps, why, device)?,
                post_attention_layernorm: RmsNorm::load(w, &format!("{p}.post_attention_layernorm"), h, cfg.rms_norm_eps, why, device)?,
            });
        }
        let (theta, scaling) = cfg.rope()?;
        let embed_tokens = Embedding::load(w, "model.embed_tokens.weight", cfg.vocab_size, h, why, device)?;
        // Some tied checkpoints still store lm_head; transformers then ignores it.
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(lin(w, "lm_head".into(), h, cfg.vocab_size, false)?)
        };
        let score = match w.shape("score.weight").map(|s| s[0]) {
            Some(k) => Some(lin(w, "score".into(), h, k, false)?),
            None => None,
        };
        Ok(Self {
            model: LlamaModel {
                embed_tokens,
                layers,
                norm: RmsNorm::load(w, "model.norm", h, cfg.rms_norm_eps, why, device)?,
                rotary_emb: Rope::new(hd, cfg.max_position_embeddings, theta, scaling.as_ref(), device),
            },
            lm_head,
            score,
        })
    }

    /// The LM head: `[.., hidden]` to `[.., vocab]` logits.
    pub fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.model.embed_tokens.lm_logits(self.lm_head.as_ref(), hidden)
    }
}

impl LayerStack for LlamaForCausalLM {
    fn num_layers(&self) -> usize {
        self.model.layers.len()
    }

    fn masks(&self, x: &Tensor<3>, attention_mask: Option<&[Vec<u32>]>, offset: usize) -> DecoderMasks {
        let [b, s, _] = x.dims();
        DecoderMasks { global: causal_mask(b, s, offset, attention_mask, &x.device()), local: None, offset }
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

impl Family for LlamaForCausalLM {
    fn model_types() -> &'static [&'static str] {
        &["llama", "qwen2", "qwen3"]
    }

    fn gguf() -> Option<&'static dyn GgufFamily> {
        Some(&LlamaGguf)
    }

    fn facts(model_type: &str) -> Facts {
        Facts {
            lora_targets: &["q_proj", "v_proj"],
            ia3_targets: Some(match model_type {
                "qwen2" | "qwen3" => (&["down_proj", "q_proj", "v_proj"], &["down_proj"]),
                _ => (&["down_proj", "k_proj", "v_proj"], &["down_proj"]),
            }),
            fan_in_fan_out: false,
            encoder: false,
            layer_stack: true,
            // LlamaConfig, Qwen2Config and Qwen3Config all default to untied.
            tied_by_default: false,
            seq_cls_head: score_head,
        }
    }

    fn load(config: &serde_json::Value, w: &mut WeightMap, device: &Device) -> Result<(Self, ModelInfo)> {
        let cfg: LlamaConfig = super::parse_config(config)?;
        let net = Self::from_config(&cfg, w, device)?;
        let (causal, cls) = match cfg.model_type.as_str() {
            "qwen2" => ("Qwen2ForCausalLM", "Qwen2ForSequenceClassification"),
            "qwen3" => ("Qwen3ForCausalLM", "Qwen3ForSequenceClassification"),
            _ => ("LlamaForCausalLM", "LlamaForSequenceClassification"),
        };
        let sizes = [cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.max_position_embeddings];
        let info = decoder_info(causal, cls, &cfg.model_type, net.score.as_ref(), sizes);
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
            let (a, m) = (&mut l.self_attn, &mut l.mlp);
            n.push_decoder_layer(&p, [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.o_proj], [&mut m.gate_proj, &mut m.up_proj, &mut m.down_proj]);
        }
        n.push_heads(self.lm_head.as_mut(), self.score.as_mut());
        n
    }

    fn hf_tensors(&self) -> Vec<NamedTensor> {
        let mut t = vec![NamedTensor::new("model.embed_tokens.weight", self.model.embed_tokens.table())];
        for (i, l) in self.model.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let a = &l.self_attn;
            for (name, lin) in [("q_proj", &a.q_proj), ("k_proj", &a.k_proj), ("v_proj", &a.v_proj), ("o_proj", &a.o_proj)] {
                t.extend(lin.hf_tensors(&format!("{p}.self_attn.{name}"), WeightLayout::OutIn));
            }
            for (name, norm) in [("q_norm", &a.q_norm), ("k_norm", &a.k_norm)] {
                if let Some(n) = norm {
                    t.push(NamedTensor::new(format!("{p}.self_attn.{name}.weight"), n.weight.val()));
                }
            }
            for (name, lin) in [("gate_proj", &l.mlp.gate_proj), ("up_proj", &l.mlp.up_proj), ("down_proj", &l.mlp.down_proj)] {
                t.extend(lin.hf_tensors(&format!("{p}.mlp.{name}"), WeightLayout::OutIn));
            }
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

    fn attach_head(&mut self, labels: usize, hidden: usize, new_linear: &mut dyn FnMut(usize, usize, bool) -> Linear, architecture: &str) -> Result<String> {
        self.score = Some(new_linear(labels, hidden, false));
        Ok(architecture.replace("ForCausalLM", "ForSequenceClassification"))
    }
}

/// How llama.cpp's `llama`, `qwen2` and `qwen3` GGUFs map onto this family.
pub struct LlamaGguf;

impl GgufFamily for LlamaGguf {
    fn architectures(&self) -> &'static [(&'static str, &'static str)] {
        &[("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM"), ("qwen3", "Qwen3ForCausalLM")]
    }

    /// transformers' `LlamaConfig`, `Qwen2Config` or `Qwen3Config` from `{arch}.*` metadata,
    /// with the config class's defaults for optional keys.
    fn config(&self, g: &Gguf, arch: &str, class: &str, n_tokens: Option<usize>, has_output: bool) -> std::result::Result<Value, GgufError> {
        let key = |k: &str| format!("{arch}.{k}");
        let hidden = g.required_u64(&key("embedding_length"))?;
        let n_head = g.required_u64(&key("attention.head_count"))?;
        if n_head == 0 {
            return Err(g.invalid(format!("{arch}.attention.head_count is 0")));
        }
        let n_kv_head = g
            .meta_u64(&key("attention.head_count_kv"))?
            .unwrap_or(n_head);
        // transformers maps rope.dimension_count to head_dim for llama only; Qwen2 derives it, and
        // Qwen3 reads no head_dim from GGUF, so its config default (128) applies. llama.cpp writes
        // Qwen3's as attention.key_length, which we prefer when present.
        let head_dim = match arch {
            "llama" => g.meta_u64(&key("rope.dimension_count"))?.unwrap_or(hidden / n_head),
            "qwen3" => g.meta_u64(&key("attention.key_length"))?.unwrap_or(128),
            _ => hidden / n_head,
        };
        let rope_theta = g
            .meta_as(&key("rope.freq_base"), "a number", GgufValue::as_f64)?
            .unwrap_or(10000.0);
        let vocab_size = gguf::vocab_size(g, arch, n_tokens)?;
        let rope_scaling = llama3_rope_scaling(g, arch, rope_theta, head_dim)?;
        let mut rope_parameters = json!({"rope_type": "default", "rope_theta": rope_theta});
        if let (Some(Value::Object(s)), Value::Object(p)) = (&rope_scaling, &mut rope_parameters) {
            p.extend(s.clone());
        }
        let mut config = json!({
            "architectures": [class],
            "model_type": arch,
            "hidden_size": hidden,
            "intermediate_size": g.required_u64(&key("feed_forward_length"))?,
            "num_hidden_layers": g.required_u64(&key("block_count"))?,
            "num_attention_heads": n_head,
            "num_key_value_heads": n_kv_head,
            "head_dim": head_dim,
            "rms_norm_eps": g.meta_as(&key("attention.layer_norm_rms_epsilon"), "a number", GgufValue::as_f64)?.unwrap_or(1e-6),
            "rope_theta": rope_theta,
            "rope_scaling": rope_scaling,
            "rope_parameters": rope_parameters,
            "max_position_embeddings": g.meta_u64(&key("context_length"))?.unwrap_or(2048),
            "vocab_size": vocab_size,
            "tie_word_embeddings": !has_output,
            "bos_token_id": g.meta_u64("tokenizer.ggml.bos_token_id")?.unwrap_or(1),
            "eos_token_id": g.meta_u64("tokenizer.ggml.eos_token_id")?.unwrap_or(2),
            "hidden_act": "silu",
            "attention_bias": false,
            "mlp_bias": false,
            "torch_dtype": "float32",
            "dtype": "float32",
        });
        gguf::insert_token_ids(g, &mut config, &[("tokenizer.ggml.padding_token_id", "pad_token_id"), ("tokenizer.ggml.unknown_token_id", "unk_token_id")])?;
        Ok(config)
    }

    /// q/k/v biases exist only in `qwen2`, per-head q/k norms only in `qwen3`.
    fn tensor_name(&self, arch: &str, name: &str, n_layers: u64) -> Option<String> {
        gguf::decoder_tensor_name(name, n_layers, |part, kind| match (part, kind, arch) {
            ("attn_q", "bias", "qwen2") => Some("self_attn.q_proj"),
            ("attn_k", "bias", "qwen2") => Some("self_attn.k_proj"),
            ("attn_v", "bias", "qwen2") => Some("self_attn.v_proj"),
            ("attn_q_norm", "weight", "qwen3") => Some("self_attn.q_norm"),
            ("attn_k_norm", "weight", "qwen3") => Some("self_attn.k_norm"),
            _ => None,
        })
    }

    /// Only llama.cpp's llama converter permutes q/k (for ggml's interleaved RoPE); qwen2 and
    /// qwen3 use NeoX-style RoPE and keep HF's layout.
    fn permuted_heads(&self, arch: &str, hf_name: &str, config: &Value) -> Option<usize> {
        let count = |k: &str| config[k].as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
        match arch {
            "llama" if hf_name.ends_with("q_proj.weight") => Some(count("num_attention_heads")),
            "llama" if hf_name.ends_with("k_proj.weight") => Some(count("num_key_value_heads")),
            _ => None,
        }
    }

    /// Llama 3's RoPE scaling, already turned into `config.rope_scaling`.
    fn skipped(&self, arch: &str, gguf_name: &str) -> bool {
        arch == "llama" && gguf_name == "rope_freqs.weight"
    }
}

/// llama.cpp stores Llama 3.x RoPE scaling not as metadata but as a `rope_freqs.weight` tensor of
/// per-frequency divisors (convert_hf_to_gguf.py, LlamaModel). transformers ignores it; we turn it
/// back into HF's `rope_scaling`, accepting only the parameters every Llama 3.x release uses
/// (low_freq_factor 1, high_freq_factor 4, original context 8192) and checking they reproduce it.
fn llama3_rope_scaling(g: &Gguf, arch: &str, theta: f64, head_dim: u64) -> std::result::Result<Option<Value>, GgufError> {
    if let Some(kind) = g.meta_str(&format!("{arch}.rope.scaling.type"))? {
        if kind != "none" {
            return Err(g.invalid(format!(
                "unsupported RoPE scaling '{kind}' ({arch}.rope.scaling.type)"
            )));
        }
    }
    // Qwen files carry no rope_freqs; one there is refused by the tensor mapping.
    if arch != "llama" || !g.tensors.iter().any(|t| t.name == "rope_freqs.weight") {
        return Ok(None);
    }
    let (_, stored) = g.tensor_f32("rope_freqs.weight")?;
    let factor = f64::from(stored.last().copied().unwrap_or(0.0));
    let (low, high, original) = (1.0f64, 4.0f64, 8192.0f64);
    let dim = head_dim as f64;
    let expected = (0..head_dim / 2).map(|i| {
        let wavelen = 2.0 * std::f64::consts::PI * theta.powf(2.0 * i as f64 / dim);
        if wavelen < original / high {
            1.0
        } else if wavelen > original / low {
            factor
        } else {
            let smooth = (original / wavelen - low) / (high - low);
            1.0 / ((1.0 - smooth) / factor + smooth)
        }
    });
    let matches = stored.len() as u64 == head_dim / 2
        && factor >= 1.0
        && stored
            .iter()
            .zip(expected)
            .all(|(&s, e)| (f64::from(s) - e).abs() <= 1e-3 * e.abs().max(1.0));
    if !matches {
        return Err(g.invalid("rope_freqs.weight does not match Llama 3 RoPE scaling (low_freq_factor 1, high_freq_factor 4, original context 8192)"));
    }
    Ok(Some(json!({
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": low,
        "high_freq_factor": high,
        "original_max_position_embeddings": original as u64,
    })))
}


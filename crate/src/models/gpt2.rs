//! GPT-2 (`model_type` `gpt2`): learned positions, pre-LayerNorm blocks,
//! `Conv1D` weights stored `[in, out]`, gelu_new, and an LM head tied to `wte`.
//! Names follow transformers' `modeling_gpt2.py`.

use burn::module::Module;
use burn::tensor::activation::gelu_approximate;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;

use super::layers::{NamedTensor, attention, causal_mask, merge_heads, split_heads, Embedding, FrozenHead, KvCache, LayerNorm, Linear, WeightLayout};
use super::family::{score_head, decoder_info, decoder_output, Facts, Family, Inputs};
use super::{ForwardOutput, ModelInfo};
use crate::error::{Error, Result};
use crate::formats::safetensors::WeightMap;
use super::NamedLayers;

/// `config.json` of a GPT-2 model.
#[derive(Debug, Clone, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_positions: usize,
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_act")]
    pub activation_function: String,
    #[serde(default = "yes")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub reorder_and_upcast_attn: bool,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "gelu_new".into()
}
fn yes() -> bool {
    true
}

impl Gpt2Config {
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    pub fn validate(&self) -> Result<()> {
        if !matches!(self.activation_function.as_str(), "gelu_new" | "gelu_pytorch_tanh") {
            return Err(Error::unsupported(
                "config.json",
                format!("activation_function '{}' (supported: gelu_new)", self.activation_function),
            ));
        }
        if self.n_head == 0 || self.n_embd % self.n_head != 0 {
            return Err(Error::format("config.json", format!("n_embd {} is not a multiple of n_head {}", self.n_embd, self.n_head)));
        }
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct Gpt2Attention {
    /// Fused q, k, v projection `[n_embd, 3*n_embd]`.
    pub c_attn: Linear,
    pub c_proj: Linear,
    pub num_heads: usize,
    pub scale: f64,
}

#[derive(Module, Debug)]
pub struct Gpt2Mlp {
    pub c_fc: Linear,
    pub c_proj: Linear,
}

#[derive(Module, Debug)]
pub struct Gpt2Block {
    pub ln_1: LayerNorm,
    pub attn: Gpt2Attention,
    pub ln_2: LayerNorm,
    pub mlp: Gpt2Mlp,
}

#[derive(Module, Debug)]
pub struct Gpt2Model {
    pub wte: Embedding,
    pub wpe: Embedding,
    pub h: Vec<Gpt2Block>,
    pub ln_f: LayerNorm,
}

/// GPT-2 with its tied language-model head (`GPT2LMHeadModel`).
#[derive(Module, Debug)]
pub struct Gpt2LMHeadModel {
    pub transformer: Gpt2Model,
    /// Sequence classification (`GPT2ForSequenceClassification.score`, an
    /// `nn.Linear` without bias), read at each row's last real token.
    pub score: Option<Linear>,
}

impl Gpt2LMHeadModel {
    /// Builds the model from HF-named weights (with or without the `transformer.` prefix).
    pub fn from_config(cfg: &Gpt2Config, w: &mut WeightMap, device: &Device) -> Result<Self> {
        cfg.validate()?;
        w.ensure_prefix("transformer.", "wte.weight");
        let (d, why) = (cfg.n_embd, "config.json");
        let conv = |w: &mut WeightMap, name: String, i: usize, o: usize| Linear::load(w, &name, i, o, true, WeightLayout::InOut, why, device);
        let mut h = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("transformer.h.{i}");
            let mut scale = if cfg.scale_attn_weights { 1.0 / ((d / cfg.n_head) as f64).sqrt() } else { 1.0 };
            if cfg.scale_attn_by_inverse_layer_idx {
                scale /= (i + 1) as f64;
            }
            h.push(Gpt2Block {
                ln_1: LayerNorm::load(w, &format!("{p}.ln_1"), d, cfg.layer_norm_epsilon, why, device)?,
                attn: Gpt2Attention {
                    c_attn: conv(w, format!("{p}.attn.c_attn"), d, 3 * d)?,
                    c_proj: conv(w, format!("{p}.attn.c_proj"), d, d)?,
                    num_heads: cfg.n_head,
                    scale,
                },
                ln_2: LayerNorm::load(w, &format!("{p}.ln_2"), d, cfg.layer_norm_epsilon, why, device)?,
                mlp: Gpt2Mlp {
                    c_fc: conv(w, format!("{p}.mlp.c_fc"), d, cfg.inner())?,
                    c_proj: conv(w, format!("{p}.mlp.c_proj"), cfg.inner(), d)?,
                },
            });
        }
        let score = match w.shape("score.weight").map(|s| s[0]) {
            Some(k) => Some(Linear::load(w, "score", d, k, false, WeightLayout::OutIn, why, device)?),
            None => None,
        };
        Ok(Self {
            score,
            transformer: Gpt2Model {
                wte: Embedding::load(w, "transformer.wte.weight", cfg.vocab_size, d, why, device)?,
                wpe: Embedding::load(w, "transformer.wpe.weight", cfg.n_positions, d, why, device)?,
                h,
                ln_f: LayerNorm::load(w, "transformer.ln_f", d, cfg.layer_norm_epsilon, why, device)?,
            },
        })
    }

    /// The tied LM head: `[.., n_embd]` to `[.., vocab]` logits.
    pub fn head(&self, hidden: Tensor<3>) -> Tensor<3> {
        self.transformer.wte.attend(hidden)
    }

    /// The blocks' final hidden states `[batch, seq, n_embd]` (after `ln_f`), without the LM head.
    pub fn hidden_states(&self, x: Tensor<3>, attention_mask: Option<&[Vec<u32>]>, mut cache: Option<&mut KvCache>) -> Tensor<3> {
        let [b, s, d] = x.dims();
        let device = x.device();
        let offset = cache.as_ref().map_or(0, |c| c.offset());
        let pos: Vec<i64> = (0..b).flat_map(|_| (offset..offset + s).map(|p| p as i64)).collect();
        let pos = Tensor::<2, Int>::from_data(TensorData::new(pos, [b, s]), &device);
        let mut x = x + self.transformer.wpe.forward(pos);
        let mask = causal_mask(b, s, offset, attention_mask, &device);
        for (i, block) in self.transformer.h.iter().enumerate() {
            let a = &block.attn;
            let qkv = a.c_attn.forward(block.ln_1.forward(x.clone()));
            let q = split_heads(qkv.clone().slice_dim(2, 0..d), a.num_heads);
            let k = split_heads(qkv.clone().slice_dim(2, d..2 * d), a.num_heads);
            let v = split_heads(qkv.slice_dim(2, 2 * d..3 * d), a.num_heads);
            let (k, v) = match cache.as_deref_mut() {
                Some(c) => c.update(i, k, v),
                None => (k, v),
            };
            let out = attention(q, k, v, Some(mask.clone()), a.scale);
            x = x + a.c_proj.forward(merge_heads(out));
            let m = &block.mlp;
            x = x.clone() + m.c_proj.forward(gelu_approximate(m.c_fc.forward(block.ln_2.forward(x))));
        }
        self.transformer.ln_f.forward(x)
    }

}

impl Family for Gpt2LMHeadModel {
    fn embed(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        self.transformer.wte.forward(input_ids)
    }

    fn frozen_head(&self) -> Option<FrozenHead> {
        self.transformer.wte.frozen_lm_head(None)
    }

    fn named_layers(&mut self) -> NamedLayers<'_> {
        let mut n = NamedLayers::default();
        for (i, b) in self.transformer.h.iter_mut().enumerate() {
            let p = format!("transformer.h.{i}");
            n.linears.push((format!("{p}.attn.c_attn"), &mut b.attn.c_attn));
            n.linears.push((format!("{p}.attn.c_proj"), &mut b.attn.c_proj));
            n.linears.push((format!("{p}.mlp.c_fc"), &mut b.mlp.c_fc));
            n.linears.push((format!("{p}.mlp.c_proj"), &mut b.mlp.c_proj));
            n.norms.push((format!("{p}.ln_1"), &mut b.ln_1));
            n.norms.push((format!("{p}.ln_2"), &mut b.ln_2));
        }
        n.norms.push(("transformer.ln_f".into(), &mut self.transformer.ln_f));
        if let Some(s) = self.score.as_mut() {
            n.linears.push(("score".into(), s));
        }
        n
    }

    fn hf_tensors(&self) -> Vec<NamedTensor> {
        let tr = &self.transformer;
        let mut t = vec![NamedTensor::new("transformer.wte.weight", tr.wte.table()), NamedTensor::new("transformer.wpe.weight", tr.wpe.table())];
        for (i, b) in tr.h.iter().enumerate() {
            let p = format!("transformer.h.{i}");
            t.extend(b.ln_1.hf_tensors(&format!("{p}.ln_1")));
            t.extend(b.attn.c_attn.hf_tensors(&format!("{p}.attn.c_attn"), WeightLayout::InOut));
            t.extend(b.attn.c_proj.hf_tensors(&format!("{p}.attn.c_proj"), WeightLayout::InOut));
            t.extend(b.ln_2.hf_tensors(&format!("{p}.ln_2")));
            t.extend(b.mlp.c_fc.hf_tensors(&format!("{p}.mlp.c_fc"), WeightLayout::InOut));
            t.extend(b.mlp.c_proj.hf_tensors(&format!("{p}.mlp.c_proj"), WeightLayout::InOut));
        }
        t.extend(tr.ln_f.hf_tensors("transformer.ln_f"));
        if let Some(s) = &self.score {
            t.extend(s.hf_tensors("score", WeightLayout::OutIn));
        }
        t
    }

    fn model_types() -> &'static [&'static str] {
        &["gpt2"]
    }

    fn facts(_model_type: &str) -> Facts {
        Facts {
            lora_targets: &["c_attn"],
            ia3_targets: Some((&["c_attn", "mlp.c_proj"], &["mlp.c_proj"])),
            fan_in_fan_out: true,
            encoder: false,
            layer_stack: false,
            tied_by_default: true,
            seq_cls_head: score_head,
        }
    }

    fn load(config: &serde_json::Value, w: &mut WeightMap, device: &Device) -> Result<(Self, ModelInfo)> {
        let cfg: Gpt2Config = super::parse_config(config)?;
        let net = Self::from_config(&cfg, w, device)?;
        let sizes = [cfg.vocab_size, cfg.n_embd, cfg.n_layer, cfg.n_positions];
        let info = decoder_info("GPT2LMHeadModel", "GPT2ForSequenceClassification", "gpt2", net.score.as_ref(), sizes);
        Ok((net, info))
    }

    fn input_embeddings(&self) -> Tensor<2> {
        self.transformer.wte.table()
    }

    fn forward(&self, x: Tensor<3>, inputs: Inputs<'_>, cache: Option<&mut KvCache>) -> ForwardOutput {
        let hidden = self.hidden_states(x, inputs.attention_mask, cache);
        decoder_output(hidden, self.score.as_ref(), |h| self.head(h), &inputs)
    }

    fn kv_layout(&self) -> Option<(usize, usize, usize)> {
        let h = &self.transformer.h;
        h.first().map(|b| (h.len(), b.attn.num_heads, b.attn.c_proj.dims().1 / b.attn.num_heads))
    }

    fn attach_head(&mut self, labels: usize, hidden: usize, new_linear: &mut dyn FnMut(usize, usize, bool) -> Linear, _architecture: &str) -> Result<String> {
        self.score = Some(new_linear(labels, hidden, false));
        Ok("GPT2ForSequenceClassification".into())
    }
}

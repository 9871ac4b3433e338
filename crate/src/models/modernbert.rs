//! ModernBERT encoders (`model_type` `modernbert`): `ModernBertModel`,
//! `ModernBertForMaskedLM` checkpoints (read as the encoder plus its prediction head) and
//! `ModernBertForSequenceClassification`. Names follow transformers' `modeling_modernbert.py`,
//! so checkpoint names and PEFT's target names map one to one. What sets it apart from BERT:
//! - rotary positions instead of position embeddings, with one RoPE base for global layers and
//!   another for local ones;
//! - local (sliding-window, both directions: keys at most `local_attention / 2` away) and global
//!   layers alternating (`layer_types`, or every `global_attn_every_n_layers`-th layer global);
//! - pre-norm layers (none before the first layer's attention), a fused `Wqkv`, a GeGLU MLP
//!   (`Wi` gives the input and the gate), no biases and bias-free LayerNorms by default;
//! - a classifier that pools (the first token, or the mean over the mask), then runs the
//!   prediction head (`head.dense`, activation, `head.norm`) before `classifier`.
#![allow(non_snake_case)]

use burn::module::Module;
use burn::tensor::activation::gelu_approximate;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;
use serde_json::Value;

use super::family::{classifier_head, Facts, Family, Inputs};
use super::layers::{attention, gelu_erf, mask_or_ones, merge_heads, split_heads, Embedding, KvCache, LayerNorm, Linear, NamedTensor, Rope, WeightLayout, MASKED};
use super::{ForwardOutput, ModelInfo, NamedLayers};
use crate::error::{Error, Result};
use crate::formats::safetensors::WeightMap;

/// `config.json` of a ModernBERT model (the fields webpeft uses), with `ModernBertConfig`'s defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct ModernBertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    #[serde(default)]
    pub norm_bias: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub classifier_bias: bool,
    #[serde(default = "default_act")]
    pub hidden_activation: String,
    #[serde(default = "default_act")]
    pub classifier_activation: String,
    /// The whole local window; keys at most half of it away are seen.
    #[serde(default = "default_local")]
    pub local_attention: usize,
    #[serde(default = "default_every")]
    pub global_attn_every_n_layers: usize,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// transformers 5: `{full_attention: {rope_theta}, sliding_attention: {rope_theta}}`.
    #[serde(default)]
    pub rope_parameters: Option<Value>,
    #[serde(default)]
    pub global_rope_theta: Option<f64>,
    #[serde(default)]
    pub local_rope_theta: Option<f64>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// `cls` (the first token) or `mean` (over the attention mask).
    #[serde(default = "default_pooling")]
    pub classifier_pooling: String,
    #[serde(default)]
    pub num_labels: Option<usize>,
    #[serde(default)]
    pub id2label: Option<serde_json::Map<String, Value>>,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "gelu".into()
}
fn default_local() -> usize {
    128
}
fn default_every() -> usize {
    3
}
fn default_max_pos() -> usize {
    8192
}
fn default_pooling() -> String {
    "cls".into()
}

impl ModernBertConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Whether layer `i` is a local (sliding-window) one.
    pub fn is_sliding(&self, i: usize) -> bool {
        match &self.layer_types {
            Some(t) => t.get(i).is_some_and(|t| t == "sliding_attention"),
            None => i % self.global_attn_every_n_layers.max(1) != 0,
        }
    }

    /// The RoPE bases of the global and the local layers.
    fn rope_thetas(&self) -> Result<(f32, f32)> {
        let theta = |kind: &str, old: Option<f64>, default: f64| -> Result<f32> {
            let p = self.rope_parameters.as_ref().and_then(|p| p.get(kind)).filter(|v| !v.is_null());
            let rope_type = p.and_then(|p| p.get("rope_type")).and_then(Value::as_str).unwrap_or("default");
            if rope_type != "default" {
                return Err(Error::unsupported("config.json", format!("rope_type '{rope_type}' for {kind} (ModernBERT supports default)")));
            }
            Ok(p.and_then(|p| p.get("rope_theta")).and_then(Value::as_f64).or(old).unwrap_or(default) as f32)
        };
        Ok((theta("full_attention", self.global_rope_theta, 160000.0)?, theta("sliding_attention", self.local_rope_theta, 10000.0)?))
    }

    fn label_count(&self) -> usize {
        self.id2label.as_ref().map(|m| m.len()).or(self.num_labels).unwrap_or(2)
    }

    /// Checks the values the forward pass relies on.
    pub fn validate(&self) -> Result<()> {
        for act in [&self.hidden_activation, &self.classifier_activation] {
            activation(act)?;
        }
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 || self.head_dim() % 2 != 0 {
            return Err(Error::format("config.json", format!("hidden_size {} must split into num_attention_heads {} heads of even size", self.hidden_size, self.num_attention_heads)));
        }
        if self.max_position_embeddings == 0 || self.max_position_embeddings > 1 << 21 {
            return Err(Error::format("config.json", format!("max_position_embeddings {} is out of range (1..=2097152)", self.max_position_embeddings)));
        }
        if !matches!(self.classifier_pooling.as_str(), "cls" | "mean") {
            return Err(Error::unsupported("config.json", format!("classifier_pooling '{}' (supported: cls, mean)", self.classifier_pooling)));
        }
        self.rope_thetas().map(|_| ())
    }
}

/// transformers' activations by name: exact GELU, or its tanh approximation.
fn activation(name: &str) -> Result<bool> {
    match name {
        "gelu" => Ok(false),
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(true),
        other => Err(Error::unsupported("config.json", format!("activation '{other}' (ModernBERT: gelu, gelu_new, gelu_pytorch_tanh)"))),
    }
}

fn act(x: Tensor<3>, tanh: bool) -> Tensor<3> {
    if tanh {
        gelu_approximate(x)
    } else {
        gelu_erf(x)
    }
}

#[derive(Module, Debug)]
pub struct ModernBertEmbeddings {
    pub tok_embeddings: Embedding,
    pub norm: LayerNorm,
}

#[derive(Module, Debug)]
pub struct ModernBertAttention {
    /// Queries, keys and values in one projection.
    pub Wqkv: Linear,
    pub Wo: Linear,
    pub num_heads: usize,
    pub sliding: bool,
}

#[derive(Module, Debug)]
pub struct ModernBertMlp {
    /// The input, then the gate.
    pub Wi: Linear,
    pub Wo: Linear,
}

#[derive(Module, Debug)]
pub struct ModernBertEncoderLayer {
    /// `None` for the first layer (transformers' `nn.Identity`).
    pub attn_norm: Option<LayerNorm>,
    pub attn: ModernBertAttention,
    pub mlp_norm: LayerNorm,
    pub mlp: ModernBertMlp,
}

#[derive(Module, Debug)]
pub struct ModernBertModel {
    pub embeddings: ModernBertEmbeddings,
    pub layers: Vec<ModernBertEncoderLayer>,
    pub final_norm: LayerNorm,
    pub rotary_emb: Rope,
    pub rotary_emb_local: Rope,
    /// Keys more than this many positions away are hidden in local layers.
    pub half_window: usize,
    /// `hidden_activation` is the tanh approximation.
    pub tanh_gelu: bool,
}

/// `head`: dense, activation, norm, between the pooling and the classifier.
#[derive(Module, Debug)]
pub struct ModernBertPredictionHead {
    pub dense: Linear,
    pub norm: LayerNorm,
}

/// A ModernBERT encoder with an optional prediction head and classifier.
#[derive(Module, Debug)]
pub struct ModernBertForSequenceClassification {
    pub model: ModernBertModel,
    /// Present in masked-LM and classification checkpoints; the classifier reads it.
    pub head: Option<ModernBertPredictionHead>,
    pub classifier: Option<Linear>,
    pub mean_pooling: bool,
    pub tanh_classifier_gelu: bool,
}

impl ModernBertForSequenceClassification {
    /// Builds the model. `with_classifier` is true for `ModernBertForSequenceClassification`.
    pub fn from_config(cfg: &ModernBertConfig, w: &mut WeightMap, with_classifier: bool, device: &Device) -> Result<Self> {
        cfg.validate()?;
        w.ensure_prefix("model.", "embeddings.tok_embeddings.weight");
        let (h, why) = (cfg.hidden_size, "config.json");
        let lin = |w: &mut WeightMap, name: String, i: usize, o: usize, bias: bool| Linear::load(w, &name, i, o, bias, WeightLayout::OutIn, why, device);
        let norm = |w: &mut WeightMap, name: String| LayerNorm::load_with(w, &name, h, cfg.norm_bias, cfg.norm_eps, why, device);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(ModernBertEncoderLayer {
                attn_norm: if i == 0 { None } else { Some(norm(w, format!("{p}.attn_norm"))?) },
                attn: ModernBertAttention {
                    Wqkv: lin(w, format!("{p}.attn.Wqkv"), h, 3 * h, cfg.attention_bias)?,
                    Wo: lin(w, format!("{p}.attn.Wo"), h, h, cfg.attention_bias)?,
                    num_heads: cfg.num_attention_heads,
                    sliding: cfg.is_sliding(i),
                },
                mlp_norm: norm(w, format!("{p}.mlp_norm"))?,
                mlp: ModernBertMlp {
                    Wi: lin(w, format!("{p}.mlp.Wi"), h, 2 * cfg.intermediate_size, cfg.mlp_bias)?,
                    Wo: lin(w, format!("{p}.mlp.Wo"), cfg.intermediate_size, h, cfg.mlp_bias)?,
                },
            });
        }
        let (global, local) = cfg.rope_thetas()?;
        let head = if w.contains("head.dense.weight") || with_classifier {
            Some(ModernBertPredictionHead { dense: lin(w, "head.dense".into(), h, h, cfg.classifier_bias)?, norm: norm(w, "head.norm".into())? })
        } else {
            None
        };
        let classifier = if with_classifier { Some(lin(w, "classifier".into(), h, cfg.label_count(), true)?) } else { None };
        let hd = cfg.head_dim();
        Ok(Self {
            model: ModernBertModel {
                embeddings: ModernBertEmbeddings {
                    tok_embeddings: Embedding::load(w, "model.embeddings.tok_embeddings.weight", cfg.vocab_size, h, why, device)?,
                    norm: norm(w, "model.embeddings.norm".into())?,
                },
                layers,
                final_norm: norm(w, "model.final_norm".into())?,
                rotary_emb: Rope::new(hd, cfg.max_position_embeddings, global, None, device),
                rotary_emb_local: Rope::new(hd, cfg.max_position_embeddings, local, None, device),
                half_window: cfg.local_attention / 2,
                tanh_gelu: activation(&cfg.hidden_activation)?,
            },
            head,
            classifier,
            mean_pooling: cfg.classifier_pooling == "mean",
            tanh_classifier_gelu: activation(&cfg.classifier_activation)?,
        })
    }

    /// The additive attention masks `[batch, 1, seq, seq]` of the global and the local layers:
    /// padding hidden everywhere, and in local layers keys more than `half_window` away.
    fn masks(&self, b: usize, s: usize, attention_mask: Option<&[Vec<u32>]>, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let mut global = vec![0.0f32; b * s * s];
        let mut local = vec![0.0f32; b * s * s];
        for r in 0..b {
            for i in 0..s {
                for j in 0..s {
                    let padded = attention_mask.is_some_and(|m| m[r].get(j).copied().unwrap_or(1) == 0);
                    let at = (r * s + i) * s + j;
                    if padded {
                        global[at] = MASKED;
                    }
                    if padded || i.abs_diff(j) > self.model.half_window {
                        local[at] = MASKED;
                    }
                }
            }
        }
        let t = |d: Vec<f32>| Tensor::<4>::from_data(TensorData::new(d, [b, 1, s, s]), device);
        (t(global), t(local))
    }

    /// The encoder's last hidden states `[batch, seq, hidden]` from token embeddings.
    fn encode(&self, x: Tensor<3>, attention_mask: Option<&[Vec<u32>]>) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let device = x.device();
        let (global, local) = self.masks(b, s, attention_mask, &device);
        let m = &self.model;
        let mut x = m.embeddings.norm.forward(x);
        for layer in &m.layers {
            let a = &layer.attn;
            let h = match &layer.attn_norm {
                Some(n) => n.forward(x.clone()),
                None => x.clone(),
            };
            let qkv = a.Wqkv.forward(h);
            let d = qkv.dims()[2] / 3;
            let (rope, mask) = if a.sliding { (&m.rotary_emb_local, &local) } else { (&m.rotary_emb, &global) };
            let q = rope.apply(split_heads(qkv.clone().slice_dim(2, 0..d), a.num_heads), 0);
            let k = rope.apply(split_heads(qkv.clone().slice_dim(2, d..2 * d), a.num_heads), 0);
            let v = split_heads(qkv.slice_dim(2, 2 * d..3 * d), a.num_heads);
            let head_dim = d / a.num_heads;
            let out = attention(q, k, v, Some(mask.clone()), 1.0 / (head_dim as f64).sqrt());
            x = x + a.Wo.forward(merge_heads(out));
            let wi = layer.mlp.Wi.forward(layer.mlp_norm.forward(x.clone()));
            let inner = wi.dims()[2] / 2;
            let (input, gate) = (wi.clone().slice_dim(2, 0..inner), wi.slice_dim(2, inner..2 * inner));
            x = x.clone() + layer.mlp.Wo.forward(act(input, m.tanh_gelu) * gate);
        }
        m.final_norm.forward(x)
    }

    /// Pooling, the prediction head and the classifier: `[batch, num_labels]`.
    fn classify(&self, hidden: &Tensor<3>, classifier: &Linear, attention_mask: Option<&[Vec<u32>]>) -> Tensor<2> {
        let [b, s, _] = hidden.dims();
        let pooled = if self.mean_pooling {
            let m: Vec<f32> = mask_or_ones(attention_mask, b, s).iter().flatten().map(|&v| v as f32).collect();
            let m = Tensor::<3>::from_data(TensorData::new(m, [b, s, 1]), &hidden.device());
            (hidden.clone() * m.clone()).sum_dim(1) / m.sum_dim(1)
        } else {
            hidden.clone().slice_dim(1, 0..1)
        };
        let head = self.head.as_ref().expect("a classifier implies a prediction head");
        let pooled = head.norm.forward(act(head.dense.forward(pooled), self.tanh_classifier_gelu));
        classifier.forward(pooled).reshape([b, classifier.dims().1])
    }
}

impl Family for ModernBertForSequenceClassification {
    fn model_types() -> &'static [&'static str] {
        &["modernbert"]
    }

    /// PEFT has no default LoRA or (IA)³ targets for `modernbert` (it asks for them). webpeft
    /// takes the fused `Wqkv`, the counterpart of the query/value PEFT picks for BERT, and for
    /// (IA)³ also the MLP's output `mlp.Wo` (feed-forward); the adapter config names them.
    fn facts(_model_type: &str) -> Facts {
        Facts {
            lora_targets: &["Wqkv"],
            ia3_targets: Some((&["Wqkv", "mlp.Wo"], &["mlp.Wo"])),
            fan_in_fan_out: false,
            encoder: true,
            layer_stack: false,
            tied_by_default: true,
            seq_cls_head: classifier_head,
        }
    }

    fn load(config: &Value, w: &mut WeightMap, device: &Device) -> Result<(Self, ModelInfo)> {
        let cfg: ModernBertConfig = super::parse_config(config)?;
        let arch = config.get("architectures").and_then(|a| a.get(0)).and_then(Value::as_str).unwrap_or("");
        let with_classifier = arch.ends_with("ForSequenceClassification") || w.contains("classifier.weight");
        let net = Self::from_config(&cfg, w, with_classifier, device)?;
        let (architecture, task) = if with_classifier { ("ModernBertForSequenceClassification", "seq-cls") } else { ("ModernBertModel", "feature-extraction") };
        let info = ModelInfo {
            architecture: architecture.into(),
            model_type: "modernbert".into(),
            task: task.into(),
            vocab_size: cfg.vocab_size,
            hidden_size: cfg.hidden_size,
            num_layers: cfg.num_hidden_layers,
            context_length: cfg.max_position_embeddings,
            num_labels: net.classifier.as_ref().map(|c| c.dims().1),
            ..ModelInfo::default()
        };
        Ok((net, info))
    }

    fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.model.embeddings.tok_embeddings.forward(ids)
    }

    fn input_embeddings(&self) -> Tensor<2> {
        self.model.embeddings.tok_embeddings.table()
    }

    fn forward(&self, x: Tensor<3>, inputs: Inputs<'_>, _cache: Option<&mut KvCache>) -> ForwardOutput {
        let hidden = self.encode(x, inputs.attention_mask);
        let class_logits = self.classifier.as_ref().map(|c| self.classify(&hidden, c, inputs.attention_mask));
        ForwardOutput { last_hidden_state: hidden, token_logits: None, class_logits, virtual_tokens: inputs.virtual_tokens }
    }

    fn named_layers(&mut self) -> NamedLayers<'_> {
        let mut n = NamedLayers::default();
        let m = &mut self.model;
        n.norms.push(("model.embeddings.norm".into(), &mut m.embeddings.norm));
        for (i, l) in m.layers.iter_mut().enumerate() {
            let p = format!("model.layers.{i}");
            n.linears.push((format!("{p}.attn.Wqkv"), &mut l.attn.Wqkv));
            n.linears.push((format!("{p}.attn.Wo"), &mut l.attn.Wo));
            n.linears.push((format!("{p}.mlp.Wi"), &mut l.mlp.Wi));
            n.linears.push((format!("{p}.mlp.Wo"), &mut l.mlp.Wo));
            if let Some(a) = l.attn_norm.as_mut() {
                n.norms.push((format!("{p}.attn_norm"), a));
            }
            n.norms.push((format!("{p}.mlp_norm"), &mut l.mlp_norm));
        }
        n.norms.push(("model.final_norm".into(), &mut m.final_norm));
        if let Some(head) = self.head.as_mut() {
            n.linears.push(("head.dense".into(), &mut head.dense));
            n.norms.push(("head.norm".into(), &mut head.norm));
        }
        if let Some(c) = self.classifier.as_mut() {
            n.linears.push(("classifier".into(), c));
        }
        // Norms list the ones an adapter's `bias="all"` trains: bias-free ones (the default) have none.
        n.norms.retain(|(_, norm)| norm.bias.is_some());
        n
    }

    fn hf_tensors(&self) -> Vec<NamedTensor> {
        let lin = |l: &Linear, p: String| l.hf_tensors(&p, WeightLayout::OutIn);
        let m = &self.model;
        let mut t = vec![NamedTensor::new("model.embeddings.tok_embeddings.weight", m.embeddings.tok_embeddings.table())];
        t.extend(m.embeddings.norm.hf_tensors("model.embeddings.norm"));
        for (i, l) in m.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            if let Some(a) = &l.attn_norm {
                t.extend(a.hf_tensors(&format!("{p}.attn_norm")));
            }
            t.extend(lin(&l.attn.Wqkv, format!("{p}.attn.Wqkv")));
            t.extend(lin(&l.attn.Wo, format!("{p}.attn.Wo")));
            t.extend(l.mlp_norm.hf_tensors(&format!("{p}.mlp_norm")));
            t.extend(lin(&l.mlp.Wi, format!("{p}.mlp.Wi")));
            t.extend(lin(&l.mlp.Wo, format!("{p}.mlp.Wo")));
        }
        t.extend(m.final_norm.hf_tensors("model.final_norm"));
        if let Some(head) = &self.head {
            t.extend(lin(&head.dense, "head.dense".into()));
            t.extend(head.norm.hf_tensors("head.norm"));
        }
        if let Some(c) = &self.classifier {
            t.extend(lin(c, "classifier".into()));
        }
        t
    }

    fn kv_layout(&self) -> Option<(usize, usize, usize)> {
        None
    }

    fn head_weight(&self) -> &'static str {
        "classifier.weight"
    }

    fn attach_head(&mut self, labels: usize, hidden: usize, new_linear: &mut dyn FnMut(usize, usize, bool) -> Linear, _architecture: &str) -> Result<String> {
        if self.head.is_none() {
            return Err(Error::unsupported("model", "this ModernBERT checkpoint has no prediction head (head.dense, head.norm), which the classifier reads; use a masked-LM or classification checkpoint"));
        }
        self.classifier = Some(new_linear(labels, hidden, true));
        Ok("ModernBertForSequenceClassification".into())
    }
}

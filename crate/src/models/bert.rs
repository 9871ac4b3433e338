//! The BERT family of encoders (BERT, MiniLM, RoBERTa, XLM-RoBERTa): `BertModel` and
//! `BertForSequenceClassification`, with token types, attention masks and the
//! pooler. Names follow transformers' `modeling_bert.py`, including its
//! `LayerNorm` fields, so checkpoint names map one to one.
//!
//! RoBERTa (`modeling_roberta.py`, which copies BERT's layers) differs in three places, which
//! [`Flavor`] selects: weights under `roberta.`, positions counted from `pad_token_id + 1` over
//! the non-padding ids (padding takes `pad_token_id`'s row), and a head of its own
//! (`classifier.dense`, tanh, `classifier.out_proj` on the first token) instead of the pooler
//! and `classifier`. The head computes what BERT's pooler and classifier compute, so it is held
//! in the same two fields.
#![allow(non_snake_case)]

use burn::module::Module;
use burn::tensor::activation::tanh;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;

use super::layers::{NamedTensor, attention, gelu_erf, mask_or_ones, merge_heads, padding_mask, split_heads, Embedding, LayerNorm, Linear, WeightLayout};
use crate::error::{Error, Result};
use crate::formats::safetensors::WeightMap;
use super::family::{classifier_head, Facts, Family, Inputs};
use super::{ForwardOutput, ModelInfo, NamedLayers};
use super::layers::KvCache;

/// `config.json` of a BERT-family model.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
    /// Labels of a classification head, by index.
    #[serde(default)]
    pub id2label: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub num_labels: Option<usize>,
    #[serde(default)]
    pub model_type: String,
    #[serde(default)]
    pub pad_token_id: Option<usize>,
}

fn two() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

/// The `model_type`s this file loads.
pub const MODEL_TYPES: [&str; 3] = ["bert", "roberta", "xlm-roberta"];

/// BERT's layout or RoBERTa's (XLM-RoBERTa is RoBERTa's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    #[default]
    Bert,
    /// Positions start after `padding_idx` (`pad_token_id`).
    Roberta { padding_idx: usize },
}

impl Flavor {
    /// The base model's name prefix (`bert.`, `roberta.`).
    pub fn prefix(self) -> &'static str {
        match self {
            Flavor::Bert => "bert.",
            Flavor::Roberta { .. } => "roberta.",
        }
    }

    /// HF module paths of the head's two layers: (pooler or dense, classifier or out_proj).
    pub fn head_paths(self) -> (&'static str, &'static str) {
        match self {
            Flavor::Bert => ("bert.pooler.dense", "classifier"),
            Flavor::Roberta { .. } => ("classifier.dense", "classifier.out_proj"),
        }
    }
}

impl BertConfig {
    /// BERT's or RoBERTa's layout, from `model_type`.
    pub fn flavor(&self) -> Flavor {
        match self.model_type.as_str() {
            "roberta" | "xlm-roberta" => Flavor::Roberta { padding_idx: self.pad_token_id.unwrap_or(1) },
            _ => Flavor::Bert,
        }
    }

    /// Number of classes: `id2label`'s size, else `num_labels`, else transformers' default of 2.
    pub fn label_count(&self) -> usize {
        self.id2label.as_ref().map(|m| m.len()).or(self.num_labels).unwrap_or(2)
    }

    pub fn validate(&self) -> Result<()> {
        if self.hidden_act != "gelu" {
            return Err(Error::unsupported("config.json", format!("hidden_act '{}' (supported: gelu)", self.hidden_act)));
        }
        if let Some(p) = self.position_embedding_type.as_deref().filter(|p| *p != "absolute") {
            return Err(Error::unsupported("config.json", format!("position_embedding_type '{p}' (supported: absolute)")));
        }
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return Err(Error::format(
                "config.json",
                format!("hidden_size {} is not a multiple of num_attention_heads {}", self.hidden_size, self.num_attention_heads),
            ));
        }
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub LayerNorm: LayerNorm,
}

#[derive(Module, Debug)]
pub struct BertSelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub num_heads: usize,
}

/// A dense layer followed by a residual LayerNorm (`BertSelfOutput`, `BertOutput`).
#[derive(Module, Debug)]
pub struct BertResidualOutput {
    pub dense: Linear,
    pub LayerNorm: LayerNorm,
}

impl BertResidualOutput {
    fn forward(&self, x: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        self.LayerNorm.forward(self.dense.forward(x) + residual)
    }
}

#[derive(Module, Debug)]
pub struct BertAttention {
    pub self_: BertSelfAttention,
    pub output: BertResidualOutput,
}

#[derive(Module, Debug)]
pub struct BertIntermediate {
    pub dense: Linear,
}

#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: BertIntermediate,
    pub output: BertResidualOutput,
}

#[derive(Module, Debug)]
pub struct BertEncoder {
    pub layer: Vec<BertLayer>,
}

#[derive(Module, Debug)]
pub struct BertPooler {
    pub dense: Linear,
}

#[derive(Module, Debug)]
pub struct BertModel {
    pub embeddings: BertEmbeddings,
    pub encoder: BertEncoder,
    /// Present in most checkpoints; required by the classification head.
    pub pooler: Option<BertPooler>,
}

/// A BERT encoder with an optional sequence-classification head.
#[derive(Module, Debug)]
pub struct BertForSequenceClassification {
    pub bert: BertModel,
    /// `classifier`, `[hidden, num_labels]` (RoBERTa: `classifier.out_proj`); `None` for a bare
    /// `BertModel`.
    pub classifier: Option<Linear>,
    #[module(skip)]
    pub flavor: Flavor,
}

/// What an encoder forward pass returns.
#[derive(Debug, Clone)]
pub struct EncoderOutput {
    /// `[batch, seq, hidden]`.
    pub last_hidden_state: Tensor<3>,
    /// `[batch, num_labels]` when the model has a classification head.
    pub logits: Option<Tensor<2>>,
}

impl BertForSequenceClassification {
    /// Builds the model. `with_head` is true for `BertForSequenceClassification`
    /// checkpoints (weights under `bert.` plus `classifier`).
    pub fn from_config(cfg: &BertConfig, w: &mut WeightMap, with_head: bool, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let flavor = cfg.flavor();
        let b = flavor.prefix();
        let (pooler_path, classifier_path) = flavor.head_paths();
        w.ensure_prefix(b, "embeddings.word_embeddings.weight");
        let (h, why) = (cfg.hidden_size, "config.json");
        let lin = |w: &mut WeightMap, name: String, i: usize, o: usize| Linear::load(w, &name, i, o, true, WeightLayout::OutIn, why, device);
        let ln = |w: &mut WeightMap, name: String| LayerNorm::load(w, &name, h, cfg.layer_norm_eps, why, device);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("{b}encoder.layer.{i}");
            layers.push(BertLayer {
                attention: BertAttention {
                    self_: BertSelfAttention {
                        query: lin(w, format!("{p}.attention.self.query"), h, h)?,
                        key: lin(w, format!("{p}.attention.self.key"), h, h)?,
                        value: lin(w, format!("{p}.attention.self.value"), h, h)?,
                        num_heads: cfg.num_attention_heads,
                    },
                    output: BertResidualOutput {
                        dense: lin(w, format!("{p}.attention.output.dense"), h, h)?,
                        LayerNorm: ln(w, format!("{p}.attention.output.LayerNorm"))?,
                    },
                },
                intermediate: BertIntermediate { dense: lin(w, format!("{p}.intermediate.dense"), h, cfg.intermediate_size)? },
                output: BertResidualOutput {
                    dense: lin(w, format!("{p}.output.dense"), cfg.intermediate_size, h)?,
                    LayerNorm: ln(w, format!("{p}.output.LayerNorm"))?,
                },
            });
        }
        // RoBERTa's own pooler (bare checkpoints) is never read by its head; it is not loaded.
        let pooler = if w.contains(&format!("{pooler_path}.weight")) || with_head {
            Some(BertPooler { dense: lin(w, pooler_path.into(), h, h)? })
        } else {
            None
        };
        let classifier = if with_head {
            Some(lin(w, classifier_path.into(), h, cfg.label_count())?)
        } else {
            None
        };
        Ok(Self {
            bert: BertModel {
                embeddings: BertEmbeddings {
                    word_embeddings: Embedding::load(w, &format!("{b}embeddings.word_embeddings.weight"), cfg.vocab_size, h, why, device)?,
                    position_embeddings: Embedding::load(w, &format!("{b}embeddings.position_embeddings.weight"), cfg.max_position_embeddings, h, why, device)?,
                    token_type_embeddings: Embedding::load(w, &format!("{b}embeddings.token_type_embeddings.weight"), cfg.type_vocab_size, h, why, device)?,
                    LayerNorm: ln(w, format!("{b}embeddings.LayerNorm"))?,
                },
                encoder: BertEncoder { layer: layers },
                pooler,
            },
            classifier,
            flavor,
        })
    }

    /// Runs the encoder on word embeddings `[batch, seq, hidden]`; `attention_mask` is
    /// `[batch][seq]` with 1 for real tokens. `ids` (host copies of the `[batch, seq]` input ids) give
    /// RoBERTa its positions as transformers counts them: padding ids take the padding row and
    /// the others count up after it. Without ids (as with `inputs_embeds`, which PEFT's prompt
    /// tuning passes), RoBERTa counts every position (`create_position_ids_from_inputs_embeds`).
    pub fn forward_positions(&self, x: Tensor<3>, ids: Option<&[Vec<u32>]>, token_type_ids: Option<Tensor<2, Int>>, attention_mask: Option<&[Vec<u32>]>) -> EncoderOutput {
        let [b, s, _] = x.dims();
        let device = x.device();
        let pos: Vec<i64> = match (self.flavor, ids) {
            (Flavor::Bert, _) => (0..b).flat_map(|_| 0..s as i64).collect(),
            (Flavor::Roberta { padding_idx }, Some(ids)) => ids
                .iter()
                .flat_map(|row| {
                    let mut n = 0;
                    row.iter().map(move |&t| {
                        if t as usize == padding_idx {
                            padding_idx as i64
                        } else {
                            n += 1;
                            padding_idx as i64 + n
                        }
                    })
                })
                .collect(),
            (Flavor::Roberta { padding_idx }, None) => (0..b).flat_map(|_| (0..s as i64).map(move |i| padding_idx as i64 + 1 + i)).collect(),
        };
        let pos = Tensor::<2, Int>::from_data(TensorData::new(pos, [b, s]), &device);
        let types = token_type_ids.unwrap_or_else(|| Tensor::<2, Int>::zeros([b, s], &device));
        let e = &self.bert.embeddings;
        let x = x + e.position_embeddings.forward(pos) + e.token_type_embeddings.forward(types);
        let mask = padding_mask(&mask_or_ones(attention_mask, b, s), &device);
        let mut x = self.bert.embeddings.LayerNorm.forward(x);
        for layer in &self.bert.encoder.layer {
            let a = &layer.attention.self_;
            let q = split_heads(a.query.forward(x.clone()), a.num_heads);
            let k = split_heads(a.key.forward(x.clone()), a.num_heads);
            let v = split_heads(a.value.forward(x.clone()), a.num_heads);
            let head_dim = q.dims()[3];
            let ctx = merge_heads(attention(q, k, v, Some(mask.clone()), 1.0 / (head_dim as f64).sqrt()));
            let x1 = layer.attention.output.forward(ctx, x);
            let inter = gelu_erf(layer.intermediate.dense.forward(x1.clone()));
            x = layer.output.forward(inter, x1);
        }
        let logits = self.classifier.as_ref().map(|c| {
            let [b, _, h] = x.dims();
            let first = x.clone().slice_dim(1, 0..1).reshape([b, h]);
            let pooled = tanh(self.bert.pooler.as_ref().expect("a classifier implies a pooler").dense.forward(first));
            c.forward(pooled)
        });
        EncoderOutput { last_hidden_state: x, logits }
    }

}


/// Sentence-transformers mean pooling: the mask-weighted mean over positions.
pub fn mean_pool(hidden: Tensor<3>, attention_mask: &[Vec<u32>]) -> Tensor<2> {
    let [b, s, _] = hidden.dims();
    let m: Vec<f32> = attention_mask.iter().flatten().map(|&v| v as f32).collect();
    let m = Tensor::<3>::from_data(TensorData::new(m, [b, s, 1]), &hidden.device());
    let summed = (hidden * m.clone()).sum_dim(1);
    let counts = m.sum_dim(1).clamp_min(1e-9);
    (summed / counts).squeeze_dim::<2>(1)
}

impl Family for BertForSequenceClassification {
    fn embed(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        self.bert.embeddings.word_embeddings.forward(input_ids)
    }

    fn named_layers(&mut self) -> NamedLayers<'_> {
        let mut n = NamedLayers::default();
        let (b, (pooler_path, classifier_path)) = (self.flavor.prefix(), self.flavor.head_paths());
        let e = &mut self.bert.embeddings;
        n.norms.push((format!("{b}embeddings.LayerNorm"), &mut e.LayerNorm));
        for (i, l) in self.bert.encoder.layer.iter_mut().enumerate() {
            let p = format!("{b}encoder.layer.{i}");
            let a = &mut l.attention;
            n.linears.push((format!("{p}.attention.self.query"), &mut a.self_.query));
            n.linears.push((format!("{p}.attention.self.key"), &mut a.self_.key));
            n.linears.push((format!("{p}.attention.self.value"), &mut a.self_.value));
            n.linears.push((format!("{p}.attention.output.dense"), &mut a.output.dense));
            n.norms.push((format!("{p}.attention.output.LayerNorm"), &mut a.output.LayerNorm));
            n.linears.push((format!("{p}.intermediate.dense"), &mut l.intermediate.dense));
            n.linears.push((format!("{p}.output.dense"), &mut l.output.dense));
            n.norms.push((format!("{p}.output.LayerNorm"), &mut l.output.LayerNorm));
        }
        if let Some(p) = self.bert.pooler.as_mut() {
            n.linears.push((pooler_path.into(), &mut p.dense));
        }
        if let Some(c) = self.classifier.as_mut() {
            n.linears.push((classifier_path.into(), c));
        }
        n
    }

    fn hf_tensors(&self) -> Vec<NamedTensor> {
        let (b, (pooler_path, classifier_path)) = (self.flavor.prefix(), self.flavor.head_paths());
        let e = &self.bert.embeddings;
        let mut t = vec![
            NamedTensor::new(format!("{b}embeddings.word_embeddings.weight"), e.word_embeddings.table()),
            NamedTensor::new(format!("{b}embeddings.position_embeddings.weight"), e.position_embeddings.table()),
            NamedTensor::new(format!("{b}embeddings.token_type_embeddings.weight"), e.token_type_embeddings.table()),
        ];
        t.extend(e.LayerNorm.hf_tensors(&format!("{b}embeddings.LayerNorm")));
        let lin = |l: &Linear, p: String| l.hf_tensors(&p, WeightLayout::OutIn);
        for (i, l) in self.bert.encoder.layer.iter().enumerate() {
            let p = format!("{b}encoder.layer.{i}");
            let a = &l.attention;
            t.extend(lin(&a.self_.query, format!("{p}.attention.self.query")));
            t.extend(lin(&a.self_.key, format!("{p}.attention.self.key")));
            t.extend(lin(&a.self_.value, format!("{p}.attention.self.value")));
            t.extend(lin(&a.output.dense, format!("{p}.attention.output.dense")));
            t.extend(a.output.LayerNorm.hf_tensors(&format!("{p}.attention.output.LayerNorm")));
            t.extend(lin(&l.intermediate.dense, format!("{p}.intermediate.dense")));
            t.extend(lin(&l.output.dense, format!("{p}.output.dense")));
            t.extend(l.output.LayerNorm.hf_tensors(&format!("{p}.output.LayerNorm")));
        }
        if let Some(p) = &self.bert.pooler {
            t.extend(lin(&p.dense, pooler_path.into()));
        }
        if let Some(c) = &self.classifier {
            t.extend(lin(c, classifier_path.into()));
        }
        t
    }

    fn model_types() -> &'static [&'static str] {
        &MODEL_TYPES
    }

    fn facts(model_type: &str) -> Facts {
        Facts {
            lora_targets: &["query", "value"],
            // PEFT has no (IA)³ defaults for XLM-RoBERTa.
            ia3_targets: (model_type != "xlm-roberta").then_some((&["key", "output.dense", "value"], &["output.dense"])),
            fan_in_fan_out: false,
            encoder: true,
            layer_stack: false,
            tied_by_default: true,
            // RoBERTa's head is a dense layer and an out_proj, both with biases.
            seq_cls_head: if model_type == "bert" { classifier_head } else { |h, k| classifier_head(h, k) + h * (h + 1) },
        }
    }

    fn load(config: &serde_json::Value, w: &mut WeightMap, device: &Device) -> Result<(Self, ModelInfo)> {
        let cfg: BertConfig = super::parse_config(config)?;
        let arch = config.get("architectures").and_then(|a| a.get(0)).and_then(|a| a.as_str()).unwrap_or("");
        let class = match cfg.model_type.as_str() {
            "roberta" => "Roberta",
            "xlm-roberta" => "XLMRoberta",
            _ => "Bert",
        };
        let head = format!("{}.weight", cfg.flavor().head_paths().1);
        let with_head = arch.ends_with("ForSequenceClassification") || w.contains(&head);
        let net = Self::from_config(&cfg, w, with_head, device)?;
        let (architecture, task) = if with_head { (format!("{class}ForSequenceClassification"), "seq-cls") } else { (format!("{class}Model"), "feature-extraction") };
        // RoBERTa's first positions are the padding row and those before it (514 = 512 + 2).
        let context_length = match cfg.flavor() {
            Flavor::Roberta { padding_idx } => cfg.max_position_embeddings.saturating_sub(padding_idx + 1),
            Flavor::Bert => cfg.max_position_embeddings,
        };
        let info = ModelInfo {
            architecture,
            model_type: cfg.model_type.clone(),
            task: task.into(),
            vocab_size: cfg.vocab_size,
            hidden_size: cfg.hidden_size,
            num_layers: cfg.num_hidden_layers,
            context_length,
            num_labels: net.classifier.as_ref().map(|c| c.dims().1),
            ..ModelInfo::default()
        };
        Ok((net, info))
    }

    fn input_embeddings(&self) -> Tensor<2> {
        self.bert.embeddings.word_embeddings.table()
    }

    fn forward(&self, x: Tensor<3>, inputs: Inputs<'_>, _cache: Option<&mut KvCache>) -> ForwardOutput {
        // RoBERTa's positions follow the ids, unless virtual tokens make the input embeddings.
        let out = self.forward_positions(x, inputs.ids, inputs.token_type_ids, inputs.attention_mask);
        ForwardOutput { last_hidden_state: out.last_hidden_state, token_logits: None, class_logits: out.logits, virtual_tokens: inputs.virtual_tokens }
    }

    fn kv_layout(&self) -> Option<(usize, usize, usize)> {
        None
    }

    fn head_weight(&self) -> &'static str {
        match self.flavor {
            Flavor::Bert => "classifier.weight",
            Flavor::Roberta { .. } => "classifier.out_proj.weight",
        }
    }

    fn attach_head(&mut self, labels: usize, hidden: usize, new_linear: &mut dyn FnMut(usize, usize, bool) -> Linear, architecture: &str) -> Result<String> {
        let classifier = new_linear(labels, hidden, true);
        let class = match self.flavor {
            // RoBERTa's head brings its own dense layer (`classifier.dense`), drawn after
            // out_proj's weight.
            Flavor::Roberta { .. } => {
                self.bert.pooler = Some(BertPooler { dense: new_linear(hidden, hidden, true) });
                architecture.replace("Model", "ForSequenceClassification")
            }
            Flavor::Bert => {
                if self.bert.pooler.is_none() {
                    return Err(Error::unsupported("model", "this BERT checkpoint has no pooler, which the classification head reads"));
                }
                "BertForSequenceClassification".to_string()
            }
        };
        self.classifier = Some(classifier);
        Ok(class)
    }
}

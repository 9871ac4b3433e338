//! Prefix tuning (P-tuning v2 style), as HF PEFT defines it
//! (`peft/tuners/prefix_tuning/`): learned keys and values prepended to the
//! attention of every decoder layer.
//!
//! PEFT stores them as one `[num_virtual_tokens, num_layers * 2 * kv_dim]`
//! table (`prompt_embeddings`), laid out `[T, layer, k|v, kv_head, head_dim]`.
//! The keys are used as stored (they stand for cached, already-rotated keys),
//! and the real tokens take positions `T..`.
//!
//! The config, the virtual tokens' code, and creating, loading and exporting an adapter.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::create::{host, normal, AdapterSpec, NewAdapter};
use super::{shape_err, Owned, Tuner, CONFIG};
use crate::error::{Error, Result};
use crate::models::hooks::{TokenMethod, TokenPlace, VirtualTokens};
use crate::models::layers::{param, NamedTensor};
use crate::models::taps::{self, Rule};
use crate::models::{KvCache, Model};

/// `adapter_config.json` of a prefix-tuning adapter (the fields webpeft uses).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrefixTuningConfig {
    pub num_virtual_tokens: usize,
    /// `head_dim * num_key_value_heads` (PEFT replaces the hidden size with this under GQA).
    #[serde(default)]
    pub token_dim: Option<usize>,
    #[serde(default)]
    pub num_layers: Option<usize>,
    /// The number of key/value heads (PEFT stores the KV head count under GQA).
    #[serde(default)]
    pub num_attention_heads: Option<usize>,
    #[serde(default)]
    pub prefix_projection: bool,
}

/// Prefix tuning's code: the table `[num_virtual_tokens, num_layers * 2 * kv_heads * head_dim]`
/// becomes every layer's first keys and values.
#[derive(Debug)]
pub struct PrefixTuning {
    pub num_layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl TokenMethod for PrefixTuning {
    fn place(&self) -> TokenPlace {
        TokenPlace::KeyValues
    }

    fn checkpoint_name(&self) -> &'static str {
        "prefix_embeddings"
    }

    /// Each layer's keys and values `[batch, kv_heads, T, head_dim]`.
    fn key_values(&self, tokens: &VirtualTokens, batch: usize) -> KvCache {
        let (t, l, h, d) = (tokens.len(), self.num_layers, self.kv_heads, self.head_dim);
        let weight = &tokens.table;
        if let Some(id) = taps::trained(weight).filter(|_| taps::recording()) {
            // DP's per-example gradients: each row gets its own copy of the table, tapped.
            let rows = taps::tap(weight.val().unsqueeze::<3>().expand([batch, t, l * 2 * h * d]), vec![(id, Rule::Copy, None)]);
            let kv = rows.reshape([batch, t, l * 2, h, d]).permute([2, 0, 3, 1, 4]); // [2L, B, H, T, D]
            let take = |j: usize| Some(kv.clone().slice_dim(0, j..j + 1).reshape([batch, h, t, d]));
            return KvCache { layers: (0..l).map(|i| take(2 * i).zip(take(2 * i + 1))).collect() };
        }
        let kv = weight.val().reshape([t, l * 2, h, d]).permute([1, 2, 0, 3]); // [2L, H, T, D]
        let layers = (0..l)
            .map(|i| {
                let take = |j: usize| kv.clone().slice_dim(0, j..j + 1).expand([batch, h, t, d]);
                Some((take(2 * i), take(2 * i + 1)))
            })
            .collect();
        KvCache { layers }
    }
}

/// The model's `(layers, kv_heads, head_dim)`, or the error PEFT gives encoders.
fn layout(model: &Model, option: &str) -> Result<(usize, usize, usize)> {
    model.kv_layout().ok_or_else(|| Error::unsupported(option, format!("prefix tuning needs a decoder; {} has no key/value cache (PEFT refuses it too)", model.info.architecture)))
}

/// The prefix-tuning method in the registry (`peft_type` `PREFIX_TUNING`).
pub struct PrefixTuner;

impl Tuner for PrefixTuner {
    fn peft_type(&self) -> &'static str {
        "PREFIX_TUNING"
    }

    fn prompt_learning(&self) -> bool {
        true
    }

    fn tensor_keys(&self) -> &'static [&'static str] {
        &["prompt_embeddings"]
    }

    fn check(&self, model: &Model, config: &Value) -> Result<()> {
        parse(config)?;
        layout(model, CONFIG).map(|_| ())
    }

    fn create(&self, model: &mut Model, spec: &AdapterSpec, new: &mut NewAdapter) -> Result<Value> {
        let t = spec.virtual_tokens.unwrap_or(8);
        if t == 0 {
            return Err(Error::input("--virtual-tokens", "must be at least 1"));
        }
        let (layers, kv_heads, head_dim) = layout(model, "--method")?;
        let width = layers * 2 * kv_heads * head_dim;
        let table = param(host(vec![t, width], normal(&mut new.rng, t * width, 1.0)), &model.device);
        model.virtual_tokens = Some(VirtualTokens { table, method: Arc::new(PrefixTuning { num_layers: layers, kv_heads, head_dim }) });
        Ok(json!({
            "auto_mapping": null, "base_model_name_or_path": spec.base_model, "encoder_hidden_size": kv_heads * head_dim,
            "inference_mode": true, "init_weights": null, "modules_to_save": new.heads, "num_attention_heads": kv_heads,
            "num_layers": layers, "num_transformer_submodules": 1, "num_virtual_tokens": t, "peft_type": "PREFIX_TUNING",
            "peft_version": super::PEFT_VERSION, "prefix_projection": false, "revision": null, "task_type": new.task_type,
            "token_dim": kv_heads * head_dim
        }))
    }

    fn load(&self, model: &mut Model, config: &Value, own: Owned) -> Result<()> {
        let cfg = parse(config)?;
        let n = cfg.num_virtual_tokens;
        let t = super::take_table(own)?;
        let (layers, kv_heads, head_dim) = layout(model, CONFIG)?;
        let want = [n, layers * 2 * kv_heads * head_dim];
        if t.shape != want {
            let why = format!("num_virtual_tokens={n} and the model's {layers} layers x 2 x {kv_heads} KV heads x {head_dim}");
            return Err(shape_err("prompt_embeddings", &t.shape, &want, &why));
        }
        if cfg.num_layers.is_some_and(|l| l != layers) {
            return Err(Error::format(CONFIG, format!("num_layers is {}, but the model has {layers} layers", cfg.num_layers.unwrap_or(0))));
        }
        let table = param(t, &model.device);
        model.virtual_tokens = Some(VirtualTokens { table, method: Arc::new(PrefixTuning { num_layers: layers, kv_heads, head_dim }) });
        Ok(())
    }

    fn export(&self, model: &mut Model) -> Result<Vec<NamedTensor>> {
        super::export_table(model)
    }
}

fn parse(config: &Value) -> Result<PrefixTuningConfig> {
    serde_json::from_value(config.clone()).map_err(|e| Error::format(CONFIG, e.to_string()))
}


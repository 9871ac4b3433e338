//! Prefix tuning (P-tuning v2 style), as HF PEFT defines it
//! (`peft/tuners/prefix_tuning/`): learned keys and values prepended to the
//! attention of every decoder layer.
//!
//! PEFT stores them as one `[num_virtual_tokens, num_layers * 2 * kv_dim]`
//! table (`prompt_embeddings`), laid out `[T, layer, k|v, kv_head, head_dim]`.
//! The keys are used as stored (they stand for cached, already-rotated keys),
//! and the real tokens take positions `T..`.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::models::taps::{self, Rule};

use crate::models::KvCache;

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

/// The learned per-layer keys and values.
#[derive(Module, Debug)]
pub struct PrefixEncoder {
    /// `[num_virtual_tokens, num_layers * 2 * kv_heads * head_dim]`.
    pub weight: Param<Tensor<2>>,
    pub num_layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl PrefixEncoder {
    /// Number of virtual tokens.
    pub fn len(&self) -> usize {
        self.weight.dims()[0]
    }

    /// A cache holding the prefix keys and values for a batch of `batch` rows,
    /// each `[batch, kv_heads, T, head_dim]`.
    pub fn cache(&self, batch: usize) -> KvCache {
        let (t, l, h, d) = (self.len(), self.num_layers, self.kv_heads, self.head_dim);
        if let Some(id) = taps::trained(&self.weight).filter(|_| taps::recording()) {
            // DP's per-example gradients: each row gets its own copy of the table, tapped.
            let rows = taps::tap(self.weight.val().unsqueeze::<3>().expand([batch, t, l * 2 * h * d]), vec![(id, Rule::Copy, None)]);
            let kv = rows.reshape([batch, t, l * 2, h, d]).permute([2, 0, 3, 1, 4]); // [2L, B, H, T, D]
            let take = |j: usize| Some(kv.clone().slice_dim(0, j..j + 1).reshape([batch, h, t, d]));
            return KvCache { layers: (0..l).map(|i| take(2 * i).zip(take(2 * i + 1))).collect() };
        }
        let kv = self.weight.val().reshape([t, l * 2, h, d]).permute([1, 2, 0, 3]); // [2L, H, T, D]
        let layers = (0..l)
            .map(|i| {
                let take = |j: usize| kv.clone().slice_dim(0, j..j + 1).expand([batch, h, t, d]);
                Some((take(2 * i), take(2 * i + 1)))
            })
            .collect();
        KvCache { layers }
    }
}

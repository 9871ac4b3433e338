//! Prompt tuning, as HF PEFT defines it (`peft/tuners/prompt_tuning/`):
//! `num_virtual_tokens` learned embeddings prepended to the input embeddings.
//!
//! The model then runs on `virtual + seq` positions, so position embeddings,
//! token types and BERT's embedding LayerNorm apply to the virtual tokens too,
//! and a causal LM returns logits for the virtual positions first.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::models::taps::{self, Rule};

/// `adapter_config.json` of a prompt-tuning adapter (the fields webpeft uses).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromptTuningConfig {
    pub num_virtual_tokens: usize,
    /// Width of each virtual token (the model's hidden size).
    #[serde(default)]
    pub token_dim: Option<usize>,
    /// `"RANDOM"` or `"TEXT"` (the init text's token embeddings, repeated to fill).
    #[serde(default = "random")]
    pub prompt_tuning_init: String,
    #[serde(default)]
    pub prompt_tuning_init_text: Option<String>,
}

fn random() -> String {
    "RANDOM".into()
}

/// The learned virtual-token embeddings, `[num_virtual_tokens, hidden]`
/// (PEFT's `prompt_embeddings`).
#[derive(Module, Debug)]
pub struct PromptEmbedding {
    pub weight: Param<Tensor<2>>,
}

impl PromptEmbedding {
    /// Number of virtual tokens.
    pub fn len(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Prepends the virtual tokens to `[batch, seq, hidden]` embeddings.
    pub fn prepend(&self, embeds: Tensor<3>) -> Tensor<3> {
        let [b, _, h] = embeds.dims();
        let t = self.len();
        let virtual_tokens = self.weight.val().unsqueeze::<3>().expand([b, t, h]);
        // DP's per-example gradients: each row's copy of the table.
        let virtual_tokens = taps::tap_one(virtual_tokens, &self.weight, Rule::Copy, None);
        Tensor::cat(vec![virtual_tokens, embeds], 1)
    }
}

/// Number of initial values for `TEXT` init: PEFT tokenises the text (no
/// special tokens) and repeats or cuts the ids to `num_virtual_tokens`.
pub fn init_text_ids(text_ids: &[u32], num_virtual_tokens: usize) -> Vec<u32> {
    if text_ids.is_empty() {
        return vec![];
    }
    text_ids.iter().copied().cycle().take(num_virtual_tokens).collect()
}

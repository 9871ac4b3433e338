//! Prompt tuning, as HF PEFT defines it (`peft/tuners/prompt_tuning/`):
//! `num_virtual_tokens` learned embeddings prepended to the input embeddings.
//!
//! The model then runs on `virtual + seq` positions, so position embeddings,
//! token types and BERT's embedding LayerNorm apply to the virtual tokens too,
//! and a causal LM returns logits for the virtual positions first.
//!
//! The config, the virtual tokens' code, and creating, loading and exporting an adapter.

use std::sync::Arc;

use burn::module::Param;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::create::{host, normal, AdapterSpec, NewAdapter};
use super::{shape_err, Owned, Tuner, CONFIG};
use crate::error::{Error, Result};
use crate::models::hooks::{TokenMethod, TokenPlace, VirtualTokens};
use crate::models::layers::{param, tensor, NamedTensor};
use crate::models::taps::{self, Rule};
use crate::models::Model;

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

/// Prompt tuning's code: the table `[num_virtual_tokens, hidden]` (PEFT's `prompt_embeddings`)
/// goes before the input embeddings.
#[derive(Debug)]
pub struct PromptTuning;

impl TokenMethod for PromptTuning {
    fn place(&self) -> TokenPlace {
        TokenPlace::Embeddings
    }

    fn checkpoint_name(&self) -> &'static str {
        "prompt_embeddings"
    }

    fn prepend(&self, tokens: &VirtualTokens, embeds: Tensor<3>) -> Tensor<3> {
        let [b, _, h] = embeds.dims();
        let virtual_tokens = tokens.table.val().unsqueeze::<3>().expand([b, tokens.len(), h]);
        // DP's per-example gradients: each row's copy of the table.
        let virtual_tokens = taps::tap_one(virtual_tokens, &tokens.table, Rule::Copy, None);
        Tensor::cat(vec![virtual_tokens, embeds], 1)
    }
}

fn attach(model: &mut Model, table: Param<Tensor<2>>) {
    model.virtual_tokens = Some(VirtualTokens { table, method: Arc::new(PromptTuning) });
}

/// The prompt-tuning method in the registry (`peft_type` `PROMPT_TUNING`).
pub struct PromptTuner;

impl Tuner for PromptTuner {
    fn peft_type(&self) -> &'static str {
        "PROMPT_TUNING"
    }

    fn prompt_learning(&self) -> bool {
        true
    }

    fn tensor_keys(&self) -> &'static [&'static str] {
        &["prompt_embeddings"]
    }

    fn check(&self, _model: &Model, config: &Value) -> Result<()> {
        parse(config).map(|_| ())
    }

    fn create(&self, model: &mut Model, spec: &AdapterSpec, new: &mut NewAdapter) -> Result<Value> {
        let t = spec.virtual_tokens.unwrap_or(8);
        if t == 0 {
            return Err(Error::input("--virtual-tokens", "must be at least 1"));
        }
        let hidden = model.info.hidden_size;
        let data = match &spec.init_text {
            Some(text) => {
                let tok = model.tokenizer.as_ref().ok_or_else(|| Error::input("--init-text", "the model has no tokenizer"))?;
                let ids = init_text_ids(&tok.encode(text, false)?, t);
                if ids.is_empty() {
                    return Err(Error::input("--init-text", "the init text gives no tokens"));
                }
                embedding_rows(model, &ids)
            }
            None => tensor(host(vec![t, hidden], normal(&mut new.rng, t * hidden, 1.0)), &model.device),
        };
        attach(model, Param::from_tensor(data));
        let heads_count = model.config.get("num_attention_heads").or(model.config.get("n_head")).and_then(Value::as_u64).unwrap_or(0);
        Ok(json!({
            "auto_mapping": null, "base_model_name_or_path": spec.base_model, "inference_mode": true,
            "modules_to_save": new.heads, "num_attention_heads": heads_count, "num_layers": model.info.num_layers,
            "num_transformer_submodules": 1, "num_virtual_tokens": t, "peft_type": "PROMPT_TUNING",
            "peft_version": super::PEFT_VERSION,
            "prompt_tuning_init": if spec.init_text.is_some() { "TEXT" } else { "RANDOM" },
            "prompt_tuning_init_text": spec.init_text, "revision": null, "task_type": new.task_type,
            "token_dim": hidden, "tokenizer_kwargs": null,
            "tokenizer_name_or_path": spec.init_text.as_ref().map(|_| spec.base_model.clone())
        }))
    }

    fn load(&self, model: &mut Model, config: &Value, own: Owned) -> Result<()> {
        let n = parse(config)?.num_virtual_tokens;
        let t = super::take_table(own)?;
        let want = [n, model.info.hidden_size];
        if t.shape != want {
            return Err(shape_err("prompt_embeddings", &t.shape, &want, "num_virtual_tokens and the model's hidden size"));
        }
        let table = param(t, &model.device);
        attach(model, table);
        Ok(())
    }

    fn export(&self, model: &mut Model) -> Result<Vec<NamedTensor>> {
        super::export_table(model)
    }
}

fn parse(config: &Value) -> Result<PromptTuningConfig> {
    serde_json::from_value(config.clone()).map_err(|e| Error::format(CONFIG, e.to_string()))
}

/// Rows of the input embedding table (prompt tuning's TEXT init), detached.
fn embedding_rows(model: &Model, ids: &[u32]) -> Tensor<2> {
    let table = model.network.family().input_embeddings();
    let idx: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
    let idx = Tensor::<1, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(idx, [ids.len()]), &model.device);
    table.detach().select(0, idx)
}

/// Number of initial values for `TEXT` init: PEFT tokenises the text (no
/// special tokens) and repeats or cuts the ids to `num_virtual_tokens`.
pub fn init_text_ids(text_ids: &[u32], num_virtual_tokens: usize) -> Vec<u32> {
    if text_ids.is_empty() {
        return vec![];
    }
    text_ids.iter().copied().cycle().take(num_virtual_tokens).collect()
}

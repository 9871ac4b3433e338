//! `merge`: folds an adapter into the base weights (PEFT's
//! `merge_and_unload`) and writes a plain HF model directory that
//! transformers loads: `config.json`, `model.safetensors` (F32) and the
//! tokenizer.

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::formats::safetensors::{write_f32, OutTensor};
use crate::generate::read_f32;
use crate::models::Model;

/// Merges `model`'s adapter and returns the files of the merged model by
/// name. LoRA, DoRA, (IA)³ and BitFit merge; prompt and prefix tuning have
/// no weights to fold into (PEFT cannot merge them either).
pub async fn merge(model: &Model) -> Result<Vec<(String, Vec<u8>)>> {
    if model.virtual_tokens.is_some() {
        return Err(Error::unsupported("merge", "prompt and prefix tuning add virtual tokens and cannot be merged into the weights (as in PEFT); use the adapter directly"));
    }
    let named = model.network.family().hf_tensors();
    let mut tensors = Vec::with_capacity(named.len());
    for t in named {
        tensors.push(OutTensor { name: t.name, shape: t.shape, data: read_f32(t.values).await? });
    }
    let weights = write_f32(&tensors, Some(&[("format", "pt")]))?;
    let mut config = model.config.clone();
    if let Some(c) = config.as_object_mut() {
        // The weights are written in F32 whatever the source stored.
        c.remove("torch_dtype");
        c.insert("dtype".into(), json!("float32"));
        if c.get("architectures").is_none() {
            c.insert("architectures".into(), json!([model.info.architecture]));
        }
    }
    let mut files = vec![
        ("config.json".to_string(), serde_json::to_vec_pretty(&config).map_err(|e| Error::io("config.json", e.to_string()))?),
        ("model.safetensors".to_string(), weights),
    ];
    if let Some(tok) = &model.tokenizer {
        let json = tok.inner.to_string(true).map_err(|e| Error::io("tokenizer.json", e.to_string()))?;
        files.push(("tokenizer.json".into(), json.into_bytes()));
        let mut cfg = serde_json::Map::new();
        cfg.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
        for (k, v) in [("chat_template", &tok.chat_template), ("bos_token", &tok.bos_token), ("eos_token", &tok.eos_token)] {
            if let Some(v) = v {
                cfg.insert(k.into(), Value::String(v.clone()));
            }
        }
        files.push(("tokenizer_config.json".into(), serde_json::to_vec_pretty(&Value::Object(cfg)).map_err(|e| Error::io("tokenizer_config.json", e.to_string()))?));
    }
    Ok(files)
}

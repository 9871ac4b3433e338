//! Writing an adapter exactly as PEFT's `save_pretrained` does:
//! `adapter_config.json` and `adapter_model.safetensors` (F32, metadata
//! `{"format": "pt"}`), with PEFT's key names and `[out, in]` layouts.
//!
//! Every value is read from the device asynchronously, so this runs in the
//! browser too.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::formats::safetensors::{write_f32, OutTensor};
use crate::generate::read_f32;
use crate::models::Model;

/// The two files of a PEFT adapter, in memory.
#[derive(Debug, Clone)]
pub struct AdapterFiles {
    pub config: Vec<u8>,
    pub weights: Vec<u8>,
}

async fn out<const D: usize>(name: String, t: burn::tensor::Tensor<D>, shape: Vec<usize>) -> Result<OutTensor> {
    Ok(OutTensor { name, shape, data: read_f32(t).await? })
}

/// `modules_to_save` as PEFT matches it (a plain `endswith` on the module or a module containing
/// it).
fn saved_head(config: &Value, module: &str) -> bool {
    config.get("modules_to_save").and_then(Value::as_array).is_some_and(|l| crate::models::saved_module(module, l.iter().filter_map(Value::as_str)))
}

/// Serialises the model's adapter (see the module docs). The model must
/// carry an adapter, loaded or created.
pub async fn export_adapter(model: &mut Model) -> Result<AdapterFiles> {
    let config = model.adapter_config.clone().ok_or_else(|| Error::input("adapter", "the model has no adapter to export"))?;
    let peft_type = config.get("peft_type").and_then(Value::as_str).unwrap_or("").to_string();
    let tuner = super::tuner_for(&peft_type).ok_or_else(|| Error::unsupported("adapter", format!("exporting peft_type {peft_type} is not supported")))?;
    // Prompt learning's `base_model` is the HF model itself: no `.model.`.
    let p = if tuner.prompt_learning() { "base_model." } else { "base_model.model." };
    // PEFT's `bias` (LoRA's; methods without it train no bias).
    let bias = config.get("bias").and_then(Value::as_str).unwrap_or("none").to_string();
    let mut tensors = Vec::new();
    for t in tuner.export(model)? {
        tensors.push(OutTensor { name: t.name, shape: t.shape, data: read_f32(t.values).await? });
    }
    let named = model.named_layers();
    for (name, lin) in named.linears {
        let (d_in, d_out) = lin.dims();
        if saved_head(&config, &name) {
            tensors.push(out(format!("{p}{name}.weight"), lin.weight().transpose(), vec![d_out, d_in]).await?);
            if let Some(b) = &lin.bias {
                tensors.push(out(format!("{p}{name}.bias"), b.val(), vec![d_out]).await?);
                // bias="all" also catches the head wrapper's own copy.
                if bias == "all" {
                    tensors.push(out(format!("{p}{}", crate::models::head_param(&name, "modules_to_save", "bias")), b.val(), vec![d_out]).await?);
                }
            }
            continue;
        }
        let wrapped = !lin.adapters.is_empty();
        let trained_bias = bias == "all" || (bias == "lora_only" && wrapped);
        if let (true, Some(b)) = (trained_bias, &lin.bias) {
            // A wrapped layer keeps its own bias under `base_layer`.
            let key = if wrapped { format!("{p}{name}.base_layer.bias") } else { format!("{p}{name}.bias") };
            tensors.push(out(key, b.val(), vec![d_out]).await?);
        }
    }
    if bias == "all" {
        for (name, norm) in named.norms {
            if let Some(b) = &norm.bias {
                tensors.push(out(format!("{p}{name}.bias"), b.val(), vec![b.dims()[0]]).await?);
            }
        }
    }
    for (name, t) in &model.adapter_extras {
        let shape = t.dims().to_vec();
        tensors.push(out(name.clone(), t.clone(), shape).await?);
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let weights = write_f32(&tensors, Some(&[("format", "pt")]))?;
    let config = serde_json::to_vec_pretty(&config).map_err(|e| Error::format("adapter_config.json", e.to_string()))?;
    Ok(AdapterFiles { config, weights })
}

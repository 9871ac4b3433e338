//! Writing an adapter exactly as PEFT's `save_pretrained` does:
//! `adapter_config.json` and `adapter_model.safetensors` (F32, metadata
//! `{"format": "pt"}`), with PEFT's key names and `[out, in]` layouts.
//!
//! Every value is read from the device asynchronously, so this runs in the
//! browser too.

use serde_json::Value;

use super::lora::LoraConfig;
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
    let mut tensors = Vec::new();
    match peft_type.as_str() {
        "LORA" | "IA3" => {
            let p = "base_model.model.";
            let bias = if peft_type == "LORA" {
                serde_json::from_value::<LoraConfig>(config.clone()).map_err(|e| Error::format("adapter_config.json", e.to_string()))?.bias
            } else {
                "none".into()
            };
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
                if let Some(l) = &lin.lora {
                    let r = l.lora_a.dims()[1];
                    tensors.push(out(format!("{p}{name}.lora_A.weight"), l.lora_a.val().transpose(), vec![r, d_in]).await?);
                    tensors.push(out(format!("{p}{name}.lora_B.weight"), l.lora_b.val().transpose(), vec![d_out, r]).await?);
                    if let Some(m) = &l.magnitude {
                        tensors.push(out(format!("{p}{name}.lora_magnitude_vector"), m.val(), vec![d_out]).await?);
                    }
                }
                if let Some(v) = &lin.ia3 {
                    let shape = if v.feedforward { vec![1, d_in] } else { vec![d_out, 1] };
                    tensors.push(out(format!("{p}{name}.ia3_l"), v.vector.val(), shape).await?);
                }
                let trained_bias = bias == "all" || (bias == "lora_only" && lin.lora.is_some());
                if let (true, Some(b)) = (trained_bias, &lin.bias) {
                    // A LoRA-wrapped layer keeps its own bias under `base_layer`.
                    let key = if lin.lora.is_some() { format!("{p}{name}.base_layer.bias") } else { format!("{p}{name}.bias") };
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
        }
        "PROMPT_TUNING" | "PREFIX_TUNING" => {
            let table = match (&model.prompt, &model.prefix) {
                (Some(pe), _) => pe.weight.val(),
                (None, Some(pe)) => pe.weight.val(),
                _ => return Err(Error::input("adapter", format!("the {peft_type} adapter has no prompt table"))),
            };
            let shape = table.dims().to_vec();
            tensors.push(out("prompt_embeddings".into(), table, shape).await?);
            // Prompt learning's `base_model` is the HF model itself: no `.model.`.
            for (name, lin) in model.named_layers().linears {
                if saved_head(&config, &name) {
                    let (d_in, d_out) = lin.dims();
                    tensors.push(out(format!("base_model.{name}.weight"), lin.weight().transpose(), vec![d_out, d_in]).await?);
                    if let Some(b) = &lin.bias {
                        tensors.push(out(format!("base_model.{name}.bias"), b.val(), vec![d_out]).await?);
                    }
                }
            }
        }
        other => return Err(Error::unsupported("adapter", format!("exporting peft_type {other} is not supported"))),
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

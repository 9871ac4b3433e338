//! A LoRA adapter as llama.cpp's GGUF LoRA (the layout of its `convert_lora_to_gguf.py`), for
//! llama.cpp, Ollama (`ADAPTER` in a Modelfile) and wllama: metadata `general.type = adapter`,
//! `adapter.type = lora`, `adapter.lora.alpha`, the base's `general.architecture`, and per
//! adapted matrix `<gguf name>.lora_a` (PEFT's `lora_A` `[r, in]`) and `.lora_b` (`lora_B`
//! `[out, r]`) in F32, under the base GGUF's tensor names. For `llama` the `attn_q`/`attn_k`
//! `lora_b` rows are permuted as llama.cpp permutes those weights.
//!
//! llama.cpp scales each adapter by `alpha / r` (r read from the tensors). Where every module's
//! PEFT scaling times its rank is the same (plain LoRA; rsLoRA, whose `alpha / sqrt(r)` is
//! written as `alpha * sqrt(r)`), that is the alpha written; otherwise (`rank_pattern` or
//! `alpha_pattern` with differing ratios) each `lora_b` carries its module's scaling and alpha
//! is 0, which llama.cpp reads as a scale of 1.

use crate::error::{Error, Result};
use crate::formats::gguf::{self, GgmlType, GgufFamily, Writer};
use crate::generate::read_f32;
use super::lora::Lora;
use crate::models::{gguf_architecture, gguf_architectures, Model};

/// The base GGUF's tensor name of an HF linear module (`model.layers.3.mlp.up_proj` ->
/// `blk.3.ffn_up.weight`), the inverse of the family's `GgufFamily::tensor_name`.
fn gguf_name(family: &dyn GgufFamily, arch: &str, module: &str, n_layers: u64) -> Option<String> {
    let layer: u64 = module.strip_prefix("model.layers.")?.split('.').next()?.parse().ok()?;
    family
        .projection_parts()
        .iter()
        .map(|part| format!("blk.{layer}.{part}.weight"))
        .find(|g| family.tensor_name(arch, g, n_layers).as_deref() == Some(&format!("{module}.weight")))
}

/// Serialises the model's LoRA adapter as a GGUF LoRA (see the module docs).
pub async fn export_gguf_lora(model: &mut Model) -> Result<Vec<u8>> {
    let unsupported = |m: String| Error::unsupported("gguf", m);
    let config = model.adapter_config.clone().ok_or_else(|| Error::input("adapter", "the model has no adapter to export"))?;
    if config.get("peft_type").and_then(|v| v.as_str()) != Some("LORA") {
        return Err(unsupported("llama.cpp's GGUF adapters are LoRA only; this adapter is not LoRA".into()));
    }
    let (arch, family) = gguf_architecture(&model.info.model_type).ok_or_else(|| unsupported(format!("llama.cpp GGUF LoRA export supports {} models (the GGUF architectures webpeft reads); this is {}", gguf_architectures().join(", "), model.info.model_type)))?;
    let n_layers = model.info.num_layers as u64;
    let config_json = model.config.clone();
    let mut tensors = Vec::new();
    for (module, lin) in model.named_layers().linears {
        let Some(l) = Lora::of(lin) else { continue };
        if l.magnitude.is_some() {
            return Err(unsupported("llama.cpp has no DoRA; merge the adapter instead (webpeft merge)".into()));
        }
        let name = gguf_name(family, arch, &module, n_layers).ok_or_else(|| unsupported(format!("module {module} has no llama.cpp LoRA tensor (only the decoder layers' projections do)")))?;
        let [d_in, r] = l.a.dims();
        let d_out = l.b.dims()[1];
        let a = read_f32(l.a.val().transpose()).await?; // PEFT's lora_A [r, in]
        let mut b = read_f32(l.b.val().transpose()).await?; // lora_B [out, r]
        // Rows llama.cpp's converter permuted for its interleaved RoPE (llama's q/k) go back.
        let permute = family.permuted_heads(arch, &format!("{module}.weight"), &config_json);
        if let Some(h) = permute {
            let order = gguf::unpermuted_order(d_out, h).ok_or_else(|| unsupported(format!("{module}: {d_out} rows do not split into {h} heads")))?;
            let mut file = vec![0f32; b.len()];
            for (hf_row, &file_row) in order.iter().enumerate() {
                file[file_row * r..(file_row + 1) * r].copy_from_slice(&b[hf_row * r..(hf_row + 1) * r]);
            }
            b = file;
        }
        tensors.push((name, l.lora.scaling, r, d_in, d_out, a, b));
    }
    if tensors.is_empty() {
        return Err(Error::input("adapter", "the adapter adapts no module"));
    }
    // One alpha when scaling * r agrees everywhere, else each module's scaling inside lora_b.
    let alpha = tensors[0].1 * tensors[0].2 as f64;
    let uniform = tensors.iter().all(|t| ((t.1 * t.2 as f64) - alpha).abs() <= 1e-9 * alpha.abs().max(1.0));
    let mut w = Writer::default();
    w.str("general.architecture", arch);
    w.str("general.type", "adapter");
    w.str("adapter.type", "lora");
    w.f32("adapter.lora.alpha", if uniform { alpha as f32 } else { 0.0 });
    tensors.sort_by(|x, y| x.0.cmp(&y.0));
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    for (name, scaling, r, d_in, d_out, a, mut b) in tensors {
        if !uniform {
            b.iter_mut().for_each(|v| *v *= scaling as f32);
        }
        // GGUF dims run innermost first: lora_a [r, in] is (in, r).
        w.tensor(&format!("{name}.lora_a"), &[d_in as u64, r as u64], GgmlType::F32, &bytes(&a));
        w.tensor(&format!("{name}.lora_b"), &[r as u64, d_out as u64], GgmlType::F32, &bytes(&b));
    }
    Ok(w.finish().0)
}

//! `webpeft export-gguf`: a PEFT LoRA adapter (the Python-written fixtures) as llama.cpp's GGUF
//! LoRA. Names, shapes, metadata and values are checked against the PEFT safetensors with an
//! independent statement of llama.cpp's conventions (`convert_lora_to_gguf.py`): tensor names
//! of the base GGUF plus `.lora_a` / `.lora_b`, `lora_A` `[r, in]` and `lora_B` `[out, r]` as
//! F32 with dims innermost first, alpha in `adapter.lora.alpha`, and for `llama` the q/k
//! `lora_B` rows permuted as llama.cpp's `permute(n_head)` does.

mod common;

use std::process::Command;

use common::*;
use webpeft::formats::gguf::{self, GgufValue};

fn export(model: &str, adapter: &str) -> (bool, Vec<u8>, String) {
    let out = std::env::temp_dir().join(format!("webpeft-gguf-lora-{adapter}.gguf"));
    let _ = std::fs::remove_file(&out);
    let o = Command::new(env!("CARGO_BIN_EXE_webpeft"))
        .args(["export-gguf", fixture(model).to_str().unwrap(), "--adapter", fixture(&format!("peft/{adapter}")).to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    (o.status.success(), std::fs::read(&out).unwrap_or_default(), String::from_utf8_lossy(&o.stderr).into())
}

/// llama.cpp's `LlamaModel.permute`: rows `[n_head, 2, out / n_head / 2]` with the last two axes
/// swapped, on row-major `[out, r]` values.
fn llama_permute(b: &[f32], out: usize, r: usize, n_head: usize) -> Vec<f32> {
    let half = out / n_head / 2;
    let mut o = Vec::with_capacity(b.len());
    for h in 0..n_head {
        for i in 0..half {
            for t in 0..2 {
                let src = h * 2 * half + t * half + i;
                o.extend_from_slice(&b[src * r..(src + 1) * r]);
            }
        }
    }
    o
}

#[test]
fn peft_lora_adapters_export_as_llama_cpp_gguf_loras() {
    let hf_to_gguf = [("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"), ("self_attn.o_proj", "attn_output"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"), ("mlp.down_proj", "ffn_down"), ("self_attn.qkv_proj", "attn_qkv"), ("mlp.gate_up_proj", "ffn_up")];
    for (model, adapter, arch) in [
        ("tiny-llama", "llama-lora", "llama"),
        ("tiny-llama", "llama-rslora", "llama"),
        ("tiny-llama", "llama-lora-targets", "llama"),
        ("tiny-qwen2", "qwen2-lora", "qwen2"),
        ("tiny-qwen3", "qwen3-lora", "qwen3"),
        ("tiny-gemma3", "gemma3-lora", "gemma3"),
        // Phi-3's fused projections keep their fused GGUF names (attn_qkv, ffn_up).
        ("tiny-phi3", "phi3-lora", "phi3"),
        ("tiny-phi3", "phi3-lora-targets", "phi3"),
    ] {
        let (ok, bytes, err) = export(model, adapter);
        assert!(ok, "{adapter}: {err}");
        let g = gguf::parse(&bytes, "adapter.gguf").unwrap();
        let meta = |k: &str| g.metadata.get(k).cloned();
        assert_eq!(meta("general.architecture"), Some(GgufValue::Str(arch.into())), "{adapter}");
        assert_eq!(meta("general.type"), Some(GgufValue::Str("adapter".into())), "{adapter}");
        assert_eq!(meta("adapter.type"), Some(GgufValue::Str("lora".into())), "{adapter}");
        let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture(&format!("peft/{adapter}/adapter_config.json"))).unwrap()).unwrap();
        let (r, alpha) = (cfg["r"].as_f64().unwrap(), cfg["lora_alpha"].as_f64().unwrap());
        // llama.cpp scales by alpha / r; rsLoRA's alpha / sqrt(r) is written as alpha * sqrt(r).
        let want_alpha = if cfg["use_rslora"] == true { alpha * r.sqrt() } else { alpha };
        let got_alpha = meta("adapter.lora.alpha").and_then(|v| v.as_f64()).unwrap();
        assert!((got_alpha - want_alpha).abs() < 1e-5, "{adapter}: alpha {got_alpha} vs {want_alpha}");
        let model_cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture(&format!("{model}/config.json"))).unwrap()).unwrap();
        let n_head = model_cfg["num_attention_heads"].as_u64().unwrap() as usize;
        let n_kv = model_cfg["num_key_value_heads"].as_u64().map_or(n_head, |n| n as usize);
        let peft = adapter_tensors(&std::fs::read(fixture(&format!("peft/{adapter}/adapter_model.safetensors"))).unwrap());
        let mut seen = 0;
        for (key, (shape, values)) in &peft {
            let Some(module) = key.strip_prefix("base_model.model.").and_then(|k| k.strip_suffix(".lora_A.weight").or(k.strip_suffix(".lora_B.weight"))) else { continue };
            let layer = module.split('.').nth(2).unwrap();
            let part = hf_to_gguf.iter().find(|(h, _)| module.ends_with(h)).unwrap().1;
            let is_a = key.ends_with(".lora_A.weight");
            let name = format!("blk.{layer}.{part}.weight.{}", if is_a { "lora_a" } else { "lora_b" });
            let info = g.tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("{adapter}: no tensor {name}"));
            assert_eq!(info.dims, shape.iter().rev().map(|&d| d as u64).collect::<Vec<_>>(), "{adapter}: {name} dims");
            let (_, got) = g.tensor_f32(&name).unwrap();
            let heads = match (arch, part) {
                ("llama", "attn_q") => Some(n_head),
                ("llama", "attn_k") => Some(n_kv),
                _ => None,
            };
            let want = match (is_a, heads) {
                (false, Some(h)) => llama_permute(values, shape[0], shape[1], h),
                _ => values.clone(),
            };
            assert_eq!(got, want, "{adapter}: {name} values");
            seen += 1;
        }
        assert_eq!(g.tensors.len(), seen, "{adapter}: one GGUF tensor per PEFT lora_A / lora_B");
        assert!(seen >= 4, "{adapter}: {seen} tensors");
        eprintln!("{adapter}: {seen} tensors, alpha {got_alpha}");
    }
    // What llama.cpp cannot take is refused with a typed message.
    let (ok, _, err) = export("tiny-llama", "llama-dora");
    assert!(!ok && err.contains("DoRA"), "{err}");
    let (ok, _, err) = export("tiny-gpt2", "gpt2-lora");
    assert!(!ok && err.contains("supports llama, qwen2, qwen3, gemma3, phi3 models"), "{err}");
    let (ok, _, err) = export("tiny-llama", "llama-ia3");
    assert!(!ok && err.contains("LoRA only"), "{err}");
}

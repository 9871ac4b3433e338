//! Golden tests: webpeft's forward passes against transformers' reference
//! dumps for tiny random models (made by `tests/fixtures/generate.py`, and
//! as GGUF files by `tests/fixtures/gguf/make_ref.py`), on the CPU (Flex) and
//! the GPU (wgpu; lavapipe on machines without a GPU).

mod common;

use common::*;
use webpeft::device::Backend;
use webpeft::generate::{generate, GenerateOptions};
use webpeft::models::bert::mean_pool;
use webpeft::models::{KvCache, Network};

const TOL: f32 = 1e-4;

/// Logits and last hidden states of one sequence match the reference.
fn check_decoder(dir: &str, reference_dir: &str, backend: Backend) {
    let r = read_ref(&fixture(reference_dir).join("reference.safetensors"));
    let m = load(&fixture(dir), backend);
    let ids = r["input_ids"].ids();
    let out = m.forward(&[ids], None, None, None).unwrap();
    let what = format!("{dir} on {backend:?}");
    assert_close(&format!("{what} logits"), &host(out.token_logits.unwrap()), &r["logits"].f32, TOL);
    assert_close(&format!("{what} last_hidden_state"), &host(out.last_hidden_state), &r["last_hidden_state"].f32, TOL);

    // The same sequence through the KV cache: a 6-token prefill, then one token
    // at a time; every step's logits must be transformers' row for that position
    // (its cached run's, where a family's cached logits differ: LongRoPE).
    let ids = r["input_ids"].ids();
    let vocab = r["logits"].shape[1];
    let cached = r.get("cached_logits").unwrap_or(&r["logits"]);
    let mut cache = KvCache::new(m.num_layers());
    let prefill = m.forward(&[ids[..6].to_vec()], None, None, Some(&mut cache)).unwrap();
    assert_close(&format!("{what} cached prefill"), &host(prefill.token_logits.unwrap()), &cached.f32[..6 * vocab], TOL);
    for p in 6..ids.len() {
        let step = m.forward(&[vec![ids[p]]], None, None, Some(&mut cache)).unwrap();
        let want = &cached.f32[p * vocab..(p + 1) * vocab];
        assert_close(&format!("{what} cached step {p}"), &host(step.token_logits.unwrap()), want, TOL);
    }
}

/// Greedy decoding with the KV cache gives transformers' tokens.
fn check_greedy(dir: &str, backend: Backend) {
    check_greedy_ref(dir, dir, backend)
}

fn check_greedy_ref(dir: &str, reference_dir: &str, backend: Backend) {
    let r = read_ref(&fixture(reference_dir).join("reference.safetensors"));
    let m = load(&fixture(dir), backend);
    let want = r["greedy_output_ids"].ids();
    let opts = GenerateOptions { max_new_tokens: want.len(), ..Default::default() };
    let got = pollster::block_on(generate(&m, &r["greedy_prompt_ids"].ids(), &opts, |_| true)).unwrap();
    assert_eq!(got, want, "{dir} greedy tokens on {backend:?}");
}

#[test]
fn llama_gqa_untied_llama3_rope() {
    for b in backends() {
        check_decoder("tiny-llama", "tiny-llama", b);
        check_greedy("tiny-llama", b);
    }
}

#[test]
fn qwen2_qkv_bias_tied() {
    for b in backends() {
        check_decoder("tiny-qwen2", "tiny-qwen2", b);
        check_greedy("tiny-qwen2", b);
    }
}

#[test]
fn qwen3_qk_norm_head_dim() {
    for b in backends() {
        check_decoder("tiny-qwen3", "tiny-qwen3", b);
        check_greedy("tiny-qwen3", b);
    }
    let m = load(&fixture("tiny-qwen3"), Backend::Cpu);
    assert_eq!((m.info.architecture.as_str(), m.kv_layout()), ("Qwen3ForCausalLM", Some((2, 2, 32))));
}

/// Phi-3: fused qkv_proj and gate_up_proj, partial rotary, LongRoPE whose factors switch with the
/// positions a pass reaches (the whole pass uses the long ones, the cached prefill the short
/// ones), a sliding window, tied embeddings.
#[test]
fn phi3_fused_partial_longrope_sliding() {
    for b in backends() {
        check_decoder("tiny-phi3", "tiny-phi3", b);
        check_greedy("tiny-phi3", b);
    }
    let m = load(&fixture("tiny-phi3"), Backend::Cpu);
    assert_eq!((m.info.architecture.as_str(), m.kv_layout()), ("Phi3ForCausalLM", Some((2, 2, 16))));
    // The whole pass and the cached one differ (so the cached check above can fail).
    let r = read_ref(&fixture("tiny-phi3").join("reference.safetensors"));
    let gap = r["logits"].f32.iter().zip(&r["cached_logits"].f32).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(gap > 1e-2, "cached and whole-pass logits differ by {gap}");
}

/// An encoder classifier's logits and last hidden states, for one row and for a batch with a
/// padded row.
fn check_classifier(m: &webpeft::Model, r: &std::collections::HashMap<String, Ref>, what: &str) {
    let out = m.forward(&[r["input_ids"].ids()], None, None, None).unwrap();
    assert_close(&format!("{what} logits"), &host(out.class_logits.unwrap()), &r["logits"].f32, TOL);
    assert_close(&format!("{what} last_hidden_state"), &host(out.last_hidden_state), &r["last_hidden_state"].f32, TOL);
    let (ids, mask) = (r["batch_input_ids"].id_rows(), r["batch_attention_mask"].id_rows());
    let out = m.forward(&ids, Some(&mask), None, None).unwrap();
    assert_close(&format!("{what} batch logits"), &host(out.class_logits.unwrap()), &r["batch_logits"].f32, TOL);
    assert_close(&format!("{what} batch last_hidden_state"), &host(out.last_hidden_state), &r["batch_last_hidden_state"].f32, TOL);
}

/// ModernBERT: a global layer and two local ones (window +-2 of 12 positions) with their own
/// RoPE bases, fused Wqkv, GeGLU, bias-free norms, and the classifier's pooling, prediction head
/// and classifier, with mean pooling (as saved) and CLS pooling; a padded row.
#[test]
fn modernbert_local_global_rope_pooling() {
    let dir = fixture("tiny-modernbert");
    let r = read_ref(&dir.join("reference.safetensors"));
    let mut cls_files = files(&dir);
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    config["classifier_pooling"] = serde_json::json!("cls");
    cls_files.add("config.json", config.to_string().into_bytes());
    for b in backends() {
        let m = load(&dir, b);
        let what = format!("tiny-modernbert on {b:?}");
        assert_eq!((m.info.architecture.as_str(), m.info.num_labels), ("ModernBertForSequenceClassification", Some(3)), "{what}");
        check_classifier(&m, &r, &what);
        let (ids, mask) = (r["batch_input_ids"].id_rows(), r["batch_attention_mask"].id_rows());

        let m = webpeft::Model::load(&cls_files, &device(b)).unwrap();
        let out = m.forward(&[r["input_ids"].ids()], None, None, None).unwrap();
        assert_close(&format!("{what} CLS pooling logits"), &host(out.class_logits.unwrap()), &r["cls_logits"].f32, TOL);
        let out = m.forward(&ids, Some(&mask), None, None).unwrap();
        assert_close(&format!("{what} CLS pooling batch logits"), &host(out.class_logits.unwrap()), &r["cls_batch_logits"].f32, TOL);
    }
}

/// A tiny GGUF (`tests/fixtures/gguf/tiny-ARCH/model.gguf`) against transformers
/// loading the same file: logits, hidden states, the KV cache, greedy tokens,
/// and its embedded tokenizer's ids.
fn check_gguf(arch: &str, architecture: &str) {
    check_gguf_as(arch, architecture, arch)
}

/// [`check_gguf`] for an architecture whose HF `model_type` is not its GGUF name.
fn check_gguf_as(arch: &str, architecture: &str, model_type: &str) {
    let dir = format!("gguf/tiny-{arch}");
    let file = format!("{dir}/model.gguf");
    for b in backends() {
        check_decoder(&file, &dir, b);
        check_greedy_ref(&file, &dir, b);
    }
    let m = load(&fixture(&file), Backend::Cpu);
    assert_eq!((m.info.architecture.as_str(), m.info.model_type.as_str()), (architecture, model_type));
    let want: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture(&dir).join("tokenizer.json")).unwrap()).unwrap();
    let tok = m.tokenizer.as_ref().unwrap();
    let cases = want["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for (i, case) in cases.iter().enumerate() {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(tok.encode(text, true).unwrap(), ids, "{arch} GGUF tokenizer on {text:?}");
        if let Some(decoded) = want.get("decoded") {
            assert_eq!(tok.decode(&ids).unwrap(), decoded[i].as_str().unwrap(), "{arch} GGUF decode of {text:?}");
        }
    }
}

#[test]
fn gemma3_sliding_window_scaled_embeddings_softcap() {
    for b in backends() {
        check_decoder("tiny-gemma3", "tiny-gemma3", b);
        check_greedy("tiny-gemma3", b);
    }
    let m = load(&fixture("tiny-gemma3"), Backend::Cpu);
    assert_eq!((m.info.architecture.as_str(), m.kv_layout()), ("Gemma3ForCausalLM", Some((2, 2, 32))));
    // Softcapped logits cannot go through the chunked loss's plain projection.
    assert!(m.frozen_lm_head().is_none());
}

/// Gemma 3 from GGUF: (1 + w) norms stored by llama.cpp, five sliding layers and a global one
/// (llama.cpp's fixed pattern), and a SentencePiece vocabulary (byte fallback, user-defined
/// newline and space runs, control tokens) with multilingual text, emoji and code.
#[test]
fn gguf_gemma3_sentencepiece() {
    check_gguf_as("gemma3", "Gemma3ForCausalLM", "gemma3_text");
    let m = load(&fixture("gguf/tiny-gemma3/model.gguf"), Backend::Cpu);
    assert_eq!(m.config["layer_types"][5], serde_json::json!("full_attention"));
    assert_eq!(m.config["layer_types"][4], serde_json::json!("sliding_attention"));
}

#[test]
fn gguf_llama_tied_llama3_rope_freqs() {
    check_gguf("llama", "LlamaForCausalLM");
    let m = load(&fixture("gguf/tiny-llama/model.gguf"), Backend::Cpu);
    assert_eq!(m.config["tie_word_embeddings"], serde_json::json!(true));
    assert_eq!(m.config["rope_scaling"]["rope_type"], serde_json::json!("llama3"));
}

/// Phi-3 from GGUF as llama.cpp's converter writes it: fused `attn_qkv` and `ffn_up` (gate then
/// up), the rotated part of each head from `rope.dimension_count` (3/4), LongRoPE factors stored
/// as tensors with the attention factor, a sliding window, tied embeddings. The reference is
/// transformers on the file's dequantised weights (its GGUF loader drops those RoPE settings).
#[test]
fn gguf_phi3_fused_longrope() {
    check_gguf("phi3", "Phi3ForCausalLM");
    let m = load(&fixture("gguf/tiny-phi3/model.gguf"), Backend::Cpu);
    let rope = &m.config["rope_parameters"];
    assert_eq!((rope["rope_type"].as_str(), rope["partial_rotary_factor"].as_f64()), (Some("longrope"), Some(0.75)));
    assert_eq!(rope["long_factor"], serde_json::json!([1.5, 2.0, 3.0, 5.0, 8.0, 13.0]));
    assert_eq!((m.config["sliding_window"].as_u64(), m.config["tie_word_embeddings"].as_bool()), (Some(6), Some(true)));
}

#[test]
fn gguf_qwen2_qkv_bias() {
    check_gguf("qwen2", "Qwen2ForCausalLM");
}

#[test]
fn gguf_qwen3_qk_norm() {
    check_gguf("qwen3", "Qwen3ForCausalLM");
}

#[test]
fn gpt2_conv1d_learned_positions() {
    for b in backends() {
        check_decoder("tiny-gpt2", "tiny-gpt2", b);
        check_greedy("tiny-gpt2", b);
    }
}

#[test]
fn safetensors_bf16_f16_and_sharded() {
    check_decoder("tiny-llama-bf16", "tiny-llama-bf16", Backend::Cpu);
    check_decoder("tiny-llama-f16", "tiny-llama-f16", Backend::Cpu);
    check_decoder("tiny-llama-sharded", "tiny-llama", Backend::Cpu);
    let m = load(&fixture("tiny-llama-bf16"), Backend::Cpu);
    assert_eq!(m.info.dtypes, vec!["BF16".to_string()]);
    // The 16-bit matrices stay 16-bit on the device (every one here has rows of 64 or 128).
    assert_eq!(m.info.device_blocks, vec!["BF16".to_string()]);
    assert_eq!(load(&fixture("tiny-llama-f16"), Backend::Cpu).info.device_blocks, vec!["F16".to_string()]);
    #[cfg(feature = "gpu")]
    {
        check_decoder("tiny-llama-bf16", "tiny-llama-bf16", Backend::Gpu);
        check_decoder("tiny-llama-f16", "tiny-llama-f16", Backend::Gpu);
    }
}

#[test]
fn bert_classifier_mask_and_token_types() {
    let r = read_ref(&fixture("tiny-bert").join("reference.safetensors"));
    for b in backends() {
        let m = load(&fixture("tiny-bert"), b);
        let what = format!("tiny-bert on {b:?}");
        let out = m.forward(&[r["input_ids"].ids()], None, None, None).unwrap();
        assert_close(&format!("{what} logits"), &host(out.class_logits.unwrap()), &r["logits"].f32, TOL);
        assert_close(&format!("{what} last_hidden_state"), &host(out.last_hidden_state), &r["last_hidden_state"].f32, TOL);

        let ids = r["batch_input_ids"].id_rows();
        let mask = r["batch_attention_mask"].id_rows();
        let types = r["batch_token_type_ids"].id_rows();
        let out = m.forward(&ids, Some(&mask), Some(&types), None).unwrap();
        assert_close(&format!("{what} batch logits"), &host(out.class_logits.unwrap()), &r["batch_logits"].f32, TOL);
        let pooled = mean_pool(out.last_hidden_state.clone(), &mask);
        assert_close(&format!("{what} batch last_hidden_state"), &host(out.last_hidden_state), &r["batch_last_hidden_state"].f32, TOL);
        assert_close(&format!("{what} mean pooling"), &host(pooled), &r["batch_pooled_mean"].f32, TOL);
        assert!(matches!(m.network, Network::Bert(_)));
        assert_eq!(m.info.num_labels, Some(3));
    }
}

#[test]
fn roberta_and_xlm_roberta_classifiers() {
    for (name, arch) in [("tiny-roberta", "RobertaForSequenceClassification"), ("tiny-xlm-roberta", "XLMRobertaForSequenceClassification")] {
        let r = read_ref(&fixture(name).join("reference.safetensors"));
        for b in backends() {
            let m = load(&fixture(name), b);
            let what = format!("{name} on {b:?}");
            assert_eq!((m.info.architecture.as_str(), m.info.num_labels, m.info.context_length), (arch, Some(3), 127), "{what}");
            // A padded row: positions follow the ids, so even the pad positions' states match.
            check_classifier(&m, &r, &what);
        }
    }
}

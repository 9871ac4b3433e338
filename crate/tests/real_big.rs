//! Opt-in tests on real GGUFs against transformers loading the same files:
//! - Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (`qwen2`, 494M parameters, 491 MB;
//!   `tests/fixtures/real/make_qwen_ref.py`);
//! - Gemma-3-270M, Q4_K_M (`gemma3`, SentencePiece vocabulary, 253 MB;
//!   `tests/fixtures/real/make_gemma_ref.py`).
//!
//! Run them with `npm run test:big` (which fetches the models with `scripts/fetch-models.sh --big`),
//! or `cargo test --release --features cli -p webpeft --test real_big -- --ignored`. Without the
//! models they fail, saying how to fetch them; plain `cargo test` lists them as ignored.

mod common;

use std::path::PathBuf;

use common::*;
use webpeft::device::Backend;
use webpeft::formats::tokenizer::Message;
use webpeft::generate::{generate, GenerateOptions};
use webpeft::Model;

const FILE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
const SIZE: u64 = 491_400_064;
const GEMMA_FILE: &str = "gemma-3-270m-q4_k_m.gguf";
const GEMMA_SIZE: u64 = 253_113_024;

/// models/FILE (or the file `env` names), checked for its size.
fn model_path(file: &str, size_want: u64, env: &str) -> PathBuf {
    let p = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| root().join("models").join(file));
    let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    assert!(
        size == size_want,
        "{} is missing or incomplete ({size} of {size_want} bytes): fetch it with `scripts/fetch-models.sh --big` \
         (or run `npm run test:big`), or point {env} at the file",
        p.display()
    );
    p
}

fn qwen(backend: Backend) -> Model {
    load(&model_path(FILE, SIZE, "WEBPEFT_QWEN_GGUF"), backend)
}

fn gemma(backend: Backend) -> Model {
    load(&model_path(GEMMA_FILE, GEMMA_SIZE, "WEBPEFT_GEMMA_GGUF"), backend)
}

fn reference() -> serde_json::Value {
    json_fixture("real/qwen_coder.json")
}

fn json_fixture(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture(name)).unwrap()).unwrap()
}

fn id_list(v: &serde_json::Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The model's logits for the chat prompt against transformers: the top 256 of the last position,
/// every position's max logit and argmax. CPU only: on lavapipe the untied 544 MB `lm_head`
/// (151936 x 896 f32) is larger than the buffer the driver will allocate (a typed device error).
fn check_logits(m: &Model, what: &str) {
    check_logits_of(m, what, &reference(), "real/qwen_coder_logits.safetensors")
}

/// [`check_logits`] against the reference `r` (its `prompt_ids` and `argmax`) and a logits file.
fn check_logits_of(m: &Model, what: &str, r: &serde_json::Value, logits_file: &str) {
    let l = read_ref(&fixture(logits_file));
    let ids = id_list(&r["prompt_ids"]);
    let out = m.forward(&[ids.clone()], None, None, None).unwrap();
    let logits = host(out.token_logits.unwrap());
    let vocab = m.info.vocab_size;
    assert_eq!(logits.len(), ids.len() * vocab);
    let rows: Vec<&[f32]> = logits.chunks(vocab).collect();
    let last = rows[ids.len() - 1];
    let top: Vec<f32> = l["top_ids"].i64.iter().map(|&i| last[i as usize]).collect();
    assert_close(&format!("{what}: last position's top-256 logits"), &top, &l["top_logits"].f32, 1e-3);
    let max: Vec<f32> = rows.iter().map(|r| r.iter().copied().fold(f32::MIN, f32::max)).collect();
    assert_close(&format!("{what}: every position's max logit"), &max, &l["max_logits"].f32, 1e-3);
    let argmax: Vec<u32> = rows.iter().map(|r| r.iter().enumerate().fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0 as u32).collect();
    assert_eq!(argmax, id_list(&r["argmax"]), "{what}: per-position argmax");
}

#[test]
#[ignore = "needs the 491 MB Qwen2.5-Coder GGUF: npm run test:big"]
fn qwen_coder_loads_as_transformers_does() {
    let r = reference();
    let m = qwen(Backend::Cpu);
    let c = &r["config"];
    assert_eq!((m.info.architecture.as_str(), m.info.model_type.as_str()), ("Qwen2ForCausalLM", "qwen2"));
    assert_eq!(m.info.num_layers as u64, c["num_hidden_layers"].as_u64().unwrap());
    assert_eq!(m.info.hidden_size as u64, c["hidden_size"].as_u64().unwrap());
    assert_eq!(m.info.vocab_size as u64, c["vocab_size"].as_u64().unwrap());
    assert_eq!(m.config["tie_word_embeddings"], c["tie_word_embeddings"]);
    assert_eq!(m.info.dtypes, ["F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"]);
    assert!(m.info.num_parameters > 490_000_000, "{} parameters", m.info.num_parameters);
    let tok = m.tokenizer.as_ref().unwrap();
    for case in r["tokenizer_cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tok.encode(text, true).unwrap(), id_list(&case["ids"]), "tokenizer on {text:?}");
    }
}

#[test]
#[ignore = "needs the 491 MB Qwen2.5-Coder GGUF: npm run test:big"]
fn qwen_coder_logits_match_on_cpu() {
    check_logits(&qwen(Backend::Cpu), "Qwen2.5-Coder on Cpu");
}

/// On wgpu (lavapipe here) through the quantized base: the f32 head (544 MB) was more than
/// lavapipe would allocate; its Q6_K blocks take 136 MB of codes.
#[cfg(feature = "gpu")]
#[test]
#[ignore = "needs the 491 MB Qwen2.5-Coder GGUF: npm run test:big"]
fn qwen_coder_logits_match_on_wgpu() {
    let m = qwen(Backend::Gpu);
    assert!(m.info.device_blocks.contains(&"Q4_K".to_string()), "{:?}", m.info.device_blocks);
    check_logits(&m, "Qwen2.5-Coder on wgpu");
}

#[test]
#[ignore = "needs the 491 MB Qwen2.5-Coder GGUF: npm run test:big"]
fn qwen_coder_chat_template_and_greedy_generation() {
    let r = reference();
    let m = qwen(Backend::Cpu);
    let tok = m.tokenizer.as_ref().unwrap();
    for (msgs, text) in [("messages", "prompt_text"), ("messages_system", "prompt_text_system")] {
        let messages: Vec<Message> = serde_json::from_value(r[msgs].clone()).unwrap();
        assert_eq!(tok.apply_chat_template(&messages, true).unwrap(), r[text].as_str().unwrap(), "chat template on {msgs}");
    }
    let prompt = tok.encode(r["prompt_text"].as_str().unwrap(), false).unwrap();
    assert_eq!(prompt, id_list(&r["prompt_ids"]));
    let stop = r["eos_token_id"].as_u64().unwrap() as u32;
    let want = id_list(&r["greedy_20"]);
    let opts = GenerateOptions { max_new_tokens: 20, stop_ids: vec![stop], ..Default::default() };
    let got = pollster::block_on(generate(&m, &prompt, &opts, |_| true)).unwrap();
    assert_eq!(got, want, "greedy tokens: got {:?}, transformers {:?}", tok.decode(&got), r["greedy_text"]);
    let want = id_list(&r["greedy_20_ignore_eos"]);
    let opts = GenerateOptions { max_new_tokens: want.len(), ..Default::default() };
    let got = pollster::block_on(generate(&m, &prompt, &opts, |_| true)).unwrap();
    assert_eq!(got, want, "greedy tokens ignoring <|im_end|>: got {:?}", tok.decode(&got));
}

#[test]
#[ignore = "needs the 253 MB Gemma-3-270M GGUF: npm run test:big"]
fn gemma3_270m_loads_and_tokenizes_as_transformers_does() {
    let r = json_fixture("real/gemma3_270m.json");
    let m = gemma(Backend::Cpu);
    let c = &r["config"];
    assert_eq!((m.info.architecture.as_str(), m.info.model_type.as_str()), ("Gemma3ForCausalLM", "gemma3_text"));
    assert_eq!(r["architecture"], "Gemma3ForCausalLM");
    for key in ["num_hidden_layers", "hidden_size", "head_dim", "vocab_size", "sliding_window", "layer_types", "tie_word_embeddings", "num_key_value_heads"] {
        assert_eq!(m.config[key], c[key], "config {key}");
    }
    assert_eq!(m.config["rope_parameters"]["full_attention"]["rope_theta"], c["rope_parameters"]["full_attention"]["rope_theta"]);
    assert_eq!(m.config["rope_parameters"]["sliding_attention"]["rope_theta"], c["rope_parameters"]["sliding_attention"]["rope_theta"]);
    assert_eq!(m.config["query_pre_attn_scalar"], c["query_pre_attn_scalar"]);
    assert_eq!(m.info.dtypes, ["F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"]);
    let tok = m.tokenizer.as_ref().unwrap();
    assert_eq!((tok.bos_token.as_deref(), tok.eos_token.as_deref()), (r["bos_token"].as_str(), r["eos_token"].as_str()));
    let cases = r["tokenizer_cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let ids = id_list(&case["ids"]);
        assert_eq!(tok.encode(text, true).unwrap(), ids, "tokenizer on {text:?}");
        assert_eq!(tok.decode(&ids).unwrap(), case["decoded"].as_str().unwrap(), "decode of {text:?}");
    }
    // The base model's GGUF carries no chat template, and transformers finds none either.
    assert!(r["chat_template"].is_null());
    assert!(!m.info.has_chat_template);
    let e = tok.apply_chat_template(&[Message { role: "user".into(), content: "hi".into() }], true).unwrap_err();
    assert_eq!(e.kind, webpeft::error::ErrorKind::Input, "{e}");
}

/// Gemma-3-270M's 262,144 x 640 embedding is 671 MB as f32; in its blocks it fits lavapipe.
#[cfg(feature = "gpu")]
#[test]
#[ignore = "needs the 253 MB Gemma-3-270M GGUF: npm run test:big"]
fn gemma3_270m_logits_match_on_wgpu() {
    let r = json_fixture("real/gemma3_270m.json");
    check_logits_of(&gemma(Backend::Gpu), "Gemma-3-270M on wgpu", &r, "real/gemma3_270m_logits.safetensors");
}

#[test]
#[ignore = "needs the 253 MB Gemma-3-270M GGUF: npm run test:big"]
fn gemma3_270m_logits_and_greedy_generation_match() {
    let r = json_fixture("real/gemma3_270m.json");
    let m = gemma(Backend::Cpu);
    let tok = m.tokenizer.as_ref().unwrap();
    let prompt = tok.encode(r["prompt"].as_str().unwrap(), true).unwrap();
    assert_eq!(prompt, id_list(&r["prompt_ids"]));
    check_logits_of(&m, "Gemma-3-270M on Cpu", &r, "real/gemma3_270m_logits.safetensors");
    let want = id_list(&r["greedy_20"]);
    let opts = GenerateOptions { max_new_tokens: want.len(), ..Default::default() };
    let got = pollster::block_on(generate(&m, &prompt, &opts, |_| true)).unwrap();
    assert_eq!(got, want, "greedy tokens: got {:?}, transformers {:?}", tok.decode(&got), r["greedy_text"]);
}

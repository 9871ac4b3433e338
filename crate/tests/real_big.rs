//! Opt-in tests on a real Qwen2 GGUF: Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (494M parameters,
//! 491 MB), against transformers loading the same file (`tests/fixtures/real/make_qwen_ref.py`).
//! Run them with `npm run test:big` (which fetches the model with `scripts/fetch-models.sh --big`),
//! or `cargo test --release --features cli -p webpeft --test real_big -- --ignored`. Without the
//! model they fail, saying how to fetch it; plain `cargo test` lists them as ignored.

mod common;

use std::path::PathBuf;

use common::*;
use webpeft::device::Backend;
use webpeft::formats::tokenizer::Message;
use webpeft::generate::{generate, GenerateOptions};
use webpeft::Model;

const FILE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
const SIZE: u64 = 491_400_064;

fn model_path() -> PathBuf {
    let p = std::env::var_os("WEBPEFT_QWEN_GGUF").map(PathBuf::from).unwrap_or_else(|| root().join("models").join(FILE));
    let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
    assert!(
        size == SIZE,
        "{} is missing or incomplete ({size} of {SIZE} bytes): fetch it with `scripts/fetch-models.sh --big` \
         (or run `npm run test:big`), or point WEBPEFT_QWEN_GGUF at the file",
        p.display()
    );
    p
}

fn qwen(backend: Backend) -> Model {
    load(&model_path(), backend)
}

fn reference() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture("real/qwen_coder.json")).unwrap()).unwrap()
}

fn id_list(v: &serde_json::Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The model's logits for the chat prompt against transformers: the top 256 of the last position,
/// every position's max logit and argmax. CPU only: on lavapipe the untied 544 MB `lm_head`
/// (151936 x 896 f32) is larger than the buffer the driver will allocate (a typed device error).
fn check_logits(m: &Model, what: &str) {
    let r = reference();
    let l = read_ref(&fixture("real/qwen_coder_logits.safetensors"));
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

//! Golden tests: webpeft's forward passes against transformers' reference
//! dumps for tiny random models (made by `tests/fixtures/generate.py`), on
//! the CPU (Flex) and the GPU (wgpu; lavapipe on machines without a GPU).

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
    // at a time; every step's logits must be transformers' row for that position.
    let ids = r["input_ids"].ids();
    let vocab = r["logits"].shape[1];
    let mut cache = KvCache::new(m.num_layers());
    let prefill = m.forward(&[ids[..6].to_vec()], None, None, Some(&mut cache)).unwrap();
    assert_close(&format!("{what} cached prefill"), &host(prefill.token_logits.unwrap()), &r["logits"].f32[..6 * vocab], TOL);
    for p in 6..ids.len() {
        let step = m.forward(&[vec![ids[p]]], None, None, Some(&mut cache)).unwrap();
        let want = &r["logits"].f32[p * vocab..(p + 1) * vocab];
        assert_close(&format!("{what} cached step {p}"), &host(step.token_logits.unwrap()), want, TOL);
    }
}

/// Greedy decoding with the KV cache gives transformers' tokens.
fn check_greedy(dir: &str, backend: Backend) {
    let r = read_ref(&fixture(dir).join("reference.safetensors"));
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

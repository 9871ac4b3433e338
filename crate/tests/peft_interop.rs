//! PEFT -> webpeft: adapters written by Python PEFT (tests/fixtures/generate_peft.py,
//! every trainable tensor perturbed away from its init) applied by webpeft
//! give PEFT's logits.

mod common;

use common::*;
use webpeft::device::Backend;
use webpeft::peft::load_adapter;

const MODELS: [&str; 10] = ["llama", "qwen2", "gpt2", "bert", "qwen3", "gemma3", "roberta", "xlm-roberta", "phi3", "modernbert"];
const METHODS: [&str; 9] = ["lora", "rslora", "dora", "lora-targets", "lora-layers", "ia3", "bitfit", "prompt", "prefix"];

fn adapter_files(case: &str) -> (Vec<u8>, Vec<u8>) {
    let dir = fixture("peft").join(case);
    (std::fs::read(dir.join("adapter_config.json")).unwrap(), std::fs::read(dir.join("adapter_model.safetensors")).unwrap())
}

/// Token logits of a decoder, or class logits of a classifier, flattened.
fn flat_logits(m: &webpeft::Model, ids: &[u32]) -> Vec<f32> {
    let out = m.forward(&[ids.to_vec()], None, None, None).unwrap();
    host(out.token_logits.map(|l| l.reshape([-1])).or(out.class_logits.map(|l| l.reshape([-1]))).unwrap())
}

/// The error from loading fixture adapter `case` (its config passed through `edit`) onto tiny-llama.
fn adapter_error(case: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut m = load(&fixture("tiny-llama"), Backend::Cpu);
    let (cfg, weights) = adapter_files(case);
    let mut v: serde_json::Value = serde_json::from_slice(&cfg).unwrap();
    edit(&mut v);
    load_adapter(&mut m, v.to_string().as_bytes(), &weights).unwrap_err().to_string()
}

fn check(model: &str, method: &str, backend: Backend) -> bool {
    let case = format!("{model}-{method}");
    let dir = fixture("peft").join(&case);
    if !dir.exists() {
        // llama, qwen3, gemma3, phi3 and modernbert have no biases (no bitfit case), the encoders cannot take
        // prefix tuning in transformers 5, and PEFT has no (IA)^3 defaults for XLM-RoBERTa: the
        // only gaps the generator leaves.
        assert!(
            matches!(case.as_str(), "llama-bitfit" | "qwen3-bitfit" | "gemma3-bitfit" | "phi3-bitfit" | "modernbert-bitfit" | "modernbert-prefix" | "bert-prefix" | "roberta-prefix" | "xlm-roberta-prefix" | "xlm-roberta-ia3"),
            "missing fixture {case}"
        );
        return false;
    }
    let r = read_ref(&dir.join("reference.safetensors"));
    let mut m = load(&fixture(&format!("tiny-{model}")), backend);
    let base_logits = flat_logits(&m, &r["input_ids"].ids());
    let (cfg, weights) = adapter_files(&case);
    let summary = load_adapter(&mut m, &cfg, &weights).unwrap_or_else(|e| panic!("{case}: {e}"));
    assert!(summary.adapted_modules + summary.replaced_tensors + summary.virtual_tokens > 0);
    let logits = flat_logits(&m, &r["input_ids"].ids());
    // The adapter must matter, or the comparison proves nothing.
    // (Prompt tuning adds virtual positions: compare the base with the last rows.)
    let want = &r["logits"].f32;
    assert!(max_abs_diff(&case, &base_logits, &want[want.len() - base_logits.len()..]) > 1e-3, "{case}: adapter does not change the logits");
    assert_close(&format!("{case} on {backend:?}"), &logits, &r["logits"].f32, 1e-4);
    // Switched off, the model is the base model again (PEFT's disable_adapter);
    // switched back on, the adapter's outputs return.
    m.set_adapter_enabled(false);
    assert!(max_abs_diff(&case, &flat_logits(&m, &r["input_ids"].ids()), &base_logits) <= 1e-6, "{case}: disabled adapter still changes the logits");
    m.set_adapter_enabled(true);
    assert_close(&format!("{case} re-enabled"), &flat_logits(&m, &r["input_ids"].ids()), &r["logits"].f32, 1e-4);
    true
}

#[test]
fn peft_adapters_give_peft_logits_on_cpu() {
    let mut n = 0;
    for model in MODELS {
        for method in METHODS {
            n += check(model, method, Backend::Cpu) as usize;
        }
    }
    assert_eq!(n, 80);
}

#[cfg(feature = "gpu")]
#[test]
fn peft_adapters_give_peft_logits_on_gpu() {
    for model in MODELS {
        for method in ["lora", "dora", "ia3", "prompt", "prefix"] {
            if model == "xlm-roberta" && method == "ia3" {
                continue; // no fixture: PEFT has no defaults for it
            }
            check(model, method, Backend::Gpu);
        }
    }
}

#[test]
fn unsupported_methods_are_named() {
    let e = adapter_error("llama-lora", |v| v["peft_type"] = serde_json::json!("LOHA"));
    assert!(e.contains("LOHA") && e.contains("not supported yet"), "{e}");
}

#[test]
fn prefix_tuning_on_an_encoder_is_refused() {
    let mut m = load(&fixture("tiny-bert"), Backend::Cpu);
    let (cfg, weights) = adapter_files("gpt2-prefix");
    let e = load_adapter(&mut m, &cfg, &weights).unwrap_err().to_string();
    assert!(e.contains("prefix tuning needs a decoder"), "{e}");
}

#[test]
fn prompt_table_must_match_the_model() {
    // A GPT-2 prefix table is [4, 256]; tiny-llama expects [4, 2*2*2*16 = 128].
    let e = adapter_error("gpt2-prefix", |_| {});
    assert!(e.contains("prompt_embeddings has shape [4, 256]"), "{e}");
}

#[test]
fn prefix_adapter_continues_through_the_kv_cache() {
    // Greedy decoding with a cache must equal re-running the whole sequence.
    for model in ["llama", "gpt2"] {
        let case = format!("{model}-prefix");
        let mut m = load(&fixture(&format!("tiny-{model}")), Backend::Cpu);
        let (cfg, weights) = adapter_files(&case);
        load_adapter(&mut m, &cfg, &weights).unwrap();
        let ids = read_ref(&fixture("peft").join(&case).join("reference.safetensors"))["input_ids"].ids();
        let full = flat_logits(&m, &ids);
        let vocab = full.len() / ids.len();
        let mut cache = webpeft::models::KvCache::new(m.num_layers());
        let first = m.forward(&[ids[..6].to_vec()], None, None, Some(&mut cache)).unwrap();
        assert_close(&case, &host(first.token_logits.unwrap().reshape([-1])), &full[..6 * vocab], 1e-4);
        for p in 6..ids.len() {
            let step = m.forward(&[vec![ids[p]]], None, None, Some(&mut cache)).unwrap();
            assert_close(&format!("{case} step {p}"), &host(step.token_logits.unwrap().reshape([-1])), &full[p * vocab..(p + 1) * vocab], 1e-4);
        }
    }
}

#[test]
fn adapter_for_another_model_is_rejected() {
    // A GPT-2 adapter names modules a Llama model does not have.
    let e = adapter_error("gpt2-lora", |_| {});
    assert!(e.contains("transformer.h.0.attn.c_attn") && e.contains("does not exist in this model"), "{e}");
}

#[test]
fn adapter_shapes_must_match_its_config() {
    let e = adapter_error("llama-lora", |v| v["r"] = serde_json::json!(8));
    assert!(e.contains("lora_A.weight has shape [4, 64], but r=8"), "{e}");
}

#[test]
fn decoder_classification_heads_give_peft_logits() {
    // LlamaForSequenceClassification / GPT2ForSequenceClassification + LoRA: the
    // adapter carries the `score` head; the base is the causal checkpoint.
    for model in ["llama", "gpt2"] {
        let case = format!("{model}-seqcls-lora");
        let r = read_ref(&fixture("peft").join(&case).join("reference.safetensors"));
        let mut m = load(&fixture(&format!("tiny-{model}")), Backend::Cpu);
        let (cfg, weights) = adapter_files(&case);
        load_adapter(&mut m, &cfg, &weights).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(m.info.task, "seq-cls");
        assert_eq!(m.info.num_labels, Some(3));
        let out = m.forward(&[r["input_ids"].ids()], None, None, None).unwrap();
        assert_close(&case, &host(out.class_logits.unwrap().reshape([-1])), &r["logits"].f32, 1e-4);
        // Right padding must not move the head off the last real token.
        let mut ids = r["input_ids"].ids();
        let n = ids.len();
        ids.extend([0, 0, 0]);
        let mask: Vec<u32> = (0..n + 3).map(|i| (i < n) as u32).collect();
        let out = m.forward(&[ids], Some(&[mask]), None, None).unwrap();
        assert_close(&format!("{case} padded"), &host(out.class_logits.unwrap().reshape([-1])), &r["logits"].f32, 1e-4);
    }
}

#[test]
fn switching_adapters_off_works_on_a_training_device() {
    // The browser keeps models on an autodiff device; replaced heads and
    // biases must swap there too (a tracked non-leaf cannot become a parameter).
    for case in ["bert-bitfit", "bert-lora", "gpt2-seqcls-lora"] {
        let model = case.split('-').next().unwrap();
        let r = read_ref(&fixture("peft").join(case).join("reference.safetensors"));
        let device = device(Backend::Cpu).autodiff();
        let mut m = webpeft::train::freeze(webpeft::Model::load(&files(&fixture(&format!("tiny-{model}"))), &device).unwrap());
        let run = |m: &webpeft::Model| {
            let out = m.forward(&[r["input_ids"].ids()], None, None, None).unwrap();
            let logits = host(out.class_logits.map(|l| l.reshape([-1])).or(out.token_logits.map(|l| l.reshape([-1]))).unwrap());
            (logits, host(out.last_hidden_state))
        };
        // The base model. A decoder loaded as a causal LM has no `score` head:
        // load_adapter gives it a new one (seed 0) before the adapter's saved
        // head replaces it, and switched off that new head is back (PEFT's
        // `original_module`), so the base gets the same new head here.
        let mut base = m.clone();
        if base.info.num_labels.is_none() {
            let labels = webpeft::peft::model_labels(&base.config, 3);
            webpeft::peft::create::attach_head(&mut base, &labels, &mut rand::SeedableRng::seed_from_u64(0)).unwrap();
        }
        let (base_logits, base_hidden) = run(&base);
        let (cfg, weights) = adapter_files(case);
        load_adapter(&mut m, &cfg, &weights).unwrap();
        assert_close(case, &run(&m).0, &r["logits"].f32, 1e-4);
        m.set_adapter_enabled(false);
        let (off, off_hidden) = run(&m);
        // The adapter moves the logits, so equality with the base says it is off.
        assert!(max_abs_diff(case, &base_logits, &r["logits"].f32) > 1e-3, "{case}: the adapter does not change the logits; the check proves nothing");
        let d = max_abs_diff(case, &off, &base_logits);
        assert!(d <= 1e-6, "{case}: switched off, the logits differ from the base model's by {d:e}");
        let d = max_abs_diff(case, &off_hidden, &base_hidden);
        assert!(d <= 1e-6, "{case}: switched off, the hidden states differ from the base model's by {d:e}");
        m.set_adapter_enabled(true);
        assert_close(&format!("{case} back on"), &run(&m).0, &r["logits"].f32, 1e-4);
    }
}

/// PEFT raises for (IA)^3 on XLM-RoBERTa without target and feed-forward modules (it has no
/// defaults for it); webpeft refuses too instead of guessing BERT's.
#[test]
fn ia3_on_xlm_roberta_needs_targets_as_in_peft() {
    use webpeft::peft::create::{create_adapter, AdapterSpec, Method};
    let mut m = load(&fixture("tiny-xlm-roberta"), Backend::Cpu);
    let mut spec = AdapterSpec::new(Method::Ia3);
    spec.seq_cls = true;
    let e = create_adapter(&mut m, &spec).unwrap_err();
    assert!(e.to_string().contains("no default (IA)³") && e.to_string().contains("xlm-roberta"), "{e}");
    let mut m = load(&fixture("tiny-roberta"), Backend::Cpu);
    create_adapter(&mut m, &spec).unwrap();
}

//! Training parity: starting from a PEFT adapter, five AdamW steps on a fixed
//! batch give PyTorch + PEFT's recorded losses, and the frozen base weights
//! stay bit-identical.

mod common;

use common::*;
use webpeft::device::Backend;
use webpeft::peft::export::export_adapter;
use webpeft::peft::load_adapter;
use webpeft::train::{freeze, MicroBatch, OptimizerKind, Targets, TrainOptions, Trainer};
use webpeft::Model;

fn train_case(model: &str, method: &str) {
    let case = format!("{model}-{method}");
    let dir = fixture("peft").join(&case);
    let r = read_ref(&dir.join("reference.safetensors"));
    let device = device(Backend::Cpu).autodiff();
    let m = Model::load(&files(&fixture(&format!("tiny-{model}"))), &device).unwrap();
    let mut m = freeze(m);
    let cfg = std::fs::read(dir.join("adapter_config.json")).unwrap();
    let weights = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    load_adapter(&mut m, &cfg, &weights).unwrap();
    let frozen_before = snapshot_frozen(&mut m);

    let ids = r["train_input_ids"].id_rows();
    let targets = match r.get("train_labels") {
        Some(l) => Targets::Classes(l.ids()),
        None => Targets::CausalLm,
    };
    let opts = TrainOptions { optimizer: OptimizerKind::adamw(), lr: 1e-2, total_steps: 5, ..Default::default() };
    let mut t = Trainer::new(m, opts);
    let batch = MicroBatch { ids, attention_mask: None, targets };
    let mut losses = vec![];
    for _ in 0..5 {
        let stats = pollster::block_on(t.step(std::slice::from_ref(&batch))).unwrap();
        losses.push(stats.loss);
    }
    let want = &r["train_losses"].f32;
    for (i, (got, want)) in losses.iter().zip(want).enumerate() {
        let rel = (got - want).abs() / want.abs();
        assert!(rel <= 1e-4, "{case} step {i}: loss {got} vs PEFT {want} (rel {rel:e}); all: {losses:?} vs {want:?}");
    }
    eprintln!("{case}: losses {losses:?} match PEFT");
    let mut m = t.into_model();
    assert!(snapshot_frozen(&mut m) == frozen_before, "{case}: frozen base weights changed");

    // The trained adapter, exported, matches PEFT's trained adapter: same
    // config, keys, shapes and (within float drift) values.
    let files = pollster::block_on(export_adapter(&mut m)).unwrap();
    let got_cfg: serde_json::Value = serde_json::from_slice(&files.config).unwrap();
    let want_cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("trained/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(got_cfg, want_cfg, "{case}: exported config differs from PEFT's");
    let got = adapter_tensors(&files.weights);
    let want = adapter_tensors(&std::fs::read(dir.join("trained/adapter_model.safetensors")).unwrap());
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{case}: exported tensor names differ from PEFT's");
    for (name, (shape, values)) in &want {
        let (gs, gv) = &got[name];
        assert_eq!(gs, shape, "{case}: {name} shape");
        let tol = if noise_gradient(name) { 0.06 } else { 1e-4 };
        let d = max_abs_diff(name, gv, values);
        assert!(d <= tol, "{case}: trained {name} differs from PEFT's by {d} (tolerance {tol})");
    }
}

/// The values of every frozen base weight (dense and norm weights; a
/// `modules_to_save` head such as BERT's classifier is trainable and excluded).
fn snapshot_frozen(m: &mut Model) -> Vec<Vec<f32>> {
    let named = m.named_layers();
    let mut out: Vec<Vec<f32>> = vec![];
    for (_, l) in named.linears {
        if !l.weight.val().is_require_grad() {
            out.push(host(l.weight.val().inner()));
        }
    }
    for (_, n) in named.norms {
        assert!(!n.weight.val().is_require_grad(), "norm weights are never trained here");
        out.push(host(n.weight.val().inner()));
    }
    assert!(out.len() >= 8, "expected the frozen base weights to be found");
    out
}

#[test]
fn lora_family_trains_like_peft() {
    for model in ["llama", "qwen2", "gpt2", "bert", "qwen3"] {
        for method in ["lora", "rslora", "dora"] {
            train_case(model, method);
        }
    }
}

#[test]
fn ia3_and_bitfit_train_like_peft() {
    for model in ["llama", "qwen2", "gpt2", "bert", "qwen3"] {
        train_case(model, "ia3");
    }
    for model in ["qwen2", "gpt2", "bert"] {
        train_case(model, "bitfit");
    }
}

#[test]
fn prompt_and_prefix_tuning_train_like_peft() {
    for model in ["llama", "qwen2", "gpt2", "bert", "qwen3"] {
        train_case(model, "prompt");
    }
    for model in ["llama", "qwen2", "gpt2", "qwen3"] {
        train_case(model, "prefix");
    }
}

#[test]
fn lora_dropout_applies_in_training_steps_only() {
    let dir = fixture("peft").join("llama-lora");
    let r = read_ref(&dir.join("reference.safetensors"));
    let device = device(Backend::Cpu).autodiff();
    let mut m = freeze(Model::load(&files(&fixture("tiny-llama")), &device).unwrap());
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("adapter_config.json")).unwrap()).unwrap();
    cfg["lora_dropout"] = serde_json::json!(0.5);
    load_adapter(&mut m, cfg.to_string().as_bytes(), &std::fs::read(dir.join("adapter_model.safetensors")).unwrap()).unwrap();
    let ids = r["train_input_ids"].id_rows();
    let logits = |m: &Model| host(m.forward(&ids, None, None, None).unwrap().token_logits.unwrap().reshape([-1]));
    // Outside a step the adapter is deterministic and equals PEFT's eval forward.
    let before = logits(&m);
    assert_eq!(before, logits(&m));
    let mut t = Trainer::new(m, TrainOptions { lr: 0.0, optimizer: OptimizerKind::Sgd { momentum: 0.0, weight_decay: 0.0 }, ..Default::default() });
    let batch = MicroBatch { ids: ids.clone(), attention_mask: None, targets: Targets::CausalLm };
    let a = pollster::block_on(t.step(std::slice::from_ref(&batch))).unwrap().loss;
    let b = pollster::block_on(t.step(std::slice::from_ref(&batch))).unwrap().loss;
    // lr 0: the weights do not move, so only dropout can change the loss.
    assert!((a - b).abs() > 1e-6, "dropout 0.5 should make step losses differ ({a} vs {b})");
    let no_dropout = r["train_losses"].f32[0];
    assert!((a - no_dropout).abs() > 1e-6 && (b - no_dropout).abs() > 1e-6);
    let m = t.into_model();
    assert_eq!(logits(&m), before, "dropout must be off after the step");
}

#[test]
fn decoder_classification_trains_like_peft() {
    for model in ["llama", "gpt2"] {
        train_case(model, "seqcls-lora");
    }
}

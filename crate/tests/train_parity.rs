//! Training parity: starting from a PEFT adapter, five AdamW steps on a fixed
//! batch give PyTorch + PEFT's recorded losses, and every frozen tensor of the
//! model (embeddings, norms, biases, dense weights) stays bit-identical.

mod common;

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use common::*;
use webpeft::device::Backend;
use webpeft::peft::export::export_adapter;
use webpeft::peft::load_adapter;
use webpeft::train::{freeze, MicroBatch, OptimizerKind, Targets, TrainOptions, Trainer};
use webpeft::models::Network;
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
    let frozen_before = snapshot_frozen(&m, &case, method);

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
    assert_frozen_unchanged(&case, &frozen_before, &snapshot_frozen(&m, &case, method));

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
        assert_eq!(gv.len(), values.len(), "{case}: {name} length");
        for (range, tol) in trained_tolerances(name, values.len()) {
            let d = max_abs_diff(name, &gv[range.clone()], &values[range.clone()]);
            assert!(d <= tol, "{case}: trained {name}[{range:?}] differs from PEFT's by {d} (tolerance {tol})");
        }
    }
}

/// Every parameter of the network by its module path (`model.layers.0.mlp.up_proj.weight`,
/// `transformer.h.1.attn.c_attn.lora.lora_a`): trainable or not, and its values.
struct Params {
    path: Vec<String>,
    out: BTreeMap<String, (bool, Vec<f32>)>,
}

impl ModuleVisitor for Params {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
        let t = p.val();
        let name = self.path.join(".");
        assert!(self.out.insert(name.clone(), (t.is_require_grad(), host(t.inner()))).is_none(), "two parameters named {name}");
    }
}

fn params(m: &Model) -> BTreeMap<String, (bool, Vec<f32>)> {
    let mut v = Params { path: vec![], out: BTreeMap::new() };
    match &m.network {
        Network::Llama(n) => n.visit(&mut v),
        Network::Gpt2(n) => n.visit(&mut v),
        Network::Bert(n) => n.visit(&mut v),
    }
    v.out
}

/// The values of every frozen tensor of the network: everything but the
/// adapter's own tensors (LoRA/DoRA factors, (IA)^3 vectors), a
/// `modules_to_save` head, and for BitFit the biases. Embeddings (token,
/// position, token type), every norm, frozen biases and dense weights are all
/// here; each must also be marked as not requiring a gradient.
fn snapshot_frozen(m: &Model, case: &str, method: &str) -> BTreeMap<String, Vec<f32>> {
    let trainable = |name: &str| {
        let parts: Vec<&str> = name.split('.').collect();
        parts.contains(&"lora")
            || parts.contains(&"ia3")
            || matches!(parts[0], "score" | "classifier")
            || (method == "bitfit" && parts.last() == Some(&"bias"))
    };
    let all = params(m);
    let mut frozen = BTreeMap::new();
    for (name, (requires_grad, values)) in all {
        if trainable(&name) {
            continue;
        }
        assert!(!requires_grad, "{case}: base tensor {name} requires a gradient");
        frozen.insert(name, values);
    }
    let has = |what: &str| frozen.keys().any(|k| k.to_lowercase().contains(what));
    assert!(has("emb") || has("wte"), "{case}: expected the frozen embeddings among {:?}", frozen.keys().collect::<Vec<_>>());
    assert!(has("norm") || has("ln_"), "{case}: expected the frozen norms among {:?}", frozen.keys().collect::<Vec<_>>());
    frozen
}

/// Asserts every frozen tensor kept its exact bits, naming the first that changed.
fn assert_frozen_unchanged(case: &str, before: &BTreeMap<String, Vec<f32>>, after: &BTreeMap<String, Vec<f32>>) {
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "{case}: the set of frozen tensors changed");
    for (name, b) in before {
        let a = &after[name];
        let same = a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{case}: frozen base tensor {name} changed in training (max abs diff {:e})", max_abs_diff(name, a, b));
    }
    eprintln!("{case}: {} frozen tensors bit-identical", before.len());
}

#[test]
fn lora_family_trains_like_peft() {
    for model in ["llama", "qwen2", "gpt2", "bert"] {
        for method in ["lora", "rslora", "dora"] {
            train_case(model, method);
        }
    }
}

#[test]
fn ia3_and_bitfit_train_like_peft() {
    for model in ["llama", "qwen2", "gpt2", "bert"] {
        train_case(model, "ia3");
    }
    for model in ["qwen2", "gpt2", "bert"] {
        train_case(model, "bitfit");
    }
}

#[test]
fn prompt_and_prefix_tuning_train_like_peft() {
    for model in ["llama", "qwen2", "gpt2", "bert"] {
        train_case(model, "prompt");
    }
    for model in ["llama", "qwen2", "gpt2"] {
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

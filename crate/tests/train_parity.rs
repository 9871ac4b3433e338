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
use webpeft::Model;

fn train_case(model: &str, method: &str) {
    train_case_with(model, method, false);
}

fn train_case_with(model: &str, method: &str, gradient_checkpointing: bool) {
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
    let opts = TrainOptions { optimizer: OptimizerKind::adamw(), lr: 1e-2, total_steps: 5, gradient_checkpointing, ..Default::default() };
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
    if gradient_checkpointing {
        assert_eq!(t.checkpointed.get(), 5, "{case}: every step ran checkpointed");
    }
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
/// `transformer.h.1.attn.c_attn.adapters.0.matrices.0`): trainable or not, and its values.
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
        // The first name is the `Network` variant (`Llama`, `Bert`...), not part of HF's path.
        let name = self.path[1..].join(".");
        assert!(self.out.insert(name.clone(), (t.is_require_grad(), host(t.inner()))).is_none(), "two parameters named {name}");
    }
}

fn params(m: &Model) -> BTreeMap<String, (bool, Vec<f32>)> {
    let mut v = Params { path: vec![], out: BTreeMap::new() };
    m.network.visit(&mut v);
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
        parts.contains(&"adapters")
            || matches!(parts[0], "score" | "classifier")
            // RoBERTa's head keeps its dense layer (`classifier.dense`) in the pooler's place.
            || (case.contains("roberta") && name.starts_with("bert.pooler."))
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
    for model in ["llama", "qwen2", "gpt2", "bert", "qwen3", "gemma3", "roberta", "xlm-roberta", "phi3", "modernbert"] {
        for method in ["lora", "rslora", "dora"] {
            train_case(model, method);
        }
    }
}

/// Gradient checkpointing (each layer recomputed in the backward pass) trains as PEFT does,
/// for the families that support it, on every method that does not need the KV cache.
#[test]
fn checkpointed_training_matches_peft() {
    for model in ["llama", "qwen2", "qwen3", "gemma3", "phi3"] {
        for method in ["lora", "dora", "ia3", "prompt"] {
            train_case_with(model, method, true);
        }
    }
    train_case_with("qwen2", "bitfit", true);
}

#[test]
fn ia3_and_bitfit_train_like_peft() {
    // XLM-RoBERTa has no (IA)^3 defaults in PEFT (see peft_interop).
    for model in ["llama", "qwen2", "gpt2", "bert", "qwen3", "gemma3", "roberta", "phi3", "modernbert"] {
        train_case(model, "ia3");
    }
    for model in ["qwen2", "gpt2", "bert", "roberta", "xlm-roberta"] {
        train_case(model, "bitfit");
    }
}

#[test]
fn prompt_and_prefix_tuning_train_like_peft() {
    for model in ["llama", "qwen2", "gpt2", "bert", "qwen3", "gemma3", "roberta", "xlm-roberta", "phi3", "modernbert"] {
        train_case(model, "prompt");
    }
    for model in ["llama", "qwen2", "gpt2", "qwen3", "gemma3", "phi3"] {
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

// ---- Starting a run never loses work (issue #12) ----------------------------

use webpeft::train::data::{self, Dataset};
use webpeft::train::run::{Event, Run};
use webpeft::train::session::{prepare, AdapterMode, Method, OptimizerName, Schedule, Task, TrainSpec};
use webpeft::ErrorKind;

fn dataset(name: &str) -> Dataset {
    data::parse(name, &std::fs::read(fixture("data").join(name)).unwrap()).unwrap()
}

/// The model's outputs for one row: class logits, token logits, or (a bare
/// encoder) the last hidden state.
fn outputs(m: &Model, ids: &[u32]) -> Vec<f32> {
    let out = m.forward(&[ids.to_vec()], None, None, None).unwrap();
    match (out.class_logits, out.token_logits) {
        (Some(c), _) => host(c.reshape([-1])),
        (None, Some(t)) => host(t.reshape([-1])),
        _ => host(out.last_hidden_state.reshape([-1])),
    }
}

/// Runs the run to its end; returns the step losses.
fn finish(run: &mut Run) -> Vec<f32> {
    let mut losses = vec![];
    while !run.is_finished() {
        for e in pollster::block_on(run.next(&|| 0.0)).unwrap() {
            if let Event::Step(s) = e {
                losses.push(s.loss);
            }
        }
    }
    losses
}

/// The adapter's exported files (config and weights).
fn adapter_files(m: &Model) -> (Vec<u8>, Vec<u8>) {
    let f = pollster::block_on(export_adapter(&mut m.clone())).unwrap();
    (f.config, f.weights)
}

fn lm_spec() -> TrainSpec {
    TrainSpec { steps: Some(3), batch: 4, lr: 1e-2, seq_len: 32, shuffle: false, r: Some(4), schedule: Schedule::Constant, ..Default::default() }
}

/// A model with a trained adapter (the work a failed start must not lose) and its base.
fn trained_llama() -> (Model, Model) {
    let base = freeze(Model::load(&files(&fixture("tiny-llama")), &device(Backend::Cpu).autodiff()).unwrap());
    let (mut run, prep) = prepare(&base, &base, &lm_spec(), &dataset("prompt_completion.jsonl"), None).unwrap();
    assert_eq!(prep.adapter, AdapterMode::New);
    let losses = finish(&mut run);
    assert!(losses.iter().all(|l| l.is_finite()) && losses.len() == 3, "{losses:?}");
    (run.into_model(), base)
}

const IDS: [u32; 6] = [1, 5, 9, 42, 7, 100];

#[test]
fn a_failed_start_leaves_the_model_and_its_adapter_as_they_were() {
    let (current, base) = trained_llama();
    let before = outputs(&current, &IDS);
    assert_ne!(before, outputs(&base, &IDS), "the trained adapter must change the outputs, or this test proves nothing");
    let files_before = adapter_files(&current);
    let train = dataset("prompt_completion.jsonl");
    let chat = data::parse("chat.jsonl", br#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#).unwrap();
    let spec = lm_spec();
    let cases: Vec<(&str, TrainSpec, Dataset, &str)> = vec![
        ("seq_len above the context", TrainSpec { seq_len: 10_000, ..spec.clone() }, train.clone(), "context length of 128"),
        // Fails only after the new adapter exists, when its virtual tokens are counted.
        ("virtual tokens past the context", TrainSpec { method: Method::Prompt, virtual_tokens: Some(120), adapter: Some(AdapterMode::New), ..spec.clone() }, train.clone(), "virtual tokens exceeds the context length"),
        ("targets that match nothing", TrainSpec { targets: Some(vec!["nope".into()]), adapter: Some(AdapterMode::New), ..spec.clone() }, train.clone(), "matches target_modules"),
        ("batch 0", TrainSpec { batch: 0, ..spec.clone() }, train.clone(), "at least 1"),
        ("seq-cls data without labels", TrainSpec { task: Task::SeqCls, ..spec.clone() }, train.clone(), "label"),
        // An encoding error: tiny-llama's tokenizer has no chat template.
        ("chat rows without a chat template", spec.clone(), chat, "has no chat template"),
    ];
    for (what, s, data, want) in cases {
        let err = prepare(&current, &base, &s, &data, None).err().unwrap_or_else(|| panic!("{what}: prepare should fail"));
        assert_eq!(err.kind, ErrorKind::Input, "{what}: {err}");
        assert!(err.to_string().contains(want), "{what}: {err:?} should mention {want:?}");
        assert!(outputs(&current, &IDS) == before, "{what}: the model's logits changed after a failed start");
        assert!(adapter_files(&current) == files_before, "{what}: the adapter changed after a failed start");
        assert!(outputs(&base, &IDS) != before, "{what}: the base model was changed");
    }
    // `continue` needs an adapter.
    let err = prepare(&base, &base, &TrainSpec { adapter: Some(AdapterMode::Continue), ..spec.clone() }, &train, None).err().unwrap();
    assert_eq!((err.kind, err.source.as_str()), (ErrorKind::Input, "adapter"), "{err}");

    // Then it trains, without reloading: the same settings continue the adapter...
    let (mut run, prep) = prepare(&current, &base, &spec, &train, None).unwrap();
    assert_eq!(prep.adapter, AdapterMode::Continue);
    assert!(outputs(run.trainer.model(), &IDS) == before, "a continued run starts from the trained adapter");
    let losses = finish(&mut run);
    assert!(losses.iter().all(|l| l.is_finite()) && losses.len() == 3, "{losses:?}");
    assert!(outputs(run.trainer.model(), &IDS) != before, "the run trained");
    // ... on a copy: the model it started from is unchanged by the steps.
    assert!(outputs(&current, &IDS) == before, "training a run changed the model it was started from");
}

#[test]
fn an_unseen_eval_label_fails_before_the_model_is_touched() {
    let base = freeze(Model::load(&files(&fixture("tiny-bert")), &device(Backend::Cpu).autodiff()).unwrap());
    let before = outputs(&base, &IDS);
    let spec = TrainSpec { task: Task::SeqCls, method: Method::Lora, steps: Some(2), batch: 3, seq_len: 16, ..Default::default() };
    let (train, eval) = (dataset("three_labels.csv"), dataset("reviews_unseen_label.csv"));
    let err = prepare(&base, &base, &spec, &train, Some(&eval)).err().expect("an eval label unseen in training must fail");
    assert_eq!(err.kind, ErrorKind::Input, "{err}");
    assert!(err.to_string().contains("line 2") && err.to_string().contains("was not seen in training"), "{err}");
    assert!(outputs(&base, &IDS) == before, "the model changed after a failed start");
    assert!(base.adapter_config.is_none());
    let (mut run, _) = prepare(&base, &base, &spec, &train, Some(&train)).unwrap();
    assert_eq!(finish(&mut run).len(), 2);
}

#[test]
fn a_second_run_trains_a_new_adapter_when_the_settings_differ() {
    let (current, base) = trained_llama();
    let (trained, plain) = (outputs(&current, &IDS), outputs(&base, &IDS));
    let train = dataset("prompt_completion.jsonl");
    let spec = lm_spec();
    let start = |s: &TrainSpec| {
        let (run, prep) = prepare(&current, &base, s, &train, None).unwrap();
        let cfg = run.trainer.model().adapter_config.clone().unwrap();
        (prep, cfg, outputs(run.trainer.model(), &IDS))
    };
    // Same settings (other training options may change): continue.
    let (p, cfg, out) = start(&TrainSpec { lr: 1e-3, steps: Some(9), ..spec.clone() });
    assert_eq!(p.adapter, AdapterMode::Continue);
    assert_eq!(cfg["r"], 4);
    assert!(out == trained && p.warnings.is_empty(), "{:?}", p.warnings);
    // Another r, alpha, target list or method: a new adapter on the base model (LoRA B = 0: the base's logits).
    for (what, s, key, want) in [
        ("r", TrainSpec { r: Some(8), ..spec.clone() }, "r", serde_json::json!(8)),
        ("alpha", TrainSpec { alpha: Some(32.0), ..spec.clone() }, "lora_alpha", serde_json::json!(32)),
        ("targets", TrainSpec { targets: Some(vec!["q_proj".into()]), ..spec.clone() }, "target_modules", serde_json::json!(["q_proj"])),
        ("method", TrainSpec { method: Method::Ia3, ..spec.clone() }, "peft_type", serde_json::json!("IA3")),
    ] {
        let (p, cfg, out) = start(&s);
        assert_eq!(p.adapter, AdapterMode::New, "{what}");
        assert_eq!(cfg[key], want, "{what}");
        assert!(out == plain, "{what}: a new adapter starts from the base model's outputs");
    }
    // Explicit choices override: `new` with the same settings, `continue` with others (with a warning).
    let (p, _, out) = start(&TrainSpec { adapter: Some(AdapterMode::New), ..spec.clone() });
    assert!(p.adapter == AdapterMode::New && out == plain);
    let (p, cfg, out) = start(&TrainSpec { adapter: Some(AdapterMode::Continue), r: Some(8), optimizer: OptimizerName::Sgd, ..spec.clone() });
    assert!(p.adapter == AdapterMode::Continue && out == trained && cfg["r"] == 4);
    assert!(p.warnings.iter().any(|w| w.contains("r: 4 (attached) vs 8")), "{:?}", p.warnings);

    // Classification: other labels make a new adapter (and head).
    let bert = freeze(Model::load(&files(&fixture("tiny-bert")), &device(Backend::Cpu).autodiff()).unwrap());
    let cls = TrainSpec { task: Task::SeqCls, steps: Some(1), batch: 3, seq_len: 16, ..Default::default() };
    let (mut run, _) = prepare(&bert, &bert, &cls, &dataset("three_labels.csv"), None).unwrap();
    finish(&mut run);
    let tuned = run.into_model();
    let (_, p) = prepare(&tuned, &bert, &cls, &dataset("three_labels.csv"), None).unwrap();
    assert_eq!(p.adapter, AdapterMode::Continue);
    // tiny-bert's head has 3 classes (placeholder names): three other labels fit it.
    let other = data::parse("other.csv", b"text,label\nred apples,fruit\na fast car,vehicle\na tall tree,plant\n").unwrap();
    let (_, p) = prepare(&tuned, &bert, &cls, &other, None).unwrap();
    assert_eq!(p.adapter, AdapterMode::New);
    assert_eq!(p.labels.unwrap(), ["fruit", "plant", "vehicle"]);
}

#[test]
fn option_values_are_enums_whose_errors_name_the_valid_values() {
    let cases: [(&str, &str, &[&str]); 5] = [
        ("task", "causal", &["causal-lm", "seq-cls"]),
        ("method", "lorax", &["lora", "dora", "bitfit", "ia3", "prompt", "prefix"]),
        ("schedule", "step", &["constant", "linear", "cosine"]),
        ("optimizer", "adam", &["adamw", "sgd"]),
        ("adapter", "old", &["new", "continue"]),
    ];
    for (field, bad, valid) in cases {
        let err = TrainSpec::from_options(serde_json::json!({ field: bad })).unwrap_err();
        assert_eq!((err.kind, err.source.as_str()), (ErrorKind::Input, field), "{err}");
        assert!(err.message.contains(bad), "{err}");
        for v in valid {
            assert!(err.message.contains(&format!("`{v}`")), "{err} should list {v}");
        }
    }
    let err = TrainSpec::from_options(serde_json::json!({ "r": "eight" })).unwrap_err();
    assert_eq!(err.source, "r", "{err}");
    // The spellings stay those of the CLI and earlier releases, both ways.
    let json = serde_json::json!({ "task": "seq-cls", "method": "ia3", "schedule": "cosine", "optimizer": "sgd", "adapter": "continue" });
    let spec = TrainSpec::from_options(json.clone()).unwrap();
    assert_eq!((spec.task, spec.method, spec.schedule, spec.optimizer, spec.adapter), (Task::SeqCls, Method::Ia3, Schedule::Cosine, OptimizerName::Sgd, Some(AdapterMode::Continue)));
    let back = serde_json::to_value(&spec).unwrap();
    for k in ["task", "method", "schedule", "optimizer", "adapter"] {
        assert_eq!(back[k], json[k], "{k}");
    }
    let defaults = serde_json::to_value(TrainSpec::default()).unwrap();
    assert_eq!((&defaults["task"], &defaults["method"], &defaults["schedule"], &defaults["optimizer"]), (&serde_json::json!("causal-lm"), &serde_json::json!("lora"), &serde_json::json!("linear"), &serde_json::json!("adamw")));
}

//! `webpeft train`, `eval` and `merge` through the CLI: events, resume,
//! NaN stop, bad data, and merged models that match PEFT's logits.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn webpeft(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_webpeft")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("webpeft-cli-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn data(name: &str) -> PathBuf {
    fixture("data").join(name)
}

/// Step events (one JSON line each) from `train`'s stdout.
fn events(stdout: &str, kind: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|v| v["event"] == kind).collect()
}

fn train(model: &str, extra: &[&str], out: &Path) -> (bool, String, String) {
    let m = fixture(model);
    let d = data("prompt_completion.jsonl");
    let mut args = vec!["train", s(&m), "--data", s(&d), "--task", "causal-lm", "--method", "lora", "--batch", "4", "--no-shuffle", "--out", s(out)];
    if !extra.contains(&"--lr") {
        args.extend_from_slice(&["--lr", "1e-2"]);
    }
    args.extend_from_slice(extra);
    webpeft(&args)
}

#[test]
fn train_prints_one_event_per_step_and_the_loss_falls() {
    let out = tmp("events");
    let (ok, stdout, err) = train("tiny-llama", &["--steps", "12", "--r", "4"], &out);
    assert!(ok, "{err}");
    let steps = events(&stdout, "step");
    assert_eq!(steps.len(), 12);
    for k in ["step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s", "eta_s", "total_steps"] {
        assert!(steps[5].get(k).is_some(), "step event lacks {k}: {}", steps[5]);
    }
    // A fixed batch of 8 rows at lr 1e-2: the loss must drop.
    let first = steps[0]["loss"].as_f64().unwrap();
    let last = steps[11]["loss"].as_f64().unwrap();
    assert!(last < first - 0.05, "loss did not fall: {first} -> {last}");
    // The linear schedule decays the learning rate to 0 at the end.
    assert!(steps[11]["lr"].as_f64().unwrap() < steps[0]["lr"].as_f64().unwrap());
    assert!(out.join("adapter_config.json").exists() && out.join("adapter_model.safetensors").exists());
    assert!(err.contains("trainable parameters"), "{err}");
}

#[test]
fn a_resumed_run_continues_exactly() {
    // 6 steps straight, versus 3 steps + resume from the step-3 checkpoint.
    let full = tmp("full");
    let (ok, straight, err) = train("tiny-gpt2", &["--steps", "6", "--save-every", "3"], &full);
    assert!(ok, "{err}");
    let ckpt = full.join("checkpoint");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(ckpt.join("trainer_state.json")).unwrap()).unwrap();
    assert_eq!(state["step"], 3);
    let resumed_dir = tmp("resumed");
    let (ok, resumed, err) = train("tiny-gpt2", &["--steps", "6", "--resume", s(&ckpt)], &resumed_dir);
    assert!(ok, "{err}");
    let a = events(&straight, "step");
    let b = events(&resumed, "step");
    assert_eq!(b.len(), 3, "the resumed run does steps 4..6");
    for (x, y) in a[3..].iter().zip(&b) {
        assert_eq!(x["step"], y["step"]);
        let (lx, ly) = (x["loss"].as_f64().unwrap(), y["loss"].as_f64().unwrap());
        assert!((lx - ly).abs() <= 1e-6 * lx.abs(), "step {}: {lx} vs resumed {ly}", x["step"]);
        assert_eq!(x["lr"], y["lr"]);
    }
}

#[test]
fn a_diverging_run_stops_and_keeps_the_last_good_adapter() {
    let out = tmp("nan");
    let (ok, _, err) = train("tiny-llama", &["--steps", "20", "--optimizer", "sgd", "--lr", "1e30", "--schedule", "constant"], &out);
    assert!(!ok);
    assert!(err.contains("the loss became") && err.contains("last good adapter"), "{err}");
    let t = adapter_tensors(&std::fs::read(out.join("adapter_model.safetensors")).unwrap());
    assert!(t.values().all(|(_, v)| v.iter().all(|x| x.is_finite())), "the saved adapter must hold finite values");
}

#[test]
fn classification_trains_and_evaluates() {
    let out = tmp("cls");
    let m = fixture("tiny-bert");
    let d = data("three_labels.csv");
    let (ok, stdout, err) = webpeft(&[
        "train", s(&m), "--data", s(&d), "--eval", s(&d), "--task", "seq-cls", "--method", "ia3", "--epochs", "8", "--batch", "3", "--lr", "5e-2", "--out", s(&out), "--eval-every", "6",
    ]);
    assert!(ok, "{err}");
    let evals = events(&stdout, "eval");
    assert!(evals.len() >= 2);
    let m0 = &evals.last().unwrap()["metrics"];
    for k in ["loss", "accuracy", "macro_f1"] {
        assert!(m0.get(k).is_some(), "eval lacks {k}: {m0}");
    }
    let (ok, json, err) = webpeft(&["eval", s(&m), "--adapter", s(&out), "--data", s(&d)]);
    assert!(ok, "{err}");
    let metrics: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(metrics["examples"], 9);
    // The CLI's eval equals the trainer's last eval on the same file.
    let (a, b) = (metrics["loss"].as_f64().unwrap(), m0["loss"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-5, "eval loss {a} vs training's {b}");
}

#[test]
fn bad_data_gets_clear_errors() {
    let out = tmp("bad");
    let (ok, _, err) = train("tiny-llama", &["--steps", "1"], &out);
    assert!(ok, "{err}");
    let cases: [(&str, &[&str], &str); 3] = [
        ("bad_line.jsonl", &[], "bad_line.jsonl: line 2: invalid JSON"),
        ("missing_field.jsonl", &[], "line 2: missing field 'completion'"),
        ("empty.jsonl", &[], "contains no examples"),
    ];
    for (file, _, want) in cases {
        let m = fixture("tiny-llama");
        let d = data(file);
        let (ok, _, err) = webpeft(&["train", s(&m), "--data", s(&d), "--task", "causal-lm", "--method", "lora", "--out", s(&out)]);
        assert!(!ok && err.contains(want), "{file}: expected '{want}' in: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // Labels unseen in training are named at eval time.
    let m = fixture("tiny-bert");
    let (train_d, eval_d) = (data("three_labels.csv"), data("reviews_unseen_label.csv"));
    let (ok, _, err) = webpeft(&["train", s(&m), "--data", s(&train_d), "--eval", s(&eval_d), "--task", "seq-cls", "--method", "lora", "--out", s(&out)]);
    assert!(!ok && err.contains("line 2") && err.contains("was not seen in training"), "{err}");
    // Over-long rows are truncated with one warning.
    let (ok, _, err) = webpeft(&["train", s(&m), "--data", s(&train_d), "--task", "seq-cls", "--method", "lora", "--steps", "1", "--seq-len", "4", "--out", s(&out)]);
    assert!(ok && err.contains("truncated"), "{err}");
}

#[test]
fn merged_models_give_peft_logits() {
    for case in ["llama-dora", "qwen2-lora", "gpt2-lora", "gpt2-ia3", "bert-bitfit", "bert-ia3", "llama-lora-targets", "llama-seqcls-lora", "gpt2-seqcls-lora"] {
        let model = case.split('-').next().unwrap();
        let adapter = fixture("peft").join(case);
        let out = tmp(&format!("merge-{case}"));
        let base = fixture(&format!("tiny-{model}"));
        let (ok, _, err) = webpeft(&["merge", s(&base), "--adapter", s(&adapter), "--out", s(&out)]);
        assert!(ok, "{case}: {err}");
        let r = read_ref(&adapter.join("reference.safetensors"));
        let m = load(&out, webpeft::device::Backend::Cpu);
        assert!(m.adapter_config.is_none(), "a merged model carries no adapter");
        let fwd = m.forward(&[r["input_ids"].ids()], None, None, None).unwrap();
        let got = host(fwd.class_logits.map(|l| l.reshape([-1])).or(fwd.token_logits.map(|l| l.reshape([-1]))).unwrap());
        assert_close(&format!("merged {case}"), &got, &r["logits"].f32, 1e-4);
    }
    // Prompt tuning has nothing to merge.
    let out = tmp("merge-prompt");
    let (ok, _, err) = webpeft(&["merge", s(&fixture("tiny-llama")), "--adapter", s(&fixture("peft/llama-prompt")), "--out", s(&out)]);
    assert!(!ok && err.contains("cannot be merged"), "{err}");
}

/// The CLI's choice flags are the core's option enums (clap `ValueEnum`): an
/// unknown value lists the valid ones, and each of those is a value the
/// browser's options object (`TrainSpec`) accepts under the same spelling.
#[test]
fn choice_flags_list_their_values_and_share_the_options_spellings() {
    use webpeft::train::session::TrainSpec;
    let cases: [(&str, &str, &[&str]); 4] = [
        ("--task", "task", &["causal-lm", "seq-cls"]),
        ("--method", "method", &["lora", "dora", "bitfit", "ia3", "prompt", "prefix"]),
        ("--schedule", "schedule", &["constant", "linear", "cosine"]),
        ("--optimizer", "optimizer", &["adamw", "sgd"]),
    ];
    let d = data("prompt_completion.jsonl");
    let m = fixture("tiny-llama");
    for (flag, field, want) in cases {
        let mut args = vec!["train", s(&m), "--data", s(&d), "--out", "/nonexistent"];
        for (f, v) in [("--task", "causal-lm"), ("--method", "lora")] {
            args.extend_from_slice(&[f, if f == flag { "bogus" } else { v }]);
        }
        if !["--task", "--method"].contains(&flag) {
            args.extend_from_slice(&[flag, "bogus"]);
        }
        let (ok, _, err) = webpeft(&args);
        assert!(!ok && err.contains("invalid value 'bogus'"), "{flag}: {err}");
        let listed = err.split("[possible values: ").nth(1).and_then(|r| r.split(']').next()).unwrap_or_else(|| panic!("{flag}: no list of values in {err}"));
        let listed: Vec<&str> = listed.split(", ").collect();
        assert_eq!(listed, want, "{flag}");
        for v in listed {
            let spec = TrainSpec::from_options(serde_json::json!({ field: v })).unwrap_or_else(|e| panic!("{flag} {v}: the options object refuses the CLI's value: {e}"));
            assert_eq!(serde_json::to_value(&spec).unwrap()[field], v, "{flag} {v}");
        }
    }
    // `eval --task` takes the same values.
    let (ok, _, err) = webpeft(&["eval", s(&m), "--data", s(&d), "--task", "bogus"]);
    assert!(!ok && err.contains("[possible values: causal-lm, seq-cls]"), "{err}");
}

/// QLoRA: LoRA trains on a base held in 4-bit blocks (a float model quantized on load, and a
/// GGUF kept as stored), and `webpeft.json` records the base files' digests and quantisation.
#[test]
fn lora_trains_on_a_quantized_base_and_records_it() {
    use sha2::{Digest, Sha256};
    for (model, file, extra, blocks) in [
        ("tiny-llama", "model.safetensors", vec!["--quantize", "q4_0"], vec!["Q4_0"]),
        ("gguf/tiny-qwen2/model.gguf", "model.gguf", vec![], vec!["Q5_0", "Q5_1", "Q8_0"]),
    ] {
        let out = tmp(&format!("qlora-{}", model.replace('/', "-")));
        let mut args = vec!["--steps", "12", "--r", "4"];
        args.extend(&extra);
        let (ok, stdout, err) = train(model, &args, &out);
        assert!(ok, "{model}: {err}");
        let steps = events(&stdout, "step");
        let (first, last) = (steps[0]["loss"].as_f64().unwrap(), steps[11]["loss"].as_f64().unwrap());
        assert!(last < first - 0.05, "{model}: loss did not fall: {first} -> {last}");
        let side: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("webpeft.json")).unwrap()).unwrap();
        let base = &side["base"];
        let path = if model.ends_with(".gguf") { fixture(model) } else { fixture(model).join(file) };
        let bytes = std::fs::read(&path).unwrap();
        let sha: String = Sha256::digest(&bytes).iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(base["files"], serde_json::json!([{ "name": file, "bytes": bytes.len(), "sha256": sha }]), "{model}");
        assert_eq!(base["quantize"], if extra.is_empty() { "none" } else { "q4_0" }, "{model}");
        assert_eq!(base["device_blocks"], serde_json::json!(blocks), "{model}");
        // Merged onto the quantized base: an f32 HF model whose logits are the base's (blocks
        // dequantised) with the adapter.
        let merged = tmp(&format!("qlora-merged-{}", model.replace('/', "-")));
        let (ok, _, err) = webpeft(&["merge", s(&fixture(model)), "--adapter", s(&out), "--out", s(&merged)]);
        assert!(ok, "{model}: {err}");
        let ids = vec![vec![1u32, 5, 9, 2, 7, 3]];
        let mut with_adapter = load(&fixture(model), webpeft::device::Backend::Cpu);
        webpeft::peft::load_adapter(&mut with_adapter, &std::fs::read(out.join("adapter_config.json")).unwrap(), &std::fs::read(out.join("adapter_model.safetensors")).unwrap()).unwrap();
        let want = host(with_adapter.forward(&ids, None, None, None).unwrap().token_logits.unwrap().reshape([-1]));
        let m = load(&merged, webpeft::device::Backend::Cpu);
        assert!(m.info.device_blocks.is_empty() && m.info.dtypes == ["F32"], "{model}: {:?}", m.info);
        let got = host(m.forward(&ids, None, None, None).unwrap().token_logits.unwrap().reshape([-1]));
        assert_close(&format!("{model} merged"), &got, &want, 1e-4);
    }
}

/// `webpeft gpu-job`: a run checkpointed half-way becomes a job directory whose optimiser state
/// is the checkpoint's under PEFT's tensor names and layouts, whose batches are the run's, and
/// whose settings are the run's. (`tests/gpu_job_roundtrip.py`, with torch, runs its train.py
/// and checks that transformers' Trainer continues webpeft's losses.)
#[test]
fn gpu_job_carries_the_checkpoint_under_peft_names() {
    let out = tmp("gpu-job");
    let (m, d) = (fixture("tiny-llama"), data("prompt_completion.jsonl"));
    let (ckpt, job, run) = (out.join("run/checkpoint"), out.join("job"), out.join("run"));
    // The same flags start the run and write the job, as the CLI's help says.
    let flags = [s(&m), "--data", s(&d), "--task", "causal-lm", "--method", "lora", "--lr", "1e-2", "--steps", "6", "--batch", "2", "--seed", "3", "--save-every", "3", "--warmup", "2"];
    let (ok, stdout, err) = webpeft(&[&["train"][..], &flags, &["--out", s(&run)]].concat());
    assert!(ok, "{err}");
    assert_eq!(events(&stdout, "step").len(), 6);
    let mut args = [&["gpu-job"][..], &flags, &["--resume", s(&ckpt), "--out", s(&job)]].concat();
    let (ok, _, err) = webpeft(&args);
    assert!(ok, "{err}");
    for f in ["train.py", "README.md", "requirements.txt", "checkpoint/adapter_config.json", "checkpoint/adapter_model.safetensors", "data/prompt_completion.jsonl"] {
        assert!(job.join(f).is_file(), "{f} missing from the job");
    }
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(job.join("job.json")).unwrap()).unwrap();
    assert_eq!((j["step"].as_u64(), j["total_steps"].as_u64(), j["warmup"].as_u64(), j["lr"].as_f64()), (Some(3), Some(6), Some(2), Some(1e-2)));
    assert_eq!((j["schedule"].as_str(), j["optimizer"].as_str(), j["task"].as_str()), (Some("linear"), Some("adamw"), Some("causal-lm")));

    // Every adapter tensor has its two AdamW moments, in PEFT's shape; a LoRA A's first moment
    // is the checkpoint's, transposed from webpeft's [in, r] to PEFT's [r, in].
    let adapter = std::fs::read(job.join("checkpoint/adapter_model.safetensors")).unwrap();
    let adapter = safetensors::SafeTensors::deserialize(&adapter).unwrap();
    let state = std::fs::read(job.join("checkpoint/optimizer_state.safetensors")).unwrap();
    let state = safetensors::SafeTensors::deserialize(&state).unwrap();
    assert_eq!(state.len(), 2 * adapter.len());
    for (name, t) in adapter.tensors() {
        for kind in ["exp_avg", "exp_avg_sq"] {
            let s = state.tensor(&format!("{kind}.{name}")).unwrap_or_else(|_| panic!("no {kind} for {name}"));
            assert_eq!(s.shape(), t.shape(), "{kind}.{name}");
        }
    }
    let f32s = |b: &[u8]| b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect::<Vec<_>>();
    let ours = std::fs::read(ckpt.join("optimizer.safetensors")).unwrap();
    let ours = safetensors::SafeTensors::deserialize(&ours).unwrap();
    let m = f32s(ours.tensor("model.layers.0.self_attn.q_proj.lora_A.m").unwrap().data());
    let peft = state.tensor("exp_avg.base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").unwrap();
    let (r, inp) = (peft.shape()[0], peft.shape()[1]);
    let peft = f32s(peft.data());
    assert!(m.iter().any(|&v| v != 0.0), "the checkpoint's moment is all zeros: the check could not fail");
    for i in 0..inp {
        for k in 0..r {
            assert_eq!(peft[k * inp + i], m[i * r + k], "exp_avg of lora_A at [{k}, {i}]");
        }
    }

    // The run's batches: 6 steps of 2 rows over 8 examples, shuffled per epoch with the seed.
    let batches: Vec<Vec<usize>> = serde_json::from_slice(&std::fs::read(job.join("data/batches.json")).unwrap()).unwrap();
    let rows = std::fs::read_to_string(job.join("data/examples.jsonl")).unwrap().lines().count();
    assert_eq!((batches.len(), rows), (6, 8));
    let mut epoch: Vec<usize> = batches[..4].concat();
    epoch.sort();
    assert_eq!(epoch, (0..8).collect::<Vec<_>>(), "the first epoch is a permutation of the rows: {batches:?}");
    assert_ne!(batches[..4].concat(), (0..8).collect::<Vec<_>>(), "shuffled with the seed");

    // A DP run cannot continue outside webpeft.
    args.extend_from_slice(&["--dp", "--noise-multiplier", "1.0"]);
    let (ok, _, err) = webpeft(&args);
    assert!(!ok && err.contains("differentially private run cannot continue"), "{err}");
}

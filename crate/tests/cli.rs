//! The CLI's contract: names, flags and output formats other tools rely on.

mod common;

use std::process::Command;

use common::*;

fn webpeft(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_webpeft")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn forward_writes_logits_and_hidden_states() {
    // GPT-2 on wgpu (lavapipe here) where the build has it (`npm run test:gpu`).
    let gpt2_device = if cfg!(feature = "gpu") { "gpu" } else { "cpu" };
    for (model, device) in [("tiny-llama", "cpu"), ("tiny-gpt2", gpt2_device), ("tiny-bert", "cpu")] {
        let r = read_ref(&fixture(model).join("reference.safetensors"));
        let tokens: Vec<String> = r["input_ids"].ids().iter().map(|t| t.to_string()).collect();
        let out = std::env::temp_dir().join(format!("webpeft-cli-{model}-{}.safetensors", std::process::id()));
        let dir = fixture(model);
        let (ok, _, err) = webpeft(&["forward", dir.to_str().unwrap(), "--tokens", &tokens.join(","), "--out", out.to_str().unwrap(), "--device", device]);
        assert!(ok, "{err}");
        let got = read_ref(&out);
        assert_eq!(got["logits"].shape, r["logits"].shape, "{model}: logits shape");
        assert_eq!(got["last_hidden_state"].shape, r["last_hidden_state"].shape, "{model}: hidden shape");
        assert_close(&format!("{model} CLI logits"), &got["logits"].f32, &r["logits"].f32, 1e-4);
        assert_close(&format!("{model} CLI hidden"), &got["last_hidden_state"].f32, &r["last_hidden_state"].f32, 1e-4);
    }
}

#[test]
fn forward_with_a_peft_adapter() {
    let r = read_ref(&fixture("peft/qwen2-dora/reference.safetensors"));
    let tokens: Vec<String> = r["input_ids"].ids().iter().map(|t| t.to_string()).collect();
    let out = std::env::temp_dir().join(format!("webpeft-cli-adapter-{}.safetensors", std::process::id()));
    let (model, adapter) = (fixture("tiny-qwen2"), fixture("peft/qwen2-dora"));
    let (ok, _, err) = webpeft(&["forward", model.to_str().unwrap(), "--adapter", adapter.to_str().unwrap(), "--tokens", &tokens.join(","), "--out", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_close("CLI forward --adapter", &read_ref(&out)["logits"].f32, &r["logits"].f32, 1e-4);
}

/// `webpeft tokenize MODEL --text S` printed as a list of ids.
fn cli_ids(model: &std::path::Path, text: &str) -> Vec<u32> {
    let (ok, out, err) = webpeft(&["tokenize", model.to_str().unwrap(), "--text", text]);
    assert!(ok, "tokenize {text:?}: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("tokenize {text:?} printed {out:?}: {e}"))
}

fn id_list(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect()
}

#[test]
fn tokenize_prints_transformers_ids() {
    // The tiny fixtures' tokenizer: ids from transformers (tests/fixtures/generate_tokenize.py).
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("tiny_tokenize.json")).unwrap()).unwrap();
    let strings = r["strings"].as_array().unwrap();
    assert!(strings.len() >= 5, "expected the committed tiny tokenizer cases");
    for (s, want) in strings.iter().zip(r["ids"].as_array().unwrap()) {
        let s = s.as_str().unwrap();
        assert_eq!(cli_ids(&fixture("tiny-llama"), s), id_list(want), "tiny-llama: tokenize {s:?}");
    }
    // A real WordPiece tokenizer with special tokens ([CLS] ... [SEP]): transformers'
    // ids from tests/fixtures/generate.py (real/tokenizer_cases.json).
    let model = root().join("models/all-MiniLM-L6-v2");
    if !model.exists() {
        assert!(Command::new("bash").arg(root().join("scripts/fetch-models.sh")).status().unwrap().success(), "model fetch failed");
    }
    let cases: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("real/tokenizer_cases.json")).unwrap()).unwrap();
    for (i, s) in cases["strings"].as_array().unwrap().iter().enumerate().take(6) {
        let s = s.as_str().unwrap();
        assert_eq!(cli_ids(&model, s), id_list(&cases["minilm"][i]), "MiniLM: tokenize {s:?}");
    }
}

#[test]
fn info_json_describes_the_model() {
    let dir = fixture("tiny-llama");
    let (ok, out, err) = webpeft(&["info", dir.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["architecture"], "LlamaForCausalLM");
    assert_eq!(v["vocab_size"], 320);
    assert_eq!(v["context_length"], 128);
    assert_eq!(v["num_layers"], 2);
    // 320*64 (embed) + 320*64 (untied head) + 64 (norm) + 2 layers.
    let per_layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128 + 2 * 64;
    assert_eq!(v["num_parameters"], 2 * 320 * 64 + 64 + 2 * per_layer);
}

#[test]
fn generate_chat_streams_transformers_text() {
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("real/smollm2.json")).unwrap()).unwrap();
    let model = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.exists() {
        assert!(Command::new("bash").arg(root().join("scripts/fetch-models.sh")).status().unwrap().success(), "model fetch failed");
    }
    let prompt = r["messages"][0]["content"].as_str().unwrap();
    let (ok, out, err) = webpeft(&["generate", model.to_str().unwrap(), "--chat", "--prompt", prompt, "--max-new-tokens", "20"]);
    assert!(ok, "{err}");
    // transformers stops at <|im_end|> and the CLI prints text without special tokens.
    assert_eq!(out.trim_end_matches('\n'), r["greedy_20_text_skip_special"].as_str().unwrap());
}

#[test]
fn bad_arguments_are_clear_errors() {
    let dir = fixture("tiny-llama");
    let (ok, _, err) = webpeft(&["forward", dir.to_str().unwrap(), "--tokens", "1,x", "--out", "/tmp/x.safetensors"]);
    assert!(!ok && err.contains("--tokens"), "{err}");
    let (ok, _, err) = webpeft(&["forward", dir.to_str().unwrap(), "--tokens", "99999", "--out", "/tmp/x.safetensors"]);
    assert!(!ok && err.contains("outside the vocabulary"), "{err}");
    let long: Vec<String> = (0..200).map(|_| "5".to_string()).collect();
    let (ok, _, err) = webpeft(&["forward", dir.to_str().unwrap(), "--tokens", &long.join(","), "--out", "/tmp/x.safetensors"]);
    assert!(!ok && err.contains("exceeds the model's context length of 128"), "{err}");
    let (ok, _, err) = webpeft(&["info", "/nonexistent/model"]);
    assert!(!ok && err.contains("/nonexistent/model"), "{err}");
}

/// `webpeft suggest`: the one-button settings the npm package's `suggestOptions` gives, as JSON
/// that `train` reads, with why; bad data is an error naming its line.
#[test]
fn suggest_prints_settings_train_reads() {
    let exe = env!("CARGO_BIN_EXE_webpeft");
    let data = root().join("tests/fixtures/data/three_labels.csv");
    let out = std::process::Command::new(exe).arg("suggest").arg(fixture("tiny-bert")).arg("--data").arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 9 rows: too few to hold any out, batch 8, 30 passes at most (2 steps each).
    assert_eq!((v["options"]["task"].as_str(), v["options"]["method"].as_str(), v["options"]["batch"].as_u64(), v["options"]["epochs"].as_u64()), (Some("seq-cls"), Some("lora"), Some(8), Some(30)));
    assert!(v["why"].as_str().unwrap().contains("30 passes over 9 examples"), "{}", v["why"]);
    // The options are a TrainSpec: train reads them back.
    webpeft::train::session::TrainSpec::from_options(&v["options"]).unwrap();
    let bad = root().join("tests/fixtures/data/bad_line.jsonl");
    let out = std::process::Command::new(exe).arg("suggest").arg(fixture("tiny-bert")).arg("--data").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line"), "{}", String::from_utf8_lossy(&out.stderr));
}

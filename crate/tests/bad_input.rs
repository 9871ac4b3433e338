//! Bad input gets a clear error naming the file and the problem, a non-zero
//! exit from the CLI, and never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use safetensors::{Dtype, SafeTensors};
use webpeft::formats::source::ByteSource;
use webpeft::{Model, ModelFiles};

/// A fresh scratch copy of a fixture directory.
fn scratch_copy(fixture_name: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("webpeft-bad-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(fixture(fixture_name)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    dir
}

/// Runs the CLI; returns (success, stderr).
fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_webpeft")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `webpeft info DIR` fails cleanly with a message containing every `needle`.
fn expect_cli_error(path: &Path, needles: &[&str]) {
    let (ok, err) = cli(&["info", path.to_str().unwrap()]);
    assert!(!ok, "expected failure for {}", path.display());
    assert!(!err.contains("panicked"), "panic instead of an error: {err}");
    for n in needles {
        assert!(err.contains(n), "error message {err:?} should mention {n:?}");
    }
    eprintln!("ok: {}", err.trim());
}

/// Rewrites a safetensors file tensor by tensor; `edit` returns `None` to drop one.
fn rewrite(path: &Path, mut edit: impl FnMut(&str, Dtype, Vec<usize>, Vec<u8>) -> Option<(Dtype, Vec<usize>, Vec<u8>)>) {
    struct Raw(Dtype, Vec<usize>, Vec<u8>);
    impl safetensors::View for &Raw {
        fn dtype(&self) -> Dtype { self.0 }
        fn shape(&self) -> &[usize] { &self.1 }
        fn data(&self) -> std::borrow::Cow<'_, [u8]> { std::borrow::Cow::Borrowed(&self.2) }
        fn data_len(&self) -> usize { self.2.len() }
    }
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Raw)> = Vec::new();
    for (name, v) in st.iter() {
        if let Some((d, s, b)) = edit(name, v.dtype(), v.shape().to_vec(), v.data().to_vec()) {
            out.push((name.to_string(), Raw(d, s, b)));
        }
    }
    let data = safetensors::serialize(out.iter().map(|(n, r)| (n.as_str(), r)), None).unwrap();
    std::fs::write(path, data).unwrap();
}

#[test]
fn truncated_safetensors() {
    let dir = scratch_copy("tiny-llama", "trunc");
    let f = dir.join("model.safetensors");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    expect_cli_error(&dir, &["model.safetensors", "not a valid safetensors file"]);
}

#[test]
fn header_length_beyond_file() {
    let dir = scratch_copy("tiny-llama", "header");
    let mut bytes = 5_000_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{\"a\":1}");
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    expect_cli_error(&dir, &["model.safetensors", "not a valid safetensors file"]);
}

#[test]
fn shape_disagrees_with_config() {
    let dir = scratch_copy("tiny-llama", "shape");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["intermediate_size"] = serde_json::json!(96);
    std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
    expect_cli_error(&dir, &["model.safetensors", "mlp.gate_proj.weight", "has shape [128, 64]", "config.json implies [96, 64]"]);
}

#[test]
fn dtype_disagrees_with_config() {
    let dir = scratch_copy("tiny-llama", "dtype");
    rewrite(&dir.join("model.safetensors"), |name, d, s, b| {
        if name == "model.norm.weight" {
            Some((Dtype::I32, s, b))
        } else {
            Some((d, s, b))
        }
    });
    expect_cli_error(&dir, &["model.safetensors", "model.norm.weight", "dtype I32"]);
}

#[test]
fn missing_tensor() {
    let dir = scratch_copy("tiny-llama", "missing");
    rewrite(&dir.join("model.safetensors"), |name, d, s, b| (name != "model.layers.1.mlp.down_proj.weight").then_some((d, s, b)));
    expect_cli_error(&dir, &["missing tensor model.layers.1.mlp.down_proj.weight"]);
}

#[test]
fn unknown_model_type() {
    let dir = scratch_copy("tiny-llama", "arch");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    v["model_type"] = serde_json::json!("mamba");
    std::fs::write(dir.join("config.json"), v.to_string()).unwrap();
    expect_cli_error(&dir, &["config.json", "unknown model_type 'mamba'"]);
}

#[test]
fn unsupported_gguf_architecture() {
    // tiny-qwen2's GGUF with general.architecture rewritten to 'gemma' (same length).
    let mut bytes = std::fs::read(fixture("gguf/tiny-qwen2/model.gguf")).unwrap();
    let key = b"general.architecture";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4 + 8;
    assert_eq!(&bytes[at..at + 5], b"qwen2");
    bytes[at..at + 5].copy_from_slice(b"gemma");
    let mut files = ModelFiles::default();
    files.add("gemma.gguf", bytes.clone());
    let e = Model::load(&files, &device(webpeft::device::Backend::Cpu)).err().expect("a gemma GGUF must be refused");
    assert_eq!(e.kind, webpeft::error::ErrorKind::Unsupported, "{e}");
    assert_eq!(e.source, "gemma.gguf");
    assert!(e.message.contains("unsupported GGUF architecture 'gemma'") && e.message.contains("supported: llama, qwen2, qwen3, gemma3"), "{e}");
    let dir = std::env::temp_dir().join(format!("webpeft-bad-arch-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("gemma.gguf");
    std::fs::write(&f, bytes).unwrap();
    expect_cli_error(&f, &["gemma.gguf", "unsupported GGUF architecture 'gemma'", "supported: llama, qwen2, qwen3, gemma3"]);
}

#[test]
fn malformed_tokenizer_json() {
    let dir = scratch_copy("tiny-llama", "tok");
    std::fs::write(dir.join("tokenizer.json"), "{\"model\": {\"type\": \"BPE\", \"vocab\": 3").unwrap();
    expect_cli_error(&dir, &["tokenizer.json", "could not parse the tokenizer"]);
}

#[test]
fn gguf_bad_magic() {
    let dir = std::env::temp_dir().join(format!("webpeft-bad-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("bad.gguf");
    std::fs::write(&f, b"GGML\x03\x00\x00\x00 this is not a gguf file at all").unwrap();
    expect_cli_error(&f, &["bad.gguf", "magic"]);
}

#[test]
fn gguf_truncated_data() {
    let src = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !src.exists() {
        let ok = Command::new("bash").arg(root().join("scripts/fetch-models.sh")).status().unwrap().success();
        assert!(ok, "scripts/fetch-models.sh failed");
    }
    let bytes = std::fs::read(&src).unwrap();
    let dir = std::env::temp_dir().join(format!("webpeft-bad-gguft-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("truncated.gguf");
    std::fs::write(&f, &bytes[..bytes.len() * 2 / 3]).unwrap();
    expect_cli_error(&f, &["truncated.gguf", "truncated"]);
}

/// Flips random bytes in a tiny model's files a few hundred times: every
/// outcome must be Ok or an Error, never a panic.
#[test]
fn random_corruption_never_panics() {
    let base = files(&fixture("tiny-llama"));
    let device = device(webpeft::device::Backend::Cpu);
    let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let targets = ["model.safetensors", "config.json", "tokenizer.json"];
    let (mut errors, runs) = (0, 300);
    for i in 0..runs {
        let mut f: ModelFiles = base.clone();
        let name = targets[i % targets.len()];
        let src = &f.files[name];
        let mut bytes = src.read_at(name, 0, src.len() as usize).unwrap();
        // Mostly hit headers and JSON structure, where parsing decisions are made.
        let span = if name == "model.safetensors" { 4096.min(bytes.len()) } else { bytes.len() };
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % span;
            bytes[at] ^= 1 << (next() % 8);
        }
        if next() % 5 == 0 {
            let cut = (next() as usize) % bytes.len();
            bytes.truncate(cut);
        }
        // Every other run reads the weights a tensor at a time, as from a file on disk.
        if i % 2 == 0 {
            f.add(name, bytes);
        } else {
            f.add_source(name, std::sync::Arc::new(Streamed(bytes)));
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Model::load(&f, &device).map(|_| ())));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                errors += 1;
                assert!(!e.to_string().is_empty());
            }
            Err(_) => panic!("run {i}: corrupting {name} caused a panic"),
        }
    }
    assert!(errors > runs / 4, "only {errors} of {runs} corruptions were detected; the test is not exercising the parsers");
}

/// A weight larger than the device can bind (WebGPU's
/// `maxStorageBufferBindingSize`) is refused before loading, naming the
/// tensor, its shape and the limit; at the limit the model loads.
#[test]
fn tensor_above_the_binding_limit_is_refused() {
    let device = device(webpeft::device::Backend::Cpu);
    // tiny-llama: embed_tokens and lm_head are [320, 64] f32 = 81920 bytes; the next largest is 32768.
    let err = Model::load_within(&files(&fixture("tiny-llama")), &device, Some(40_000)).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind, webpeft::ErrorKind::Device, "{msg}");
    assert_eq!(err.source, "model.safetensors", "{msg}");
    for needle in ["[320, 64]", "0.1 MB (81920 bytes)", "maxStorageBufferBindingSize", "0.0 MB (40000 bytes)", "1 other weight is too large too"] {
        assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    }
    assert!(msg.contains("'model.embed_tokens.weight'") || msg.contains("'lm_head.weight'"), "{msg}");
    Model::load_within(&files(&fixture("tiny-llama")), &device, Some(81_920)).expect("a weight at the limit fits");
}

/// A micro-batch whose activations exceed the device's binding limit is
/// refused before training, naming the tensor and what to lower.
#[test]
fn activations_above_the_binding_limit_are_refused() {
    use webpeft::train::session::{Method, Task, TrainSpec};
    let m = Model::load(&files(&fixture("tiny-llama")), &device(webpeft::device::Backend::Cpu)).unwrap();
    // tiny-llama: 4 heads, MLP 128, vocabulary 320.
    let spec = TrainSpec { batch: 8, seq_len: 32, ..Default::default() };
    let err = spec.check_activation_sizes(&m, 100_000).unwrap_err();
    assert_eq!(err.kind, webpeft::ErrorKind::Device, "{err}");
    assert_eq!(err.source, "options");
    for needle in ["token logits [8, 32, 320]", "0.3 MB (327680 bytes)", "maxStorageBufferBindingSize", "lower batch"] {
        assert!(err.message.contains(needle), "{err} should mention {needle:?}");
    }
    spec.check_activation_sizes(&m, 327_680).expect("logits at the limit fit");
    // Prompt tuning's virtual tokens lengthen every row.
    let prompt = TrainSpec { method: Method::Prompt, virtual_tokens: Some(8), ..spec.clone() };
    let err = prompt.check_activation_sizes(&m, 327_680).unwrap_err();
    assert!(err.message.contains("token logits [8, 40, 320]"), "{err}");
    // A classifier has no token logits: attention scores and the MLP (131072 bytes each) bound it.
    let cls = TrainSpec { task: Task::SeqCls, ..spec.clone() };
    cls.check_activation_sizes(&m, 131_072).expect("no token logits for seq-cls");
    let err = cls.check_activation_sizes(&m, 100_000).unwrap_err();
    assert!(err.message.contains("[8, 4, 32, 32]") || err.message.contains("[8, 32, 128]"), "{err}");
}

// --- Found by fuzzing (fuzz/, `npm run fuzz`): each input once panicked. ---

/// tiny-llama's tokenizer.json with `post_processor` replaced.
fn tokenizer_with_post_processor(p: serde_json::Value) -> Vec<u8> {
    let mut t: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture("tiny-llama/tokenizer.json")).unwrap()).unwrap();
    t["post_processor"] = p;
    serde_json::to_vec(&t).unwrap()
}

/// A `TemplateProcessing` whose template names a special token missing from its
/// `special_tokens` loaded, then panicked in the tokenizers crate on the first
/// encode (alone and inside a `Sequence` post-processor).
#[test]
fn fuzz_tokenizer_template_with_unknown_special_token() {
    use webpeft::formats::tokenizer::TextTokenizer;
    let template = serde_json::json!({
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"[BOS]": {"id": "[BOS]", "ids": [1], "tokens": ["<s>"]}}
    });
    let sequence = serde_json::json!({"type": "Sequence", "processors": [template.clone()]});
    // The crate deserialises post-processors as an untagged enum: a misspelt type loads too.
    let mut misspelt = template.clone();
    misspelt["type"] = "TemplateProcesing".into();
    for p in [template, sequence, misspelt] {
        let json = tokenizer_with_post_processor(p);
        let result = std::panic::catch_unwind(|| TextTokenizer::from_hf(&json, None).map(|t| t.encode("hi", true)));
        let err = match result {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => panic!("the tokenizer loaded and encoded"),
            Err(_) => panic!("panic instead of an error"),
        };
        assert_eq!(err.kind, webpeft::ErrorKind::Format);
        assert_eq!(err.source, "tokenizer.json");
        assert!(err.message.contains("'[CLS]'") && err.message.contains("special_tokens"), "{err}");
    }
    // The same template with the token listed loads and encodes.
    let ok = tokenizer_with_post_processor(serde_json::json!({
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
    }));
    let ids = TextTokenizer::from_hf(&ok, None).unwrap().encode("hi", true).unwrap();
    assert_eq!(ids[0], 1);
}

/// A safetensors file of F32 tensors (name, shape, values), written by hand so
/// that shapes the `safetensors` writer would refuse can be tested too.
fn raw_safetensors(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let (mut header, mut data) = (serde_json::Map::new(), Vec::new());
    for (name, shape, values) in tensors {
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(name.to_string(), serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}));
    }
    let mut h = serde_json::to_vec(&header).unwrap();
    h.resize(h.len().next_multiple_of(8), b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

/// A classification head (`score.weight`) saved with an adapter for a model
/// without one: a scalar panicked (index out of bounds), and a [N, 0] head with
/// no data made a head of N labels (N = 100M ran the fuzzer out of memory; 1M
/// here keeps a failing run small). Both are now a format error naming the file,
/// the tensor and the shape it must have.
#[test]
fn fuzz_adapter_head_of_wrong_rank_or_size() {
    let device = device(webpeft::device::Backend::Cpu);
    let base = Model::load(&files(&fixture("tiny-llama")), &device).unwrap();
    let config = std::fs::read(fixture("peft/llama-lora/adapter_config.json")).unwrap();
    let head = "base_model.model.score.weight";
    let cases = [(vec![], vec![1.0]), (vec![1_000_000, 0], vec![]), (vec![0, 64], vec![]), (vec![3], vec![1.0, 2.0, 3.0])];
    for (shape, values) in cases {
        let weights = raw_safetensors(&[(head, shape.clone(), values)]);
        let mut m = base.clone();
        let started = std::time::Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| webpeft::peft::load_adapter(&mut m, &config, &weights)));
        let err = match result {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => panic!("shape {shape:?}: the adapter loaded"),
            Err(_) => panic!("shape {shape:?}: panic instead of an error"),
        };
        assert!(started.elapsed().as_secs() < 10, "shape {shape:?}: took {:?}", started.elapsed());
        assert_eq!(err.kind, webpeft::ErrorKind::Format, "{err}");
        assert_eq!(err.source, "adapter_model.safetensors", "{err}");
        assert!(err.message.contains(head) && err.message.contains("[num_labels, 64]"), "{err}");
    }
}

/// The memory plan reads only a GGUF's header: a tensor declared far larger than
/// the file (here [2^55, 64] F32 in tiny Llama) overflowed its byte totals (a
/// panic with overflow checks, wrapped nonsense without). It is now a format
/// error naming the file and the tensor.
#[test]
fn fuzz_plan_gguf_tensor_larger_than_the_file() {
    use webpeft::plan::{plan, FileHead};
    let mut bytes = std::fs::read(fixture("gguf/tiny-llama/model.gguf")).unwrap();
    let name = b"blk.0.attn_q.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    assert_eq!(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), 2, "n_dims");
    assert_eq!(u64::from_le_bytes(bytes[at + 12..at + 20].try_into().unwrap()), 64, "ne[1]");
    bytes[at + 12..at + 20].copy_from_slice(&(1u64 << 55).to_le_bytes());
    let len = bytes.len() as u64;
    let file = FileHead { name: "model.gguf".into(), bytes, len };
    let result = std::panic::catch_unwind(|| plan(std::slice::from_ref(&file), None));
    let err = match result {
        Ok(Err(e)) => e,
        Ok(Ok(p)) => panic!("planned {} device bytes", p.weights.device_bytes),
        Err(_) => panic!("panic instead of an error"),
    };
    assert_eq!(err.kind, webpeft::ErrorKind::Format, "{err}");
    assert_eq!(err.source, "model.gguf", "{err}");
    assert!(err.message.contains("blk.0.attn_q.weight") && err.message.contains("beyond the file"), "{err}");
}

/// A shard index naming a path outside the model directory (`../`, absolute, a subfolder) is a
/// format error naming the index and the shard; the CLI reads nothing outside the directory.
#[test]
fn shard_index_paths_outside_the_model_are_refused() {
    for (tag, shard) in [("up", "../model-00001-of-00002.safetensors"), ("abs", "/etc/passwd"), ("sub", "a/b.safetensors"), ("win", "..\\x.safetensors")] {
        let dir = scratch_copy("tiny-llama-sharded", &format!("shard-{tag}"));
        let index = dir.join("model.safetensors.index.json");
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
        let first = v["weight_map"].as_object().unwrap().keys().next().unwrap().clone();
        v["weight_map"][&first] = serde_json::json!(shard);
        std::fs::write(&index, v.to_string()).unwrap();
        let mut files = ModelFiles::default();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            files.add(p.file_name().unwrap().to_str().unwrap(), std::fs::read(&p).unwrap());
        }
        let e = Model::load(&files, &device(webpeft::device::Backend::Cpu)).err().expect("a shard path must be refused");
        assert_eq!(e.kind, webpeft::error::ErrorKind::Format, "{e}");
        assert!(e.to_string().contains("model.safetensors.index.json") && e.to_string().contains(shard), "{e}");
        expect_cli_error(&dir, &["model.safetensors.index.json", "is not a file name beside the index"]);
    }
}

/// Bytes that are not in memory as far as the loader knows: it reads them a range at a time,
/// as it reads a file on disk.
struct Streamed(Vec<u8>);

impl ByteSource for Streamed {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, file: &str, offset: u64, len: usize) -> webpeft::Result<Vec<u8>> {
        self.0.read_at(file, offset, len)
    }
}

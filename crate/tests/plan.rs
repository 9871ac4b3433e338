//! The memory plan (`webpeft::plan`): planned from headers only, checked
//! against the loaded models' real parameters and the adapters' real
//! trainable values, refusing too-large jobs with a typed `device` error that
//! names what would fit; and `webpeft plan` on the command line.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::module::Module;
use common::{device, files, fixture, root};
use webpeft::device::Backend;
use webpeft::models::{LoadOptions, Quantize};
use webpeft::plan::{bytes_needed, plan, plan_with, FileHead, Limits, MemoryPlan, WASM32_MEMORY};
use webpeft::train::data;
use webpeft::train::freeze;
use webpeft::train::session::{prepare, TrainSpec};
use webpeft::{ErrorKind, Model};

/// Reads only what the plan asks for, as the CLI and the browser do; returns
/// the heads and how many bytes were read.
fn heads(path: &Path) -> (Vec<FileHead>, u64) {
    let names: Vec<PathBuf> = if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        ["config.json", "model.safetensors", "model.safetensors.index.json"]
            .iter()
            .map(|n| path.join(n))
            .filter(|p| p.exists())
            .chain(std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with("model-") && n.ends_with(".safetensors")
            }))
            .collect()
    };
    let mut read = 0;
    let heads = names
        .iter()
        .map(|p| {
            let all = std::fs::read(p).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let mut head = vec![];
            while let Some(n) = bytes_needed(&name, &head, all.len() as u64) {
                head = all[..n as usize].to_vec();
            }
            read += head.len() as u64;
            FileHead { name, bytes: head, len: all.len() as u64 }
        })
        .collect();
    (heads, read)
}

fn spec(v: serde_json::Value) -> TrainSpec {
    serde_json::from_value(v).unwrap()
}

fn net_params(m: &Model) -> usize {
    m.network.num_params()
}

fn bundled(name: &str) -> Option<PathBuf> {
    let p = root().join("models").join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("{} is not fetched; skipping it (scripts/fetch-models.sh)", p.display());
        None
    }
}

#[test]
fn weights_match_the_loaded_models() {
    let mut paths: Vec<PathBuf> = [
        "tiny-llama", "tiny-qwen2", "tiny-qwen3", "tiny-gemma3", "tiny-phi3", "tiny-modernbert", "tiny-gpt2", "tiny-bert", "tiny-roberta", "tiny-xlm-roberta", "tiny-llama-bf16", "tiny-llama-f16", "tiny-llama-sharded",
        "gguf/tiny-qwen3/model.gguf", "gguf/tiny-gemma3/model.gguf",
    ]
        .iter()
        .map(|n| fixture(n))
        .collect();
    paths.extend(bundled("SmolLM2-135M-Instruct.Q4_1.gguf"));
    paths.extend(bundled("all-MiniLM-L6-v2"));
    // Each model as stored, widened to f32, and with its float matrices quantized to Q4_0.
    let cases = paths.iter().flat_map(|p| [Quantize::None, Quantize::F32, Quantize::Q4_0].map(|q| (p.clone(), q)));
    for (path, quantize) in cases {
        let (h, read) = heads(&path);
        let p = plan_with(&h, None, quantize).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let m = Model::load_with(&files(&path), &device(Backend::Cpu), &LoadOptions { quantize, ..Default::default() }).unwrap();
        let shown = format!("{} ({quantize:?})", path.display());
        assert_eq!(p.weights.parameters, m.info.num_parameters as u64, "{shown}: values in the files");
        assert_eq!(p.weights.device_bytes, m.info.weight_bytes, "{shown}: bytes on the device");
        if m.info.device_blocks.is_empty() {
            let on_device = net_params(&m) as u64;
            assert_eq!(p.weights.device_parameters, on_device, "{shown}: values the network holds");
        }
        let blocks: Vec<&str> = p.weights.device_dtype.split('+').filter(|d| *d != "F32").collect();
        assert_eq!(blocks, m.info.device_blocks, "{shown}: formats kept in blocks");
        assert_eq!(p.weights.stored_dtypes, m.info.dtypes, "{shown}: stored dtypes");
        assert_eq!((p.vocab_size, p.hidden_size, p.num_layers), (m.info.vocab_size, m.info.hidden_size, m.info.num_layers), "{shown}");
        // Stored tensor data is the files' bulk; the plan read only their headers.
        let weights_files: u64 = h.iter().filter(|f| !f.name.ends_with(".json")).map(|f| f.len).sum();
        assert!(p.weights.stored_bytes <= weights_files && p.weights.stored_bytes * 10 >= weights_files * 9, "{shown}: stored bytes");
        let json: u64 = h.iter().filter(|f| f.name.ends_with(".json")).map(|f| f.len).sum();
        // (A tiny GGUF's header, its vocabulary included, is most of the file.)
        let tiny_gguf = path.extension().is_some_and(|e| e == "gguf") && weights_files < 1_000_000;
        assert!(tiny_gguf || read - json < weights_files / 4, "{shown}: read {read} bytes of {weights_files}");
        eprintln!("{shown}: {} values, {} MB on the device; read {read} header bytes of {}", p.weights.device_parameters, p.weights.device_bytes / 1_000_000, p.file_bytes);
    }
}

#[test]
fn trainable_values_match_the_created_adapters() {
    let text = data::parse("prompt_completion.jsonl", &std::fs::read(fixture("data/prompt_completion.jsonl")).unwrap()).unwrap();
    let labelled = data::parse("reviews.csv", &std::fs::read(fixture("data/reviews.csv")).unwrap()).unwrap();
    // tiny-bert's classifier has 3 labels.
    let three = data::parse("three_labels.csv", &std::fs::read(fixture("data/three_labels.csv")).unwrap()).unwrap();
    let cases = [
        ("tiny-llama", serde_json::json!({"task": "causal-lm", "method": "lora"})),
        ("tiny-llama", serde_json::json!({"task": "causal-lm", "method": "lora", "r": 4, "targets": ["q_proj", "k_proj", "down_proj"]})),
        ("tiny-llama", serde_json::json!({"task": "causal-lm", "method": "dora"})),
        ("tiny-llama", serde_json::json!({"task": "causal-lm", "method": "ia3"})),
        ("tiny-llama", serde_json::json!({"task": "causal-lm", "method": "prompt", "virtual_tokens": 4})),
        ("tiny-llama", serde_json::json!({"task": "causal-lm", "method": "prefix", "virtual_tokens": 4})),
        ("tiny-llama", serde_json::json!({"task": "seq-cls", "method": "lora"})),
        ("tiny-qwen2", serde_json::json!({"task": "causal-lm", "method": "bitfit"})),
        ("tiny-qwen2", serde_json::json!({"task": "causal-lm", "method": "ia3"})),
        ("tiny-qwen3", serde_json::json!({"task": "causal-lm", "method": "ia3"})),
        ("tiny-gemma3", serde_json::json!({"task": "causal-lm", "method": "ia3"})),
        ("tiny-gemma3", serde_json::json!({"task": "causal-lm", "method": "lora"})),
        ("tiny-gemma3", serde_json::json!({"task": "seq-cls", "method": "lora"})),
        ("tiny-phi3", serde_json::json!({"task": "causal-lm", "method": "lora"})),
        ("tiny-phi3", serde_json::json!({"task": "causal-lm", "method": "ia3"})),
        ("tiny-phi3", serde_json::json!({"task": "seq-cls", "method": "dora"})),
        ("tiny-modernbert", serde_json::json!({"task": "seq-cls", "method": "lora"})),
        ("tiny-modernbert", serde_json::json!({"task": "seq-cls", "method": "ia3"})),
        ("tiny-gpt2", serde_json::json!({"task": "causal-lm", "method": "lora", "targets": ["re:.*c_(attn|fc)"]})),
        ("tiny-gpt2", serde_json::json!({"task": "causal-lm", "method": "ia3"})),
        ("tiny-bert", serde_json::json!({"task": "seq-cls", "method": "lora"})),
        ("tiny-bert", serde_json::json!({"task": "seq-cls", "method": "bitfit"})),
        ("tiny-roberta", serde_json::json!({"task": "seq-cls", "method": "lora"})),
        ("tiny-xlm-roberta", serde_json::json!({"task": "seq-cls", "method": "bitfit"})),
    ];
    for (model, mut options) in cases {
        options["seq_len"] = 16.into();
        options["batch"] = 2.into();
        let s = spec(options.clone());
        let (h, _) = heads(&fixture(model));
        let p = plan(&h, Some(&s)).unwrap();
        let m = freeze(Model::load(&files(&fixture(model)), &device(Backend::Cpu).autodiff()).unwrap());
        let ds = match (s.task, model) {
            (data::Task::SeqCls, "tiny-bert" | "tiny-roberta" | "tiny-xlm-roberta" | "tiny-modernbert") => &three,
            (data::Task::SeqCls, _) => &labelled,
            _ => &text,
        };
        let (_, prep) = prepare(&m, &m, &s, ds, None).unwrap_or_else(|e| panic!("{model} {options}: {e}"));
        let t = p.training.as_ref().unwrap();
        assert_eq!(t.trainable_parameters, prep.trainable_parameters as u64, "{model} {options}");
        assert_eq!(t.adapter_bytes, t.trainable_parameters * 16, "AdamW: value, gradient, two moments");
    }
}

#[test]
fn a_plan_too_large_for_the_limits_is_a_device_error_saying_what_fits() {
    let (h, _) = heads(&fixture("tiny-llama"));
    // tiny-llama: vocab 320, so 8 x 32 tokens of logits take 327680 bytes.
    let p = plan(&h, Some(&spec(serde_json::json!({"task": "causal-lm", "method": "lora", "batch": 8, "seq_len": 32})))).unwrap();
    let t = p.training.as_ref().unwrap();
    // The loss runs over chunks of rows (all 256 fit one chunk here): 4 chunk-sized
    // tensors (logits, log-softmax, their gradients) and the rows' [256, 64] hidden gradient.
    assert_eq!(t.largest_activation.name, "token logits (one chunk of rows)");
    assert_eq!(t.largest_activation.shape, vec![256, 320]);
    assert_eq!(t.logits_bytes, 4 * 327_680 + 256 * 64 * 4);
    // LoRA on lm_head makes the head trainable: the whole logits, as before the chunked loss.
    let whole = plan(&h, Some(&spec(serde_json::json!({"task": "causal-lm", "method": "lora", "batch": 8, "seq_len": 32, "targets": ["q_proj", "lm_head"]})))).unwrap();
    let w = whole.training.as_ref().unwrap();
    assert_eq!((w.largest_activation.name.as_str(), w.largest_activation.shape.clone()), ("token logits", vec![8, 32, 320]));
    assert_eq!(w.logits_bytes, 5 * 327_680);
    p.check(&Limits { memory_bytes: Some(WASM32_MEMORY), max_buffer_bytes: Some(1 << 30), device_is_host: true, ..Default::default() }).unwrap();

    // A buffer limit between one row and the whole batch: the largest batch that fits is named.
    let limits = Limits { max_buffer_bytes: Some(100_000), ..Default::default() };
    let e = p.check(&limits).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Device);
    assert!(e.message.contains("token logits (one chunk of rows) [256, 320]"), "{e}");
    // 100000 / (32 * 320 * 4) = 2.4 rows; at batch 8, 9 tokens (8*9*320*4 = 92160).
    assert!(e.message.contains("batch 2 (grad_accum keeps the effective batch)") && e.message.contains("seq_len 9"), "{e}");

    // Memory (the CPU backend: device memory is host memory): the largest item is named.
    let need = p.device_bytes;
    let limits = Limits { memory_bytes: Some(need - 1), memory_name: "the maxBytes limit".into(), device_is_host: true, ..Default::default() };
    let e = p.check(&limits).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Device);
    assert!(e.message.contains("the maxBytes limit") && e.message.contains("largest item is"), "{e}");
    let suggested: usize = e.message.split(" (grad_accum keeps").next().and_then(|r| r.rsplit(' ').next()).and_then(|b| b.parse().ok()).unwrap_or_else(|| panic!("{e}"));
    assert_eq!(suggested, 7, "{e}");
    let smaller = plan(&h, Some(&spec(serde_json::json!({"task": "causal-lm", "method": "lora", "batch": suggested, "seq_len": 32})))).unwrap();
    smaller.check(&limits).unwrap();

    // Loading alone above the limit: quantize q4_0 is suggested for f32 weights, and it fits.
    let f32_bytes = plan(&h, None).unwrap().host_load_bytes;
    let limits = Limits { memory_bytes: Some(f32_bytes - 1), memory_name: "the maxBytes limit".into(), ..Default::default() };
    let e = plan(&h, None).unwrap().check(&limits).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Device);
    assert!(e.message.contains("above the maxBytes limit") && e.message.contains("quantize q4_0"), "{e}");
    let q4 = plan_with(&h, None, Quantize::Q4_0).unwrap();
    assert_eq!(q4.weights.device_dtype, "F32+Q4_0");
    q4.check(&limits).unwrap();
    let e = q4.check(&Limits { memory_bytes: Some(1000), ..Default::default() }).unwrap_err();
    assert!(!e.message.contains("quantize q4_0") && e.message.contains("smaller model"), "{e}");

    // A weight above the buffer limit, named as the loader names it.
    let e = plan(&h, None).unwrap().check(&Limits { max_buffer_bytes: Some(40_000), ..Default::default() }).unwrap_err();
    assert_eq!(e.source, "model.safetensors");
    assert!(e.message.contains("[320, 64]") && e.message.contains("(maxStorageBufferBindingSize) of 0.0 MB (40000 bytes)"), "{e}");
}

#[test]
fn bad_headers_are_format_errors_naming_the_file() {
    let (mut h, _) = heads(&fixture("tiny-llama"));
    let i = h.iter().position(|f| f.name == "model.safetensors").unwrap();
    let good = h[i].bytes.clone();
    for cut in [4, 20, good.len() - 1] {
        h[i].bytes = good[..cut].to_vec();
        let e = plan(&h, None).unwrap_err();
        assert_eq!((e.kind, e.source.as_str()), (ErrorKind::Format, "model.safetensors"), "cut at {cut}: {e}");
    }
    h[i].bytes = good.clone();
    let full = h[i].len;
    h[i].len = full + 10; // more data than the tensors cover: refused, as loading refuses it
    let e = plan(&h, None).unwrap_err();
    assert!(e.message.contains("data section"), "{e}");
    h[i].len = good.len() as u64; // a header and no data
    let e = plan(&h, None).unwrap_err();
    assert!(e.message.contains("outside the file"), "{e}");
    // GGUF: a file that is not GGUF.
    let e = plan(&[FileHead { name: "x.gguf".into(), bytes: b"NOPE0000".to_vec(), len: 8 }], None).unwrap_err();
    assert_eq!((e.kind, e.source.as_str()), (ErrorKind::Format, "x.gguf"), "{e}");
}

#[test]
fn smollm2_training_plan_is_reported() {
    let Some(path) = bundled("SmolLM2-135M-Instruct.Q4_1.gguf") else { return };
    let (h, read) = heads(&path);
    let p: MemoryPlan = plan(&h, Some(&spec(serde_json::json!({"task": "causal-lm", "method": "lora", "batch": 4, "seq_len": 128})))).unwrap();
    let t = p.training.as_ref().unwrap();
    // One chunk of the loss: 4M logits at most, 85 rows of 49152 (not 4 x 128 rows).
    assert_eq!(t.largest_activation.shape, vec![85, 49152]);
    assert_eq!(t.largest_activation.bytes, 85 * 49152 * 4);
    assert!(read < 8 << 20, "read {read} bytes of the GGUF header");
    eprintln!("{}", serde_json::to_string_pretty(&p).unwrap());
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_webpeft")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn cli_plan_prints_json_and_refuses_what_does_not_fit() {
    let model = fixture("tiny-llama");
    let m = model.to_str().unwrap();
    let (ok, out, err) = cli(&["plan", m, "--json", "--task", "causal-lm", "--method", "lora", "--batch", "8", "--seq-len", "32"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["fits"], true);
    assert_eq!(v["weights"]["device_dtype"], "F32");
    assert_eq!(v["training"]["largest_activation"]["shape"], serde_json::json!([256, 320]));
    let (ok, out, err) = cli(&["plan", m, "--json", "--task", "causal-lm", "--method", "lora", "--batch", "8", "--seq-len", "32", "--max-buffer", "100000"]);
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["fits"], false);
    assert_eq!(v["error"]["kind"], "device");
    assert!(err.contains("token logits (one chunk of rows) [256, 320]") && err.contains("batch 2"), "{err}");
    let (ok, out, err) = cli(&["plan", m]);
    assert!(ok, "{err}");
    assert!(out.contains("weights on device") && out.contains("host while loading"), "{out}");
}

/// The chunked loss (a frozen LM head) against the whole-logits loss: the same value and the
/// same gradient for the hidden rows, over several chunks.
#[test]
fn chunked_loss_equals_whole_logits_loss_and_gradient() {
    use burn::tensor::{Tensor, TensorData};
    use webpeft::train::{chunked_cross_entropy, cross_entropy};
    let dev = device(Backend::Cpu).autodiff();
    let (n, h, v) = (7, 16, 50);
    let wave = |k: usize, f: f32| (0..k).map(|i| (i as f32 * f).sin() * 2.0).collect::<Vec<f32>>();
    let hidden = || Tensor::<2>::from_data(TensorData::new(wave(n * h, 0.37), [n, h]), &dev).require_grad();
    let head = Tensor::<2>::from_data(TensorData::new(wave(h * v, 0.11), [h, v]), &dev);
    let labels: Vec<u32> = (0..n as u32).map(|i| (i * 13) % v as u32).collect();
    let (x1, x2) = (hidden(), hidden());
    let whole = cross_entropy(x1.clone().matmul(head.clone()), &labels);
    // 3 rows per chunk: chunks of 3, 3 and 1 rows.
    let chunked = chunked_cross_entropy(x2.clone(), webpeft::models::FrozenHead::Dense(head.clone()), &labels, 3 * v);
    let (g1, g2) = (whole.clone().backward(), chunked.clone().backward());
    let read = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap()[0];
    let (a, b) = (read(whole.inner()), read(chunked.inner()));
    assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "loss {a} vs {b}");
    let ga = x1.grad(&g1).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let gb = x2.grad(&g2).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let diff = ga.iter().zip(&gb).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
    assert!(diff <= 1e-6, "hidden gradients differ by {diff}");
    assert!(ga.iter().any(|g| g.abs() > 1e-3), "a gradient that is all zero cannot tell");
}

/// Gradient checkpointing keeps each layer's input and one layer's activations: the plan
/// counts that, suggests it when it is what would fit, and leaves it off where training cannot
/// apply it (prefix tuning).
#[test]
fn gradient_checkpointing_is_planned_and_suggested() {
    let (h, _) = heads(&fixture("tiny-llama"));
    let job = |extra: serde_json::Value| {
        let mut v = serde_json::json!({"task": "causal-lm", "method": "lora", "batch": 8, "seq_len": 32});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        plan(&h, Some(&spec(v))).unwrap()
    };
    let full = job(serde_json::json!({}));
    let ckpt = job(serde_json::json!({"gradient_checkpointing": true}));
    let (f, c) = (full.training.as_ref().unwrap(), ckpt.training.as_ref().unwrap());
    assert!(!f.gradient_checkpointing && c.gradient_checkpointing);
    // Two layers: the inputs of both and one layer's activations instead of both layers'.
    assert!(c.activations_bytes < f.activations_bytes * 3 / 5, "{} vs {}", c.activations_bytes, f.activations_bytes);
    let limits = Limits { memory_bytes: Some(ckpt.device_bytes + 1), memory_name: "the maxBytes limit".into(), device_is_host: true, ..Default::default() };
    ckpt.check(&limits).unwrap();
    let e = full.check(&limits).unwrap_err();
    assert!(e.message.contains("gradient_checkpointing (each layer recomputed in the backward pass) at batch 8 x seq_len 32"), "{e}");
    let prefix = job(serde_json::json!({"method": "prefix", "gradient_checkpointing": true}));
    assert!(!prefix.training.unwrap().gradient_checkpointing);
}

/// Records what the loader reads: each read's length.
struct Counting {
    inner: webpeft::formats::source::DiskFile,
    reads: std::cell::RefCell<Vec<usize>>,
}

impl webpeft::formats::source::ByteSource for Counting {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, file: &str, offset: u64, len: usize) -> webpeft::Result<Vec<u8>> {
        self.reads.borrow_mut().push(len);
        self.inner.read_at(file, offset, len)
    }
}

#[test]
fn loading_reads_weight_files_a_tensor_at_a_time() {
    use std::sync::Arc;
    use webpeft::formats::source::{ByteSource, DiskFile};
    // A GGUF (header, then each tensor; the tiny fixtures' GGUFs fit in the first header read, so
    // the bundled SmolLM2, which `npm test`'s set-up fetches), a safetensors model and a shard.
    let smollm2 = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(smollm2.exists(), "{} is missing: run scripts/fetch-models.sh", smollm2.display());
    let cases = [
        smollm2,
        fixture("tiny-llama").join("model.safetensors"),
        fixture("tiny-llama-sharded").join("model-00001-of-00003.safetensors"),
    ];
    for path in cases {
        let dir = if path.extension().unwrap() == "gguf" { path.clone() } else { path.parent().unwrap().to_path_buf() };
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let counting = Arc::new(Counting { inner: DiskFile::open(&path).unwrap(), reads: Default::default() });
        let mut f = files(&dir);
        f.add_source(&name, counting.clone());
        let len = counting.len();
        let (h, _) = heads(&dir);
        let head = &h.iter().find(|f| f.name == name).unwrap().bytes;
        let sizes: Vec<u64> = if name.ends_with(".gguf") {
            let g = webpeft::formats::gguf::parse(head, &name).unwrap();
            g.tensors.iter().map(|t| t.dtype.stored_bytes(t.dims.iter().product()).unwrap()).collect()
        } else {
            webpeft::formats::safetensors::read_header(&name, head, len).unwrap().iter().map(|e| e.end - e.start).collect()
        };
        Model::load(&f, &device(Backend::Cpu)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let reads = counting.reads.borrow();
        // Loading: the header, then one read per tensor, each exactly that tensor's bytes; then
        // webpeft.json's sha256 reads the file once more in 16 MiB pieces.
        let sha_reads = len.div_ceil(16 << 20) as usize;
        let load = &reads[..reads.len() - sha_reads];
        let tensor_reads: Vec<u64> = load.iter().map(|&n| n as u64).skip(load.len() - sizes.len()).collect();
        let mut want = sizes.clone();
        want.sort();
        let mut got = tensor_reads.clone();
        got.sort();
        assert_eq!(got, want, "{name}: reads {load:?}");
        let header: u64 = load[..load.len() - sizes.len()].iter().map(|&n| n as u64).sum();
        assert!(header < len / 2 || len < 4 << 20, "{name}: {header} bytes read for the header of a {len}-byte file");
        assert!(reads[reads.len() - sha_reads..].iter().all(|&n| n as u64 <= 16 << 20));
        if len > 64 << 20 {
            assert!(*got.last().unwrap() < len / 2, "{name}: a read of half the file");
        }
    }
}

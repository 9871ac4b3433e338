//! Helpers shared by the integration tests: fixture paths, reference dumps
//! and closeness checks.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use safetensors::{Dtype, SafeTensors};
use webpeft::device::{self, Backend};
use webpeft::{Model, ModelFiles};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// A reference tensor: shape and values (ints widened to f64 for simplicity).
#[derive(Debug, Clone)]
pub struct Ref {
    pub shape: Vec<usize>,
    pub f32: Vec<f32>,
    pub i64: Vec<i64>,
}

impl Ref {
    pub fn ids(&self) -> Vec<u32> {
        self.i64.iter().map(|&v| v as u32).collect()
    }
    /// Rows of a 2-D int tensor.
    pub fn id_rows(&self) -> Vec<Vec<u32>> {
        self.ids().chunks(self.shape[1]).map(|c| c.to_vec()).collect()
    }
}

/// Reads every tensor of a safetensors reference dump.
pub fn read_ref(path: &Path) -> HashMap<String, Ref> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.iter()
        .map(|(name, v)| {
            let shape = v.shape().to_vec();
            let mut r = Ref { shape, f32: vec![], i64: vec![] };
            match v.dtype() {
                Dtype::F32 => r.f32 = v.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
                Dtype::I64 => r.i64 = v.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect(),
                other => panic!("unexpected dtype {other:?} for {name}"),
            }
            (name.to_string(), r)
        })
        .collect()
}

/// Reads a model directory or .gguf file from disk, as the CLI does.
pub fn files(path: &Path) -> ModelFiles {
    // Weight files are read a tensor at a time (a `DiskFile`), as the CLI reads them.
    let disk = |p: &Path| std::sync::Arc::new(webpeft::formats::source::DiskFile::open(p).unwrap());
    let mut files = ModelFiles::default();
    if path.is_file() {
        files.add_source(&path.to_string_lossy(), disk(path));
    } else {
        for e in std::fs::read_dir(path).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".json") {
                files.add(&name, std::fs::read(&p).unwrap());
            } else if name.ends_with(".safetensors") && name != "reference.safetensors" {
                files.add_source(&name, disk(&p));
            }
        }
    }
    files
}

pub fn device(backend: Backend) -> Device {
    device::native(backend).expect("device")
}

pub fn load(path: &Path, backend: Backend) -> Model {
    Model::load(&files(path), &device(backend)).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// Reads a tensor back (tests may block; the web path never does).
pub fn host<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    pollster::block_on(webpeft::generate::read_f32(t)).unwrap()
}

/// Largest absolute difference; panics with context if shapes differ.
pub fn max_abs_diff(what: &str, got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: {} values, reference has {}", got.len(), want.len());
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

/// Asserts `got` is within `tol` of `want` (max abs), and that the reference is not trivial.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let d = max_abs_diff(what, got, want);
    assert!(want.iter().any(|v| v.abs() > 1e-3), "{what}: the reference is all zeros; the test would prove nothing");
    assert!(d <= tol, "{what}: max abs diff {d:e} > {tol:e}");
    eprintln!("{what}: max abs diff {d:e} (tolerance {tol:e})");
}

/// Backends to test: the CPU always, and the GPU through wgpu (lavapipe here) in a build
/// with the `gpu` feature (`npm run test:gpu`; `npm test` builds without it).
pub fn backends() -> Vec<Backend> {
    if cfg!(feature = "gpu") {
        vec![Backend::Cpu, Backend::Gpu]
    } else {
        vec![Backend::Cpu]
    }
}

/// Name -> (shape, values) of an adapter safetensors file; checks every tensor
/// is F32 and the metadata is PEFT's `{"format": "pt"}`.
pub fn adapter_tensors(bytes: &[u8]) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let format = meta.metadata().as_ref().and_then(|m| m.get("format").cloned());
    assert_eq!(format.as_deref(), Some("pt"), "adapter metadata must be {{\"format\": \"pt\"}}");
    let st = SafeTensors::deserialize(bytes).unwrap();
    st.iter()
        .map(|(name, v)| {
            assert_eq!(v.dtype(), Dtype::F32, "{name} must be F32");
            let data = v.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            (name.to_string(), (v.shape().to_vec(), data))
        })
        .collect()
}

/// Tolerances over slices of a trained adapter tensor against PEFT's trained
/// one: 1e-4 everywhere, except where the fixtures' gradient is only float noise
/// (tests/fixtures/peft/README.md). A key bias adds the same constant to every
/// score of a query, which softmax cancels: BERT's attention key bias, Qwen2's
/// k_proj bias, and the key third (`[h, 2h)`) of GPT-2's fused `c_attn` bias. On
/// noise, AdamW takes full-size steps in arbitrary directions, so the only bound
/// is how far five steps at lr 1e-2 can move a value: 5e-2 (0.06 with margin).
/// The query and value thirds of `c_attn` have real gradients and stay at 1e-4.
pub fn trained_tolerances(name: &str, len: usize) -> Vec<(std::ops::Range<usize>, f32)> {
    const TIGHT: f32 = 1e-4;
    const NOISE: f32 = 0.06;
    if name.contains("attention.self.key.bias") || name.contains("self_attn.k_proj.bias") {
        return vec![(0..len, NOISE)];
    }
    if name.contains("attn.c_attn.base_layer.bias") || name.contains("attn.c_attn.bias") {
        assert_eq!(len % 3, 0, "{name}: a fused q/k/v bias has 3 * hidden values, got {len}");
        let h = len / 3;
        return vec![(0..h, TIGHT), (h..2 * h, NOISE), (2 * h..len, TIGHT)];
    }
    vec![(0..len, TIGHT)]
}

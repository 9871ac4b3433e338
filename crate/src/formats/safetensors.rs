//! Reading and writing Hugging Face `*.safetensors` files.
//!
//! Parsing is delegated to the `safetensors` crate, which bounds the header
//! (100 MB) and checks every tensor's byte range against the buffer, so a
//! hostile file cannot make us allocate more than its own size.

use std::collections::{BTreeMap, HashMap};

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::formats::blocks::HostBlocks;
use crate::formats::source::ByteSource;

/// A float tensor on the host, converted to f32, remembering where it came from.
#[derive(Debug, Clone)]
pub struct HostTensor {
    /// PyTorch-order shape.
    pub shape: Vec<usize>,
    /// Row-major f32 values.
    pub data: Vec<f32>,
    /// The dtype as stored in the file (`F32`, `BF16`, `Q4_1`...).
    pub dtype: String,
    /// The file it was read from, for messages.
    pub file: String,
    /// A 2-D quantized weight kept in its blocks (`data` is then empty).
    pub blocks: Option<HostBlocks>,
}

impl HostTensor {
    /// Builds a tensor, checking that the shape matches the data.
    pub fn new(shape: Vec<usize>, data: Vec<f32>, dtype: &str, file: &str) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data, dtype: dtype.to_string(), file: file.to_string(), blocks: None }
    }

    /// A 2-D weight kept in its quantized blocks.
    pub fn from_blocks(shape: Vec<usize>, blocks: HostBlocks, file: &str) -> Self {
        Self { shape, data: Vec::new(), dtype: blocks.format.clone(), file: file.to_string(), blocks: Some(blocks) }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The f32 values, decoding blocks when the tensor holds them (small tensors only: norms,
    /// biases, a head that is trained).
    pub fn into_f32(mut self) -> Self {
        if let Some(b) = self.blocks.take() {
            self.data = b.values();
        }
        self
    }

    /// Returns the transpose of a 2-D tensor (HF `nn.Linear` `[out, in]` to burn `[in, out]`).
    pub fn transposed(self) -> Self {
        let t = self.into_f32();
        let (rows, cols) = (t.shape[0], t.shape[1]);
        let mut data = vec![0.0f32; t.data.len()];
        for r in 0..rows {
            for c in 0..cols {
                data[c * rows + r] = t.data[r * cols + c];
            }
        }
        Self { shape: vec![cols, rows], data, ..t }
    }
}

/// One tensor in a safetensors header.
#[derive(Debug, Clone)]
pub struct HeaderEntry {
    pub name: String,
    /// As the header spells it: `F32`, `BF16`, `I64`...
    pub dtype: String,
    pub shape: Vec<usize>,
    /// The tensor's bytes in the file (absolute offsets).
    pub start: u64,
    pub end: u64,
}

impl HeaderEntry {
    /// F32, F16 or BF16: a weight webpeft reads.
    pub fn is_float(&self) -> bool {
        matches!(self.dtype.as_str(), "F32" | "F16" | "BF16")
    }
}

/// Reads and checks a safetensors header from the file's first bytes `head` (at least the 8-byte
/// length and the JSON header) and its full length `len`: each tensor's dtype, shape and byte
/// range, which must match, and, as the `safetensors` crate checks, a data section exactly covered
/// by the tensors. Integer buffers that are not weights are kept (callers skip them); other
/// dtypes for a `*weight` are refused.
pub fn read_header(file: &str, head: &[u8], len: u64) -> Result<Vec<HeaderEntry>> {
    use serde_json::Value;
    let bad = |m: String| Error::format(file, format!("not a valid safetensors file: {m}"));
    if head.len() < 8 {
        return Err(bad("shorter than its 8-byte header length".into()));
    }
    let n = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
    let end = n.checked_add(8).filter(|&e| e <= len && e <= head.len() as u64).ok_or_else(|| {
        bad(format!("header length {n} beyond the file ({len} bytes)"))
    })?;
    let header: BTreeMap<String, Value> =
        serde_json::from_slice(&head[8..end as usize]).map_err(|e| bad(format!("header: {e}")))?;
    let data_len = len - end;
    let mut out = vec![];
    let mut covered = 0;
    for (name, t) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = t.get("dtype").and_then(Value::as_str).ok_or_else(|| bad(format!("tensor {name} has no dtype")))?.to_string();
        let shape: Vec<usize> = t
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect())
            .ok_or_else(|| bad(format!("tensor {name} has no valid shape")))?;
        let offsets: Vec<u64> = t
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect())
            .filter(|o: &Vec<u64>| o.len() == 2 && o[0] <= o[1] && o[1] <= data_len)
            .ok_or_else(|| bad(format!("tensor {name} has data offsets outside the file")))?;
        let size = match dtype.as_str() {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            _ => 1,
        };
        // A declared [32, 2^56] tensor must not overflow the check.
        let elements = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
        if elements.and_then(|e| e.checked_mul(size)) != Some(offsets[1] - offsets[0]) {
            return Err(bad(format!("tensor {name} {shape:?} {dtype} does not match its {} data bytes", offsets[1] - offsets[0])));
        }
        let e = HeaderEntry { name, dtype, shape, start: end + offsets[0], end: end + offsets[1] };
        if !e.is_float() && e.name.ends_with("weight") {
            return Err(Error::format(file, format!("tensor {} has dtype {}; only F32, F16 and BF16 weights are supported", e.name, e.dtype)));
        }
        covered = covered.max(offsets[1]);
        out.push(e);
    }
    // As the crate: the tensors tile the data section, without gaps or overlaps.
    out.sort_by_key(|e| (e.start, e.end));
    let mut at = end;
    for e in &out {
        if e.start != at {
            return Err(bad(format!("tensor {} starts at byte {} of the data section, not {} (tensors must not overlap or leave gaps)", e.name, e.start - end, at - end)));
        }
        at = e.end;
    }
    if covered != data_len {
        return Err(bad(format!("its tensors cover {covered} bytes of a {data_len}-byte data section")));
    }
    Ok(out)
}

/// Little-endian F32, F16 or BF16 bytes as f32 values.
fn to_f32(dtype: &str, raw: &[u8]) -> Vec<f32> {
    match dtype {
        "F16" => raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        "BF16" => raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        _ => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
    }
}

/// All the weights of a model, by their Hugging Face names.
#[derive(Debug, Default)]
pub struct WeightMap {
    tensors: HashMap<String, HostTensor>,
    /// Keep F16/BF16 matrices as 16-bit blocks instead of widening them (`quantize` none).
    pub keep_half: bool,
    /// Files the weights came from, for messages ("model.safetensors" or a shard list).
    pub source: String,
}

impl WeightMap {
    /// An empty map whose messages name `source`.
    pub fn new(source: &str) -> Self {
        Self { tensors: HashMap::new(), source: source.to_string(), keep_half: false }
    }

    /// Inserts one tensor.
    pub fn insert(&mut self, name: String, tensor: HostTensor) {
        self.tensors.insert(name, tensor);
    }

    /// Reads every tensor of one safetensors file, converting F32/F16/BF16 to f32.
    pub fn add_safetensors(&mut self, file: &str, bytes: &[u8]) -> Result<()> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::format(file, format!("not a valid safetensors file: {e}")))?;
        for (name, view) in st.iter() {
            let shape = view.shape().to_vec();
            let dtype = format!("{:?}", view.dtype());
            if let Some(t) = self.half(&name, &shape, &dtype, view.data(), file) {
                self.tensors.insert(name.to_string(), t);
                continue;
            }
            let data = match view.dtype() {
                Dtype::F32 => to_f32("F32", view.data()),
                Dtype::F16 => to_f32("F16", view.data()),
                Dtype::BF16 => to_f32("BF16", view.data()),
                // Integer buffers such as BERT's `position_ids` are not weights; keep
                // them out of the map so a model that needs them reports them missing.
                Dtype::I64 | Dtype::I32 | Dtype::U8 | Dtype::BOOL if !name.ends_with("weight") => continue,
                other => {
                    return Err(Error::format(
                        file,
                        format!("tensor {name} has dtype {other:?}; only F32, F16 and BF16 weights are supported"),
                    ))
                }
            };
            self.tensors.insert(name.to_string(), HostTensor::new(shape, data, &dtype, file));
        }
        Ok(())
    }

    /// [`WeightMap::add_safetensors`] for a file read through `src`, a tensor at a time, so the
    /// whole file is never in memory next to the weights made from it.
    pub fn add_safetensors_source(&mut self, file: &str, src: &dyn ByteSource) -> Result<()> {
        if let Some(all) = src.as_slice() {
            return self.add_safetensors(file, all);
        }
        let head = crate::formats::source::head(file, src)?;
        for e in read_header(file, &head, src.len())? {
            if !e.is_float() {
                continue; // integer buffers such as `position_ids`, as above
            }
            let raw = src.read_at(file, e.start, (e.end - e.start) as usize)?;
            if let Some(t) = self.half(&e.name, &e.shape, &e.dtype, &raw, file) {
                self.tensors.insert(e.name, t);
                continue;
            }
            let data = to_f32(&e.dtype, &raw);
            self.tensors.insert(e.name, HostTensor::new(e.shape, data, &e.dtype, file));
        }
        Ok(())
    }

    /// An F16/BF16 matrix kept as 16-bit blocks, when `keep_half` asks for it and its rows hold
    /// whole blocks (`blocks::kept`); `None` to widen it.
    fn half(&self, name: &str, shape: &[usize], dtype: &str, raw: &[u8], file: &str) -> Option<HostTensor> {
        let t = crate::formats::gguf::GgmlType::from_name(dtype);
        let keep = self.keep_half
            && matches!(dtype, "F16" | "BF16")
            && crate::formats::blocks::quantizable(name, shape)
            && crate::formats::blocks::kept(t, shape[1]);
        if !keep {
            return None;
        }
        let b = crate::formats::blocks::unpack(t, raw)?;
        Some(HostTensor { dtype: dtype.to_string(), ..HostTensor::from_blocks(shape.to_vec(), b, file) })
    }

    /// True if the map holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Bytes of `name`'s largest buffer on the device: its f32 values, or a block weight's codes.
    pub fn buffer_bytes(&self, name: &str) -> usize {
        self.tensors.get(name).map_or(0, |t| match &t.blocks {
            Some(b) => crate::formats::blocks::largest_buffer(b.bits, t.shape[0] as u64, t.shape[1] as u64, crate::models::blocks::MAX_PART_BYTES as u64) as usize,
            None => t.len() * 4,
        })
    }

    /// The shape of `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// Names of all tensors, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        names.sort();
        names
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True if there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Removes and returns `name`, checking it has `shape`. `why` says which
    /// config values imply that shape, so a mismatch message can name them.
    pub fn take(&mut self, name: &str, shape: &[usize], why: &str) -> Result<HostTensor> {
        let t = self.tensors.remove(name).ok_or_else(|| {
            Error::format(&self.source, format!("missing tensor {name} (required by {why})"))
        })?;
        if t.shape != shape {
            return Err(Error::format(
                &t.file,
                format!("tensor {name} has shape {:?}, but {why} implies {:?}", t.shape, shape),
            ));
        }
        Ok(t)
    }

    /// Removes and returns `name` whatever its shape (the caller checks it).
    pub fn remove(&mut self, name: &str) -> Option<HostTensor> {
        self.tensors.remove(name)
    }

    /// Like [`WeightMap::take`], but `None` when the tensor is absent.
    pub fn take_opt(&mut self, name: &str, shape: &[usize], why: &str) -> Result<Option<HostTensor>> {
        if self.contains(name) {
            self.take(name, shape, why).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Adds `prefix` to every name unless it is already there (checkpoints differ
    /// in whether they store the base model under `transformer.`, `bert.`...).
    pub fn ensure_prefix(&mut self, prefix: &str, probe: &str) {
        if self.contains(&format!("{prefix}{probe}")) || !self.contains(probe) {
            return;
        }
        let old = std::mem::take(&mut self.tensors);
        self.tensors = old
            .into_iter()
            .map(|(k, v)| if k.starts_with(prefix) { (k, v) } else { (format!("{prefix}{k}"), v) })
            .collect();
    }

    /// Total number of f32 values held.
    pub fn num_values(&self) -> usize {
        self.tensors.values().map(HostTensor::len).sum()
    }

    /// Quantizes every float matrix (`blocks::quantizable`: a linear or embedding weight whose
    /// rows hold whole blocks) to `dtype` (Q8_0 or Q4_0), as `--quantize` asks.
    pub fn quantize(&mut self, dtype: crate::formats::gguf::GgmlType) {
        for (name, t) in self.tensors.iter_mut() {
            if t.blocks.is_some() || !crate::formats::blocks::quantizable(name, &t.shape) {
                continue;
            }
            if let Some(b) = crate::formats::blocks::quantize(dtype, &t.data) {
                // `dtype` stays what the file stored.
                *t = HostTensor { dtype: t.dtype.clone(), ..HostTensor::from_blocks(t.shape.clone(), b, &t.file) };
            }
        }
    }

    /// Bytes of the weights held in quantized blocks.
    pub fn block_bytes(&self) -> u64 {
        self.tensors.values().filter_map(|t| t.blocks.as_ref()).map(HostBlocks::bytes).sum()
    }

    /// The block formats held, sorted.
    pub fn block_formats(&self) -> Vec<String> {
        let mut d: Vec<String> = self.tensors.values().filter_map(|t| t.blocks.as_ref()).map(|b| b.format.clone()).collect();
        d.sort();
        d.dedup();
        d
    }

    /// The distinct stored dtypes, sorted.
    pub fn dtypes(&self) -> Vec<String> {
        let mut d: Vec<String> = self.tensors.values().map(|t| t.dtype.clone()).collect();
        d.sort();
        d.dedup();
        d
    }
}

/// Lists the shard files named by a `model.safetensors.index.json`.
pub fn shard_files(index_file: &str, bytes: &[u8]) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let index: Index = serde_json::from_slice(bytes)
        .map_err(|e| Error::format(index_file, format!("invalid shard index: {e}")))?;
    let mut files: Vec<String> = index.weight_map.into_values().collect();
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(Error::format(index_file, "the shard index lists no files"));
    }
    // Shards sit beside the index: a path (`../x`, `/etc/x`, `a/b`) would read outside the model.
    if let Some(bad) = files.iter().find(|f| f.is_empty() || f.contains(['/', '\\']) || f.starts_with('.') || f.contains(':')) {
        return Err(Error::format(index_file, format!("shard '{bad}' is not a file name beside the index")));
    }
    Ok(files)
}

/// A named f32 tensor to write.
pub struct OutTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

struct F32View<'a>(&'a OutTensor, Vec<u8>);

impl safetensors::View for &F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.1)
    }
    fn data_len(&self) -> usize {
        self.1.len()
    }
}

/// Serialises f32 tensors to safetensors bytes with the given metadata
/// (PEFT writes `{"format": "pt"}`).
pub fn write_f32(tensors: &[OutTensor], metadata: Option<&[(&str, &str)]>) -> Result<Vec<u8>> {
    let views: Vec<F32View> = tensors
        .iter()
        .map(|t| F32View(t, t.data.iter().flat_map(|v| v.to_le_bytes()).collect()))
        .collect();
    let meta = metadata.map(|m| m.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    safetensors::serialize(views.iter().map(|v| (v.0.name.as_str(), v)), meta)
        .map_err(|e| Error::format("safetensors", format!("could not serialise: {e}")))
}

//! GGUF (llama.cpp's model format, versions 2 and 3, little-endian): parsing, dequantisation, and
//! the mapping of a file onto Hugging Face conventions, through the family that reads its
//! architecture ([`GgufFamily`], implemented in `models/llama.rs` and `models/gemma3.rs`)
//! (config.json, tensor names and layouts, tokenizer), matching what transformers builds with
//! `from_pretrained(dir, gguf_file=...)`.
//!
//! Everything works on an in-memory `&[u8]`, so it runs in wasm too. Every length and count read
//! from the file is checked against the bytes actually present before anything is allocated, so a
//! damaged or hostile file gives a [`GgufError`], never a panic or a huge allocation.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::blocks::{self, HostBlocks};
use super::gguf_spm;
use super::source::ByteSource;

const MAGIC: u32 = 0x4655_4747; // "GGUF" read as a little-endian u32
const DEFAULT_ALIGNMENT: u64 = 32;
const MAX_DIMS: u32 = 4; // GGML_MAX_DIMS
const MAX_ARRAY_DEPTH: usize = 8; // nested arrays deeper than this are surely not a real file
const SUPPORTED: &str = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K";

/// A GGUF error. Every message starts with the source name given to [`parse`].
#[derive(thiserror::Error, Debug)]
pub enum GgufError {
    #[error("{file}: bad magic {magic:#010x} (not a GGUF file)")]
    BadMagic { file: String, magic: u32 },
    #[error("{file}: unsupported GGUF version {version} (supported: 2, 3; big-endian files are not supported)")]
    Version { file: String, version: u32 },
    #[error("{file}: truncated: {what} needs bytes {start}..{end} but the file has {len}")]
    Truncated {
        file: String,
        what: String,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("{file}: tensor {tensor} has unsupported type {dtype} (supported: {SUPPORTED})")]
    UnsupportedType {
        file: String,
        tensor: String,
        dtype: String,
    },
    /// Malformed content, a missing or mistyped key, or something this loader does not support.
    #[error("{file}: {msg}")]
    Invalid { file: String, msg: String },
}

/// A metadata value, as stored.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Array(Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    /// Any integer value that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Self::U8(v) => v.into(),
            Self::I8(v) => v.into(),
            Self::U16(v) => v.into(),
            Self::I16(v) => v.into(),
            Self::U32(v) => v.into(),
            Self::I32(v) => v.into(),
            Self::U64(v) => i64::try_from(v).ok()?,
            Self::I64(v) => v,
            _ => return None,
        })
    }
    /// Any non-negative integer value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U64(v) => Some(v),
            _ => self.as_i64().and_then(|v| u64::try_from(v).ok()),
        }
    }
    /// Floats, and integers as floats.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            Self::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// A tensor's storage type. Only the named variants can be dequantised; `Other` keeps the id of
/// any other ggml type so errors can name it.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4_K,
    Q5_K,
    Q6_K,
    Other(u32),
}

/// ggml's type ids and names (ggml.h), for error messages.
#[rustfmt::skip]
const TYPE_NAMES: &[(u32, &str)] = &[
    (0, "F32"), (1, "F16"), (2, "Q4_0"), (3, "Q4_1"), (6, "Q5_0"), (7, "Q5_1"), (8, "Q8_0"),
    (9, "Q8_1"), (10, "Q2_K"), (11, "Q3_K"), (12, "Q4_K"), (13, "Q5_K"), (14, "Q6_K"),
    (15, "Q8_K"), (16, "IQ2_XXS"), (17, "IQ2_XS"), (18, "IQ3_XXS"), (19, "IQ1_S"), (20, "IQ4_NL"),
    (21, "IQ3_S"), (22, "IQ2_S"), (23, "IQ4_XS"), (24, "I8"), (25, "I16"), (26, "I32"),
    (27, "I64"), (28, "F64"), (29, "IQ1_M"), (30, "BF16"), (34, "TQ1_0"), (35, "TQ2_0"),
    (39, "MXFP4"), (40, "NVFP4"), (41, "Q1_0"),
];

/// The dequantisable types with their ggml ids.
const SUPPORTED_IDS: [(GgmlType, u32); 11] = [
    (GgmlType::F32, 0),
    (GgmlType::F16, 1),
    (GgmlType::BF16, 30),
    (GgmlType::Q4_0, 2),
    (GgmlType::Q4_1, 3),
    (GgmlType::Q5_0, 6),
    (GgmlType::Q5_1, 7),
    (GgmlType::Q8_0, 8),
    (GgmlType::Q4_K, 12),
    (GgmlType::Q5_K, 13),
    (GgmlType::Q6_K, 14),
];

impl GgmlType {
    pub fn from_id(id: u32) -> Self {
        let known = SUPPORTED_IDS.iter().find(|(_, i)| *i == id);
        known.map_or(Self::Other(id), |(t, _)| *t)
    }
    pub fn id(self) -> u32 {
        match self {
            Self::Other(id) => id,
            t => SUPPORTED_IDS
                .iter()
                .find(|(s, _)| *s == t)
                .map_or(u32::MAX, |(_, i)| *i),
        }
    }
    /// The type ggml names `name` ("Q4_K"), `Other` for names it does not know.
    pub fn from_name(name: &str) -> Self {
        TYPE_NAMES.iter().find(|(_, n)| *n == name).map_or(Self::Other(u32::MAX), |(id, _)| Self::from_id(*id))
    }
    /// ggml's name for the type, e.g. "Q4_K", or "type 99" for an id ggml does not know.
    pub fn name(self) -> String {
        let id = self.id();
        match TYPE_NAMES.iter().find(|(i, _)| *i == id) {
            Some((_, name)) => (*name).to_string(),
            None => format!("type {id}"),
        }
    }
    /// Bytes `elements` values take as stored (whole blocks), for the types this module
    /// dequantises; `None` for the others. For planning memory from the header alone.
    pub fn stored_bytes(self, elements: u64) -> Option<u64> {
        let (per, bytes) = self.block()?;
        elements.div_ceil(per as u64).checked_mul(bytes as u64)
    }
    /// (values per block, bytes per block) for the types this module dequantises.
    pub(crate) fn block(self) -> Option<(usize, usize)> {
        match self {
            Self::F32 => Some((1, 4)),
            Self::F16 | Self::BF16 => Some((1, 2)),
            Self::Q4_0 => Some((32, 18)),
            Self::Q4_1 => Some((32, 20)),
            Self::Q5_0 => Some((32, 22)),
            Self::Q5_1 => Some((32, 24)),
            Self::Q8_0 => Some((32, 34)),
            Self::Q4_K => Some((256, 144)),
            Self::Q5_K => Some((256, 176)),
            Self::Q6_K => Some((256, 210)),
            Self::Other(_) => None,
        }
    }
}

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// As stored: ne[0] (the contiguous, innermost dimension) first.
    pub dims: Vec<u64>,
    pub dtype: GgmlType,
    /// Offset inside the tensor data section.
    pub offset: u64,
}

/// A parsed GGUF file borrowing its tensor data from the input bytes, or reading each tensor
/// from a [`ByteSource`] when asked for it.
#[derive(Debug)]
pub struct Gguf<'a> {
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<GgufTensorInfo>,
    /// The tensor data section.
    data: Data<'a>,
    /// Where `data` starts in the file, and the file's length, for messages.
    data_start: usize,
    file_len: usize,
    source: String,
}

/// Where the tensor data section is.
enum Data<'a> {
    /// In memory.
    Slice(&'a [u8]),
    /// In a file read on demand, from `start`.
    Source { src: &'a dyn ByteSource, start: u64 },
}

impl std::fmt::Debug for Data<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Data::Slice(s) => write!(f, "Slice({} bytes)", s.len()),
            Data::Source { src, start } => write!(f, "Source({} bytes from {start})", src.len() - start.min(&src.len())),
        }
    }
}

/// Bounds-checked little-endian reader over the whole file.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    file: &'a str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        let start = self.pos;
        let slice = usize::try_from(n)
            .ok()
            .and_then(|n| start.checked_add(n))
            .and_then(|end| self.bytes.get(start..end));
        match slice {
            Some(s) => {
                self.pos += s.len();
                Ok(s)
            }
            None => Err(GgufError::Truncated {
                file: self.file.into(),
                what: what.into(),
                start: start as u64,
                end: (start as u64).saturating_add(n),
                len: self.bytes.len() as u64,
            }),
        }
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }
    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| self.invalid(format!("{what} is not valid UTF-8")))
    }
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos.min(self.bytes.len())) as u64
    }
    fn invalid(&self, msg: String) -> GgufError {
        GgufError::Invalid {
            file: self.file.into(),
            msg,
        }
    }

    /// One metadata value of type `ty`; `what` names it for messages.
    fn value(&mut self, ty: u32, what: &str, depth: usize) -> Result<GgufValue, GgufError> {
        use GgufValue as V;
        Ok(match ty {
            0 => V::U8(self.array::<1>(what)?[0]),
            1 => V::I8(i8::from_le_bytes(self.array(what)?)),
            2 => V::U16(u16::from_le_bytes(self.array(what)?)),
            3 => V::I16(i16::from_le_bytes(self.array(what)?)),
            4 => V::U32(self.u32(what)?),
            5 => V::I32(i32::from_le_bytes(self.array(what)?)),
            6 => V::F32(f32::from_le_bytes(self.array(what)?)),
            7 => V::Bool(self.array::<1>(what)?[0] != 0),
            8 => V::Str(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.invalid(format!(
                        "{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let elem_ty = self.u32(what)?;
                let count = self.u64(what)?;
                // The smallest encoding of one element bounds how many can fit in what is left,
                // so a huge count fails here instead of in the allocator.
                let min_size: u64 = match elem_ty {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    _ => {
                        return Err(
                            self.invalid(format!("{what}: unknown array element type {elem_ty}"))
                        )
                    }
                };
                if count
                    .checked_mul(min_size)
                    .is_none_or(|n| n > self.remaining())
                {
                    return Err(self.invalid(format!(
                        "{what}: array of {count} elements does not fit in the {} bytes left",
                        self.remaining()
                    )));
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(elem_ty, what, depth + 1)?);
                }
                V::Array(items)
            }
            10 => V::U64(self.u64(what)?),
            11 => V::I64(i64::from_le_bytes(self.array(what)?)),
            12 => V::F64(f64::from_le_bytes(self.array(what)?)),
            _ => return Err(self.invalid(format!("{what} has unknown value type {ty}"))),
        })
    }
}

/// Parses the header, metadata and tensor table of a GGUF file. `source` (a file name) prefixes
/// every error message. Tensor data is only checked when a tensor is read.
pub fn parse<'a>(bytes: &'a [u8], source: &str) -> Result<Gguf<'a>, GgufError> {
    let mut r = Reader {
        bytes,
        pos: 0,
        file: source,
    };
    let magic = r.u32("the magic number")?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic {
            file: source.into(),
            magic,
        });
    }
    let version = r.u32("the version")?;
    if version != 2 && version != 3 {
        return Err(GgufError::Version {
            file: source.into(),
            version,
        });
    }
    let n_tensors = r.u64("the tensor count")?;
    let n_kv = r.u64("the metadata count")?;

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = r.string(&format!("metadata key #{i}"))?;
        let ty = r.u32(&format!("the type of metadata {key}"))?;
        let value = r.value(ty, &format!("metadata {key}"), 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(r.invalid(format!("duplicate metadata key {key}")));
        }
    }

    // A tensor entry takes at least 24 bytes (empty name, no dims), which bounds the count.
    if n_tensors.checked_mul(24).is_none_or(|n| n > r.remaining()) {
        return Err(r.invalid(format!(
            "{n_tensors} tensors do not fit in the {} bytes left",
            r.remaining()
        )));
    }
    let mut tensors: Vec<GgufTensorInfo> = Vec::with_capacity(n_tensors as usize);
    let mut names = HashSet::new();
    for i in 0..n_tensors {
        let name = r.string(&format!("the name of tensor #{i}"))?;
        let n_dims = r.u32(&format!("tensor {name}"))?;
        if n_dims > MAX_DIMS {
            return Err(r.invalid(format!(
                "tensor {name} has {n_dims} dimensions (at most {MAX_DIMS})"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.u64(&format!("tensor {name}"))?);
        }
        // ggml keeps element counts in an i64.
        if dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .is_none_or(|n| n > i64::MAX as u64)
        {
            return Err(r.invalid(format!(
                "tensor {name} has too many elements: dims {dims:?}"
            )));
        }
        let dtype = GgmlType::from_id(r.u32(&format!("tensor {name}"))?);
        let offset = r.u64(&format!("tensor {name}"))?;
        if !names.insert(name.clone()) {
            return Err(r.invalid(format!("duplicate tensor {name}")));
        }
        tensors.push(GgufTensorInfo {
            name,
            dims,
            dtype,
            offset,
        });
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => v
            .as_u64()
            .filter(|a| a.is_power_of_two())
            .ok_or_else(|| r.invalid(format!("general.alignment {v:?} is not a power of two")))?,
    };
    if let Some(t) = tensors.iter().find(|t| !t.offset.is_multiple_of(alignment)) {
        return Err(r.invalid(format!(
            "tensor {} offset {} is not a multiple of the alignment {alignment}",
            t.name, t.offset
        )));
    }
    // The data section starts at the next multiple of the alignment after the tensor table.
    let data_start = usize::try_from(alignment)
        .ok()
        .and_then(|a| r.pos.checked_next_multiple_of(a))
        .unwrap_or(usize::MAX);
    let data = Data::Slice(bytes.get(data_start..).unwrap_or(&[]));
    Ok(Gguf {
        version,
        metadata,
        tensors,
        data,
        data_start,
        file_len: bytes.len(),
        source: source.into(),
    })
}

/// [`parse`] for a file read through `src`: only its header and tensor table are read now, each
/// tensor's bytes when it is asked for, so the whole file is never in memory at once.
pub fn parse_source<'a>(src: &'a dyn ByteSource, source: &str) -> Result<Gguf<'a>, GgufError> {
    if let Some(all) = src.as_slice() {
        return parse(all, source);
    }
    let head = crate::formats::source::head(source, src).map_err(|e| GgufError::Invalid { file: source.into(), msg: e.message })?;
    let g = parse(&head, source)?;
    Ok(Gguf {
        version: g.version,
        metadata: g.metadata,
        tensors: g.tensors,
        data: Data::Source { src, start: g.data_start as u64 },
        data_start: g.data_start,
        file_len: usize::try_from(src.len()).unwrap_or(usize::MAX),
        source: g.source,
    })
}

impl<'a> Gguf<'a> {
    /// The source name given to [`parse`].
    pub fn source(&self) -> &str {
        &self.source
    }

    /// An error about this file.
    pub fn invalid(&self, msg: impl Into<String>) -> GgufError {
        GgufError::Invalid {
            file: self.source.clone(),
            msg: msg.into(),
        }
    }

    /// Dequantises a tensor to f32. The shape is in PyTorch order (the stored dims reversed).
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), GgufError> {
        let info = self
            .tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| self.invalid(format!("no tensor named {name}")))?;
        self.dequantize(info)
    }

    fn dequantize(&self, t: &GgufTensorInfo) -> Result<(Vec<usize>, Vec<f32>), GgufError> {
        let (shape, raw) = self.raw(t)?;
        Ok((shape, dequantize(t.dtype, &raw)))
    }

    /// A quantized tensor's blocks, unpacked for the device (`None` types are refused by the caller).
    pub fn blocks(&self, t: &GgufTensorInfo) -> Result<(Vec<usize>, HostBlocks), GgufError> {
        let (shape, raw) = self.raw(t)?;
        let b = blocks::unpack(t.dtype, &raw).ok_or_else(|| self.invalid(format!("tensor {} of type {} has no block layout", t.name, t.dtype.name())))?;
        Ok((shape, b))
    }

    /// A tensor's PyTorch-order shape and its stored bytes, checked against the file.
    fn raw(&self, t: &GgufTensorInfo) -> Result<(Vec<usize>, Cow<'a, [u8]>), GgufError> {
        let unsupported = || GgufError::UnsupportedType {
            file: self.source.clone(),
            tensor: t.name.clone(),
            dtype: t.dtype.name(),
        };
        let (block_len, block_bytes) = t.dtype.block().ok_or_else(unsupported)?;
        let too_big = || {
            self.invalid(format!(
                "tensor {} is too large for this platform: dims {:?}",
                t.name, t.dims
            ))
        };
        let shape = t
            .dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| too_big())?;
        let count = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(too_big)?;
        // ggml quantises each row (ne[0] values) on its own, so rows hold whole blocks.
        let row = t.dims.first().copied().unwrap_or(1);
        if !row.is_multiple_of(block_len as u64) {
            return Err(self.invalid(format!(
                "tensor {}: row length {row} is not a multiple of the {} block size {block_len}",
                t.name,
                t.dtype.name()
            )));
        }
        let n_bytes = (count / block_len)
            .checked_mul(block_bytes)
            .ok_or_else(too_big)?;
        let raw: Option<Cow<'a, [u8]>> = match self.data {
            Data::Slice(data) => usize::try_from(t.offset)
                .ok()
                .and_then(|start| Some((start, start.checked_add(n_bytes)?)))
                .and_then(|(start, end)| data.get(start..end))
                .map(Cow::Borrowed),
            Data::Source { src, start } => match start.checked_add(t.offset) {
                Some(at) if at.checked_add(n_bytes as u64).is_some_and(|end| end <= src.len()) => Some(Cow::Owned(
                    src.read_at(&self.source, at, n_bytes)
                        .map_err(|e| self.invalid(format!("tensor {}: {}", t.name, e.message)))?,
                )),
                _ => None,
            },
        };
        let Some(raw) = raw else {
            let start = (self.data_start as u64).saturating_add(t.offset);
            return Err(GgufError::Truncated {
                file: self.source.clone(),
                what: format!("tensor {}", t.name),
                start,
                end: start.saturating_add(n_bytes as u64),
                len: self.file_len as u64,
            });
        };
        Ok((shape, raw))
    }

    /// The value of `key` converted by `get`, None when absent, an error when of another type.
    pub fn meta_as<'s, T>(
        &'s self,
        key: &str,
        want: &str,
        get: impl Fn(&'s GgufValue) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        let wrong = || self.invalid(format!("metadata {key} is not {want}"));
        self.metadata
            .get(key)
            .map(|v| get(v).ok_or_else(wrong))
            .transpose()
    }
    pub fn meta_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.meta_as(key, "a non-negative integer", GgufValue::as_u64)
    }
    pub fn meta_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.meta_as(key, "a string", GgufValue::as_str)
    }
    fn meta_strs(&self, key: &str) -> Result<Option<Vec<&str>>, GgufError> {
        self.meta_as(key, "an array of strings", |v| {
            v.as_array()?.iter().map(GgufValue::as_str).collect()
        })
    }
    pub fn required_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.meta_u64(key)?
            .ok_or_else(|| self.invalid(format!("missing metadata {key}")))
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Dequantises whole blocks exactly as ggml (ggml-quants.c `dequantize_row_*`) does, in the
/// same float operation order, so results are bit-identical to `gguf.quants.dequantize`.
/// `raw` holds a whole number of blocks of `dtype` (checked by the caller).
/// Q5_0/Q5_1: value `j`'s fifth bit from `qh`, as 16 or 0.
fn fifth(qh: u32, j: usize) -> i32 {
    ((qh >> j) as i32 & 1) << 4
}

/// Q4_K/Q5_K: the `j`-th of the 8 six-bit (scale, min) pairs packed in 12 bytes, times d and dmin.
pub(crate) fn k_scale_min(scales: &[u8], d: f32, dmin: f32, j: usize) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    };
    (d * f32::from(sc), dmin * f32::from(m))
}

pub(crate) fn dequantize(dtype: GgmlType, raw: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(
        dtype
            .block()
            .map_or(0, |(n, b)| (raw.len() / b).saturating_mul(n)),
    );
    match dtype {
        GgmlType::F32 => out.extend(
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        GgmlType::F16 => out.extend(raw.chunks_exact(2).map(|b| f16_at(b, 0))),
        GgmlType::BF16 => out.extend(
            raw.chunks_exact(2)
                .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)),
        ),
        // d: f16, then 32 signed bytes.
        GgmlType::Q8_0 => {
            for b in raw.chunks_exact(34) {
                let d = f16_at(b, 0);
                out.extend(b[2..].iter().map(|&q| f32::from(q as i8) * d));
            }
        }
        // d: f16, then 16 bytes: low nibbles are values 0..16, high nibbles values 16..32.
        GgmlType::Q4_0 => {
            for b in raw.chunks_exact(18) {
                let (d, qs) = (f16_at(b, 0), &b[2..]);
                out.extend(qs.iter().map(|&q| (i32::from(q & 0xF) - 8) as f32 * d));
                out.extend(qs.iter().map(|&q| (i32::from(q >> 4) - 8) as f32 * d));
            }
        }
        // d, m: f16, then nibbles as Q4_0; value = q * d + m.
        GgmlType::Q4_1 => {
            for b in raw.chunks_exact(20) {
                let (d, m, qs) = (f16_at(b, 0), f16_at(b, 2), &b[4..]);
                out.extend(qs.iter().map(|&q| f32::from(q & 0xF) * d + m));
                out.extend(qs.iter().map(|&q| f32::from(q >> 4) * d + m));
            }
        }
        // d: f16, qh: 32 fifth bits (u32), then nibbles as Q4_0; value = (q - 16) * d.
        GgmlType::Q5_0 => {
            for b in raw.chunks_exact(22) {
                let (d, qh, qs) = (f16_at(b, 0), u32::from_le_bytes([b[2], b[3], b[4], b[5]]), &b[6..]);
                out.extend(qs.iter().enumerate().map(|(j, &q)| (i32::from(q & 0xF) | fifth(qh, j)) as f32 - 16.0).map(|x| x * d));
                out.extend(qs.iter().enumerate().map(|(j, &q)| (i32::from(q >> 4) | fifth(qh, j + 16)) as f32 - 16.0).map(|x| x * d));
            }
        }
        // d, m: f16, then qh and nibbles as Q5_0; value = q * d + m.
        GgmlType::Q5_1 => {
            for b in raw.chunks_exact(24) {
                let (d, m, qh, qs) = (f16_at(b, 0), f16_at(b, 2), u32::from_le_bytes([b[4], b[5], b[6], b[7]]), &b[8..]);
                out.extend(qs.iter().enumerate().map(|(j, &q)| (i32::from(q & 0xF) | fifth(qh, j)) as f32 * d + m));
                out.extend(qs.iter().enumerate().map(|(j, &q)| (i32::from(q >> 4) | fifth(qh, j + 16)) as f32 * d + m));
            }
        }
        // As Q4_K, plus 32 bytes of fifth bits (qh) before the nibbles: bit 2j of qh[l] tops
        // value l of the low-nibble run of 64-value group j, bit 2j+1 the high-nibble run.
        GgmlType::Q5_K => {
            for b in raw.chunks_exact(176) {
                let (d, dmin, scales, qh, qs) = (f16_at(b, 0), f16_at(b, 2), &b[4..16], &b[16..48], &b[48..]);
                for (j, q) in qs.chunks_exact(32).enumerate() {
                    let (d1, m1) = k_scale_min(scales, d, dmin, 2 * j);
                    let (d2, m2) = k_scale_min(scales, d, dmin, 2 * j + 1);
                    let hi = |l: usize, bit: usize| if qh[l] >> bit & 1 == 1 { 16.0 } else { 0.0 };
                    out.extend(q.iter().enumerate().map(|(l, &q)| d1 * (f32::from(q & 0xF) + hi(l, 2 * j)) - m1));
                    out.extend(q.iter().enumerate().map(|(l, &q)| d2 * (f32::from(q >> 4) + hi(l, 2 * j + 1)) - m2));
                }
            }
        }
        // d, dmin: f16; 12 bytes packing 8 six-bit (scale, min) pairs; 128 bytes of nibbles.
        // Each 64 values share 32 bytes: low nibbles use pair 2j, high nibbles pair 2j+1.
        GgmlType::Q4_K => {
            for b in raw.chunks_exact(144) {
                let (d, dmin, scales, qs) = (f16_at(b, 0), f16_at(b, 2), &b[4..16], &b[16..]);
                for (j, q) in qs.chunks_exact(32).enumerate() {
                    let (d1, m1) = k_scale_min(scales, d, dmin, 2 * j);
                    let (d2, m2) = k_scale_min(scales, d, dmin, 2 * j + 1);
                    out.extend(q.iter().map(|&q| d1 * f32::from(q & 0xF) - m1));
                    out.extend(q.iter().map(|&q| d2 * f32::from(q >> 4) - m2));
                }
            }
        }
        // 128 bytes of low nibbles (ql), 64 bytes of 2-bit highs (qh), 16 i8 scales, d: f16.
        // Values are 6-bit, offset by 32; each 16 values share a scale.
        GgmlType::Q6_K => {
            for b in raw.chunks_exact(210) {
                let (ql, qh, sc, d) = (&b[..128], &b[128..192], &b[192..208], f16_at(b, 208));
                for half in 0..2 {
                    let (ql, qh, sc) = (&ql[64 * half..], &qh[32 * half..], &sc[8 * half..]);
                    let mut y = [0f32; 128];
                    for l in 0..32 {
                        let is = l / 16;
                        let q =
                            |lo: u8, shift: u32| i32::from(lo | (((qh[l] >> shift) & 3) << 4)) - 32;
                        let scale = |k: usize| d * f32::from(sc[is + k] as i8);
                        y[l] = scale(0) * q(ql[l] & 0xF, 0) as f32;
                        y[l + 32] = scale(2) * q(ql[l + 32] & 0xF, 2) as f32;
                        y[l + 64] = scale(4) * q(ql[l] >> 4, 4) as f32;
                        y[l + 96] = scale(6) * q(ql[l + 32] >> 4, 6) as f32;
                    }
                    out.extend_from_slice(&y);
                }
            }
        }
        GgmlType::Other(_) => {}
    }
    out
}

/// Everything the model loader needs from a supported GGUF, in Hugging Face conventions.
pub struct HfFromGguf {
    /// A transformers `LlamaConfig`, `Qwen2Config` or `Qwen3Config` as config.json would hold it.
    pub config: Value,
    /// (HF name, HF shape, values), e.g. `model.layers.0.self_attn.q_proj.weight`. No `lm_head.weight`
    /// when the embeddings are tied (`config.tie_word_embeddings`).
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// Quantized 2-D weights kept in their blocks (HF name, HF shape `[out, in]`), when asked.
    pub blocks: Vec<(String, Vec<usize>, HostBlocks)>,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

/// How one model family reads llama.cpp's GGUF files. Each family that does implements it in
/// its own file (`models/<family>.rs`); the models' registry finds it by `general.architecture`
/// ([`crate::models::gguf_family`]). This module keeps what every family shares: parsing,
/// dequantisation, llama.cpp's standard tensor names and the tokenizer.
pub trait GgufFamily: Sync {
    /// The `general.architecture` values it reads (also their metadata key prefix), each with
    /// the transformers class it becomes.
    fn architectures(&self) -> &'static [(&'static str, &'static str)];

    /// The HF `model_type` of architecture `arch` (the same string unless the family says
    /// otherwise: Gemma 3's text model is `gemma3_text`); empty for one it does not read.
    fn model_type(&self, arch: &str) -> &'static str {
        self.architectures().iter().find(|(a, _)| *a == arch).map_or("", |(a, _)| a)
    }

    /// transformers' config.json from the metadata (`integrations/ggml.py`'s
    /// `GGUF_CONFIG_MAPPING` and the config class's defaults). `n_tokens`: the tokenizer's
    /// vocabulary when it has one; `has_output`: whether the file has an untied `output.weight`.
    fn config(&self, g: &Gguf, arch: &str, class: &str, n_tokens: Option<usize>, has_output: bool) -> Result<Value, GgufError>;

    /// The HF name of tensor `name`, or None when it has no place in the HF model. Layer
    /// indices must be below `n_layers`.
    fn tensor_name(&self, arch: &str, name: &str, n_layers: u64) -> Option<String>;

    /// The `blk.N.<part>.weight` projections a llama.cpp LoRA adapter may target (named as in
    /// the base file; the GGUF LoRA export maps each adapted HF module back to one of them).
    fn projection_parts(&self) -> &'static [&'static str] {
        &["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
    }

    /// For a projection llama.cpp's converter permuted for ggml's interleaved RoPE (its llama
    /// converter permutes q/k): how many heads to undo it over, from the HF config.
    fn permuted_heads(&self, _arch: &str, _hf_name: &str, _config: &Value) -> Option<usize> {
        None
    }

    /// Turns a dequantised tensor's values back into HF's (llama.cpp stores Gemma's norm
    /// weights as `1 + w`).
    fn fix_values(&self, _arch: &str, _gguf_name: &str, _values: &mut [f32]) {}

    /// Tensors that the config already took in and that have no HF weight (Llama 3's
    /// `rope_freqs.weight`).
    fn skipped(&self, _arch: &str, _gguf_name: &str) -> bool {
        false
    }
}

/// llama.cpp's standard names for a decoder's tensors (gguf-py's tensor name map), as HF
/// names; `layer_part` maps what varies by family (`(part, kind)` of `blk.N.part.kind`),
/// tried before the shared names. Layer indices must be below `n_layers`.
pub fn decoder_tensor_name(name: &str, n_layers: u64, layer_part: impl Fn(&str, &str) -> Option<&'static str>) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let (layer, rest) = name.strip_prefix("blk.")?.split_once('.')?;
    let (part, kind) = rest.rsplit_once('.')?;
    let layer: u64 = layer.parse().ok().filter(|&l| l < n_layers)?;
    let hf = match layer_part(part, kind) {
        Some(hf) => hf,
        None => match (part, kind) {
            ("attn_q", "weight") => "self_attn.q_proj",
            ("attn_k", "weight") => "self_attn.k_proj",
            ("attn_v", "weight") => "self_attn.v_proj",
            ("attn_output", "weight") => "self_attn.o_proj",
            ("ffn_gate", "weight") => "mlp.gate_proj",
            ("ffn_up", "weight") => "mlp.up_proj",
            ("ffn_down", "weight") => "mlp.down_proj",
            ("attn_norm", "weight") => "input_layernorm",
            ("ffn_norm", "weight") => "post_attention_layernorm",
            _ => return None,
        },
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// The vocabulary size: `{arch}.vocab_size`, else the tokenizer's.
pub fn vocab_size(g: &Gguf, arch: &str, n_tokens: Option<usize>) -> Result<u64, GgufError> {
    match g.meta_u64(&format!("{arch}.vocab_size"))? {
        Some(v) => Ok(v),
        None => Ok(n_tokens.ok_or_else(|| g.invalid(format!("missing {arch}.vocab_size and tokenizer.ggml.tokens")))? as u64),
    }
}

/// Copies the token ids the metadata has (`tokenizer.ggml.padding_token_id` as `pad_token_id`,
/// ...) into an HF config; ids it lacks stay out, as transformers leaves them.
pub fn insert_token_ids(g: &Gguf, config: &mut Value, keys: &[(&str, &str)]) -> Result<(), GgufError> {
    for (gguf_key, hf_key) in keys {
        if let (Some(id), Value::Object(c)) = (g.meta_u64(gguf_key)?, &mut *config) {
            c.insert((*hf_key).into(), id.into());
        }
    }
    Ok(())
}

/// The file's `general.architecture` (empty when missing).
pub fn architecture<'s>(g: &'s Gguf) -> Result<&'s str, GgufError> {
    Ok(g.meta_str("general.architecture")?.unwrap_or(""))
}

/// Undoes llama.cpp's q/k permutation. Its converter reorders each head's rows from HF's
/// rotate-half layout [x0..x(h/2) | x(h/2)..xh] to interleaved pairs for ggml's RoPE: file row
/// `head*h + 2*i + t` is HF row `head*h + t*h/2 + i` (transformers' `reverse_permute_weights`).
fn unpermute_rows(w: &[f32], rows: usize, n_head: usize) -> Option<Vec<f32>> {
    if rows == 0 || !w.len().is_multiple_of(rows) {
        return None;
    }
    let cols = w.len() / rows;
    let order = unpermuted_order(rows, n_head)?;
    Some(order.iter().flat_map(|&src| w[src * cols..(src + 1) * cols].iter().copied()).collect())
}

/// For each HF row, the file row it comes from (see [`unpermute_rows`]).
pub fn unpermuted_order(rows: usize, n_head: usize) -> Option<Vec<usize>> {
    let group = n_head.checked_mul(2).filter(|&g| g > 0)?;
    if rows == 0 || !rows.is_multiple_of(group) {
        return None;
    }
    let half = rows / group;
    let mut order = vec![0; rows];
    for head in 0..n_head {
        for i in 0..half {
            for t in 0..2 {
                order[head * 2 * half + t * half + i] = head * 2 * half + 2 * i + t;
            }
        }
    }
    Some(order)
}

/// Maps a GGUF of one of `family`'s architectures onto what transformers'
/// `from_pretrained(dir, gguf_file=...)` builds: config, f32 tensors under HF names and
/// layouts, and the tokenizer; quantized matrices (linear weights, the embedding table) stay
/// in their blocks when `keep_blocks` is set instead of being dequantised.
pub fn to_hf_with(g: &Gguf, family: &dyn GgufFamily, keep_blocks: bool) -> Result<HfFromGguf, GgufError> {
    let arch = architecture(g)?;
    let Some(&(arch, class)) = family.architectures().iter().find(|(a, _)| *a == arch) else {
        return Err(g.invalid(format!("general.architecture '{arch}' is not one of this family's")));
    };
    let tokens = g.meta_strs("tokenizer.ggml.tokens")?;
    let has_output = g.tensors.iter().any(|t| t.name == "output.weight");
    let config = family.config(g, arch, class, tokens.as_ref().map(Vec::len), has_output)?;
    let n_layers = config["num_hidden_layers"].as_u64().unwrap_or(0);
    let mut tensors = Vec::with_capacity(g.tensors.len());
    let mut kept = Vec::new();
    for t in &g.tensors {
        if family.skipped(arch, &t.name) {
            continue;
        }
        let hf = family.tensor_name(arch, &t.name, n_layers).ok_or_else(|| {
            g.invalid(format!(
                "tensor {} has no place in a Hugging Face {class}",
                t.name
            ))
        })?;
        // 0 heads (from a count that does not fit) makes the un-permute below fail with an error.
        let heads = family.permuted_heads(arch, &hf, &config);
        let bad_heads = |shape: &[usize], heads: usize| {
            g.invalid(format!(
                "tensor {} of shape {shape:?} does not split into {heads} heads",
                t.name
            ))
        };
        if keep_blocks && t.dims.len() == 2 && blocks::kept(t.dtype, t.dims[0] as usize) {
            let (shape, mut b) = g.blocks(t)?;
            if let Some(heads) = heads {
                let order = unpermuted_order(shape[0], heads).ok_or_else(|| bad_heads(&shape, heads))?;
                b = b.permute_rows(shape[1], &order);
            }
            kept.push((hf, shape, b));
            continue;
        }
        let (shape, mut values) = g.dequantize(t)?;
        if let Some(heads) = heads {
            values = unpermute_rows(&values, shape.first().copied().unwrap_or(0), heads)
                .ok_or_else(|| bad_heads(&shape, heads))?;
        }
        family.fix_values(arch, &t.name, &mut values);
        tensors.push((hf, shape, values));
    }

    let (tokenizer, bos_token, eos_token) = gguf_tokenizer(g, arch, tokens.as_deref())?;
    let chat_template = g.meta_str("tokenizer.chat_template")?.map(String::from);
    Ok(HfFromGguf {
        config,
        tensors,
        blocks: kept,
        tokenizer,
        chat_template,
        bos_token,
        eos_token,
    })
}

/// GPT-2's byte-to-character table: each byte is spelled as one printable character.
fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = matches!(b, 33..=126 | 161..=172 | 174..=255);
        let code = if printable { b as u32 } else { 256 + extra };
        extra += u32::from(!printable);
        *slot = char::from_u32(code).unwrap_or_default();
    }
    table
}

/// `tokenizer.ggml.pre` values for which transformers replaces GPT-2's split regex
/// (`GGUF_PRE_TOKENIZER_SPLITS` in integrations/gguf/gguf_tokenizer_mapping.py).
fn split_regex(pre: &str) -> Option<&'static str> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN35: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3,
        "tekken" => TEKKEN,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2,
        "qwen35" => QWEN35,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O,
        _ => return None,
    })
}

/// The tokenizer transformers builds from a GGUF's metadata: byte-level BPE for
/// `tokenizer.ggml.model == "gpt2"` (`byte_level_tokenizer`, `set_split_regex`), SentencePiece
/// for `"llama"` ([`gguf_spm`]); then `add_gguf_special_tokens` and
/// `TokenizersBackend.update_post_processor`. Returns it with the bos and eos token strings.
fn gguf_tokenizer(
    g: &Gguf,
    arch: &str,
    tokens: Option<&[&str]>,
) -> Result<(Tokenizer, Option<String>, Option<String>), GgufError> {
    let bad = |msg: String| g.invalid(format!("tokenizer: {msg}"));
    let spm = match g.meta_str("tokenizer.ggml.model")? {
        Some("gpt2") => None,
        Some("llama") => Some(gguf_spm::SpmFlavor::for_architecture(arch)),
        Some(other) => {
            return Err(bad(format!(
                "unsupported GGUF tokenizer model '{other}' (supported: gpt2, llama)"
            )))
        }
        None => return Err(bad("missing tokenizer.ggml.model".into())),
    };
    let tokens = tokens.ok_or_else(|| bad("missing tokenizer.ggml.tokens".into()))?;
    let types = g
        .meta_as("tokenizer.ggml.token_type", "an array of integers", |v| {
            v.as_array()?
                .iter()
                .map(GgufValue::as_i64)
                .collect::<Option<Vec<_>>>()
        })?
        .unwrap_or_default();
    let (mut tokenizer, in_alphabet): (Tokenizer, Box<dyn Fn(&str) -> bool>) = match spm {
        Some(flavor) => {
            let scores = g.meta_as("tokenizer.ggml.scores", "an array of numbers", |v| {
                v.as_array()?.iter().map(GgufValue::as_f64).collect::<Option<Vec<_>>>()
            })?;
            let t = gguf_spm::build(flavor, tokens, scores.as_deref()).map_err(bad)?;
            (t, Box::new(|_: &str| true))
        }
        None => byte_level_tokenizer(g, tokens)?,
    };

    // Special tokens: those the file marks CONTROL (3) that are spelled in the byte alphabet
    // (others are llama.cpp mislabels), plus the named bos/eos/unk/pad tokens. GPT2Tokenizer's
    // default "<|endoftext|>" is special too; transformers would also add it when absent from the
    // vocabulary, with an id past the embeddings, which we do not copy.
    let named = |key: &str| -> Result<Option<String>, GgufError> {
        match g.meta_u64(key)? {
            None => Ok(None),
            Some(id) => usize::try_from(id)
                .ok()
                .and_then(|i| tokens.get(i))
                .map(|t| Some(t.to_string()))
                .ok_or_else(|| {
                    bad(format!(
                        "{key} {id} is not below the vocabulary size {}",
                        tokens.len()
                    ))
                }),
        }
    };
    let bos = named("tokenizer.ggml.bos_token_id")?;
    let eos = named("tokenizer.ggml.eos_token_id")?;
    let mut special: Vec<String> = tokens
        .iter()
        .zip(&types)
        .filter(|&(t, &ty)| ty == 3 && in_alphabet(t))
        .map(|(t, _)| t.to_string())
        .collect();
    special.extend(
        [
            bos.clone(),
            eos.clone(),
            named("tokenizer.ggml.unknown_token_id")?,
            named("tokenizer.ggml.padding_token_id")?,
        ]
        .into_iter()
        .flatten(),
    );
    // The defaults of the transformers class: GPT2Tokenizer's "<|endoftext|>", GemmaTokenizer's
    // "<pad>", "<mask>"..., when they are in the vocabulary.
    let defaults: &[&str] = match spm {
        Some(flavor) => flavor.default_specials(),
        None => &["<|endoftext|>"],
    };
    special.extend(defaults.iter().filter(|t| tokenizer.token_to_id(t).is_some()).map(|t| t.to_string()));
    let mut seen = HashSet::new();
    special.retain(|t| seen.insert(t.clone()));
    let special: Vec<AddedToken> = special
        .into_iter()
        .map(|t| AddedToken::from(t, true).normalized(false))
        .collect();
    tokenizer.add_special_tokens(&special);
    // USER_DEFINED (4) tokens, like `<think>`, are matched whole but are not special.
    let user: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|&(t, &ty)| ty == 4 && tokenizer.token_to_id(t).is_some())
        .map(|(t, _)| AddedToken::from(t.to_string(), false).normalized(false))
        .collect();
    tokenizer.add_tokens(&user);

    // transformers adds BOS/EOS only when the file asks, using the id the token string has in
    // the finished tokenizer. add_bos_token defaults to false for gpt2 vocabularies and to true
    // for SentencePiece ones (as llama.cpp does).
    let add = |flag: &str, tok: &Option<String>| -> Result<Option<(String, u32)>, GgufError> {
        let default = spm.is_some() && flag.ends_with("add_bos_token");
        let on = g
            .meta_as(flag, "a bool", GgufValue::as_bool)?
            .unwrap_or(default);
        Ok(tok
            .as_ref()
            .filter(|_| on)
            .and_then(|t| Some((t.clone(), tokenizer.token_to_id(t)?))))
    };
    let (add_bos, add_eos) = (
        add("tokenizer.ggml.add_bos_token", &bos)?,
        add("tokenizer.ggml.add_eos_token", &eos)?,
    );
    let post = post_processor(add_bos, add_eos).map_err(|e| bad(format!("post-processor: {e}")))?;
    tokenizer.with_post_processor(Some(post));
    Ok((tokenizer, bos, eos))
}

/// The byte-level BPE of a `gpt2` GGUF vocabulary, and whether a token is spelled in its alphabet.
fn byte_level_tokenizer(g: &Gguf, tokens: &[&str]) -> Result<(Tokenizer, Box<dyn Fn(&str) -> bool>), GgufError> {
    let bad = |msg: String| g.invalid(format!("tokenizer: {msg}"));
    // Tokens are stored as text; byte-level BPE spells each byte as one character of GPT-2's
    // table. Tokens already in that alphabet are kept, others are re-spelled from their UTF-8.
    let table = byte_chars();
    let alphabet: HashSet<char> = table.iter().copied().collect();
    let in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    let mut vocab = Vocab::default();
    for (id, tok) in tokens.iter().enumerate() {
        let spelled = if in_alphabet(tok) {
            tok.to_string()
        } else {
            tok.bytes().map(|b| table[usize::from(b)]).collect()
        };
        vocab.insert(spelled, id as u32); // a later duplicate wins, as in a Python dict
    }
    let merges: Merges = g
        .meta_strs("tokenizer.ggml.merges")?
        .ok_or_else(|| bad("missing tokenizer.ggml.merges".into()))?
        .iter()
        .map(|m| match m.split(' ').collect::<Vec<_>>()[..] {
            [a, b] => Ok((a.to_string(), b.to_string())),
            _ => Err(bad(format!(
                "merge '{m}' is not two tokens separated by one space"
            ))),
        })
        .collect::<Result<_, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .fuse_unk(false)
        .build()
        .map_err(|e| bad(format!("bad vocabulary or merges: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    match g.meta_str("tokenizer.ggml.pre")?.and_then(split_regex) {
        None => {
            tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        }
        Some(regex) => {
            let split = Split::new(
                SplitPattern::Regex(regex.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| bad(format!("split regex: {e}")))?;
            tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
                split.into(),
                ByteLevel::new(false, true, false).into(),
            ])));
        }
    }
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok((tokenizer, Box::new(move |t: &str| in_alphabet_set(&alphabet, t))))
}

fn in_alphabet_set(alphabet: &HashSet<char>, t: &str) -> bool {
    t.chars().all(|c| alphabet.contains(&c))
}

/// transformers' `update_post_processor` template: `[bos] $A [eos]` (and `[bos] $B [eos]` for
/// pairs, type id 1). Built from JSON because template strings cannot hold tokens with ':'.
fn post_processor(
    bos: Option<(String, u32)>,
    eos: Option<(String, u32)>,
) -> Result<TemplateProcessing, serde_json::Error> {
    let template = |seq: &str, type_id: u32| -> Vec<Value> {
        let special =
            |(t, _): &(String, u32)| json!({"SpecialToken": {"id": t, "type_id": type_id}});
        let seq = json!({"Sequence": {"id": seq, "type_id": type_id}});
        bos.iter()
            .map(special)
            .chain([seq])
            .chain(eos.iter().map(special))
            .collect()
    };
    let special_tokens: serde_json::Map<String, Value> = bos
        .iter()
        .chain(&eos)
        .map(|(t, id)| (t.clone(), json!({"id": t, "ids": [id], "tokens": [t]})))
        .collect();
    let pair = [template("A", 0), template("B", 1)].concat();
    serde_json::from_value(json!({
        "type": "TemplateProcessing",
        "single": template("A", 0),
        "pair": pair,
        "special_tokens": special_tokens,
    }))
}

/// Writes GGUF v3 files: metadata, then tensors (aligned to 32 bytes), for the GGUF LoRA
/// export and for tests. Value types are ggml's ids (4 u32, 5 i32, 6 f32, 8 string, 9 array).
#[derive(Default)]
pub struct Writer {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    data: Vec<u8>,
    n_tensors: u64,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl Writer {
    /// One metadata entry: `payload` is the value's bytes for type `ty`.
    pub fn kv(&mut self, key: &str, ty: u32, payload: &[u8]) {
        put_str(&mut self.kv, key);
        self.kv.extend(ty.to_le_bytes());
        self.kv.extend(payload);
        self.n_kv += 1;
    }
    pub fn u32(&mut self, key: &str, v: u32) {
        self.kv(key, 4, &v.to_le_bytes());
    }
    pub fn f32(&mut self, key: &str, v: f32) {
        self.kv(key, 6, &v.to_le_bytes());
    }
    pub fn str(&mut self, key: &str, v: &str) {
        let mut p = Vec::new();
        put_str(&mut p, v);
        self.kv(key, 8, &p);
    }
    pub fn strs(&mut self, key: &str, v: &[&str]) {
        let mut p = 8u32.to_le_bytes().to_vec();
        p.extend((v.len() as u64).to_le_bytes());
        v.iter().for_each(|s| put_str(&mut p, s));
        self.kv(key, 9, &p);
    }
    pub fn i32s(&mut self, key: &str, v: &[i32]) {
        let mut p = 5u32.to_le_bytes().to_vec();
        p.extend((v.len() as u64).to_le_bytes());
        v.iter().for_each(|x| p.extend(x.to_le_bytes()));
        self.kv(key, 9, &p);
    }
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, raw: &[u8]) {
        put_str(&mut self.infos, name);
        self.infos.extend((dims.len() as u32).to_le_bytes());
        dims.iter().for_each(|d| self.infos.extend(d.to_le_bytes()));
        self.infos.extend(ty.id().to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend(raw);
        self.data.resize(self.data.len().next_multiple_of(32), 0);
        self.n_tensors += 1;
    }
    /// The file, and the length of everything before the tensor data.
    pub fn finish(&self) -> (Vec<u8>, usize) {
        let mut out = MAGIC.to_le_bytes().to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kv);
        out.extend(&self.infos);
        let header = out.len();
        out.resize(header.next_multiple_of(32), 0);
        out.extend(&self.data);
        (out, header)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// [`to_hf_with`] through the family the models' registry has for the file's
    /// architecture (the loader's path), dequantising everything; errors as text.
    fn to_hf(g: &Gguf) -> Result<HfFromGguf, String> {
        let arch = architecture(g).map_err(|e| e.to_string())?;
        let family = crate::models::gguf_family(arch).ok_or_else(|| crate::models::no_gguf_family(arch, g.source()).to_string())?;
        to_hf_with(g, family, false).map_err(|e| e.to_string())
    }

    /// The family's HF name of a GGUF tensor.
    fn hf_name(arch: &str, name: &str, n_layers: u64) -> Option<String> {
        crate::models::gguf_family(arch)?.tensor_name(arch, name, n_layers)
    }

    impl Writer {
        /// A two-layer llama's metadata with a six-token byte-level vocabulary (no tensors).
        pub(crate) fn tiny_llama(hidden: u64, ffn: u64, heads: u32, kv_heads: u32) -> Self {
            let mut w = Writer::default();
            w.str("general.architecture", "llama");
            w.u32("llama.block_count", 2);
            w.u32("llama.context_length", 64);
            w.u32("llama.embedding_length", hidden as u32);
            w.u32("llama.feed_forward_length", ffn as u32);
            w.u32("llama.attention.head_count", heads);
            w.u32("llama.attention.head_count_kv", kv_heads);
            w.f32("llama.rope.freq_base", 10000.0);
            w.f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
            w.str("tokenizer.ggml.model", "gpt2");
            w.str("tokenizer.ggml.pre", "llama-bpe");
            w.strs("tokenizer.ggml.tokens", &["<|endoftext|>", "a", "b", "ab", "Ġ", "Ġab"]);
            w.i32s("tokenizer.ggml.token_type", &[3, 1, 1, 1, 1, 1]);
            w.strs("tokenizer.ggml.merges", &["a b", "Ġ ab"]);
            w
        }
    }

    pub(crate) struct XorShift(pub(crate) u64);
    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// A tiny two-layer llama with every supported type somewhere and a byte-level tokenizer.
    fn tiny_llama() -> (Vec<u8>, usize) {
        tiny_llama_with(|_| {})
    }

    /// `extra` may add tensors or metadata.
    fn tiny_llama_with(extra: impl FnOnce(&mut Writer)) -> (Vec<u8>, usize) {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let (hidden, ffn, vocab) = (32u64, 256u64, 6u64);
        let mut w = Writer::tiny_llama(hidden, ffn, 2, 1);
        w.u32("tokenizer.ggml.bos_token_id", 0);
        w.u32("tokenizer.ggml.eos_token_id", 0);
        w.str("tokenizer.chat_template", "{{ messages }}");
        let f32s = |rng: &mut XorShift, n: u64| -> Vec<u8> {
            (0..n)
                .flat_map(|_| ((rng.next() % 2000) as f32 / 1000.0 - 1.0).to_le_bytes())
                .collect()
        };
        let emb = rng.bytes((vocab * hidden / 32 * 34) as usize);
        w.tensor("token_embd.weight", &[hidden, vocab], GgmlType::Q8_0, &emb);
        for l in 0..2 {
            let t = |n: &str| format!("blk.{l}.{n}.weight");
            w.tensor(
                &t("attn_norm"),
                &[hidden],
                GgmlType::F32,
                &f32s(&mut rng, hidden),
            );
            w.tensor(
                &t("attn_q"),
                &[hidden, hidden],
                GgmlType::Q4_0,
                &rng.bytes((hidden * hidden / 32 * 18) as usize),
            );
            w.tensor(
                &t("attn_k"),
                &[hidden, 16],
                GgmlType::Q4_1,
                &rng.bytes((16 * hidden / 32 * 20) as usize),
            );
            w.tensor(
                &t("attn_v"),
                &[hidden, 16],
                GgmlType::F16,
                &rng.bytes((16 * hidden * 2) as usize),
            );
            w.tensor(
                &t("attn_output"),
                &[hidden, hidden],
                GgmlType::BF16,
                &rng.bytes((hidden * hidden * 2) as usize),
            );
            w.tensor(
                &t("ffn_norm"),
                &[hidden],
                GgmlType::F32,
                &f32s(&mut rng, hidden),
            );
            w.tensor(
                &t("ffn_gate"),
                &[hidden, ffn],
                GgmlType::F16,
                &rng.bytes((ffn * hidden * 2) as usize),
            );
            w.tensor(
                &t("ffn_up"),
                &[hidden, ffn],
                GgmlType::Q8_0,
                &rng.bytes((ffn * hidden / 32 * 34) as usize),
            );
            let (down_ty, block) = if l == 0 {
                (GgmlType::Q4_K, 144)
            } else {
                (GgmlType::Q6_K, 210)
            };
            w.tensor(
                &t("ffn_down"),
                &[ffn, hidden],
                down_ty,
                &rng.bytes((hidden * ffn / 256 * block) as usize),
            );
        }
        w.tensor(
            "output_norm.weight",
            &[hidden],
            GgmlType::F32,
            &f32s(&mut rng, hidden),
        );
        extra(&mut w);
        w.finish()
    }

    /// Everything the module offers on `bytes`; an Err anywhere is fine, a panic is not.
    fn exercise(bytes: &[u8]) {
        if let Ok(g) = parse(bytes, "fuzz.gguf") {
            for t in &g.tensors {
                let _ = g.tensor_f32(&t.name);
            }
            if let Ok(hf) = to_hf(&g) {
                let _ = hf.tokenizer.encode("ab ab<|endoftext|>", true);
            }
        }
    }

    #[test]
    fn tiny_llama_loads() {
        let (bytes, _) = tiny_llama();
        let g = parse(&bytes, "tiny.gguf").unwrap();
        assert_eq!((g.version, g.tensors.len()), (3, 20));
        let hf = to_hf(&g).unwrap();
        assert_eq!(hf.config["tie_word_embeddings"], json!(true));
        assert_eq!(hf.config["head_dim"], json!(16));
        let (name, shape, _) = &hf.tensors[2];
        assert_eq!(
            (name.as_str(), shape.as_slice()),
            ("model.layers.0.self_attn.q_proj.weight", &[32usize, 32][..])
        );
        assert!(hf
            .tensors
            .iter()
            .all(|(_, s, v)| s.iter().product::<usize>() == v.len()));
        let ids = hf.tokenizer.encode("ab ab<|endoftext|>", true).unwrap();
        assert_eq!(ids.get_ids(), &[3, 5, 0]);
        assert_eq!(hf.bos_token.as_deref(), Some("<|endoftext|>"));
        assert_eq!(hf.chat_template.as_deref(), Some("{{ messages }}"));

        let mut other = bytes.clone();
        let at = other.windows(4).position(|w| w == b"gpt2").unwrap();
        other[at..at + 4].copy_from_slice(b"bert");
        let e = to_hf(&parse(&other, "tiny.gguf").unwrap())
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            e,
            "tiny.gguf: tokenizer: unsupported GGUF tokenizer model 'bert' (supported: gpt2, llama)"
        );
    }

    #[test]
    fn llama3_rope_freqs_become_rope_scaling() {
        // llama.cpp's factors for Llama 3.x parameters (theta 10000, head_dim 16 hits all 3 cases).
        let (factor, theta, dim) = (32.0f64, 10000.0f64, 16.0);
        let freqs: Vec<f32> = (0..8)
            .map(|i| {
                let wavelen = 2.0 * std::f64::consts::PI * theta.powf(2.0 * i as f64 / dim);
                let smooth = (8192.0 / wavelen - 1.0) / 3.0;
                match wavelen {
                    w if w < 2048.0 => 1.0,
                    w if w > 8192.0 => factor as f32,
                    _ => (1.0 / ((1.0 - smooth) / factor + smooth)) as f32,
                }
            })
            .collect();
        let with = |f: &[f32]| {
            let raw: Vec<u8> = f.iter().flat_map(|x| x.to_le_bytes()).collect();
            tiny_llama_with(|w| w.tensor("rope_freqs.weight", &[8], GgmlType::F32, &raw)).0
        };
        let bytes = with(&freqs);
        let hf = to_hf(&parse(&bytes, "l3.gguf").unwrap()).unwrap();
        let scaling = &hf.config["rope_scaling"];
        assert_eq!(
            (scaling["rope_type"].as_str(), scaling["factor"].as_f64()),
            (Some("llama3"), Some(32.0))
        );
        assert_eq!(
            hf.config["rope_parameters"]["original_max_position_embeddings"],
            json!(8192)
        );
        let mut odd = freqs.clone();
        odd[6] *= 1.1;
        let bytes = with(&odd);
        let e = to_hf(&parse(&bytes, "l3.gguf").unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("does not match Llama 3 RoPE scaling"), "{e}");
    }

    #[test]
    fn biases_and_qk_norms_only_where_the_architecture_has_them() {
        let raw = vec![0u8; 32 * 4];
        let bytes = tiny_llama_with(|w| w.tensor("blk.0.attn_q.bias", &[32], GgmlType::F32, &raw)).0;
        let e = to_hf(&parse(&bytes, "b.gguf").unwrap()).err().unwrap().to_string();
        assert!(e.contains("tensor blk.0.attn_q.bias has no place in a Hugging Face LlamaForCausalLM"), "{e}");
        let name = |arch, n| hf_name(arch, n, 2);
        assert_eq!(name("qwen2", "blk.1.attn_k.bias").as_deref(), Some("model.layers.1.self_attn.k_proj.bias"));
        assert_eq!(name("qwen3", "blk.1.attn_k_norm.weight").as_deref(), Some("model.layers.1.self_attn.k_norm.weight"));
        assert_eq!(name("qwen3", "blk.1.attn_k.bias"), None);
        assert_eq!(name("qwen2", "blk.0.attn_output.bias"), None);
        assert_eq!(name("llama", "blk.0.attn_q_norm.weight"), None);
        assert_eq!(name("qwen2", "blk.2.attn_q.weight"), None);

        // Another architecture is refused, naming it and the supported ones.
        let (mut other, _) = tiny_llama();
        let at = other.windows(5).position(|w| w == b"llama").unwrap();
        other[at..at + 5].copy_from_slice(b"phi3x");
        let e = to_hf(&parse(&other, "p.gguf").unwrap()).err().unwrap().to_string();
        assert_eq!(e, "p.gguf: unsupported GGUF architecture 'phi3x' (general.architecture; supported: llama, qwen2, qwen3, gemma3, phi3)");
    }

    #[test]
    fn split_regexes_compile() {
        for pre in ["llama-bpe", "tekken", "gpt-4o", "qwen2", "qwen35"] {
            let regex = split_regex(pre).unwrap();
            Split::new(
                SplitPattern::Regex(regex.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .unwrap_or_else(|e| panic!("{pre}: {e}"));
        }
    }

    #[test]
    fn unpermute_matches_reshape_swapaxes() {
        // 2 heads of 4 rows, 1 column: file rows per head are [x0 y0 x1 y1] -> HF [x0 x1 y0 y1].
        let w: Vec<f32> = (0..8).map(|x| x as f32).collect();
        assert_eq!(
            unpermute_rows(&w, 8, 2).unwrap(),
            [0., 2., 1., 3., 4., 6., 5., 7.]
        );
        assert!(unpermute_rows(&w, 8, 3).is_none());
    }

    #[test]
    fn hostile_headers_error_without_allocating() {
        let header = |rest: &[u8]| {
            let mut b = MAGIC.to_le_bytes().to_vec();
            b.extend(3u32.to_le_bytes());
            b.extend(rest);
            b
        };
        let counts = |t: u64, kv: u64| [t.to_le_bytes(), kv.to_le_bytes()].concat();
        // A key whose length is 2^60.
        let mut b = header(&counts(0, 1));
        b.extend((1u64 << 60).to_le_bytes());
        let e = parse(&b, "x.gguf").unwrap_err().to_string();
        assert!(
            e.starts_with("x.gguf: truncated: metadata key #0 needs bytes 32.."),
            "{e}"
        );
        // An array claiming 2^62 elements.
        let mut b = header(&counts(0, 1));
        put_str(&mut b, "k");
        b.extend(9u32.to_le_bytes());
        b.extend(4u32.to_le_bytes());
        b.extend((1u64 << 62).to_le_bytes());
        assert!(parse(&b, "x.gguf")
            .unwrap_err()
            .to_string()
            .contains("does not fit"));
        // 2^63 tensors; too many dims; element count overflow.
        assert!(parse(&header(&counts(1 << 63, 0)), "x.gguf").is_err());
        let mut b = header(&counts(1, 0));
        put_str(&mut b, "t");
        b.extend(5u32.to_le_bytes());
        b.extend([0u8; 64]);
        assert!(parse(&b, "x.gguf")
            .unwrap_err()
            .to_string()
            .contains("5 dimensions"));
        let mut b = header(&counts(1, 0));
        put_str(&mut b, "t");
        b.extend(2u32.to_le_bytes());
        b.extend([u64::MAX.to_le_bytes(), 2u64.to_le_bytes()].concat());
        b.extend([0u8; 12]);
        assert!(parse(&b, "x.gguf")
            .unwrap_err()
            .to_string()
            .contains("too many elements"));
        let e = parse(b"GGML\x03\0\0\0", "x.gguf").unwrap_err().to_string();
        assert_eq!(e, "x.gguf: bad magic 0x4c4d4747 (not a GGUF file)");
    }

    #[test]
    fn unsupported_type_and_truncated_data_are_named() {
        let mut w = Writer::default();
        w.tensor("a", &[256], GgmlType::Other(16), &[0; 66]);
        w.tensor("b", &[32], GgmlType::F32, &[0; 128]);
        let (bytes, _) = w.finish();
        let g = parse(&bytes, "m.gguf").unwrap();
        assert_eq!(
            g.tensor_f32("a").unwrap_err().to_string(),
            "m.gguf: tensor a has unsupported type IQ2_XXS (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)"
        );
        let cut = &bytes[..bytes.len() - 1];
        let e = parse(cut, "m.gguf")
            .unwrap()
            .tensor_f32("b")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("m.gguf: truncated: tensor b needs bytes ")
                && e.ends_with(&format!("but the file has {}", cut.len())),
            "{e}"
        );
    }

    #[test]
    fn fuzzed_and_truncated_files_never_panic() {
        let (bytes, header) = tiny_llama();
        let mut rng = XorShift(42);
        for i in 0..400 {
            let mut b = bytes.clone();
            for _ in 0..1 + rng.next() % 4 {
                // Mostly hit the header, where the structure lives.
                let span = if i % 4 == 0 { b.len() } else { header };
                let pos = (rng.next() % span as u64) as usize;
                b[pos] ^= 1 << (rng.next() % 8);
            }
            assert!(
                std::panic::catch_unwind(|| exercise(&b)).is_ok(),
                "panic on flip set {i}"
            );
        }
        for len in (0..header + 64).chain((header..bytes.len()).step_by(97)) {
            assert!(
                std::panic::catch_unwind(|| exercise(&bytes[..len])).is_ok(),
                "panic at length {len}"
            );
        }
    }

    // ---- Comparisons with Python references (tests/fixtures/gguf/make_ref.py). ----
    // Missing references fail the tests: a skipped comparison proves nothing.

    fn ref_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gguf")
    }
    fn read(path: PathBuf) -> Option<Vec<u8>> {
        match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) => panic!("{}: {e} (run scripts/fetch-models.sh for the model)", path.display()),
        }
    }
    fn ref_json(name: &str) -> Option<Value> {
        read(ref_dir().join(name)).map(|b| serde_json::from_slice(&b).unwrap())
    }
    fn ref_f32s(name: &str) -> Option<Vec<f32>> {
        read(ref_dir().join(name)).map(|b| {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        })
    }
    fn model() -> Option<Vec<u8>> {
        read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    }
    /// The slice `entry["data"] = [offset, len]` of a reference .bin.
    fn slice<'v>(bin: &'v [f32], entry: &Value) -> &'v [f32] {
        let (off, len) = (
            entry["data"][0].as_u64().unwrap() as usize,
            entry["data"][1].as_u64().unwrap() as usize,
        );
        &bin[off..off + len]
    }
    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn synthetic_file_matches_gguf_python() {
        let (Some(bytes), Some(want), Some(bin)) = (
            read(ref_dir().join("synthetic.gguf")),
            ref_json("synthetic.json"),
            ref_f32s("synthetic.bin"),
        ) else {
            return;
        };
        let g = parse(&bytes, "synthetic.gguf").unwrap();
        let m = &g.metadata;
        assert_eq!(m["general.alignment"], GgufValue::U32(64));
        assert_eq!(m["t.u64"], GgufValue::U64((1 << 63) + 5));
        assert_eq!(m["t.i8"], GgufValue::I8(-100));
        assert_eq!(m["t.str"].as_str(), Some("héllo ✓"));
        assert_eq!(m["t.f64"], GgufValue::F64(-2.25));
        let nested = GgufValue::Array(vec![
            GgufValue::Array(vec![GgufValue::I32(1), GgufValue::I32(2)]),
            GgufValue::Array(vec![GgufValue::I32(3)]),
        ]);
        assert_eq!(m["t.arr_nested"], nested);
        for (name, entry) in want["tensors"].as_object().unwrap() {
            let (shape, values) = g.tensor_f32(name).unwrap();
            assert_eq!(json!(shape), entry["shape"], "{name}");
            assert_eq!(
                max_diff(&values, slice(&bin, entry)),
                0.0,
                "{name} ({})",
                entry["type"]
            );
        }
    }

    #[test]
    fn real_model_dequantises_like_gguf_python() {
        let (Some(bytes), Some(want), Some(bin)) = (
            model(),
            ref_json("real_dequant.json"),
            ref_f32s("real_dequant.bin"),
        ) else {
            return;
        };
        let g = parse(&bytes, "model.gguf").unwrap();
        for (name, entry) in want.as_object().unwrap() {
            let (shape, values) = g.tensor_f32(name).unwrap();
            assert_eq!(json!(shape), entry["shape"], "{name}");
            let expected = slice(&bin, entry); // a prefix of the values
            assert_eq!(
                max_diff(&values[..expected.len()], expected),
                0.0,
                "{name} ({})",
                entry["type"]
            );
        }
    }

    #[test]
    fn tokenizer_variants_match_transformers() {
        let Some(want) = ref_json("tok_variants.json") else {
            return;
        };
        for (name, v) in want.as_object().unwrap() {
            let bytes = read(ref_dir().join(format!("{name}.gguf"))).unwrap();
            let hf = to_hf(&parse(&bytes, name).unwrap()).unwrap();
            for case in v["cases"].as_array().unwrap() {
                let text = case["text"].as_str().unwrap();
                let ids = hf.tokenizer.encode(text, true).unwrap().get_ids().to_vec();
                assert_eq!(json!(ids), case["ids"], "{name}: {text:?}");
            }
            assert_eq!(
                (json!(hf.bos_token), json!(hf.eos_token)),
                (v["bos_token"].clone(), v["eos_token"].clone()),
                "{name}"
            );
        }
    }

    /// A SentencePiece vocabulary under a `llama` architecture (TinyLlama style: merges ordered
    /// by score, a `▁` prefixed to the text) against transformers' ids and decoding.
    #[test]
    fn sentencepiece_llama_vocabulary_matches_transformers() {
        let want = ref_json("tok_spm_llama.json").expect("tok_spm_llama.json is committed");
        let bytes = read(ref_dir().join("tok_spm_llama.gguf")).unwrap();
        let hf = to_hf(&parse(&bytes, "tok_spm_llama.gguf").unwrap()).unwrap();
        let cases = want["cases"].as_array().unwrap();
        assert!(cases.len() > 10);
        for (i, case) in cases.iter().enumerate() {
            let text = case["text"].as_str().unwrap();
            let ids = hf.tokenizer.encode(text, true).unwrap().get_ids().to_vec();
            assert_eq!(json!(ids), case["ids"], "{text:?}");
            assert_eq!(json!(hf.tokenizer.decode(&ids, true).unwrap()), want["decoded"][i], "decode of {text:?}");
        }
        assert_eq!((json!(hf.bos_token), json!(hf.eos_token)), (want["bos_token"].clone(), want["eos_token"].clone()));
    }
}

//! GGUF's block formats unpacked into the one layout the device decodes
//! (`models::blocks`): per value a `bits`-wide code, per block of values a scale and
//! optionally an offset, with `value = (code + bias) * scale + offset` computed in the same
//! float operations as ggml's `dequantize_row_*` (so the values are bit-identical to
//! `formats::gguf`'s f32 dequantisation, which matches `gguf.quants.dequantize`).
//!
//! F16 and BF16 matrices (from safetensors or a GGUF) fit the same layout as 16-bit codes that
//! are the floats' own bits, decoded exactly; their scales are 1 and unused, and `bias` says
//! which float it is ([`F16_CODES`], [`BF16_CODES`]).

use crate::formats::gguf::GgmlType;

/// A quantized 2-D weight on the host, rows whole.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBlocks {
    /// The GGUF type (`Q4_K`...).
    pub format: String,
    /// Bits per code: 4 or 8 (5- and 6-bit codes take 8).
    pub bits: u32,
    /// Values per scale.
    pub block: usize,
    /// Added to each code before scaling.
    pub bias: i32,
    /// Codes packed low bits first, `32 / bits` to an i32 word, row-major.
    pub codes: Vec<i32>,
    /// One per block, row-major.
    pub scales: Vec<f32>,
    /// One per block, for the affine formats.
    pub offsets: Option<Vec<f32>>,
}

/// `bias` of 16-bit codes holding IEEE half-precision floats.
pub const F16_CODES: i32 = 0;
/// `bias` of 16-bit codes holding bfloat16 floats.
pub const BF16_CODES: i32 = 1;

/// Per-block decoding of one GGUF type: (bits, values per scale, bias, has offsets).
pub fn layout(dtype: GgmlType) -> Option<(u32, usize, i32, bool)> {
    Some(match dtype {
        // A block of 32 keeps one row layout for every format, at 4 bytes of unused scale per
        // 32 values (17 bits a value instead of 16).
        GgmlType::F16 => (16, 32, F16_CODES, false),
        GgmlType::BF16 => (16, 32, BF16_CODES, false),
        GgmlType::Q8_0 => (8, 32, -128, false),
        GgmlType::Q4_0 => (4, 32, -8, false),
        GgmlType::Q4_1 => (4, 32, 0, true),
        GgmlType::Q5_0 => (8, 32, -16, false),
        GgmlType::Q5_1 => (8, 32, 0, true),
        GgmlType::Q4_K => (4, 32, 0, true),
        GgmlType::Q5_K => (8, 32, 0, true),
        GgmlType::Q6_K => (8, 16, -32, false),
        _ => return None,
    })
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Unpacks whole blocks of `dtype` (checked by the caller); `None` for types kept as floats.
pub fn unpack(dtype: GgmlType, raw: &[u8]) -> Option<HostBlocks> {
    let (bits, block, bias, has_offset) = layout(dtype)?;
    let mut codes: Vec<u8> = Vec::new();
    let (mut scales, mut offsets) = (Vec::new(), Vec::new());
    let fifth = |qh: u32, j: usize| (((qh >> j) & 1) << 4) as u8;
    if bits == 16 {
        // The little-endian halves, two to a word: the first in the low 16 bits.
        let words = raw.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let scales = vec![1.0; raw.len() / 2 / block];
        return Some(HostBlocks { format: dtype.name(), bits, block, bias, codes: words, scales, offsets: None });
    }
    match dtype {
        GgmlType::Q8_0 => {
            for b in raw.chunks_exact(34) {
                scales.push(f16_at(b, 0));
                codes.extend(b[2..].iter().map(|&q| (q as i8 as i16 + 128) as u8));
            }
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let head = if dtype == GgmlType::Q4_0 { 2 } else { 4 };
            for b in raw.chunks_exact(head + 16) {
                scales.push(f16_at(b, 0));
                if has_offset {
                    offsets.push(f16_at(b, 2));
                }
                let qs = &b[head..];
                codes.extend(qs.iter().map(|&q| q & 0xF));
                codes.extend(qs.iter().map(|&q| q >> 4));
            }
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let head = if dtype == GgmlType::Q5_0 { 2 } else { 4 };
            for b in raw.chunks_exact(head + 20) {
                scales.push(f16_at(b, 0));
                if has_offset {
                    offsets.push(f16_at(b, 2));
                }
                let qh = u32::from_le_bytes([b[head], b[head + 1], b[head + 2], b[head + 3]]);
                let qs = &b[head + 4..];
                codes.extend(qs.iter().enumerate().map(|(j, &q)| (q & 0xF) | fifth(qh, j)));
                codes.extend(qs.iter().enumerate().map(|(j, &q)| (q >> 4) | fifth(qh, j + 16)));
            }
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let five = dtype == GgmlType::Q5_K;
            for b in raw.chunks_exact(if five { 176 } else { 144 }) {
                let (d, dmin, sc) = (f16_at(b, 0), f16_at(b, 2), &b[4..16]);
                let (qh, qs) = if five { (&b[16..48], &b[48..]) } else { (&b[..0], &b[16..]) };
                for (j, q) in qs.chunks_exact(32).enumerate() {
                    for (k, shift) in [(2 * j, 0), (2 * j + 1, 4)] {
                        let (s, m) = crate::formats::gguf::k_scale_min(sc, d, dmin, k);
                        scales.push(s);
                        // ggml computes d1 * q - m1; adding -m1 is the same operation.
                        offsets.push(-m);
                        codes.extend(q.iter().enumerate().map(|(l, &q)| {
                            let hi = if five && (qh[l] >> k) & 1 == 1 { 16 } else { 0 };
                            ((q >> shift) & 0xF) + hi
                        }));
                    }
                }
            }
        }
        GgmlType::Q6_K => {
            for b in raw.chunks_exact(210) {
                let (ql, qh, sc, d) = (&b[..128], &b[128..192], &b[192..208], f16_at(b, 208));
                scales.extend(sc.iter().map(|&s| d * f32::from(s as i8)));
                for half in 0..2 {
                    let (ql, qh) = (&ql[64 * half..], &qh[32 * half..]);
                    let mut y = [0u8; 128];
                    for l in 0..32 {
                        let q = |lo: u8, shift: u32| lo | (((qh[l] >> shift) & 3) << 4);
                        y[l] = q(ql[l] & 0xF, 0);
                        y[l + 32] = q(ql[l + 32] & 0xF, 2);
                        y[l + 64] = q(ql[l] >> 4, 4);
                        y[l + 96] = q(ql[l + 32] >> 4, 6);
                    }
                    codes.extend_from_slice(&y);
                }
            }
        }
        _ => return None,
    }
    Some(HostBlocks { format: dtype.name(), bits, block, bias, codes: pack(&codes, bits), scales, offsets: has_offset.then_some(offsets) })
}

/// Packs codes low bits first, `32 / bits` to an i32 word.
fn pack(codes: &[u8], bits: u32) -> Vec<i32> {
    let per = 32 / bits as usize;
    codes
        .chunks_exact(per)
        .map(|c| c.iter().enumerate().fold(0u32, |w, (k, &v)| w | (u32::from(v) << (k as u32 * bits))) as i32)
        .collect()
}

impl HostBlocks {
    /// The f32 values, decoded on the host as the device does (tests, merges).
    pub fn values(&self) -> Vec<f32> {
        if self.bits == 16 {
            return self.codes.iter().flat_map(|&w| [w as u32 & 0xFFFF, w as u32 >> 16]).map(|c| half_value(self.bias, c as u16)).collect();
        }
        let per = 32 / self.bits as usize;
        let mask = (1u32 << self.bits) - 1;
        let mut out = Vec::with_capacity(self.codes.len() * per);
        for (i, &w) in self.codes.iter().enumerate() {
            for k in 0..per {
                let j = i * per + k;
                let code = ((w as u32) >> (k as u32 * self.bits)) & mask;
                let v = (code as f32 + self.bias as f32) * self.scales[j / self.block];
                out.push(match &self.offsets {
                    Some(o) => v + o[j / self.block],
                    None => v,
                });
            }
        }
        out
    }

    /// Values per row are `cols`; keeps the rows `order[i]` in that order (llama.cpp's q/k
    /// row permutation undone on codes, scales and offsets alike).
    pub fn permute_rows(&self, cols: usize, order: &[usize]) -> Self {
        let take = |v: &[f32], per_row: usize| order.iter().flat_map(|&r| v[r * per_row..(r + 1) * per_row].iter().copied()).collect::<Vec<f32>>();
        let words = cols * self.bits as usize / 32;
        let nb = cols / self.block;
        Self {
            codes: order.iter().flat_map(|&r| self.codes[r * words..(r + 1) * words].iter().copied()).collect(),
            scales: take(&self.scales, nb),
            offsets: self.offsets.as_ref().map(|o| take(o, nb)),
            ..self.clone()
        }
    }

    /// Bytes the codes, scales and offsets take.
    pub fn bytes(&self) -> u64 {
        4 * (self.codes.len() + self.scales.len() + self.offsets.as_ref().map_or(0, Vec::len)) as u64
    }
}

/// The f32 value of 16-bit code `c` of the float `kind` ([`F16_CODES`] or [`BF16_CODES`]).
pub fn half_value(kind: i32, c: u16) -> f32 {
    if kind == BF16_CODES {
        half::bf16::from_bits(c).to_f32()
    } else {
        half::f16::from_bits(c).to_f32()
    }
}

/// Whether a stored matrix of `dtype` with rows of `cols` values stays in blocks on the device:
/// a format with a block layout whose blocks the rows hold whole (every GGUF quant type; F16 and
/// BF16 rows of a multiple of 32 values).
pub fn kept(dtype: GgmlType, cols: usize) -> bool {
    layout(dtype).is_some_and(|(_, block, _, _)| cols.is_multiple_of(block))
}

/// Whether `quantize` turns a float tensor into blocks: a matrix (`*.weight`, 2-D) whose rows
/// hold whole blocks of 32. The loader (`WeightMap::quantize`) and the memory plan both ask.
pub fn quantizable(name: &str, shape: &[usize]) -> bool {
    shape.len() == 2 && name.ends_with(".weight") && shape[1].is_multiple_of(32)
}

/// Quantizes row-major f32 values (rows of a multiple of 32 values) as ggml's reference
/// quantizers do (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`); `dtype` is Q8_0 or Q4_0.
pub fn quantize(dtype: GgmlType, values: &[f32]) -> Option<HostBlocks> {
    let (bits, block, bias, _) = layout(dtype)?;
    if !values.len().is_multiple_of(32) || !matches!(dtype, GgmlType::Q8_0 | GgmlType::Q4_0) {
        return None;
    }
    let mut codes: Vec<u8> = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len() / 32);
    for x in values.chunks_exact(32) {
        let d = if dtype == GgmlType::Q8_0 {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            codes.extend(x.iter().map(|v| ((v * id).round() as i32 + 128) as u8));
            d
        } else {
            // The value of largest magnitude, with its sign, maps to -8.
            let max = x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            codes.extend(x.iter().map(|v| ((v * id + 8.5) as i8).min(15) as u8));
            d
        };
        // ggml stores d as f16 (and quantized with the f32 d).
        scales.push(half::f16::from_f32(d).to_f32());
    }
    Some(HostBlocks { format: dtype.name(), bits, block, bias, codes: pack(&codes, bits), scales, offsets: None })
}

/// Bytes of the largest device buffer of a `[rows, cols]` block weight whose codes take `bits`
/// per value, held in parts of at most `max_part` bytes of codes (whole rows, at least one).
pub fn largest_buffer(bits: u32, rows: u64, cols: u64, max_part: u64) -> u64 {
    let row = cols * u64::from(bits) / 8;
    let per_part = (max_part / row.max(1)).clamp(1, rows.max(1));
    per_part * row
}

/// Bytes a `[rows, cols]` weight of `dtype` takes on the device once unpacked, or `None` when
/// it is kept as floats.
pub fn device_bytes(dtype: GgmlType, rows: u64, cols: u64) -> Option<u64> {
    let (bits, block, _, offset) = layout(dtype)?;
    let values = rows * cols;
    Some(values * u64::from(bits) / 8 + values / block as u64 * 4 * (1 + u64::from(offset)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    }

    /// `--quantize` takes only matrices whose rows hold whole blocks: a [2, 48] weight (96 values,
    /// three blocks that would straddle its rows) stays f32, a [2, 64] one becomes blocks.
    #[test]
    fn quantize_on_load_keeps_rows_whole() {
        use crate::formats::safetensors::{HostTensor, WeightMap};
        let mut w = WeightMap::new("m");
        for (name, cols) in [("odd.weight", 48), ("even.weight", 64)] {
            w.insert(name.into(), HostTensor::new(vec![2, cols], (0..2 * cols).map(|i| i as f32).collect(), "F32", "m"));
        }
        w.quantize(GgmlType::Q8_0);
        assert_eq!(w.block_formats(), ["Q8_0"]);
        assert!(w.remove("odd.weight").unwrap().blocks.is_none());
        assert!(w.remove("even.weight").unwrap().blocks.is_some());
    }

    /// `quantize` makes the blocks `gguf.quants.quantize` makes (tests/fixtures/gguf/
    /// make_quantize_ref.py), for Q8_0 and Q4_0.
    #[test]
    fn quantize_matches_gguf_python() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/gguf/quantize_ref.bin");
        let bytes = std::fs::read(path).expect("the committed reference");
        let n = 8 * 256;
        let x: Vec<f32> = bytes[..4 * n].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let (q8, q4) = bytes[4 * n..].split_at(n / 32 * 34);
        assert_eq!(q4.len(), n / 32 * 18);
        for (dtype, raw) in [(GgmlType::Q8_0, q8), (GgmlType::Q4_0, q4)] {
            let ours = quantize(dtype, &x).unwrap();
            let theirs = unpack(dtype, raw).unwrap();
            assert_eq!(ours.scales, theirs.scales, "{dtype:?} scales");
            let bad = ours.codes.iter().zip(&theirs.codes).position(|(a, b)| a != b);
            assert_eq!(bad, None, "{dtype:?}: code word {bad:?} differs");
        }
    }

    /// Every block format decodes to exactly ggml's values (bit for bit), and row permutation
    /// moves whole rows.
    #[test]
    fn unpacked_blocks_decode_like_ggml() {
        for dtype in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
            let (per, bytes) = dtype.block().unwrap();
            let rows = 3;
            let cols = 256;
            let mut raw = random(rows * cols / per * bytes, 0x9E37_79B9 + dtype.id() as u64);
            // Keep the f16 scales finite: clear each scale's exponent top bit.
            for b in raw.chunks_exact_mut(bytes) {
                let at: &[usize] = match dtype {
                    GgmlType::Q6_K => &[209],
                    GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0 => &[1],
                    _ => &[1, 3],
                };
                for &i in at {
                    b[i] &= 0x3B;
                }
            }
            let want = crate::formats::gguf::dequantize(dtype, &raw);
            let blocks = unpack(dtype, &raw).unwrap();
            let got = blocks.values();
            assert_eq!(got.len(), want.len(), "{dtype:?}");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{dtype:?} value {i}: {g} vs {w}");
            }
            assert_eq!(blocks.bytes(), device_bytes(dtype, rows as u64, cols as u64).unwrap(), "{dtype:?}");
            let swapped = blocks.permute_rows(cols, &[2, 0, 1]).values();
            assert_eq!(&swapped[..cols], &want[2 * cols..], "{dtype:?}");
            assert_eq!(&swapped[cols..2 * cols], &want[..cols], "{dtype:?}");
        }
    }
}

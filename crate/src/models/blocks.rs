//! Frozen weights kept in their quantized blocks on the device (QLoRA's frozen base).
//!
//! A GGUF weight is unpacked on the host into one layout every block format fits
//! ([`HostBlocks`]): per row, a `bits`-wide code per value, packed into i32 words, and per
//! block of `block` values a scale and (for the affine formats) an offset, so that
//! `value = (code + bias) * scale + offset` repeats ggml's own float operations. The device
//! keeps that (5-10 bits a value instead of 32) and dequantises on the fly, a bounded chunk of
//! rows at a time, inside two backend-extension operations:
//!
//! - `block_dequant`: the f32 values of (some rows of) the weight, for embedding lookups and
//!   merges;
//! - `block_linear`: `x · Wᵀ`, whose backward pass (to `x` only; the weight is frozen)
//!   dequantises again instead of keeping the f32 weight alive until the backward pass, which
//!   is what burn's own `q_matmul` would do under autodiff.
//!
//! Both are written once over burn's backend operations; the decoding itself is one fused kernel
//! per backend: a row-parallel Rust loop on Flex (CPU, native and wasm) and a cubecl kernel on
//! wgpu (Vulkan/Metal/DX12, WebGPU), a thread per code word. The generic `dequant` (six burn
//! operations, twelve for F16/BF16) remains the reference any other backend would run. Autodiff
//! has its own implementation, for the backward pass.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{backend_extension, Autodiff, AutodiffBackend, Backend, TensorMetadata};
use burn::module::Module;
use burn::tensor::{DType, Device, FloatDType, Int, Slice, Tensor, TensorCreationOptions, TensorData};

use crate::formats::blocks::{half_value, HostBlocks, BF16_CODES};

/// Most f32 values of a weight dequantised at once: a 151,936-token head is dequantised in
/// slices of about 16 MB rather than whole (544 MB for Qwen2.5-0.5B).
pub const DEQUANT_CHUNK: usize = 1 << 22;

/// How a weight's codes decode (the same for every row).
#[derive(Debug, Clone, PartialEq)]
pub struct BlockFormat {
    /// The GGUF type it came from (`Q4_K`...), for plans and messages.
    pub name: String,
    /// Bits per code: 4 or 8.
    pub bits: u32,
    /// Values sharing one scale (and offset).
    pub block: usize,
    /// Added to each code before scaling (`-8` for Q4_0's signed nibbles).
    pub bias: i32,
    /// Whether blocks carry an offset (Q4_1, Q5_1, the K-quants' mins).
    pub offset: bool,
}

/// The decoding operations, implemented for Flex, cubecl and autodiff.
#[backend_extension(Flex, Cube: cfg(feature = "gpu"), Autodiff)]
pub trait BlockOps: Backend {
    /// The f32 values `[rows, cols]` of block-coded rows (`codes` `[rows, cols * bits / 32]`,
    /// `scales` and `offsets` `[rows, cols / block]`; `offsets` is ignored unless `offset`).
    fn block_dequant(codes: IntTensor<Self>, scales: FloatTensor<Self>, offsets: FloatTensor<Self>, bits: u32, block: usize, bias: i32, offset: bool) -> FloatTensor<Self> {
        dequant::<Self>(codes, scales, offsets, bits, block, bias, offset)
    }

    /// `x [n, cols] · Wᵀ` for the block-coded `W [rows, cols]`, giving `[n, rows]`, dequantising
    /// at most `chunk` values of `W` at a time.
    fn block_linear(x: FloatTensor<Self>, codes: IntTensor<Self>, scales: FloatTensor<Self>, offsets: FloatTensor<Self>, bits: u32, block: usize, bias: i32, offset: bool, chunk: usize) -> FloatTensor<Self> {
        let parts: Vec<_> = chunks::<Self>(&codes, bits, chunk)
            .map(|(r, c)| {
                let w = Self::block_dequant(rows::<Self>(&codes, r.clone()), rows_f::<Self>(&scales, r.clone()), rows_f::<Self>(&offsets, if offset { r } else { 0..1 }), bits, block, bias, offset);
                debug_assert_eq!(w.shape()[1], c);
                Self::float_matmul(x.clone(), Self::float_transpose(w))
            })
            .collect();
        if parts.len() == 1 { parts.into_iter().next().expect("one part") } else { Self::float_cat(parts, 1) }
    }
}

/// On Flex the decoding is one fused pass over the codes (row-parallel with rayon) instead of
/// six tensor operations, each a pass over the whole weight.
impl BlockOps for burn::backend::Flex {
    fn block_dequant(codes: IntTensor<Self>, scales: FloatTensor<Self>, offsets: FloatTensor<Self>, bits: u32, block: usize, bias: i32, offset: bool) -> FloatTensor<Self> {
        use burn::backend::flex::FlexTensor;
        let shape = codes.shape();
        let (n, words) = (shape[0], shape[1]);
        let per = 32 / bits as usize;
        let cols = words * per;
        let nb = cols / block;
        let (codes, scales, offsets) = (codes.to_contiguous(), scales.to_contiguous(), offsets.to_contiguous());
        let (c, s) = (codes.storage::<i32>(), scales.storage::<f32>());
        let o = offset.then(|| offsets.storage::<f32>());
        let mut out = vec![0f32; n * cols];
        // One row: block by block, word by word, the codes of a word in turn (monomorphised
        // for 4- and 8-bit codes so the inner loop unrolls).
        fn decode<const BITS: u32>(codes: &[i32], scales: &[f32], offsets: Option<&[f32]>, block: usize, bias: f32, y: &mut [f32]) {
            let per = (32 / BITS) as usize;
            let mask = (1u32 << BITS) - 1;
            for (b, (ys, ws)) in y.chunks_exact_mut(block).zip(codes.chunks_exact(block / per)).enumerate() {
                let (scale, off) = (scales[b], offsets.map(|o| o[b]));
                for (yw, &w) in ys.chunks_exact_mut(per).zip(ws) {
                    let w = w as u32;
                    for (k, v) in yw.iter_mut().enumerate() {
                        // The float operations of `dequant`, in its order.
                        let x = (((w >> (k as u32 * BITS)) & mask) as f32 + bias) * scale;
                        *v = match off {
                            Some(o) => x + o,
                            None => x,
                        };
                    }
                }
            }
        }
        let kind = bias;
        let bias = bias as f32;
        let row = |r: usize, y: &mut [f32]| {
            let (c, s) = (&c[r * words..(r + 1) * words], &s[r * nb..(r + 1) * nb]);
            let o = o.map(|o| &o[r * nb..(r + 1) * nb]);
            if bits == 16 {
                // F16/BF16 bits: converted exactly, scales unused.
                for (y, &w) in y.chunks_exact_mut(2).zip(c) {
                    y[0] = half_value(kind, (w as u32 & 0xFFFF) as u16);
                    y[1] = half_value(kind, (w as u32 >> 16) as u16);
                }
            } else if bits == 4 {
                decode::<4>(c, s, o, block, bias, y)
            } else {
                decode::<8>(c, s, o, block, bias, y)
            }
        };
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            out.par_chunks_mut(cols).enumerate().for_each(|(r, y)| row(r, y));
        }
        #[cfg(not(feature = "rayon"))]
        out.chunks_mut(cols).enumerate().for_each(|(r, y)| row(r, y));
        FlexTensor::from_data(TensorData::new(out, [n, cols]))
    }
}
/// On wgpu the decoding is one cubecl kernel per chunk (a thread per code word) instead of the
/// six (twelve for F16/BF16) burn operations of [`dequant`].
#[cfg(feature = "gpu")]
impl BlockOps for burn::backend::Cube {
    fn block_dequant(codes: IntTensor<Self>, scales: FloatTensor<Self>, offsets: FloatTensor<Self>, bits: u32, block: usize, bias: i32, offset: bool) -> FloatTensor<Self> {
        cube::block_decode(codes, scales, offsets, bits, block, bias, offset)
    }
}

#[cfg(feature = "gpu")]
mod cube {
    use burn::tensor::DType;
    use burn_cubecl::kernel::into_contiguous;
    use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
    use burn_cubecl::tensor::CubeTensor;
    use cubecl::prelude::*;

    use crate::formats::blocks::BF16_CODES;

    /// One code word: its `32 / bits` values, `(code + bias) * scale (+ offset)` in that float
    /// order (ggml's), or a half-precision float's bits widened exactly.
    #[cube(launch_unchecked)]
    fn decode_kernel(codes: &[u32], scales: &[f32], offsets: &[f32], out: &mut [f32], words: u32, #[comptime] bits: u32, #[comptime] block: u32, #[comptime] bias: i32, #[comptime] offset: bool) {
        let i = ABSOLUTE_POS;
        if i >= codes.len() {
            terminate!();
        }
        let per = comptime!(32 / bits);
        let mask = comptime!(((1u64 << bits) - 1) as u32);
        let w = codes[i];
        let i32_ = u32::cast_from(i);
        let row = i32_ / words;
        let col = (i32_ % words) * per;
        let nb = words * per / block;
        let b = (row * nb + col / block) as usize;
        let s = scales[b];
        #[unroll]
        for k in 0..per {
            let c = (w >> (k * bits)) & mask;
            let at = i * (per as usize) + (k as usize);
            if comptime!(bits == 16) {
                if comptime!(bias == BF16_CODES) {
                    out[at] = f32::reinterpret(c << 16);
                } else {
                    out[at] = half_to_f32(c);
                }
            } else {
                let v = (f32::cast_from(c) + f32::cast_from(bias)) * s;
                if comptime!(offset) {
                    out[at] = v + offsets[b];
                } else {
                    out[at] = v;
                }
            }
        }
    }

    /// IEEE half-precision bits to f32, exactly: the fields moved into an f32's, subnormals
    /// scaled (they are normal f32 numbers), infinities and NaNs kept.
    #[cube]
    fn half_to_f32(c: u32) -> f32 {
        let sign = (c >> 15) << 31;
        let e = (c >> 10) & 31;
        let m = c & 1023;
        // Normal: the exponent rebiased (15 -> 127); all ones: infinity or NaN.
        let mut bits = sign | ((e + 112) << 23) | (m << 13);
        if e == 31 {
            bits = sign | (255u32 << 23) | (m << 13);
        }
        let mut out = f32::reinterpret(bits);
        if e == 0 {
            // Subnormal (or zero): m * 2^-24, a normal f32.
            out = f32::reinterpret(u32::reinterpret(f32::cast_from(m) * comptime!(1.0f32 / 16_777_216.0)) | sign);
        }
        out
    }

    pub(super) fn block_decode(codes: CubeTensor, scales: CubeTensor, offsets: CubeTensor, bits: u32, block: usize, bias: i32, offset: bool) -> CubeTensor {
        let (codes, scales, offsets) = (into_contiguous(codes), into_contiguous(scales), into_contiguous(offsets));
        let shape = codes.meta.shape().clone();
        let (n, words) = (shape[0], shape[1]);
        let per = 32 / bits as usize;
        let out = empty_device_contiguous_dtype(codes.client.clone(), codes.device.clone(), [n, words * per].into(), DType::F32);
        let units = n * words;
        let cube_dim = CubeDim::new_1d(256);
        let cube_count = CubeCount::Static(units.div_ceil(256) as u32, 1, 1);
        // SAFETY: every thread checks its word index against the codes' length, and the output
        // holds exactly `per` values for each word.
        unsafe {
            decode_kernel::launch_unchecked(
                &codes.client,
                cube_count,
                cube_dim,
                BufferArg::from_raw_parts(codes.handle.clone(), units),
                BufferArg::from_raw_parts(scales.handle.clone(), scales.meta.num_elements()),
                BufferArg::from_raw_parts(offsets.handle.clone(), offsets.meta.num_elements()),
                BufferArg::from_raw_parts(out.handle.clone(), units * per),
                words as u32,
                bits,
                block as u32,
                bias,
                offset,
            )
        };
        out
    }
}

/// The row ranges of a `[rows, words]` code tensor dequantised together, with the row width.
fn chunks<B: Backend>(codes: &IntTensor<B>, bits: u32, chunk: usize) -> impl Iterator<Item = (std::ops::Range<usize>, usize)> {
    let shape = codes.shape();
    let (n, cols) = (shape[0], shape[1] * (32 / bits as usize));
    let step = (chunk / cols.max(1)).clamp(1, n.max(1));
    (0..n).step_by(step).map(move |s| (s..(s + step).min(n), cols))
}

fn rows<B: Backend>(t: &IntTensor<B>, r: std::ops::Range<usize>) -> IntTensor<B> {
    if r.start == 0 && r.end == t.shape()[0] {
        return t.clone();
    }
    B::int_slice(t.clone(), &[Slice::from(r), Slice::from(..)])
}

fn rows_f<B: Backend>(t: &FloatTensor<B>, r: std::ops::Range<usize>) -> FloatTensor<B> {
    if r.start == 0 && r.end == t.shape()[0] {
        return t.clone();
    }
    B::float_slice(t.clone(), &[Slice::from(r), Slice::from(..)])
}

/// Unpacks and scales: `(code + bias) * scale (+ offset)`, in that float order; 16-bit codes
/// are F16/BF16 bits ([`half`]).
fn dequant<B: Backend>(codes: IntTensor<B>, scales: FloatTensor<B>, offsets: FloatTensor<B>, bits: u32, block: usize, bias: i32, offset: bool) -> FloatTensor<B> {
    if bits == 16 {
        return half::<B>(codes, bias);
    }
    let shape = codes.shape();
    let (n, words, per) = (shape[0], shape[1], 32 / bits as usize);
    let cols = words * per;
    // Code k of a word sits at bits k*bits..(k+1)*bits; the mask drops the sign an arithmetic
    // shift drags down from the top code.
    let shifts: Vec<i32> = (0..per as i32).map(|k| k * bits as i32).collect();
    let shifts = B::int_from_data(TensorData::new(shifts, [1, 1, per]).convert_dtype(codes.dtype()), &codes.device());
    let c = B::bitwise_right_shift(B::int_reshape(codes, [n, words, 1].into()), shifts);
    let c = B::bitwise_and_scalar(c, ((1i64 << bits) - 1).into());
    let v = B::int_into_float(B::int_reshape(c, [n, cols / block, block].into()), FloatDType::F32);
    let v = if bias != 0 { B::float_add_scalar(v, (bias as f32).into()) } else { v };
    let v = B::float_mul(v, B::float_reshape(scales, [n, cols / block, 1].into()));
    let v = if offset { B::float_add(v, B::float_reshape(offsets, [n, cols / block, 1].into())) } else { v };
    B::float_reshape(v, [n, cols].into())
}

/// F16/BF16 bits (two to a word, low half first) to f32 with integer and float tensor
/// operations, as burn has no bit cast: `sign * (implicit + mantissa / 2^m) * 2^(exponent -
/// bias)`, where the power of two comes from a table indexed by the exponent field. Every
/// product is exact, so the values equal the IEEE conversion, except that bfloat16 subnormals
/// (never seen in trained weights) may be flushed to zero by a GPU, and NaN reads as infinity.
fn half<B: Backend>(codes: IntTensor<B>, kind: i32) -> FloatTensor<B> {
    let shape = codes.shape();
    let (n, words) = (shape[0], shape[1]);
    let device = codes.device();
    let (mant_bits, exp_bits, exp_bias) = if kind == BF16_CODES { (7, 8, 127) } else { (10, 5, 15) };
    let shifts = B::int_from_data(TensorData::new(vec![0i32, 16], [1, 1, 2]).convert_dtype(codes.dtype()), &device);
    let c = B::bitwise_right_shift(B::int_reshape(codes, [n, words, 1].into()), shifts);
    let c = B::int_reshape(B::bitwise_and_scalar(c, 0xFFFF.into()), [n * words * 2].into());
    let sign = B::bitwise_right_shift_scalar(c.clone(), 15.into());
    let exp = B::bitwise_and_scalar(B::bitwise_right_shift_scalar(c.clone(), mant_bits.into()), ((1 << exp_bits) - 1).into());
    let mant = B::bitwise_and_scalar(c, ((1 << mant_bits) - 1).into());
    // Normal numbers carry an implicit leading 1; subnormals (exponent 0) do not.
    let implicit = B::int_clamp(exp.clone(), 0.into(), 1.into());
    let mant = B::int_add(mant, B::int_mul_scalar(implicit, (1 << mant_bits).into()));
    // 2^(e - bias), with exponent 0 read as 1 (subnormals): all normal f32 numbers, which a GPU
    // does not flush.
    let table: Vec<f32> = (0..1i32 << exp_bits).map(|e| 2f32.powi(e.max(1) - exp_bias)).collect();
    let table = B::float_from_data(TensorData::new(table, [1usize << exp_bits]), &device);
    let scale = B::float_select(table, 0, exp);
    let m = B::float_mul_scalar(B::int_into_float(mant, FloatDType::F32), (1.0f32 / (1 << mant_bits) as f32).into());
    let v = B::float_mul(m, scale);
    let sign = B::float_add_scalar(B::float_mul_scalar(B::int_into_float(sign, FloatDType::F32), (-2.0f32).into()), 1.0f32.into());
    B::float_reshape(B::float_mul(v, sign), [n, words * 2].into())
}

impl<B: Backend + BlockOps, C: CheckpointStrategy> BlockOps for Autodiff<B, C> {
    fn block_dequant(codes: IntTensor<Self>, scales: FloatTensor<Self>, offsets: FloatTensor<Self>, bits: u32, block: usize, bias: i32, offset: bool) -> FloatTensor<Self> {
        // A frozen weight: its values start a new, untracked history.
        Self::from_inner(B::block_dequant(codes, scales.into_primitive(), offsets.into_primitive(), bits, block, bias, offset))
    }

    fn block_linear(x: FloatTensor<Self>, codes: IntTensor<Self>, scales: FloatTensor<Self>, offsets: FloatTensor<Self>, bits: u32, block: usize, bias: i32, offset: bool, chunk: usize) -> FloatTensor<Self> {
        /// The gradient to `x`: `grad [n, rows] · W`, dequantising `W` again a chunk at a time.
        #[derive(Debug)]
        struct BlockLinear;
        type Weights<B> = (IntTensor<B>, FloatTensor<B>, FloatTensor<B>, u32, usize, i32, bool, usize);

        impl<B: Backend + BlockOps> Backward<B, 1> for BlockLinear {
            type State = Weights<B>;

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let (codes, scales, offsets, bits, block, bias, offset, chunk) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    let mut total = None;
                    for (r, _) in chunks::<B>(&codes, bits, chunk) {
                        let w = B::block_dequant(rows::<B>(&codes, r.clone()), rows_f::<B>(&scales, r.clone()), rows_f::<B>(&offsets, if offset { r.clone() } else { 0..1 }), bits, block, bias, offset);
                        let n = grad.shape()[0];
                        let g = B::float_slice(grad.clone(), &[Slice::from(0..n), Slice::from(r)]);
                        let part = B::float_matmul(g, w);
                        total = Some(match total {
                            None => part,
                            Some(t) => B::float_add(t, part),
                        });
                    }
                    total.expect("a weight has rows")
                });
            }
        }

        let node = x.node();
        let (scales, offsets) = (scales.into_primitive(), offsets.into_primitive());
        let out = B::block_linear(x.into_primitive(), codes.clone(), scales.clone(), offsets.clone(), bits, block, bias, offset, chunk);
        match BlockLinear.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((codes, scales, offsets, bits, block, bias, offset, chunk), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

/// Largest codes buffer of one part of a block weight: half of WebGPU's default
/// `maxStorageBufferBindingSize` (128 MiB, which lavapipe also enforces), so a 151,936-row LM
/// head (136 MB of 8-bit codes) or Gemma 3's 262,144-row table is held as a few parts.
pub const MAX_PART_BYTES: usize = 64 << 20;

/// A run of rows of a block weight, each tensor one device buffer.
#[derive(Module, Debug)]
pub struct BlockPart {
    /// `[rows, cols * bits / 32]` i32 words.
    pub codes: Tensor<2, Int>,
    /// `[rows, cols / block]`.
    pub scales: Tensor<2>,
    /// `[rows, cols / block]`, or `[1, 1]` when the format has none.
    pub offsets: Tensor<2>,
}

/// A frozen `[rows, cols]` weight (HF `[out, in]` for a linear layer, `[vocab, dim]` for an
/// embedding table) held as block codes on the device, in parts of whole rows.
#[derive(Module, Debug)]
pub struct BlockWeight {
    pub parts: Vec<BlockPart>,
    #[module(skip)]
    pub format: BlockFormat,
    #[module(skip)]
    pub cols: usize,
}

impl BlockPart {
    fn rows(&self) -> usize {
        self.codes.dims()[0]
    }
}

/// `block_dequant` on tensors: the f32 values of the given codes' rows.
fn dequant_rows(f: &BlockFormat, codes: Tensor<2, Int>, scales: Tensor<2>, offsets: Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<burn::backend::Dispatch as BlockOps>::block_dequant(codes.into_dispatch(), scales.into_dispatch(), offsets.into_dispatch(), f.bits, f.block, f.bias, f.offset))
}

impl BlockWeight {
    /// Uploads host blocks of a `[rows, cols]` weight.
    pub fn upload(b: HostBlocks, rows: usize, cols: usize, device: &Device) -> Self {
        Self::upload_in_parts(b, rows, cols, device, MAX_PART_BYTES)
    }

    /// [`BlockWeight::upload`] with parts of at most `max_part_bytes` of codes (at least a row).
    pub fn upload_in_parts(b: HostBlocks, rows: usize, cols: usize, device: &Device, max_part_bytes: usize) -> Self {
        let words = cols * b.bits as usize / 32;
        let nb = cols / b.block;
        let step = (max_part_bytes / (words * 4).max(1)).clamp(1, rows.max(1));
        let format = BlockFormat { name: b.format.clone(), bits: b.bits, block: b.block, bias: b.bias, offset: b.offsets.is_some() };
        let parts = (0..rows)
            .step_by(step)
            .map(|r0| {
                let r = r0..(r0 + step).min(rows);
                let n = r.len();
                let codes = Tensor::from_data(TensorData::new(b.codes[r.start * words..r.end * words].to_vec(), [n, words]), TensorCreationOptions::new(device.clone()).with_dtype(DType::I32));
                let scales = Tensor::from_data(TensorData::new(b.scales[r.start * nb..r.end * nb].to_vec(), [n, nb]), device);
                let offsets = match &b.offsets {
                    Some(o) => Tensor::from_data(TensorData::new(o[r.start * nb..r.end * nb].to_vec(), [n, nb]), device),
                    None => Tensor::zeros([1, 1], device),
                };
                BlockPart { codes, scales, offsets }
            })
            .collect();
        Self { parts, format, cols }
    }

    /// `[rows, cols]`.
    pub fn dims(&self) -> [usize; 2] {
        [self.parts.iter().map(BlockPart::rows).sum(), self.cols]
    }

    /// Bytes held on the device.
    pub fn device_bytes(&self) -> u64 {
        let n = |d: [usize; 2]| (d[0] * d[1] * 4) as u64;
        let offsets = |p: &BlockPart| if self.format.offset { n(p.offsets.dims()) } else { 0 };
        self.parts.iter().map(|p| n(p.codes.dims()) + n(p.scales.dims()) + offsets(p)).sum()
    }

    /// The f32 values of rows `ids` (any shape of ids; the result adds a trailing `cols`).
    pub fn gather<const D: usize, const D2: usize>(&self, ids: Tensor<D, Int>) -> Tensor<D2> {
        let dims = ids.dims();
        let n: usize = dims.iter().product();
        let flat = ids.reshape([n]);
        let f = &self.format;
        let mut start = 0;
        let mut out: Option<Tensor<2>> = None;
        for p in &self.parts {
            let rows = p.rows();
            // Rows outside this part read its row 0 and are zeroed, so the parts' sum holds each
            // id's row exactly once.
            let local = flat.clone() - start as i64;
            let inside = local.clone().greater_equal_elem(0).bool_and(local.clone().lower_elem(rows as i64));
            let idx = if self.parts.len() == 1 { local } else { local.clamp(0, rows as i64 - 1) };
            let offsets = if f.offset { p.offsets.clone().select(0, idx.clone()) } else { p.offsets.clone() };
            let v = dequant_rows(f, p.codes.clone().select(0, idx.clone()), p.scales.clone().select(0, idx), offsets);
            let v = if self.parts.len() == 1 { v } else { v * inside.float().unsqueeze_dim(1) };
            out = Some(match out {
                None => v,
                Some(o) => o + v,
            });
            start += rows;
        }
        let mut shape = [0usize; D2];
        shape[..D].copy_from_slice(&dims);
        shape[D] = self.cols;
        out.expect("a weight has rows").reshape(shape)
    }

    /// Every value, `[rows, cols]` f32 (merges and exports).
    pub fn dequantize(&self) -> Tensor<2> {
        let f = &self.format;
        let parts: Vec<Tensor<2>> = self.parts.iter().map(|p| dequant_rows(f, p.codes.clone(), p.scales.clone(), p.offsets.clone())).collect();
        Tensor::cat(parts, 0)
    }

    /// `x [.., cols] · Wᵀ`, giving `[.., rows]`.
    pub fn linear<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.linear_chunked(x, DEQUANT_CHUNK)
    }

    /// [`BlockWeight::linear`], dequantising at most `chunk` values at a time.
    pub fn linear_chunked<const D: usize>(&self, x: Tensor<D>, chunk: usize) -> Tensor<D> {
        let mut dims = x.dims();
        let [rows, cols] = self.dims();
        let n = dims[..D - 1].iter().product();
        let f = &self.format;
        let x = x.reshape([n, cols]);
        let parts: Vec<Tensor<2>> = self
            .parts
            .iter()
            .map(|p| {
                Tensor::from_dispatch(<burn::backend::Dispatch as BlockOps>::block_linear(
                    x.clone().into_dispatch(),
                    p.codes.clone().into_dispatch(),
                    p.scales.clone().into_dispatch(),
                    p.offsets.clone().into_dispatch(),
                    f.bits,
                    f.block,
                    f.bias,
                    f.offset,
                    chunk,
                ))
            })
            .collect();
        let y = if parts.len() == 1 { parts.into_iter().next().expect("one part") } else { Tensor::cat(parts, 1) };
        dims[D - 1] = rows;
        y.reshape(dims)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use burn::tensor::Tensor;

    use crate::device;
    use crate::formats::gguf::tests::XorShift;
    use crate::formats::gguf::Writer;
    use crate::formats::gguf::GgmlType;
    use crate::models::blocks::BlockWeight;
    use crate::models::ModelFiles;

    /// A random tensor of `ty` whose scales are small, so the network's values stay in range.
    fn sane(rng: &mut XorShift, ty: GgmlType, values: usize) -> Vec<u8> {
        let (per, bytes) = ty.block().expect("a supported type");
        let mut raw = rng.bytes(values / per * bytes);
        let small = |rng: &mut XorShift, scale: f32| half::f16::from_f32(((rng.next() % 1000) as f32 / 1000.0 + 0.2) * scale).to_le_bytes();
        // (offset of an f16 field in the block, its magnitude)
        let fields: &[(usize, f32)] = match ty {
            GgmlType::F16 => &[(0, 0.05)],
            GgmlType::Q8_0 => &[(0, 0.0005)],
            GgmlType::Q4_0 | GgmlType::Q5_0 => &[(0, 0.004)],
            GgmlType::Q4_1 | GgmlType::Q5_1 => &[(0, 0.004), (2, -0.03)],
            GgmlType::Q4_K | GgmlType::Q5_K => &[(0, 0.0002), (2, 0.0003)],
            GgmlType::Q6_K => &[(208, 0.00005)],
            GgmlType::BF16 => &[],
            _ => unreachable!(),
        };
        for b in raw.chunks_exact_mut(bytes) {
            for &(at, scale) in fields {
                b[at..at + 2].copy_from_slice(&small(rng, scale));
            }
        }
        if ty == GgmlType::BF16 {
            for b in raw.chunks_exact_mut(2) {
                let v = half::bf16::from_f32(((b[0] as f32) / 255.0 - 0.5) * 0.1);
                b.copy_from_slice(&v.to_le_bytes());
            }
        }
        raw
    }

    /// A two-layer Llama (tied embeddings) whose matrices use every block format, plus F16 and
    /// BF16, in the sizes K-quants need (rows of 256).
    pub(crate) fn all_formats() -> ModelFiles {
        use GgmlType::*;
        let mut rng = XorShift(0x5EED_B10C);
        let (hidden, kv, ffn, vocab) = (256u64, 128u64, 512u64, 6u64);
        let mut w = Writer::tiny_llama(hidden, ffn, 4, 2);
        w.u32("tokenizer.ggml.bos_token_id", 0);
        w.u32("tokenizer.ggml.eos_token_id", 0);
        let mut put = |w: &mut Writer, name: &str, dims: [u64; 2], ty: GgmlType| {
            let raw = sane(&mut rng, ty, (dims[0] * dims[1]) as usize);
            w.tensor(name, &dims, ty, &raw);
        };
        put(&mut w, "token_embd.weight", [hidden, vocab], Q6_K);
        let layers = [[Q4_K, Q5_K, Q6_K, Q8_0, Q4_0, Q4_1, Q5_0], [Q5_1, F16, BF16, Q4_K, Q6_K, Q5_K, Q8_0]];
        for (l, t) in layers.iter().enumerate() {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            let ones: Vec<u8> = (0..hidden).flat_map(|_| 1f32.to_le_bytes()).collect();
            w.tensor(&n("attn_norm"), &[hidden], F32, &ones);
            w.tensor(&n("ffn_norm"), &[hidden], F32, &ones);
            put(&mut w, &n("attn_q"), [hidden, hidden], t[0]);
            put(&mut w, &n("attn_k"), [hidden, kv], t[1]);
            put(&mut w, &n("attn_v"), [hidden, kv], t[2]);
            put(&mut w, &n("attn_output"), [hidden, hidden], t[3]);
            put(&mut w, &n("ffn_gate"), [hidden, ffn], t[4]);
            put(&mut w, &n("ffn_up"), [hidden, ffn], t[5]);
            put(&mut w, &n("ffn_down"), [ffn, hidden], t[6]);
        }
        let ones: Vec<u8> = (0..hidden).flat_map(|_| 1f32.to_le_bytes()).collect();
        w.tensor("output_norm.weight", &[hidden], F32, &ones);
        let mut files = ModelFiles::default();
        files.add("all-formats.gguf", w.finish().0);
        files
    }

    pub(crate) fn values(t: Tensor<1>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    pub(crate) fn max_rel(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    /// A weight held in several parts (rows split across buffers) gives the single part's
    /// values, rows and products.
    #[test]
    fn parts_match_one_part() {
        let device = device::cpu();
        let mut rng = XorShift(5);
        let (rows, cols) = (11, 64);
        let host = crate::formats::blocks::unpack(GgmlType::Q4_K, &sane(&mut rng, GgmlType::Q4_K, rows * 256)).unwrap();
        let (rows, cols) = (rows * 256 / cols, cols);
        let one = BlockWeight::upload(host.clone(), rows, cols, &device);
        let many = BlockWeight::upload_in_parts(host, rows, cols, &device, 3 * cols / 2); // 3 rows a part
        assert_eq!((one.parts.len(), many.parts.len(), many.dims()), (1, rows.div_ceil(3), [rows, cols]));
        assert_eq!(values(one.dequantize().reshape([rows * cols])), values(many.dequantize().reshape([rows * cols])));
        let ids = Tensor::<2, burn::tensor::Int>::from_data([[0i64, 5, rows as i64 - 1], [3, 2, 7]], &device);
        let (a, b): (Tensor<3>, Tensor<3>) = (one.gather(ids.clone()), many.gather(ids));
        assert_eq!(values(a.reshape([6 * cols])), values(b.reshape([6 * cols])));
        let x = Tensor::<2>::from_data(burn::tensor::TensorData::new((0..2 * cols).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<f32>>(), [2, cols]), &device);
        let (ya, yb) = (values(one.linear(x.clone()).reshape([2 * rows])), values(many.linear(x).reshape([2 * rows])));
        assert!(max_rel(&yb, &ya) < 1e-6);
    }

    /// Dequantising a few rows at a time gives the whole weight's product and gradient.
    #[test]
    fn chunked_linear_matches_whole() {
        let device = device::cpu().autodiff();
        let mut rng = XorShift(7);
        let (rows, cols) = (10, 64);
        let raw = sane(&mut rng, GgmlType::Q4_1, rows * cols);
        let w = BlockWeight::upload(crate::formats::blocks::unpack(GgmlType::Q4_1, &raw).unwrap(), rows, cols, &device);
        let x0: Vec<f32> = (0..3 * cols).map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0).collect();
        let run = |chunk: usize| {
            let x = Tensor::<2>::from_data(burn::tensor::TensorData::new(x0.clone(), [3, cols]), &device).require_grad();
            let y = w.linear_chunked(x.clone(), chunk);
            let g = (y.clone() * y.clone()).sum().backward();
            (values(y.reshape([3 * rows])), values(x.grad(&g).unwrap().reshape([3 * cols])))
        };
        let (y1, g1) = run(1 << 20);
        let (y3, g3) = run(3 * cols); // 3 rows a chunk: 4 chunks, the last short
        let w32 = w.dequantize();
        let x = Tensor::<2>::from_data(burn::tensor::TensorData::new(x0.clone(), [3, cols]), &device);
        let want = values(x.matmul(w32.transpose()).reshape([3 * rows]));
        assert!(max_rel(&y1, &want) < 1e-5 && max_rel(&y3, &want) < 1e-5);
        assert!(max_rel(&g3, &g1) < 1e-5 && g1.iter().any(|v| *v != 0.0));
    }

    /// The device's decoding gives ggml's values bit for bit, for every format.
    fn decodes_exactly(device: burn::tensor::Device, gpu: bool) {
        use GgmlType::*;
        let mut rng = XorShift(11);
        let check = |ty: GgmlType, raw: &[u8], rows: usize, cols: usize| {
            let host = crate::formats::blocks::unpack(ty, raw).unwrap();
            let want = crate::formats::gguf::dequantize(ty, raw);
            assert_eq!(host.values().iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{ty:?} on the host");
            let got = values(BlockWeight::upload(host, rows, cols, &device).dequantize().reshape([rows * cols]));
            let bad = got.iter().zip(&want).position(|(g, w)| g.to_bits() != w.to_bits());
            assert_eq!(bad, None, "{ty:?}: value {bad:?} differs: {:?} vs {:?}", bad.map(|i| got[i]), bad.map(|i| want[i]));
        };
        for ty in [Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, F16, BF16] {
            let (rows, cols) = (3, 512);
            check(ty, &sane(&mut rng, ty, rows * cols), rows, cols);
        }
        // Every F16 and BF16 bit pattern but infinities and NaNs, signed zeros and subnormals
        // included (bfloat16 subnormals, which a GPU may flush to zero, only on the CPU).
        for (ty, mant_bits, exp_max) in [(F16, 10, 31u16), (BF16, 7, 255)] {
            let raw: Vec<u8> = (0..=u16::MAX)
                .map(|c| {
                    let e = (c >> mant_bits) & exp_max;
                    if e == exp_max || (gpu && ty == BF16 && e == 0 && c & 0x7FFF != 0) { 0 } else { c }
                })
                .flat_map(|c| c.to_le_bytes())
                .collect();
            check(ty, &raw, 128, 512);
        }
    }

    #[test]
    fn decodes_exactly_on_cpu() {
        decodes_exactly(device::cpu(), false);
    }

    #[cfg(feature = "gpu")]
    #[test]
    fn decodes_exactly_on_wgpu() {
        decodes_exactly(device::gpu().expect("wgpu (lavapipe in CI)"), true);
    }

}

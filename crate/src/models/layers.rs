//! Building blocks shared by the model families: linear layers in burn's
//! `[in, out]` layout, norms, rotary embeddings and scaled dot-product attention.

use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::Result;
pub use crate::models::blocks::BlockWeight;
use crate::formats::safetensors::{HostTensor, WeightMap};
use crate::models::taps::{self, Rule};
use crate::models::hooks::{by_rows, LinearAdapter};

/// Uploads a host tensor to `device` as a parameter.
pub fn param<const D: usize>(t: HostTensor, device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(tensor(t, device))
}

/// Uploads a host tensor to `device`.
pub fn tensor<const D: usize>(t: HostTensor, device: &Device) -> Tensor<D> {
    let t = t.into_f32();
    Tensor::from_data(TensorData::new(t.data, t.shape), device)
}

/// A dense layer `y = x W + b` with `W` stored `[in, out]`.
///
/// HF `nn.Linear` stores `[out, in]` and is transposed on load; GPT-2's
/// `Conv1D` already stores `[in, out]`.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: LinearWeight,
    /// `[out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// The PEFT adapters on this layer (LoRA, (IA)³...), applied in order.
    pub adapters: Vec<LinearAdapter>,
}

/// A linear layer's weight: f32 `[in, out]`, or frozen quantized blocks (HF's `[out, in]`).
#[derive(Module, Debug)]
pub enum LinearWeight {
    Dense(Param<Tensor<2>>),
    Blocks(BlockWeight),
}

/// How a checkpoint lays out a dense weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// `nn.Linear`: `[out, in]`.
    OutIn,
    /// GPT-2 `Conv1D`: `[in, out]`.
    InOut,
}

impl Linear {
    /// The `[in, out]` weight when the layer is a plain frozen projection (no
    /// bias, no adapter, no gradient).
    pub fn frozen_weight(&self) -> Option<FrozenHead> {
        let plain = self.bias.is_none() && self.adapters.is_empty();
        match &self.weight {
            LinearWeight::Dense(w) => (plain && !w.val().is_require_grad()).then(|| FrozenHead::Dense(w.val())),
            LinearWeight::Blocks(b) => plain.then(|| FrozenHead::Blocks(b.clone())),
        }
    }

    /// The weight's values, `[in, out]` (dequantised when held in blocks).
    pub fn weight(&self) -> Tensor<2> {
        match &self.weight {
            LinearWeight::Dense(w) => w.val(),
            LinearWeight::Blocks(b) => b.dequantize().transpose(),
        }
    }

    /// The f32 weight parameter, dequantising a block weight first (a weight that is trained
    /// or replaced, such as a saved head, is held in f32).
    pub fn dense_weight(&mut self) -> &mut Param<Tensor<2>> {
        if let LinearWeight::Blocks(b) = &self.weight {
            self.weight = LinearWeight::Dense(Param::from_tensor(b.dequantize().transpose()));
        }
        match &mut self.weight {
            LinearWeight::Dense(w) => w,
            LinearWeight::Blocks(_) => unreachable!("dequantised above"),
        }
    }

    /// True when the weight itself is trained.
    pub fn weight_trained(&self) -> bool {
        matches!(&self.weight, LinearWeight::Dense(w) if w.val().is_require_grad())
    }
}

/// A frozen LM head for the chunked loss: an f32 `[hidden, vocab]` matrix or a block weight.
#[derive(Clone, Debug)]
pub enum FrozenHead {
    Dense(Tensor<2>),
    Blocks(BlockWeight),
}

impl FrozenHead {
    /// `x [n, hidden]` to logits `[n, vocab]`.
    pub fn logits(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Self::Dense(w) => x.matmul(w.clone()),
            Self::Blocks(b) => b.linear(x),
        }
    }

    /// The vocabulary size.
    pub fn vocab(&self) -> usize {
        match self {
            Self::Dense(w) => w.dims()[1],
            Self::Blocks(b) => b.dims()[0],
        }
    }

    /// The same head with its tensors detached from any autodiff graph.
    pub fn inner(&self) -> Self {
        match self {
            Self::Dense(w) => Self::Dense(Tensor::from_inner(w.clone().inner())),
            Self::Blocks(b) => Self::Blocks(b.clone()),
        }
    }
}

impl Linear {
    /// Loads `{prefix}.weight` (and `{prefix}.bias` when `bias` is true).
    pub fn load(
        w: &mut WeightMap,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
        layout: WeightLayout,
        why: &str,
        device: &Device,
    ) -> Result<Self> {
        let weight = match layout {
            WeightLayout::OutIn => {
                let t = w.take(&format!("{prefix}.weight"), &[d_out, d_in], why)?;
                match t.blocks {
                    Some(b) => LinearWeight::Blocks(BlockWeight::upload(b, d_out, d_in, device)),
                    None => LinearWeight::Dense(param(t.transposed(), device)),
                }
            }
            WeightLayout::InOut => LinearWeight::Dense(param(w.take(&format!("{prefix}.weight"), &[d_in, d_out], why)?.into_f32(), device)),
        };
        let bias = if bias { Some(param(w.take(&format!("{prefix}.bias"), &[d_out], why)?.into_f32(), device)) } else { None };
        Ok(Self { weight, bias, adapters: vec![] })
    }

    /// Input and output sizes.
    pub fn dims(&self) -> (usize, usize) {
        match &self.weight {
            LinearWeight::Dense(w) => {
                let [i, o] = w.dims();
                (i, o)
            }
            LinearWeight::Blocks(b) => {
                let [o, i] = b.dims();
                (i, o)
            }
        }
    }

    /// Applies the layer (and any adapter on it) to the last dimension of `x`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let on: Vec<&LinearAdapter> = self.adapters.iter().filter(|a| a.enabled).collect();
        if on.is_empty() {
            return self.base(x);
        }
        // Adapters see `[rows, positions, features]`; other ranks are reshaped there and back.
        let mut dims = x.dims();
        let mut x = by_rows(x);
        for a in &on {
            x = a.method.input(a, x);
        }
        let mut y = self.base(x.clone());
        for a in &on {
            y = a.method.output(a, self, x.clone(), y);
        }
        dims[D - 1] = y.dims()[2];
        y.reshape(dims)
    }

    /// `x W + b` without the adapters, with DP's taps on a trained weight or bias.
    fn base<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let bias = self.bias.as_ref().map(|b| b.val());
        let y = match &self.weight {
            LinearWeight::Dense(w) => burn::tensor::module::linear(x.clone(), w.val(), bias),
            LinearWeight::Blocks(b) => match bias {
                Some(bias) => b.linear(x.clone()) + bias.unsqueeze::<D>(),
                None => b.linear(x.clone()),
            },
        };
        if !taps::recording() {
            return y;
        }
        let mut uses = vec![];
        if let LinearWeight::Dense(w) = &self.weight {
            uses.extend(taps::trained(w).map(|id| (id, Rule::Weight, Some(x))));
        }
        uses.extend(self.bias.as_ref().and_then(taps::trained).map(|id| (id, Rule::Bias, None)));
        taps::tap(y, uses)
    }
}

/// A tensor as written to a checkpoint: its name, shape and flat values.
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Tensor<1>,
}

impl NamedTensor {
    pub fn new<const D: usize>(name: impl Into<String>, t: Tensor<D>) -> Self {
        let shape = t.dims().to_vec();
        let n: usize = shape.iter().product();
        Self { name: name.into(), shape, values: t.reshape([n]) }
    }
}

impl Linear {
    /// The weight and bias with the adapters folded in, in the order they apply, `[in, out]`.
    pub fn merged(&self) -> (Tensor<2>, Option<Tensor<1>>) {
        let mut w = self.weight();
        let mut b = self.bias.as_ref().map(|b| b.val());
        for a in &self.adapters {
            (w, b) = a.method.merge(a, w, b);
        }
        (w, b)
    }

    /// This layer's checkpoint tensors under HF's names and `layout`, adapters merged.
    pub fn hf_tensors(&self, prefix: &str, layout: WeightLayout) -> Vec<NamedTensor> {
        let (w, b) = self.merged();
        let w = match layout {
            WeightLayout::OutIn => w.transpose(),
            WeightLayout::InOut => w,
        };
        let mut out = vec![NamedTensor::new(format!("{prefix}.weight"), w)];
        if let Some(b) = b {
            out.push(NamedTensor::new(format!("{prefix}.bias"), b));
        }
        out
    }
}

/// Root-mean-square norm as Llama defines it (computed in f32).
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
}

impl RmsNorm {
    pub fn load(w: &mut WeightMap, prefix: &str, dim: usize, eps: f64, why: &str, device: &Device) -> Result<Self> {
        Ok(Self { weight: param(w.take(&format!("{prefix}.weight"), &[dim], why)?, device), eps })
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let variance = x.clone().square().mean_dim(2);
        let x = x * (variance + self.eps).sqrt().recip();
        x * self.weight.val().unsqueeze::<3>()
    }
}

/// LayerNorm with a weight and, except in ModernBERT's (`norm_bias: false`), a bias.
#[derive(Module, Debug)]
pub struct LayerNorm {
    pub weight: Param<Tensor<1>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub eps: f64,
}

impl LayerNorm {
    /// `{prefix}.weight` and, when there is one, `{prefix}.bias`.
    pub fn hf_tensors(&self, prefix: &str) -> Vec<NamedTensor> {
        let mut t = vec![NamedTensor::new(format!("{prefix}.weight"), self.weight.val())];
        t.extend(self.bias.as_ref().map(|b| NamedTensor::new(format!("{prefix}.bias"), b.val())));
        t
    }

    /// `{prefix}.weight` and `{prefix}.bias`.
    pub fn load(w: &mut WeightMap, prefix: &str, dim: usize, eps: f64, why: &str, device: &Device) -> Result<Self> {
        Self::load_with(w, prefix, dim, true, eps, why, device)
    }

    /// `{prefix}.weight`, and `{prefix}.bias` when `bias`.
    #[allow(clippy::too_many_arguments)]
    pub fn load_with(w: &mut WeightMap, prefix: &str, dim: usize, bias: bool, eps: f64, why: &str, device: &Device) -> Result<Self> {
        let weight = param(w.take(&format!("{prefix}.weight"), &[dim], why)?, device);
        let bias = if bias { Some(param(w.take(&format!("{prefix}.bias"), &[dim], why)?, device)) } else { None };
        Ok(Self { weight, bias, eps })
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let (var, mean) = x.clone().var_mean_bias(2);
        let normed = (x - mean) * (var + self.eps).sqrt().recip();
        let y = normed.clone() * self.weight.val().unsqueeze::<3>();
        let y = match &self.bias {
            Some(b) => y + b.val().unsqueeze::<3>(),
            None => y,
        };
        if !taps::recording() {
            return y;
        }
        // BitFit trains the bias (and some setups the weight): per-example gradients for DP.
        let mut uses: Vec<_> = taps::trained(&self.weight).map(|id| (id, Rule::Scale, Some(normed))).into_iter().collect();
        uses.extend(self.bias.as_ref().and_then(taps::trained).map(|id| (id, Rule::Bias, None)));
        taps::tap(y, uses)
    }
}

/// Llama-3 style frequency rescaling (`rope_scaling.rope_type == "llama3"`).
#[derive(Clone, Debug, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: f32,
}

/// Precomputed rotary-embedding tables, `[max_positions, head_dim]`.
#[derive(Module, Debug)]
pub struct Rope {
    pub cos: Tensor<2>,
    pub sin: Tensor<2>,
}

impl Rope {
    /// Builds cos/sin tables in f32 the way transformers does, so long
    /// positions round the same.
    pub fn new(head_dim: usize, max_pos: usize, theta: f32, scaling: Option<&Llama3Scaling>, device: &Device) -> Self {
        let half = head_dim / 2;
        let mut inv_freq: Vec<f32> =
            (0..half).map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32)).collect();
        if let Some(s) = scaling {
            let low_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
            let high_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
            for f in inv_freq.iter_mut() {
                let wavelen = 2.0 * std::f32::consts::PI / *f;
                let scaled = if wavelen > low_wavelen { *f / s.factor } else { *f };
                let medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
                *f = if medium {
                    let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    (1.0 - smooth) * scaled / s.factor + smooth * scaled
                } else {
                    scaled
                };
            }
        }
        Self::from_inv_freq(&inv_freq, max_pos, 1.0, device)
    }

    /// Tables for the given inverse frequencies (`head_dim / 2` of them, or fewer for a partial
    /// rotary embedding), with cos and sin multiplied by `scaling` (LongRoPE's attention factor).
    pub fn from_inv_freq(inv_freq: &[f32], max_pos: usize, scaling: f32, device: &Device) -> Self {
        let (half, dim) = (inv_freq.len(), 2 * inv_freq.len());
        let mut cos = Vec::with_capacity(max_pos * dim);
        let mut sin = Vec::with_capacity(max_pos * dim);
        for p in 0..max_pos {
            for j in 0..dim {
                let angle = p as f32 * inv_freq[j % half];
                cos.push(angle.cos() * scaling);
                sin.push(angle.sin() * scaling);
            }
        }
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [max_pos, dim]), device),
            sin: Tensor::from_data(TensorData::new(sin, [max_pos, dim]), device),
        }
    }

    /// Rotates `x` `[batch, heads, seq, head_dim]` for positions `offset..offset+seq`.
    pub fn apply(&self, x: Tensor<4>, offset: usize) -> Tensor<4> {
        let [_, _, seq, d] = x.dims();
        let cos = self.cos.clone().slice([offset..offset + seq, 0..d]).unsqueeze::<4>();
        let sin = self.sin.clone().slice([offset..offset + seq, 0..d]).unsqueeze::<4>();
        let x1 = x.clone().slice_dim(3, 0..d / 2);
        let x2 = x.clone().slice_dim(3, d / 2..d);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos + rotated * sin
    }
}

/// The caller's attention mask, or all ones for `[batch, seq]` when there is none.
pub fn mask_or_ones(attention_mask: Option<&[Vec<u32>]>, batch: usize, seq: usize) -> std::borrow::Cow<'_, [Vec<u32>]> {
    match attention_mask {
        Some(m) => std::borrow::Cow::Borrowed(m),
        None => std::borrow::Cow::Owned(vec![vec![1u32; seq]; batch]),
    }
}

/// GELU, `x/2 (1 + erf(x/sqrt 2))`, written with `erf` rather than burn's
/// fused `gelu`: on WebGPU (SwiftShader) the fused op's gradient is NaN for some
/// of MiniLM's activations, while `erf`'s own gradient is finite.
pub fn gelu_erf(x: Tensor<3>) -> Tensor<3> {
    x.clone() * 0.5 * ((x / std::f64::consts::SQRT_2).erf() + 1.0)
}

/// Splits `[batch, seq, heads*head_dim]` into `[batch, heads, seq, head_dim]`.
pub fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, s, hd] = x.dims();
    x.reshape([b, s, heads, hd / heads]).swap_dims(1, 2)
}

/// Merges `[batch, heads, seq, head_dim]` back into `[batch, seq, heads*head_dim]`.
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [b, h, s, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, s, h * d])
}

/// Repeats key/value heads for grouped-query attention.
pub fn repeat_kv(x: Tensor<4>, n_rep: usize) -> Tensor<4> {
    if n_rep == 1 {
        return x;
    }
    let [b, kvh, t, d] = x.dims();
    x.unsqueeze_dim::<5>(2).expand([b, kvh, n_rep, t, d]).reshape([b, kvh * n_rep, t, d])
}

/// Softmax attention; `mask` is additive, broadcast to `[batch, heads, seq, kv_len]`.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: Option<Tensor<4>>, scale: f64) -> Tensor<4> {
    let scores = q.matmul(k.swap_dims(2, 3)) * scale;
    let scores = match mask {
        Some(m) => scores + m,
        None => scores,
    };
    softmax(scores, 3).matmul(v)
}

/// The value masked positions get before softmax (transformers uses the dtype's minimum).
pub const MASKED: f32 = f32::MIN;

/// Additive mask `[batch, 1, seq, offset+seq]`: causal, and hiding padded keys
/// where `attention_mask` (`[batch][offset+seq]`, 1 = keep) says so.
pub fn causal_mask(batch: usize, seq: usize, offset: usize, attention_mask: Option<&[Vec<u32>]>, device: &Device) -> Tensor<4> {
    causal_mask_window(batch, seq, offset, attention_mask, None, device)
}

/// [`causal_mask`], also hiding keys `window` or more positions behind the
/// query when `window` is given (sliding-window attention, as transformers'
/// `sliding_window_overlay`: key `j` is seen by query `i` when `j > i - window`).
pub fn causal_mask_window(batch: usize, seq: usize, offset: usize, attention_mask: Option<&[Vec<u32>]>, window: Option<usize>, device: &Device) -> Tensor<4> {
    let kv = offset + seq;
    let mut data = vec![0.0f32; batch * seq * kv];
    for b in 0..batch {
        for i in 0..seq {
            for j in 0..kv {
                let padded = attention_mask.map_or(false, |m| m[b].get(j).copied().unwrap_or(1) == 0);
                let outside = window.is_some_and(|w| j + w <= offset + i);
                if j > offset + i || padded || outside {
                    data[(b * seq + i) * kv + j] = MASKED;
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [batch, 1, seq, kv]), device)
}

/// Additive padding mask `[batch, 1, 1, seq]` for bidirectional encoders.
pub fn padding_mask(attention_mask: &[Vec<u32>], device: &Device) -> Tensor<4> {
    let batch = attention_mask.len();
    let seq = attention_mask.first().map_or(0, Vec::len);
    let data: Vec<f32> = attention_mask.iter().flatten().map(|&m| if m == 0 { MASKED } else { 0.0 }).collect();
    Tensor::from_data(TensorData::new(data, [batch, 1, 1, seq]), device)
}

/// A token-embedding table `[vocab, dim]`: f32, or a GGUF's quantized blocks.
#[derive(Module, Debug)]
pub struct Embedding {
    pub weight: Option<Param<Tensor<2>>>,
    pub blocks: Option<BlockWeight>,
}

impl Embedding {
    pub fn load(w: &mut WeightMap, name: &str, vocab: usize, dim: usize, why: &str, device: &Device) -> Result<Self> {
        let t = w.take(name, &[vocab, dim], why)?;
        Ok(match t.blocks {
            Some(b) => Self { weight: None, blocks: Some(BlockWeight::upload(b, vocab, dim, device)) },
            None => Self { weight: Some(param(t, device)), blocks: None },
        })
    }

    /// The table's values `[vocab, dim]` (dequantised when held in blocks).
    pub fn table(&self) -> Tensor<2> {
        match (&self.weight, &self.blocks) {
            (Some(w), _) => w.val(),
            (None, Some(b)) => b.dequantize(),
            (None, None) => unreachable!("an embedding holds a table"),
        }
    }

    /// Looks up `[batch, seq]` ids, giving `[batch, seq, dim]`.
    pub fn forward(&self, ids: Tensor<2, burn::tensor::Int>) -> Tensor<3> {
        match (&self.weight, &self.blocks) {
            (None, Some(b)) => b.gather(ids),
            _ => burn::tensor::module::embedding(self.table(), ids),
        }
    }

    /// Uses the table as a tied output projection: `[.., dim]` to `[.., vocab]`.
    pub fn attend(&self, x: Tensor<3>) -> Tensor<3> {
        match (&self.weight, &self.blocks) {
            (None, Some(b)) => b.linear(x),
            _ => burn::tensor::module::linear(x, self.table().transpose(), None),
        }
    }

    /// A decoder's logits: `lm_head`, or this table when the head is tied (`lm_head` is `None`).
    pub fn lm_logits(&self, lm_head: Option<&Linear>, hidden: Tensor<3>) -> Tensor<3> {
        match lm_head {
            Some(head) => head.forward(hidden),
            None => self.attend(hidden),
        }
    }

    /// The LM head (`lm_head`, or this table when tied) as a `[hidden, vocab]` matrix when it is
    /// a plain frozen projection (no adapter, no bias, no gradient), for the chunked loss.
    pub fn frozen_lm_head(&self, lm_head: Option<&Linear>) -> Option<FrozenHead> {
        match (lm_head, &self.blocks) {
            (Some(h), _) => h.frozen_weight(),
            (None, Some(b)) => Some(FrozenHead::Blocks(b.clone())),
            (None, None) => {
                let w = self.table();
                (!w.is_require_grad()).then(|| FrozenHead::Dense(w.transpose()))
            }
        }
    }
}

/// The additive attention masks of one batch: causal (and padding), and the sliding-window one
/// of families that alternate local and global layers.
pub struct DecoderMasks {
    pub global: Tensor<4>,
    pub local: Option<Tensor<4>>,
    /// Positions already in the KV cache.
    pub offset: usize,
}

/// A decoder's layers, run one at a time. `hidden_states` runs them in a loop; training can
/// instead keep only each layer's input and recompute the layer in the backward pass
/// (gradient checkpointing, `train::checkpointed`).
pub trait LayerStack {
    fn num_layers(&self) -> usize;
    /// The masks of a batch `x` `[batch, seq, hidden]` after `offset` cached positions.
    fn masks(&self, x: &Tensor<3>, attention_mask: Option<&[Vec<u32>]>, offset: usize) -> DecoderMasks;
    /// Layer `i` on `[batch, seq, hidden]`.
    fn layer(&self, i: usize, x: Tensor<3>, masks: &DecoderMasks, cache: Option<&mut KvCache>) -> Tensor<3>;
    /// The norm after the last layer.
    fn final_norm(&self, x: Tensor<3>) -> Tensor<3>;
    /// The LM head on final hidden states: `[batch, seq, vocab]` logits.
    fn lm_logits(&self, hidden: Tensor<3>) -> Tensor<3>;

    /// Every layer, then the final norm: the decoder's last hidden states.
    fn run(&self, mut x: Tensor<3>, attention_mask: Option<&[Vec<u32>]>, mut cache: Option<&mut KvCache>) -> Tensor<3> {
        let offset = cache.as_ref().map_or(0, |c| c.offset());
        let masks = self.masks(&x, attention_mask, offset);
        for i in 0..self.num_layers() {
            x = self.layer(i, x, &masks, cache.as_deref_mut());
        }
        self.final_norm(x)
    }
}

/// Past keys and values of a decoder, one `[batch, kv_heads, past, head_dim]` pair per layer.
#[derive(Debug, Default)]
pub struct KvCache {
    pub layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
}

impl KvCache {
    /// An empty cache for `num_layers` layers.
    pub fn new(num_layers: usize) -> Self {
        Self { layers: (0..num_layers).map(|_| None).collect() }
    }

    /// Number of positions already cached.
    pub fn offset(&self) -> usize {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(k, _)| k.dims()[2])
    }

    /// Appends this step's keys and values to layer `i` and returns the full ones.
    pub fn update(&mut self, i: usize, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let (k, v) = match self.layers[i].take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.layers[i] = Some((k.clone(), v.clone()));
        (k, v)
    }
}

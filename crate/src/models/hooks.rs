//! Where PEFT methods attach to a model, without the models knowing any method.
//!
//! A [`Linear`] holds a list of [`LinearAdapter`]s, and a [`Model`](super::Model) may hold
//! [`VirtualTokens`] (prompt or prefix tuning). Each holds its trained tensors and the
//! method's code behind a trait ([`LinearMethod`], [`TokenMethod`]), which the method's own
//! module in `crate::peft` implements. The models only call these traits, so a new method
//! needs no change here.

use std::fmt::Debug;
use std::sync::Arc;

use burn::module::{Module, Param};
use burn::tensor::Tensor;

use super::layers::Linear;
use super::KvCache;

/// One adapter attached to a linear layer: its trained tensors and the method that uses them.
#[derive(Module, Debug)]
pub struct LinearAdapter {
    /// Trained matrices, in the method's order (LoRA: A `[in, r]`, B `[r, out]`).
    pub matrices: Vec<Param<Tensor<2>>>,
    /// Trained vectors, in the method's order (DoRA's magnitude, an (IA)³ scale).
    pub vectors: Vec<Param<Tensor<1>>>,
    /// False while the adapter is switched off (PEFT's `disable_adapter()`).
    pub enabled: bool,
    /// True only inside a training step (set by the trainer, for dropout).
    pub training: bool,
    /// The method's code, with its settings for this layer.
    #[module(skip)]
    pub method: Arc<dyn LinearMethod>,
}

impl LinearAdapter {
    /// A new adapter, switched on, outside training.
    pub fn new(method: Arc<dyn LinearMethod>, matrices: Vec<Param<Tensor<2>>>, vectors: Vec<Param<Tensor<1>>>) -> Self {
        Self { matrices, vectors, enabled: true, training: false, method }
    }

    /// Every trained tensor with its PEFT name (the key's suffix after the module path,
    /// without `.weight`): checkpoints and error messages use these.
    pub fn named(&self) -> Vec<(&'static str, burn::module::ParamId)> {
        let (m, v) = self.method.tensor_names();
        let mats = m.iter().zip(&self.matrices).map(|(n, p)| (*n, p.id));
        mats.chain(v.iter().zip(&self.vectors).map(|(n, p)| (*n, p.id))).collect()
    }
}

/// A PEFT method's code on a linear layer. Tensors are `[rows, positions, features]`; the
/// layer reshapes other ranks to that and back, so the batch's rows stay first (DP's
/// per-example gradients need them).
pub trait LinearMethod: Debug + Send + Sync {
    /// PEFT's names of `matrices` and of `vectors`, in order (`lora_A`, `ia3_l`...).
    fn tensor_names(&self) -> (&'static [&'static str], &'static [&'static str]);

    /// The method's own type, so that its module can read its settings back.
    fn as_any(&self) -> &dyn std::any::Any;

    /// The layer's input before its own projection (default: unchanged).
    fn input(&self, _adapter: &LinearAdapter, x: Tensor<3>) -> Tensor<3> {
        x
    }

    /// The layer's output from its input `x` and its base output `y = x W + b`
    /// (default: unchanged). `layer` gives the frozen weight and bias to methods that read them.
    fn output(&self, _adapter: &LinearAdapter, _layer: &Linear, _x: Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        y
    }

    /// The `[in, out]` weight and the bias with the adapter folded in (PEFT's merge).
    fn merge(&self, adapter: &LinearAdapter, weight: Tensor<2>, bias: Option<Tensor<1>>) -> (Tensor<2>, Option<Tensor<1>>);

    /// The dropout probability on the adapter's branch while training (0: none).
    fn dropout(&self) -> f64 {
        0.0
    }
}

/// Learned virtual tokens attached to a model (prompt or prefix tuning).
#[derive(Module, Debug)]
pub struct VirtualTokens {
    /// `[num_virtual_tokens, width]` (PEFT's `prompt_embeddings`).
    pub table: Param<Tensor<2>>,
    /// The method's code, with its settings.
    #[module(skip)]
    pub method: Arc<dyn TokenMethod>,
}

impl VirtualTokens {
    /// Number of virtual tokens.
    pub fn len(&self) -> usize {
        self.table.dims()[0]
    }
}

/// Where a method's virtual tokens enter the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPlace {
    /// Prepended to the input embeddings (prompt tuning).
    Embeddings,
    /// Past keys and values that every attention layer sees first (prefix tuning); decoders only.
    KeyValues,
}

/// A PEFT method's code for virtual tokens.
pub trait TokenMethod: Debug + Send + Sync {
    /// Where the tokens enter.
    fn place(&self) -> TokenPlace;

    /// The name of the table in webpeft's checkpoints (`prompt_embeddings`, `prefix_embeddings`).
    fn checkpoint_name(&self) -> &'static str;

    /// [`TokenPlace::Embeddings`]: `embeds` `[batch, seq, hidden]` with the virtual tokens before them.
    fn prepend(&self, _tokens: &VirtualTokens, embeds: Tensor<3>) -> Tensor<3> {
        embeds
    }

    /// [`TokenPlace::KeyValues`]: a cache of the virtual keys and values for `batch` rows.
    fn key_values(&self, _tokens: &VirtualTokens, _batch: usize) -> KvCache {
        unreachable!("only methods that place key/values are asked for them")
    }
}

/// `t` as `[rows, positions, last]` (the first dimension kept, the middle ones flattened).
pub(crate) fn by_rows<const D: usize>(t: Tensor<D>) -> Tensor<3> {
    let dims = t.dims();
    let (rows, last) = if D >= 2 { (dims[0], dims[D - 1]) } else { (1, dims[0]) };
    let n = dims.iter().product::<usize>() / (rows * last).max(1);
    t.reshape([rows, n, last])
}

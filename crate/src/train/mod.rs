//! Training: losses and optimiser steps over the trainable (adapter)
//! parameters only. This is the first slice of the trainer (issue #3): AdamW
//! steps on a fixed batch, the loop the browser will also run.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::models::{Model, Network};

/// What a batch is trained to predict.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Next-token prediction on the inputs themselves (HF's shifted mean cross-entropy).
    CausalLm,
    /// One class per row (sequence classification).
    Classes(Vec<u32>),
}

/// Mean cross-entropy of `logits` `[n, classes]` against `labels`.
fn cross_entropy(logits: Tensor<2>, labels: &[u32]) -> Tensor<1> {
    let [n, _] = logits.dims();
    let device = logits.device();
    let idx: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    let idx = Tensor::<2, Int>::from_data(TensorData::new(idx, [n, 1]), &device);
    log_softmax(logits, 1).gather(1, idx).mean().neg()
}

/// The training loss of `model` on a batch of equal-length rows.
pub fn loss(model: &Model, ids: &[Vec<u32>], targets: &Targets) -> Result<Tensor<1>> {
    let out = model.forward(ids, None, None, None)?;
    match targets {
        Targets::CausalLm => {
            let logits = out.token_logits.ok_or_else(|| Error::input("train", "causal-lm training needs a causal LM"))?;
            let [b, s, v] = logits.dims();
            if s < 2 {
                return Err(Error::input("train", "causal-lm rows need at least 2 tokens"));
            }
            let shifted = logits.slice([0..b, 0..s - 1, 0..v]).reshape([b * (s - 1), v]);
            let labels: Vec<u32> = ids.iter().flat_map(|r| r[1..].iter().copied()).collect();
            Ok(cross_entropy(shifted, &labels))
        }
        Targets::Classes(labels) => {
            let logits = out.class_logits.ok_or_else(|| Error::input("train", "seq-cls training needs a classification head"))?;
            let n = logits.dims()[1];
            if let Some(bad) = labels.iter().find(|&&l| l as usize >= n) {
                return Err(Error::input("train", format!("label {bad} is outside the model's {n} classes")));
            }
            Ok(cross_entropy(logits, labels))
        }
    }
}

/// Freezes every parameter of the base network. Adapters attached afterwards
/// (and base tensors an adapter replaces) are the trainable set, as in PEFT.
pub fn freeze(model: Model) -> Model {
    let network = match model.network {
        Network::Llama(m) => Network::Llama(m.no_grad()),
        Network::Gpt2(m) => Network::Gpt2(m.no_grad()),
        Network::Bert(m) => Network::Bert(m.no_grad()),
    };
    Model { network, ..model }
}

/// AdamW hyper-parameters (PyTorch's `torch.optim.AdamW` semantics).
#[derive(Debug, Clone)]
pub struct AdamW {
    pub lr: f64,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for AdamW {
    fn default() -> Self {
        Self { lr: 1e-3, weight_decay: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// A training session: the model and its optimiser state.
pub struct Trainer {
    /// Always `Some` between calls; taken while the optimiser owns the network.
    model: Option<Model>,
    optim: ModuleOptimizer,
    pub opts: AdamW,
}

impl Trainer {
    /// Starts training `model` (already frozen, with its adapter attached).
    pub fn new(model: Model, opts: AdamW) -> Self {
        let optim = AdamWConfig::new()
            .with_beta_1(opts.beta1)
            .with_beta_2(opts.beta2)
            .with_epsilon(opts.eps)
            .with_weight_decay(opts.weight_decay)
            .init();
        Self { model: Some(model), optim, opts }
    }

    /// The model being trained.
    pub fn model(&self) -> &Model {
        self.model.as_ref().expect("the model is put back after every step")
    }

    /// Ends training and returns the model.
    pub fn into_model(self) -> Model {
        self.model.expect("the model is put back after every step")
    }

    /// One optimiser step on a batch; returns the loss tensor (read it asynchronously).
    pub fn step(&mut self, ids: &[Vec<u32>], targets: &Targets) -> Result<Tensor<1>> {
        let loss = loss(self.model(), ids, targets)?;
        let grads = loss.backward();
        let lr = self.opts.lr;
        // The optimiser takes the module by value: nothing below can fail, so
        // the model is always put back.
        let model = self.model.take().expect("the model is put back after every step");
        let network = match model.network {
            Network::Llama(m) => {
                let g = GradientsParams::from_grads(grads, &m);
                Network::Llama(self.optim.step(lr, m, g))
            }
            Network::Gpt2(m) => {
                let g = GradientsParams::from_grads(grads, &m);
                Network::Gpt2(self.optim.step(lr, m, g))
            }
            Network::Bert(m) => {
                let g = GradientsParams::from_grads(grads, &m);
                Network::Bert(self.optim.step(lr, m, g))
            }
        };
        self.model = Some(Model { network, ..model });
        Ok(loss.detach())
    }
}

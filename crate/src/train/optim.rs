//! Optimisers with PyTorch's exact update rules (`torch.optim.AdamW`,
//! `torch.optim.SGD`), global gradient-norm clipping
//! (`torch.nn.utils.clip_grad_norm_`) and gradient accumulation.
//!
//! Written here rather than taken from burn-optim for three reasons: the
//! state must be saved by parameter *name* (burn keys it by per-run ids), it
//! must be read asynchronously in the browser, and clipping must use the
//! global norm over all parameters, as PyTorch does (burn clips per tensor).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Gradients, Tensor};

/// Which optimiser, with its hyper-parameters (PyTorch's names and defaults).
#[derive(Debug, Clone, PartialEq)]
pub enum OptimizerKind {
    AdamW { beta1: f64, beta2: f64, eps: f64, weight_decay: f64 },
    Sgd { momentum: f64, weight_decay: f64 },
}

impl OptimizerKind {
    /// `torch.optim.AdamW` with its defaults (weight decay 0.01).
    pub fn adamw() -> Self {
        Self::AdamW { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
    /// Plain `torch.optim.SGD`.
    pub fn sgd() -> Self {
        Self::Sgd { momentum: 0.0, weight_decay: 0.0 }
    }
}

/// Per-parameter state, flattened to 1-D (adapter tensors are 1-D or 2-D;
/// flat state keeps the code free of rank generics).
pub struct ParamState {
    /// AdamW `exp_avg`, or SGD's momentum buffer.
    pub m: Tensor<1>,
    /// AdamW `exp_avg_sq`.
    pub v: Option<Tensor<1>>,
}

/// An optimiser and its state.
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub state: HashMap<ParamId, ParamState>,
    /// Completed steps (AdamW's bias correction uses `steps + 1`).
    pub steps: usize,
}

/// Gradients of the trainable parameters, flat, summed over micro-batches.
#[derive(Default)]
pub struct Grads {
    pub map: HashMap<ParamId, Tensor<1>>,
}

impl Grads {
    /// Moves the gradients of `module`'s trainable parameters out of `grads`
    /// and adds them to the accumulated ones.
    pub fn collect<M: Module>(&mut self, module: &M, grads: &mut Gradients) {
        module.visit(&mut Collect { grads, out: &mut self.map });
    }

    /// The global L2 norm of all gradients, `[1]`, or `None` without gradients.
    pub fn norm(&self) -> Option<Tensor<1>> {
        self.map.values().map(|g| g.clone().square().sum()).reduce(|a, b| a + b).map(|s| s.sqrt())
    }

    /// Scales every gradient by `factor` (`[1]`).
    pub fn scale(&mut self, factor: Tensor<1>) {
        for g in self.map.values_mut() {
            *g = g.clone() * factor.clone();
        }
    }

    /// Adds a zero gradient for every trainable parameter of `module` that
    /// has none yet (DP-SGD noises every parameter, even on an empty batch).
    pub fn zeros_for<M: Module>(&mut self, module: &M) {
        struct Zeros<'a>(&'a mut HashMap<ParamId, Tensor<1>>);
        impl ModuleVisitor for Zeros<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let t = param.val();
                if t.is_require_grad() && !self.0.contains_key(&param.id) {
                    let n = t.shape().num_elements();
                    self.0.insert(param.id, t.inner().reshape([n]).zeros_like());
                }
            }
        }
        module.visit(&mut Zeros(&mut self.map));
    }

    /// Adds `other * factor` (`factor`: `[1]`) to these gradients.
    pub fn add_scaled(&mut self, other: Grads, factor: Tensor<1>) {
        for (id, g) in other.map {
            let g = g * factor.clone();
            let g = match self.map.remove(&id) {
                Some(acc) => acc + g,
                None => g,
            };
            self.map.insert(id, g);
        }
    }

    /// `clip_grad_norm_`: scales the gradients so their global norm is at
    /// most `max_norm`, given the norm already computed. Stays on the device.
    pub fn clip(&mut self, norm: Tensor<1>, max_norm: f64) {
        self.scale(clip_factor(norm, max_norm));
    }
}

/// The factor that brings gradients of L2 norm `norm` (any shape: one per
/// example for DP-SGD) to at most `max_norm`: `min(1, max_norm / (norm + 1e-6))`,
/// PyTorch's `clip_grad_norm_` and Opacus's per-example clipping alike.
pub fn clip_factor<const D: usize>(norm: Tensor<D>, max_norm: f64) -> Tensor<D> {
    ((norm + 1e-6).recip() * max_norm).clamp_max(1.0)
}

struct Collect<'a> {
    grads: &'a mut Gradients,
    out: &'a mut HashMap<ParamId, Tensor<1>>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        if !t.is_require_grad() {
            return;
        }
        if let Some(g) = t.grad_remove(self.grads) {
            let n = g.shape().num_elements();
            let g = g.reshape([n]);
            let g = match self.out.remove(&param.id) {
                Some(acc) => acc + g,
                None => g,
            };
            self.out.insert(param.id, g);
        }
    }
}

impl Optimizer {
    pub fn new(kind: OptimizerKind) -> Self {
        Self { kind, state: HashMap::new(), steps: 0 }
    }

    /// Applies one update with learning rate `lr` to the parameters of
    /// `module` that have gradients in `grads` (which are consumed).
    pub fn apply<M: Module>(&mut self, module: M, grads: &mut Grads, lr: f64) -> M {
        module.map(&mut Apply { opt: self, grads, lr })
    }

    /// Marks the end of a step (after every module has been updated).
    pub fn finish_step(&mut self) {
        self.steps += 1;
    }

    fn update(&mut self, id: ParamId, p: Tensor<1>, g: Tensor<1>, lr: f64) -> Tensor<1> {
        let t = (self.steps + 1) as i32;
        match self.kind {
            OptimizerKind::AdamW { beta1, beta2, eps, weight_decay } => {
                let st = self.state.entry(id).or_insert_with(|| ParamState { m: g.zeros_like(), v: Some(g.zeros_like()) });
                let m = st.m.clone() * beta1 + g.clone() * (1.0 - beta1);
                let v = st.v.clone().expect("AdamW state has exp_avg_sq") * beta2 + g.square() * (1.0 - beta2);
                st.m = m.clone();
                st.v = Some(v.clone());
                let bias1 = 1.0 - beta1.powi(t);
                let bias2 = 1.0 - beta2.powi(t);
                // torch: p *= 1 - lr*wd; p -= lr/bias1 * m / (sqrt(v)/sqrt(bias2) + eps)
                let p = p * (1.0 - lr * weight_decay);
                let denom = v.sqrt() / bias2.sqrt() + eps;
                p - m / denom * (lr / bias1)
            }
            OptimizerKind::Sgd { momentum, weight_decay } => {
                let g = if weight_decay != 0.0 { g + p.clone() * weight_decay } else { g };
                let step = if momentum != 0.0 {
                    let buf = match self.state.remove(&id) {
                        Some(st) => st.m * momentum + g,
                        None => g,
                    };
                    self.state.insert(id, ParamState { m: buf.clone(), v: None });
                    buf
                } else {
                    g
                };
                p - step * lr
            }
        }
    }
}

struct Apply<'a> {
    opt: &'a mut Optimizer,
    grads: &'a mut Grads,
    lr: f64,
}

impl ModuleMapper for Apply<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(g) = self.grads.map.remove(&id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let shape = tensor.shape();
        let strategy = tensor.gradient_checkpointing_strategy();
        let p = tensor.inner().reshape([shape.num_elements()]);
        let p = self.opt.update(id, p, g, self.lr);
        // Back onto the autodiff graph as a fresh leaf that keeps its gradient.
        let mut t = Tensor::<D>::from_inner(p.reshape(shape));
        if let Some(s) = strategy {
            t = t.with_gradient_checkpointing_strategy(s);
        }
        Param::from_mapped_value(id, t.require_grad(), mapper)
    }
}

/// Counts the trainable (gradient-requiring) values of a module.
pub fn count_trainable<M: Module>(module: &M) -> usize {
    struct Count(usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            if t.is_require_grad() {
                self.0 += t.shape().num_elements();
            }
        }
    }
    let mut c = Count(0);
    module.visit(&mut c);
    c.0
}

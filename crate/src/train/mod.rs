//! Training: losses and optimiser steps over the trainable (adapter)
//! parameters only. [`data`] turns files into examples, [`optim`] holds the
//! optimisers, [`run`] the loop with events and evaluation (the same loop the
//! browser runs).

pub mod checkpoint;
pub mod data;
pub mod dp;
pub mod gpu_job;
pub mod optim;
pub mod run;
pub mod session;
pub mod suggest;

use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::generate::read_f32;
use crate::models::layers::FrozenHead;
use crate::models::{taps, ForwardOutput, Model};
pub use optim::{clip_factor, count_trainable, Grads, Optimizer, OptimizerKind};

/// What a batch is trained to predict.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Next-token prediction on the inputs themselves (HF's shifted mean cross-entropy).
    CausalLm,
    /// Next-token prediction with HF-style labels: one per input position, `-100` ignored.
    Tokens(Vec<Vec<i32>>),
    /// One class per row (sequence classification).
    Classes(Vec<u32>),
}

/// Label value HF ignores in the loss.
pub const IGNORE: i32 = -100;

/// Mean cross-entropy of `logits` `[n, classes]` against `labels`.
pub fn cross_entropy(logits: Tensor<2>, labels: &[u32]) -> Tensor<1> {
    picked_log_probs(logits, labels).mean().neg()
}

/// The log-probability of each row's label under `logits` `[n, classes]`, `[n, 1]`.
fn picked_log_probs(logits: Tensor<2>, labels: &[u32]) -> Tensor<2> {
    let [n, _] = logits.dims();
    let idx: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
    let idx = Tensor::<2, Int>::from_data(TensorData::new(idx, [n, 1]), &logits.device());
    log_softmax(logits, 1).gather(1, idx)
}

/// `Σ w_i x_i` of `x` `[n]`.
fn weighted_sum(x: Tensor<1>, weights: &[f32]) -> Tensor<1> {
    let w = Tensor::<1>::from_data(TensorData::new(weights.to_vec(), [weights.len()]), &x.device());
    (x * w).sum()
}

/// Weighted sum of the negative log-likelihoods of `labels` under `logits` `[n, classes]`.
fn weighted_cross_entropy(logits: Tensor<2>, labels: &[u32], weights: &[f32]) -> Tensor<1> {
    let n = labels.len();
    weighted_sum(picked_log_probs(logits, labels).reshape([n]), weights).neg()
}

/// How a batch's losses are combined into the one that is back-propagated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// The mean over every scored token (or row), as HF's models compute their loss.
    Mean,
    /// Each row's mean, summed over the rows: DP-SGD's per-example losses, whose
    /// per-example gradients one backward pass gives ([`crate::models::taps`]).
    SumOfRowMeans,
}

impl Reduction {
    /// Per-item weights for items that belong to rows `rows_of` (`None`: a plain mean).
    fn weights(self, rows_of: impl Iterator<Item = usize>) -> Option<Vec<f32>> {
        match self {
            Self::Mean => None,
            Self::SumOfRowMeans => {
                let rows: Vec<usize> = rows_of.collect();
                let mut count = std::collections::HashMap::new();
                for &r in &rows {
                    *count.entry(r).or_insert(0usize) += 1;
                }
                Some(rows.iter().map(|r| 1.0 / count[r] as f32).collect())
            }
        }
    }
}

/// Most logits one chunk of the training loss holds (16 MB as f32): with a
/// frozen LM head, training never holds more of `[batch, seq, vocab]` at once.
pub const LOGITS_CHUNK: usize = 1 << 22;

/// [`cross_entropy`] of `hidden` rows `[n, h]` through a frozen LM head
/// `[h, vocab]`, without the `[n, vocab]` logits (and their gradient) ever
/// existing at once: chunk by chunk of rows, the logits, their log-softmax and
/// the rows' gradient (by a backward pass over that chunk's own small graph)
/// are computed and dropped (`chunk_values` logits at most per chunk). The loss brings the gradient `G` into the
/// model's graph as `value + (s - detach(s))`, `s = sum(hidden * G)`: its value
/// is exactly `value` and its gradient with respect to `hidden` is `G`. What
/// autodiff keeps is `hidden` and `G` (`[n, h]` each), not `[n, vocab]`.
pub fn chunked_cross_entropy(hidden: Tensor<2>, head: FrozenHead, labels: &[u32], chunk_values: usize) -> Tensor<1> {
    chunked_nll(hidden, head, labels, None, chunk_values)
}

/// [`chunked_cross_entropy`], or with `weights` (one per row) the weighted sum of the rows'
/// negative log-likelihoods instead of their mean.
fn chunked_nll(hidden: Tensor<2>, head: FrozenHead, labels: &[u32], weights: Option<&[f32]>, chunk_values: usize) -> Tensor<1> {
    let [n, _] = hidden.dims();
    let vocab = head.vocab();
    let rows = (chunk_values / vocab.max(1)).clamp(1, n.max(1));
    let (values, head) = (hidden.clone().inner(), head.inner());
    let (mut total, mut grads) = (None, Vec::with_capacity(n.div_ceil(rows)));
    for start in (0..n).step_by(rows) {
        let len = rows.min(n - start);
        let x = Tensor::from_inner(values.clone().narrow(0, start, len)).require_grad();
        let picked = picked_log_probs(head.logits(x.clone()), &labels[start..start + len]);
        let part = match weights {
            None => picked.sum().neg().div_scalar(n as f64),
            Some(w) => weighted_sum(picked.reshape([len]), &w[start..start + len]).neg(),
        };
        let g = part.backward();
        grads.push(x.grad(&g).expect("the chunk's rows require a gradient"));
        let part = part.inner();
        total = Some(match total {
            None => part,
            Some(t) => t + part,
        });
    }
    let value = Tensor::from_inner(total.expect("at least one row"));
    let s = (hidden * Tensor::from_inner(Tensor::cat(grads, 0))).sum();
    value + (s.clone() - s.detach())
}

/// The (row, position) pairs of a causal batch that are scored, and their
/// targets: HF's shift, after prompt tuning's virtual positions (whose labels
/// PEFT sets to -100, so the last virtual position predicts the first token).
fn causal_pairs(labels: &[Vec<i32>], positions: usize, virtual_tokens: usize) -> (Vec<i64>, Vec<u32>) {
    let (mut rows, mut targets) = (vec![], vec![]);
    for (b, row) in labels.iter().enumerate() {
        for (j, &l) in row.iter().enumerate() {
            // Label j sits at position virtual_tokens + j and is predicted one position earlier.
            let pos = virtual_tokens + j;
            if l == IGNORE || pos == 0 {
                continue;
            }
            rows.push((b * positions + pos - 1) as i64);
            targets.push(l as u32);
        }
    }
    (rows, targets)
}

/// The loss of one batch with gradient checkpointing, its gradients (times `scale`) added to
/// `grads`; `None` (nothing run) where it does not apply: families without a layer stack
/// (GPT-2, BERT), prefix tuning, and classification.
///
/// The layers first run without an autodiff graph (a `no_grad` copy of the network), keeping
/// only each layer's input. The loss is taken from the last one, then each layer is run again
/// with its graph, last to first, and back-propagated alone from the gradient of its output,
/// so at most one layer's activations are alive: the memory of `batch x seq x hidden` per
/// layer instead of every layer's attention and MLP activations, for a second forward pass.
pub fn checkpointed(model: &Model, ids: &[Vec<u32>], attention_mask: Option<&[Vec<u32>]>, targets: &Targets, scale: f64, grads: &mut Grads) -> Result<Option<Tensor<1>>> {
    if matches!(targets, Targets::Classes(_)) {
        return Ok(None);
    }
    let head = model.frozen_lm_head();
    let Some((stack, embeds, virtual_tokens, mask)) = model.embed_stage(ids, attention_mask)? else { return Ok(None) };
    let frozen = model.network.clone().no_grad();
    let frozen_stack = frozen.layer_stack().expect("the same family");
    let masks = stack.masks(&embeds, mask.as_deref(), 0);
    // Forward without a graph, keeping each layer's input.
    let mut inputs = Vec::with_capacity(stack.num_layers());
    let mut x = embeds.clone().detach();
    for i in 0..stack.num_layers() {
        inputs.push(x.clone());
        x = frozen_stack.layer(i, x, &masks, None).detach();
    }
    // The loss from the last layer's output, through the final norm.
    let top = x.require_grad();
    let hidden = stack.final_norm(top.clone());
    // Whole logits where the head is trained or soft-capped, else the chunked loss.
    let token_logits = head.is_none().then(|| stack.lm_logits(hidden.clone()));
    let out = ForwardOutput { last_hidden_state: hidden, token_logits, class_logits: None, virtual_tokens };
    let loss = loss_of(model, out, head, ids, targets, Reduction::Mean)?;
    let mut g = (loss.clone() * scale).backward();
    collect_grads(model, grads, &mut g);
    let mut up = top.grad(&g).expect("the top layer's output requires a gradient");
    // Each layer again, with its graph, last to first.
    for (i, input) in inputs.into_iter().enumerate().rev() {
        let x = input.require_grad();
        let y = stack.layer(i, x.clone(), &masks, None);
        let mut g = (y * Tensor::from_inner(up)).sum().backward();
        collect_grads(model, grads, &mut g);
        up = x.grad(&g).expect("a layer's input requires a gradient");
    }
    // Prompt tuning's virtual tokens sit in the embeddings.
    if virtual_tokens > 0 {
        let mut g = (embeds * Tensor::from_inner(up)).sum().backward();
        collect_grads(model, grads, &mut g);
    }
    Ok(Some(loss))
}

/// The training loss of `model` on a batch of equal-length rows
/// (`attention_mask`: 1 = real token; `None` means all real).
pub fn loss(model: &Model, ids: &[Vec<u32>], attention_mask: Option<&[Vec<u32>]>, targets: &Targets) -> Result<Tensor<1>> {
    loss_with(model, ids, attention_mask, targets, Reduction::Mean)
}

/// [`loss`], reduced as `reduction` says.
pub fn loss_with(model: &Model, ids: &[Vec<u32>], attention_mask: Option<&[Vec<u32>]>, targets: &Targets, reduction: Reduction) -> Result<Tensor<1>> {
    // A frozen LM head: the loss is taken chunk by chunk from the hidden states.
    let head = match targets {
        Targets::Classes(_) => None,
        _ => model.frozen_lm_head(),
    };
    let out = match head {
        Some(_) => model.forward_hidden(ids, attention_mask)?,
        None => model.forward(ids, attention_mask, None, None)?,
    };
    loss_of(model, out, head, ids, targets, reduction)
}

/// The loss of a forward pass's output (`head`: the frozen LM head, when the loss is taken
/// chunk by chunk from the hidden states).
fn loss_of(model: &Model, out: ForwardOutput, head: Option<FrozenHead>, ids: &[Vec<u32>], targets: &Targets, reduction: Reduction) -> Result<Tensor<1>> {
    match targets {
        Targets::CausalLm | Targets::Tokens(_) => {
            let [b, p, _] = out.last_hidden_state.dims();
            let v = match (&head, &out.token_logits) {
                (Some(h), _) => h.vocab(),
                (None, Some(l)) => l.dims()[2],
                (None, None) => return Err(Error::input("train", "causal-lm training needs a causal LM")),
            };
            let own;
            let labels = match targets {
                Targets::Tokens(l) => l,
                _ => {
                    own = ids.iter().map(|r| r.iter().map(|&t| t as i32).collect()).collect::<Vec<Vec<i32>>>();
                    &own
                }
            };
            let (rows, want) = causal_pairs(labels, p, out.virtual_tokens);
            if rows.is_empty() {
                return Err(Error::input("train", "the batch has no tokens to predict (every label is -100 or rows are 1 token long)"));
            }
            if let Some(bad) = want.iter().find(|&&t| t as usize >= v) {
                return Err(Error::input("train", format!("label {bad} is outside the vocabulary of {v}")));
            }
            let n = rows.len();
            let weights = reduction.weights(rows.iter().map(|&r| r as usize / p));
            let idx = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &model.device);
            match (head, out.token_logits) {
                (Some(head), _) => {
                    let h = out.last_hidden_state.dims()[2];
                    Ok(chunked_nll(out.last_hidden_state.reshape([b * p, h]).select(0, idx), head, &want, weights.as_deref(), LOGITS_CHUNK))
                }
                (None, Some(logits)) => {
                    let logits = logits.reshape([b * p, v]).select(0, idx);
                    Ok(match weights {
                        None => cross_entropy(logits, &want),
                        Some(w) => weighted_cross_entropy(logits, &want, &w),
                    })
                }
                (None, None) => Err(Error::input("train", "causal-lm training needs a causal LM")),
            }
        }
        Targets::Classes(labels) => {
            let logits = out.class_logits.ok_or_else(|| Error::input("train", "seq-cls training needs a classification head"))?;
            let n = logits.dims()[1];
            if let Some(bad) = labels.iter().find(|&&l| l as usize >= n) {
                return Err(Error::input("train", format!("label {bad} is outside the model's {n} classes")));
            }
            Ok(match reduction.weights(0..labels.len()) {
                None => cross_entropy(logits, labels),
                Some(w) => weighted_cross_entropy(logits, labels, &w),
            })
        }
    }
}

/// Freezes every parameter of the base network. Adapters attached afterwards
/// (and base tensors an adapter replaces) are the trainable set, as in PEFT.
pub fn freeze(model: Model) -> Model {
    Model { network: model.network.no_grad(), virtual_tokens: model.virtual_tokens.map(|v| v.no_grad()), ..model }
}

/// How the learning rate moves over training (HF `get_*_schedule_with_warmup`),
/// written `constant`, `linear` or `cosine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "cli-cpu", derive(clap::ValueEnum))]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum Schedule {
    Constant,
    Linear,
    Cosine,
}

impl Schedule {
    /// Parses `constant`, `linear` or `cosine`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "constant" => Ok(Self::Constant),
            "linear" => Ok(Self::Linear),
            "cosine" => Ok(Self::Cosine),
            other => Err(Error::input("--schedule", format!("unknown schedule '{other}' (use constant, linear or cosine)"))),
        }
    }

    /// The multiplier of the base learning rate at (0-based) optimiser step
    /// `step`, as transformers' schedulers give it: linear warm-up from 0
    /// over `warmup` steps, then the schedule's decay to 0 at `total`.
    pub fn factor(self, step: usize, warmup: usize, total: usize) -> f64 {
        if step < warmup {
            return step as f64 / warmup.max(1) as f64;
        }
        let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
        match self {
            Self::Constant => 1.0,
            Self::Linear => (1.0 - progress).max(0.0),
            Self::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
        }
    }
}

/// Optimiser settings of a training session.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    pub schedule: Schedule,
    pub warmup_steps: usize,
    /// Optimiser steps in the whole run (for the schedule).
    pub total_steps: usize,
    /// Clip the global gradient norm to this value.
    pub clip: Option<f64>,
    /// Switch the adapters' dropout (LoRA's) on during steps (set by [`Trainer::new`] when a layer has it).
    pub dropout_in_use: bool,
    /// Recompute each decoder layer in the backward pass instead of keeping its activations
    /// ([`checkpointed`]; not with LoRA dropout, whose masks would be drawn twice).
    pub gradient_checkpointing: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self { optimizer: OptimizerKind::adamw(), lr: 1e-3, schedule: Schedule::Constant, warmup_steps: 0, total_steps: 1, clip: None, dropout_in_use: false, gradient_checkpointing: false }
    }
}

/// One micro-batch: token rows, their mask and what they predict.
#[derive(Debug, Clone)]
pub struct MicroBatch {
    pub ids: Vec<Vec<u32>>,
    pub attention_mask: Option<Vec<Vec<u32>>>,
    pub targets: Targets,
}

/// What one optimiser step reports (read from the device asynchronously).
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    /// Mean loss over the micro-batches.
    pub loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Learning rate used for this step.
    pub lr: f64,
}

/// A training session: the model and its optimiser state.
pub struct Trainer {
    /// Always `Some` between calls; taken while the optimiser rewrites the modules.
    model: Option<Model>,
    pub optimizer: Optimizer,
    pub opts: TrainOptions,
    /// Micro-batches run with gradient checkpointing (others fell back to one backward pass).
    pub checkpointed: std::cell::Cell<usize>,
    /// Why DP-SGD takes a backward pass per example in this run, once a step found it must.
    pub dp_per_example: std::cell::RefCell<Option<String>>,
}

impl Trainer {
    /// Starts training `model` (already frozen, with its adapter attached).
    pub fn new(mut model: Model, mut opts: TrainOptions) -> Self {
        opts.dropout_in_use = model.named_layers().linears.iter().any(|(_, l)| l.adapters.iter().any(|a| a.method.dropout() > 0.0));
        Self { model: Some(model), optimizer: Optimizer::new(opts.optimizer.clone()), opts, checkpointed: Default::default(), dp_per_example: Default::default() }
    }

    /// The model being trained.
    pub fn model(&self) -> &Model {
        self.model.as_ref().expect("the model is put back after every step")
    }

    /// The model being trained, mutably (to name its parameters).
    pub fn model_mut(&mut self) -> &mut Model {
        self.model.as_mut().expect("the model is put back after every step")
    }

    /// Ends training and returns the model.
    pub fn into_model(self) -> Model {
        self.model.expect("the model is put back after every step")
    }

    /// Number of trainable values.
    pub fn trainable_parameters(&self) -> usize {
        let m = self.model();
        let net = count_trainable(&m.network);
        net + m.virtual_tokens.as_ref().map_or(0, count_trainable)
    }

    /// Learning rate of the next step.
    pub fn next_lr(&self) -> f64 {
        self.opts.lr * self.opts.schedule.factor(self.optimizer.steps, self.opts.warmup_steps, self.opts.total_steps)
    }

    /// One optimiser step over `micro` batches (gradient accumulation: each
    /// micro-batch loss is scaled by `1/len`, as HF's Trainer does).
    ///
    /// The loss and gradient norm are read asynchronously before the update
    /// is applied: a non-finite loss returns an error and leaves the adapter
    /// as it was, so the last good state is never lost.
    pub async fn step(&mut self, micro: &[MicroBatch]) -> Result<StepStats> {
        if micro.is_empty() {
            return Err(Error::input("train", "a step needs at least one batch"));
        }
        if self.opts.dropout_in_use {
            set_training(self.model_mut(), true);
        }
        let result = self.accumulate(micro).await;
        if self.opts.dropout_in_use {
            set_training(self.model_mut(), false);
        }
        let (grads, loss_value, grad_norm, norm) = result?;
        if loss_value.is_finite() && !grad_norm.is_finite() {
            // Name the parameters whose gradients broke, to make the error actionable.
            let mut bad = vec![];
            for (name, id) in checkpoint::trainable_names(self.model_mut()) {
                if let Some(g) = grads.map.get(&id) {
                    let s = read_f32(g.clone().abs().sum()).await?;
                    if !s[0].is_finite() {
                        bad.push(name);
                    }
                }
            }
            return Err(Error::input(
                "train",
                format!("the gradient became non-finite at step {} (loss {loss_value}) in: {}; the adapter keeps its last good values", self.optimizer.steps + 1, bad.join(", ")),
            ));
        }
        self.apply(grads, loss_value, grad_norm, norm)
    }

    /// One micro-batch's loss, its gradients (times `scale`) added to `grads`: checkpointed
    /// layer by layer when the options ask and the model allows it.
    fn loss_backward(&self, mb: &MicroBatch, scale: f64, grads: &mut Grads) -> Result<Tensor<1>> {
        let model = self.model();
        if self.opts.gradient_checkpointing && !self.opts.dropout_in_use {
            if let Some(l) = checkpointed(model, &mb.ids, mb.attention_mask.as_deref(), &mb.targets, scale, grads)? {
                self.checkpointed.set(self.checkpointed.get() + 1);
                return Ok(l);
            }
        }
        let l = loss(model, &mb.ids, mb.attention_mask.as_deref(), &mb.targets)?;
        let mut g = (l.clone() * scale).backward();
        collect_grads(model, grads, &mut g);
        Ok(l)
    }

    /// Forward and backward over the micro-batches; reads the loss and norm.
    async fn accumulate(&mut self, micro: &[MicroBatch]) -> Result<(Grads, f32, f32, Tensor<1>)> {
        let mut grads = Grads::default();
        let mut losses = Vec::with_capacity(micro.len());
        let scale = 1.0 / micro.len() as f64;
        for mb in micro {
            let l = self.loss_backward(mb, scale, &mut grads)?;
            losses.push(l.detach().inner());
        }
        let norm = grads.norm().ok_or_else(|| Error::input("train", "the model has no trainable parameters (attach an adapter)"))?;
        let mean = Tensor::cat(losses, 0).mean();
        let stats = read_f32(Tensor::cat(vec![mean, norm.clone()], 0)).await?;
        Ok((grads, stats[0], stats[1], norm))
    }

    /// Applies the update unless the loss or gradients are not finite.
    fn apply(&mut self, mut grads: Grads, loss_value: f32, grad_norm: f32, norm: Tensor<1>) -> Result<StepStats> {
        let lr = self.next_lr();
        if !loss_value.is_finite() || !grad_norm.is_finite() {
            return Err(Error::input(
                "train",
                format!("the loss became {loss_value} (gradient norm {grad_norm}) at step {}; training stopped and the adapter keeps its last good values. Try a lower learning rate or --clip", self.optimizer.steps + 1),
            ));
        }
        if let Some(max) = self.opts.clip {
            grads.clip(norm, max);
        }
        let model = self.model.take().expect("the model is put back after every step");
        let model = apply_update(model, &mut self.optimizer, &mut grads, lr);
        self.optimizer.finish_step();
        self.model = Some(model);
        Ok(StepStats { loss: loss_value, grad_norm, lr })
    }
}

/// What the per-example pass of a DP-SGD step gives: the clipped gradients
/// summed over the examples (no noise yet), and, for a non-empty batch, the
/// mean per-example loss `[1]` and the unclipped per-example gradient norms
/// `[examples]`, all on the device.
pub struct ClippedSum {
    pub grads: Grads,
    pub stats: Option<(Tensor<1>, Tensor<1>)>,
    /// True when one batched backward pass gave the per-example gradients
    /// ([`crate::models::taps`]); false for a backward pass per example.
    pub batched: bool,
}

/// The rows of single-row micro-batches as one right-padded batch (pad id 0,
/// masked; causal targets become labels with -100 on the padding), or `None`
/// when they don't combine.
fn merge_rows(examples: &[MicroBatch]) -> Option<MicroBatch> {
    if examples.is_empty() || examples.iter().any(|e| e.ids.len() != 1) {
        return None;
    }
    let width = examples.iter().map(|e| e.ids[0].len()).max()?;
    let pad = |mut row: Vec<u32>, with: u32| {
        row.resize(width, with);
        row
    };
    let ids = examples.iter().map(|e| pad(e.ids[0].clone(), 0)).collect();
    let mask = examples.iter().map(|e| pad(e.attention_mask.as_ref().map_or_else(|| vec![1; e.ids[0].len()], |m| m[0].clone()), 0)).collect();
    let targets = if examples.iter().all(|e| matches!(e.targets, Targets::Classes(_))) {
        Targets::Classes(examples.iter().flat_map(|e| if let Targets::Classes(c) = &e.targets { c.clone() } else { vec![] }).collect())
    } else {
        let mut labels = Vec::with_capacity(examples.len());
        for e in examples {
            let mut row: Vec<i32> = match &e.targets {
                Targets::CausalLm => e.ids[0].iter().map(|&t| t as i32).collect(),
                Targets::Tokens(l) => l[0].clone(),
                Targets::Classes(_) => return None,
            };
            row.resize(width, IGNORE);
            labels.push(row);
        }
        Targets::Tokens(labels)
    };
    Some(MicroBatch { ids, attention_mask: Some(mask), targets })
}

impl Trainer {
    /// DP-SGD's per-example pass over `examples` (each `MicroBatch` holds one
    /// row): each example's gradient clipped over all trainable tensors
    /// together with Opacus's factor `min(1, C / (norm + 1e-6))`, then summed.
    /// Every trainable parameter gets an entry, zero when the batch is empty.
    /// Nothing is read from the device.
    ///
    /// The examples run as one padded batch with one backward pass when every
    /// trainable tensor has a per-example rule ([`crate::models::taps`]: LoRA,
    /// DoRA, (IA)³, biases, LayerNorms, trained linear heads, prompt and prefix
    /// tables) and gradient checkpointing is off; otherwise (a tensor without
    /// a rule, or to keep one example's activations at a time) one backward
    /// pass per example.
    pub fn clipped_sum(&self, examples: &[MicroBatch], max_grad_norm: f64) -> Result<ClippedSum> {
        let model = self.model();
        let batched = if self.opts.gradient_checkpointing || self.dp_per_example.borrow().is_some() { None } else { merge_rows(examples) };
        let mut sum = match batched {
            Some(batch) => match self.clipped_sum_batched(&batch, examples.len(), max_grad_norm)? {
                Ok(sum) => sum,
                Err(why) => {
                    // Decided once per run: the trainable set does not change.
                    *self.dp_per_example.borrow_mut() = Some(why);
                    self.clipped_sum_looped(examples, max_grad_norm)?
                }
            },
            None => self.clipped_sum_looped(examples, max_grad_norm)?,
        };
        sum.grads.zeros_for(&model.network);
        if let Some(v) = &model.virtual_tokens {
            sum.grads.zeros_for(v);
        }
        if sum.grads.map.is_empty() {
            return Err(Error::input("train", "the model has no trainable parameters (attach an adapter)"));
        }
        Ok(sum)
    }

    /// The clipped sum from one forward and backward pass over `batch` (`rows`
    /// examples): per-example gradients from the taps, their norms, and the
    /// clip factors applied as one `[1, rows] x [rows, numel]` product per
    /// tensor. `Err(why)` when some trainable tensor has no tap.
    fn clipped_sum_batched(&self, batch: &MicroBatch, rows: usize, max_grad_norm: f64) -> Result<std::result::Result<ClippedSum, String>> {
        let model = self.model();
        taps::start(rows);
        let l = match loss_with(model, &batch.ids, batch.attention_mask.as_deref(), &batch.targets, Reduction::SumOfRowMeans) {
            Ok(l) => l,
            Err(e) => {
                taps::abandon();
                return Err(e);
            }
        };
        let mut g = l.clone().backward();
        let per = taps::finish(&g);
        let mut whole = Grads::default();
        collect_grads(model, &mut whole, &mut g);
        let per = match per {
            Ok(per) => per,
            Err(why) => return Ok(Err(why)),
        };
        let missing = whole.map.keys().filter(|id| !per.contains_key(id)).count();
        if missing > 0 {
            return Ok(Err(format!("{missing} trainable tensors (such as embeddings or RMSNorm weights) have no per-example rule")));
        }
        let squares = per.values().map(|p| p.clone().square().sum_dim(1)).reduce(|a, b| a + b).expect("the trainable tensors have taps");
        let norms = squares.sqrt().reshape([rows]);
        let factor = clip_factor(norms.clone(), max_grad_norm).reshape([1, rows]);
        let mut grads = Grads::default();
        for (id, p) in per {
            if whole.map.contains_key(&id) {
                let n = p.dims()[1];
                grads.map.insert(id, factor.clone().matmul(p).reshape([n]));
            }
        }
        let mean_loss = l.detach().inner() / rows as f64;
        Ok(Ok(ClippedSum { grads, stats: Some((mean_loss, norms)), batched: true }))
    }

    /// The clipped sum with one backward pass per example.
    fn clipped_sum_looped(&self, examples: &[MicroBatch], max_grad_norm: f64) -> Result<ClippedSum> {
        let mut sum = Grads::default();
        let (mut losses, mut norms) = (Vec::with_capacity(examples.len()), Vec::with_capacity(examples.len()));
        for ex in examples {
            let mut own = Grads::default();
            let l = self.loss_backward(ex, 1.0, &mut own)?;
            let norm = own.norm().ok_or_else(|| Error::input("train", "the model has no trainable parameters (attach an adapter)"))?;
            let factor = clip_factor(norm.clone(), max_grad_norm);
            sum.add_scaled(own, factor);
            losses.push(l.detach().inner());
            norms.push(norm);
        }
        let stats = (!examples.is_empty()).then(|| (Tensor::cat(losses, 0).mean(), Tensor::cat(norms, 0)));
        Ok(ClippedSum { grads: sum, stats, batched: false })
    }

    /// One DP-SGD step on a Poisson-sampled batch (`examples`, one row each,
    /// possibly none): the clipped sum, plus Gaussian noise of std
    /// `noise_multiplier * max_grad_norm` on every trainable value, divided by
    /// the expected batch size, then the optimiser's update (no `clip`: the
    /// per-example clipping replaces it). The stats are the mean per-example
    /// loss and unclipped gradient norm (NaN for an empty batch).
    pub async fn dp_step(&mut self, examples: &[MicroBatch], plan: &dp::DpPlan, rng: &mut rand::rngs::StdRng) -> Result<StepStats> {
        if self.opts.dropout_in_use {
            set_training(self.model_mut(), true);
        }
        let result = self.clipped_sum(examples, plan.max_grad_norm);
        if self.opts.dropout_in_use {
            set_training(self.model_mut(), false);
        }
        let ClippedSum { mut grads, stats, .. } = result?;
        let (loss_value, grad_norm) = match stats {
            None => (f32::NAN, f32::NAN),
            Some((loss, norms)) => {
            let stats = read_f32(Tensor::cat(vec![loss, norms.mean()], 0)).await?;
            if !stats[0].is_finite() || !stats[1].is_finite() {
                return Err(Error::input(
                    "train",
                    format!("the loss became {} (mean per-example gradient norm {}) at step {}; training stopped and the adapter keeps its last good values. Try a lower learning rate", stats[0], stats[1], self.optimizer.steps + 1),
                ));
            }
            (stats[0], stats[1])
            }
        };
        // Parameters in creation order, so a seeded run draws the same noise for the same tensor.
        let mut ids: Vec<_> = grads.map.keys().copied().collect();
        ids.sort();
        let std = plan.noise_multiplier * plan.max_grad_norm;
        for id in ids {
            let g = grads.map.remove(&id).expect("a key of the map");
            let n = g.dims()[0];
            let g = if std > 0.0 { g.clone() + Tensor::<1>::from_data(TensorData::new(dp::gaussian(rng, n, std), [n]), &g.device()) } else { g };
            grads.map.insert(id, g / plan.expected_batch_size);
        }
        let lr = self.next_lr();
        let model = self.model.take().expect("the model is put back after every step");
        let model = apply_update(model, &mut self.optimizer, &mut grads, lr);
        self.optimizer.finish_step();
        self.model = Some(model);
        Ok(StepStats { loss: loss_value, grad_norm, lr })
    }
}

/// Turns the adapters' dropout on (inside a step) or off.
fn set_training(model: &mut Model, on: bool) {
    for (_, l) in model.named_layers().linears {
        for a in l.adapters.iter_mut() {
            a.training = on;
        }
    }
}

fn collect_grads(model: &Model, grads: &mut Grads, g: &mut burn::tensor::Gradients) {
    grads.collect(&model.network, g);
    if let Some(v) = &model.virtual_tokens {
        grads.collect(v, g);
    }
}

fn apply_update(model: Model, opt: &mut Optimizer, grads: &mut Grads, lr: f64) -> Model {
    let network = opt.apply(model.network, grads, lr);
    let virtual_tokens = model.virtual_tokens.map(|v| opt.apply(v, grads, lr));
    Model { network, virtual_tokens, ..model }
}

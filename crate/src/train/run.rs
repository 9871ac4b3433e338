//! The training loop, one optimiser step per call so that a caller (the CLI,
//! or the browser worker between animation frames) can pause, resume, cancel
//! and checkpoint between steps. Every step yields structured events.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use super::data::{collate, Example, Task};
use super::dp::{self, DpPlan, DpSpec};
use super::{loss, MicroBatch, StepStats, Targets, TrainOptions, Trainer};
use crate::error::{Error, Result};
use crate::generate::read_f32;
use crate::models::Model;

/// How long and on what a run trains.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub task: Task,
    /// Rows per micro-batch.
    pub batch: usize,
    /// Micro-batches per optimiser step.
    pub grad_accum: usize,
    /// Stop after this many optimiser steps (overrides `epochs`).
    pub steps: Option<usize>,
    pub epochs: usize,
    pub shuffle: bool,
    pub seed: u64,
    /// Evaluate every N steps (and at the end) when there is eval data.
    pub eval_every: Option<usize>,
    /// Stop when the eval loss has not improved for this many evaluations.
    pub patience: Option<usize>,
    pub pad_id: u32,
    pub optim: TrainOptions,
    /// Differentially private training (DP-SGD with Poisson sampling).
    pub dp: Option<DpSpec>,
}

/// One optimiser step, as the CLI prints it (one JSON line) and the page draws it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "StepReport", rename_all = "camelCase"))]
pub struct StepEvent {
    pub step: usize,
    pub total_steps: usize,
    /// Fractional epoch reached.
    pub epoch: f64,
    pub loss: f32,
    pub lr: f64,
    pub grad_norm: f32,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
    pub eta_s: f64,
    /// DP runs: epsilon spent so far (at the run's delta, by the run's accountant).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub epsilon: Option<f64>,
    /// DP runs: the size of this step's Poisson-sampled batch (can be 0; the
    /// loss and grad_norm, the mean per-example unclipped norm, are then null).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub batch_size: Option<usize>,
}

/// Metrics on an eval set.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename_all = "camelCase"))]
pub struct EvalMetrics {
    pub loss: f64,
    /// Causal LM: `exp(loss)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub perplexity: Option<f64>,
    /// Classification.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub accuracy: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub macro_f1: Option<f64>,
    pub examples: usize,
}

/// What [`Run::next`] reports: a step, an evaluation, the end of the run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "CoreEvent"))]
pub enum Event {
    Step(StepEvent),
    Eval { step: usize, metrics: EvalMetrics },
    /// Training ended: `reason` is `completed` or `early_stopping`.
    Done { step: usize, reason: String },
}

/// A training run in progress.
pub struct Run {
    pub trainer: Trainer,
    train: Vec<Example>,
    eval: Vec<Example>,
    pub config: RunConfig,
    /// Completed optimiser steps.
    pub step: usize,
    pub total_steps: usize,
    steps_per_epoch: usize,
    /// Which rows the next micro-batch takes.
    batches: Batches,
    tokens: usize,
    session_steps: usize,
    started_at: Option<f64>,
    best_eval: Option<f64>,
    bad_evals: usize,
    finished: bool,
    /// DP runs: the resolved settings and the random source of the sampling and noise.
    dp: Option<(DpPlan, rand::rngs::StdRng)>,
    /// DP runs: epsilon spent by the `step` steps taken (the accountant runs
    /// once per step, before it, so a failing accountant stops the run
    /// before it spends privacy it cannot account for).
    dp_spent: f64,
    last_batch: Option<usize>,
}

impl Run {
    /// Prepares a run. `model` must be frozen with its adapter attached.
    pub fn new(model: Model, train: Vec<Example>, eval: Vec<Example>, mut config: RunConfig) -> Result<Self> {
        if train.is_empty() {
            return Err(Error::input("data", "the training set contains no examples"));
        }
        if config.batch == 0 || config.grad_accum == 0 {
            return Err(Error::input("--batch", "batch size and gradient accumulation must be at least 1"));
        }
        let per_step = config.batch * config.grad_accum;
        let steps_per_epoch = train.len().div_ceil(per_step);
        let total_steps = config.steps.unwrap_or(config.epochs.max(1) * steps_per_epoch).max(1);
        config.optim.total_steps = total_steps;
        let dp = match &config.dp {
            None => None,
            Some(spec) => {
                if config.grad_accum != 1 {
                    return Err(Error::input("grad_accum", "DP training samples one Poisson batch per step; use batch instead of grad_accum"));
                }
                if config.optim.clip.is_some() {
                    return Err(Error::input("clip", "DP training clips each example's gradient to dp.max_grad_norm; drop clip"));
                }
                Some((DpPlan::new(spec, train.len(), config.batch, total_steps)?, dp::rng(spec)))
            }
        };
        let trainer = Trainer::new(model, config.optim.clone());
        let batches = Batches::new(train.len(), config.batch, config.shuffle, config.seed);
        Ok(Self {
            trainer,
            batches,
            train,
            eval,
            config,
            step: 0,
            total_steps,
            steps_per_epoch,
            tokens: 0,
            session_steps: 0,
            started_at: None,
            best_eval: None,
            bad_evals: 0,
            finished: false,
            dp,
            dp_spent: 0.0,
            last_batch: None,
        })
    }

    /// Number of training examples.
    pub fn train_len(&self) -> usize {
        self.train.len()
    }

    /// Optimiser steps per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    /// The training examples, as encoded.
    pub fn train_examples(&self) -> &[Example] {
        &self.train
    }

    /// Every micro-batch of the whole run from its first step, as indices into
    /// [`Run::train_examples`], in the order the run feeds them (its per-epoch shuffles included).
    /// Not for DP runs, which sample Poisson batches.
    pub fn micro_batch_plan(&self) -> Vec<Vec<usize>> {
        let mut fresh = Batches::new(self.train.len(), self.config.batch, self.config.shuffle, self.config.seed);
        (0..self.total_steps * self.config.grad_accum).map(|_| fresh.next_rows().to_vec()).collect()
    }

    /// The next micro-batch, wrapping into a new epoch as needed.
    fn next_micro(&mut self) -> MicroBatch {
        let rows: Vec<&Example> = self.batches.next_rows().iter().map(|&i| &self.train[i]).collect();
        let b = collate(&rows, self.config.pad_id);
        self.tokens += b.tokens;
        let targets = match self.config.task {
            Task::CausalLm => Targets::Tokens(b.labels),
            Task::SeqCls => Targets::Classes(b.classes),
        };
        MicroBatch { ids: b.ids, attention_mask: Some(b.attention_mask), targets }
    }

    /// A DP run's resolved settings (noise multiplier, sample rate, ...).
    pub fn dp_plan(&self) -> Option<&DpPlan> {
        self.dp.as_ref().map(|(p, _)| p)
    }

    /// What `webpeft.json` records about a DP run so far.
    pub fn dp_record(&self) -> Option<dp::DpRecord> {
        self.dp_plan().map(|p| p.record_spent(self.step, self.dp_spent))
    }

    /// Epsilon spent so far by a DP run.
    pub fn epsilon(&self) -> Option<f64> {
        self.dp_plan().map(|_| self.dp_spent)
    }

    /// Epsilon a DP run will have spent after `steps` steps (0 for other runs).
    fn epsilon_at(&self, steps: usize) -> Result<f64> {
        self.dp_plan().map_or(Ok(0.0), |p| p.epsilon(steps))
    }

    /// One DP step: a Poisson-sampled batch, one micro-batch per example.
    async fn dp_step(&mut self) -> Result<StepStats> {
        let (plan, rng) = self.dp.as_mut().expect("a DP run");
        let picked = dp::poisson_batch(rng, self.train.len(), plan.sample_rate);
        let mut examples = Vec::with_capacity(picked.len());
        for &i in &picked {
            let b = collate(&[&self.train[i]], self.config.pad_id);
            self.tokens += b.tokens;
            let targets = match self.config.task {
                Task::CausalLm => Targets::Tokens(b.labels),
                Task::SeqCls => Targets::Classes(b.classes),
            };
            examples.push(MicroBatch { ids: b.ids, attention_mask: Some(b.attention_mask), targets });
        }
        self.last_batch = Some(picked.len());
        let (plan, rng) = self.dp.as_mut().expect("a DP run");
        self.trainer.dp_step(&examples, plan, rng).await
    }

    /// Skips `steps` optimiser steps of data (resuming from a checkpoint).
    pub fn fast_forward(&mut self, steps: usize) -> Result<()> {
        self.dp_spent = self.epsilon_at(steps)?;
        for _ in 0..steps * self.config.grad_accum {
            self.next_micro();
        }
        self.step = steps;
        self.trainer.optimizer.steps = steps;
        self.tokens = 0;
        Ok(())
    }

    /// True once the run has finished (all steps, or early stopping).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Runs one optimiser step (and an evaluation when one is due). `clock`
    /// gives the caller's time in seconds (the core has none in the browser).
    /// Returns no events once the run has finished.
    pub async fn next(&mut self, clock: &dyn Fn() -> f64) -> Result<Vec<Event>> {
        if self.finished {
            return Ok(vec![]);
        }
        self.started_at.get_or_insert_with(clock);
        let StepStats { loss, grad_norm, lr } = if self.dp.is_some() {
            let spent = self.epsilon_at(self.step + 1)?;
            let stats = self.dp_step().await?;
            self.dp_spent = spent;
            stats
        } else {
            let micro: Vec<MicroBatch> = (0..self.config.grad_accum).map(|_| self.next_micro()).collect();
            self.trainer.step(&micro).await?
        };
        self.step += 1;
        self.session_steps += 1;
        let mut events = vec![Event::Step(self.step_event(loss, grad_norm, lr, clock()))];
        let last = self.step >= self.total_steps;
        let due = self.config.eval_every.is_some_and(|n| n > 0 && self.step % n == 0);
        if !self.eval.is_empty() && (due || last) {
            let metrics = evaluate(self.trainer.model(), &self.eval, self.config.task, self.config.batch, self.config.pad_id).await?;
            let improved = self.best_eval.is_none_or(|b| metrics.loss < b);
            if improved {
                self.best_eval = Some(metrics.loss);
                self.bad_evals = 0;
            } else {
                self.bad_evals += 1;
            }
            events.push(Event::Eval { step: self.step, metrics });
            if self.config.patience.is_some_and(|p| self.bad_evals >= p) && !last {
                self.finished = true;
                events.push(Event::Done { step: self.step, reason: "early_stopping".into() });
                return Ok(events);
            }
        }
        if last {
            self.finished = true;
            events.push(Event::Done { step: self.step, reason: "completed".into() });
        }
        Ok(events)
    }

    fn step_event(&self, loss: f32, grad_norm: f32, lr: f64, now_s: f64) -> StepEvent {
        let elapsed = now_s - self.started_at.unwrap_or(now_s);
        // Rates count this session's steps only (a resumed run starts its clock anew).
        let per_step = elapsed / self.session_steps.max(1) as f64;
        StepEvent {
            step: self.step,
            total_steps: self.total_steps,
            epoch: self.step as f64 / self.steps_per_epoch as f64,
            loss,
            lr,
            grad_norm,
            tokens_per_s: if elapsed > 0.0 { self.tokens as f64 / elapsed } else { 0.0 },
            elapsed_s: elapsed,
            eta_s: per_step * (self.total_steps - self.step) as f64,
            epsilon: self.epsilon(),
            batch_size: self.last_batch,
        }
    }

    /// Ends the run and returns the model.
    pub fn into_model(self) -> Model {
        self.trainer.into_model()
    }
}

/// The rows of each micro-batch, epoch after epoch: one seeded permutation per epoch when
/// shuffling, so a resumed run (and an exported job's plan) sees the same batches. An epoch's
/// last batch may be short; batches never straddle epochs.
struct Batches {
    batch: usize,
    shuffle: bool,
    seed: u64,
    epoch: usize,
    order: Vec<usize>,
    cursor: usize,
}

impl Batches {
    fn new(n: usize, batch: usize, shuffle: bool, seed: u64) -> Self {
        let mut b = Self { batch, shuffle, seed, epoch: 0, order: (0..n).collect(), cursor: 0 };
        b.shuffle_epoch();
        b
    }

    fn shuffle_epoch(&mut self) {
        self.order.sort_unstable();
        if self.shuffle {
            let mut rng = StdRng::seed_from_u64(self.seed.wrapping_add(self.epoch as u64));
            self.order.shuffle(&mut rng);
        }
    }

    /// The next micro-batch's rows, wrapping into a new epoch as needed.
    fn next_rows(&mut self) -> &[usize] {
        if self.cursor >= self.order.len() {
            self.epoch += 1;
            self.cursor = 0;
            self.shuffle_epoch();
        }
        let start = self.cursor;
        self.cursor = (start + self.batch).min(self.order.len());
        &self.order[start..self.cursor]
    }
}

/// Loss and metrics of `model` on `examples` (no gradients are kept).
/// Causal LM: the token-weighted mean loss and perplexity. Classification:
/// the mean loss, accuracy and macro-F1 (over the classes of the head).
pub async fn evaluate(model: &Model, examples: &[Example], task: Task, batch: usize, pad_id: u32) -> Result<EvalMetrics> {
    if examples.is_empty() {
        return Err(Error::input("eval data", "the eval set contains no examples"));
    }
    let (mut loss_sum, mut weight) = (0.0f64, 0usize);
    let (mut predicted, mut actual) = (vec![], vec![]);
    for chunk in examples.chunks(batch.max(1)) {
        let rows: Vec<&Example> = chunk.iter().collect();
        let b = collate(&rows, pad_id);
        match task {
            Task::CausalLm => {
                // Every label except the first of a row is scored (HF's shift),
                // plus the first when prompt tuning puts virtual tokens before it.
                let skip_first = model.prompt().is_none();
                let n: usize = b.labels.iter().map(|r| r.iter().skip(skip_first as usize).filter(|&&l| l != super::IGNORE).count()).sum();
                if n == 0 {
                    continue;
                }
                let l = loss(model, &b.ids, Some(&b.attention_mask), &Targets::Tokens(b.labels.clone()))?;
                loss_sum += read_f32(l.detach()).await?[0] as f64 * n as f64;
                weight += n;
            }
            Task::SeqCls => {
                let out = model.forward(&b.ids, Some(&b.attention_mask), None, None)?;
                let logits = out.class_logits.ok_or_else(|| Error::input("eval", "the model has no classification head"))?;
                let [rows_n, k] = logits.dims();
                if let Some(bad) = b.classes.iter().find(|&&c| c as usize >= k) {
                    return Err(Error::input("eval data", format!("label index {bad} is outside the model's {k} classes")));
                }
                let values = read_f32(logits.detach()).await?;
                for (r, &c) in b.classes.iter().enumerate().take(rows_n) {
                    let row = &values[r * k..(r + 1) * k];
                    let max = row.iter().cloned().fold(f32::MIN, f32::max);
                    let lse = max as f64 + row.iter().map(|v| ((v - max) as f64).exp()).sum::<f64>().ln();
                    loss_sum += lse - row[c as usize] as f64;
                    weight += 1;
                    predicted.push(crate::generate::argmax(row));
                    actual.push(c);
                }
            }
        }
    }
    if weight == 0 {
        return Err(Error::input("eval data", "no eval example has a token to predict"));
    }
    let loss = loss_sum / weight as f64;
    Ok(match task {
        Task::CausalLm => EvalMetrics { loss, perplexity: Some(loss.exp()), accuracy: None, macro_f1: None, examples: examples.len() },
        Task::SeqCls => {
            let classes = model.info.num_labels.unwrap_or(0).max(actual.iter().chain(&predicted).map(|&c| c as usize + 1).max().unwrap_or(0));
            EvalMetrics { loss, perplexity: None, accuracy: Some(accuracy(&predicted, &actual)), macro_f1: Some(macro_f1(&predicted, &actual, classes)), examples: examples.len() }
        }
    })
}

/// Share of predictions equal to the labels.
pub fn accuracy(predicted: &[u32], actual: &[u32]) -> f64 {
    let hits = predicted.iter().zip(actual).filter(|(p, a)| p == a).count();
    hits as f64 / actual.len().max(1) as f64
}

/// Unweighted mean of per-class F1 over the classes that occur in the labels
/// or the predictions (scikit-learn's `f1_score(average="macro")`).
pub fn macro_f1(predicted: &[u32], actual: &[u32], classes: usize) -> f64 {
    let mut f1s = vec![];
    for c in 0..classes as u32 {
        let tp = predicted.iter().zip(actual).filter(|(p, a)| **p == c && **a == c).count() as f64;
        let fp = predicted.iter().zip(actual).filter(|(p, a)| **p == c && **a != c).count() as f64;
        let fn_ = predicted.iter().zip(actual).filter(|(p, a)| **p != c && **a == c).count() as f64;
        if tp + fp + fn_ == 0.0 {
            continue;
        }
        f1s.push(2.0 * tp / (2.0 * tp + fp + fn_));
    }
    if f1s.is_empty() {
        0.0
    } else {
        f1s.iter().sum::<f64>() / f1s.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_scikit_learn() {
        // sklearn: accuracy_score = 0.5; f1_score(average="macro") = (0.8 + 0 + 0.5) / 3.
        let y_true = [0, 1, 2, 0, 1, 2];
        let y_pred = [0, 2, 1, 0, 0, 2];
        assert_eq!(accuracy(&y_pred, &y_true), 0.5);
        let f1 = macro_f1(&y_pred, &y_true, 3);
        assert!((f1 - 0.433_333_333).abs() < 1e-6, "{f1}");
    }
}

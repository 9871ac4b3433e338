//! Benchmark workloads shared by `webpeft bench` and the browser's
//! `Tuner.benchmark`, so that native and browser figures measure the same
//! work: a LoRA training step on the same pseudo-random token rows, and a
//! square matmul for a raw GFLOPS figure. The caller keeps the clock
//! (`Instant` natively, `performance.now()` in the browser): these are
//! measurements, never tests.

use burn::tensor::{Device, Distribution, Tensor};

use rand::SeedableRng;

use crate::generate::read_f32;

use crate::peft::create::{create_adapter, AdapterSpec, Method};
use crate::train::data::Task;
use crate::train::dp::{Accountant, DpPlan};
use crate::train::{MicroBatch, Targets, TrainOptions, Trainer};
use crate::{Error, Model, Result};

/// Deterministic pseudo-random token ids, well inside the vocabulary (the
/// same rows as `scripts/bench_forward.py` builds for PyTorch).
pub fn ids(batch: usize, seq: usize, vocab: usize) -> Vec<Vec<u32>> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let span = (vocab as u64).saturating_sub(2000).max(1);
    let low = if vocab > 2000 { 1000 } else { 0 };
    (0..batch)
        .map(|_| {
            (0..seq)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (low + x % span) as u32
                })
                .collect()
        })
        .collect()
}

/// The benchmark's micro-batch for `task`, as (rows, tokens per row): 16 x 64
/// for a classifier, 4 x 128 for a causal LM.
pub fn default_shape(task: Task) -> (usize, usize) {
    match task {
        Task::SeqCls => (16, 64),
        Task::CausalLm => (4, 128),
    }
}

/// One LoRA training step (r 8, PEFT's default targets, AdamW) repeated on
/// fixed token rows: `causal-lm` on the rows themselves, or `seq-cls` with
/// two labels and a new head.
pub struct TrainBench {
    trainer: Trainer,
    micro: Vec<MicroBatch>,
}

impl TrainBench {
    /// Attaches a new LoRA adapter to `model` (frozen, on an autodiff
    /// device). Pass a clone to keep the original free of it.
    pub fn new(mut model: Model, task: Task, batch: usize, seq: usize, gradient_checkpointing: bool) -> Result<Self> {
        if batch == 0 || seq == 0 {
            return Err(Error::input("benchmark", format!("batch ({batch}) and sequence length ({seq}) must be positive")));
        }
        if seq > model.info.context_length {
            return Err(Error::input("benchmark", format!("sequence length {seq} is above the model's context of {}", model.info.context_length)));
        }
        if model.adapter_config.is_some() {
            return Err(Error::input("benchmark", "the model already has an adapter; benchmark the base model"));
        }
        let mut spec = AdapterSpec::new(Method::Lora);
        spec.seq_cls = task == Task::SeqCls;
        spec.labels = Some(vec!["a".into(), "b".into()]);
        create_adapter(&mut model, &spec)?;
        let targets = match task {
            Task::SeqCls => Targets::Classes((0..batch as u32).map(|i| i % 2).collect()),
            Task::CausalLm => Targets::CausalLm,
        };
        let micro = vec![MicroBatch { ids: ids(batch, seq, model.info.vocab_size), attention_mask: None, targets }];
        Ok(Self { trainer: Trainer::new(model, TrainOptions { lr: 1e-4, gradient_checkpointing, ..Default::default() }), micro })
    }

    /// Forward, backward and the AdamW update; returns the loss, read back
    /// from the device, so the step has finished when this returns.
    pub async fn step(&mut self) -> Result<f32> {
        Ok(self.trainer.step(&self.micro).await?.loss)
    }

    /// A DP-SGD step on the same rows, each an example (noise multiplier 1,
    /// clipping norm 1, the batch as the expected batch size): per-example
    /// gradients from one batched backward pass, or with `per_example_loop`
    /// from a backward pass per example. Returns the mean per-example loss.
    pub async fn dp_step(&mut self, per_example_loop: bool) -> Result<f32> {
        let examples: Vec<MicroBatch> = self.micro[0]
            .ids
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let targets = match &self.micro[0].targets {
                    Targets::Classes(c) => Targets::Classes(vec![c[i]]),
                    _ => Targets::CausalLm,
                };
                MicroBatch { ids: vec![row.clone()], attention_mask: None, targets }
            })
            .collect();
        let rows = examples.len();
        let plan = DpPlan { accountant: Accountant::Rdp, target_epsilon: None, delta: 1e-5, noise_multiplier: 1.0, max_grad_norm: 1.0, sample_rate: 0.5, expected_batch_size: rows as f64, steps: 1 };
        *self.trainer.dp_per_example.borrow_mut() = per_example_loop.then(|| "benchmark: one pass per example".to_string());
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let stats = self.trainer.dp_step(&examples, &plan, &mut rng).await?;
        if !per_example_loop && self.trainer.dp_per_example.borrow().is_some() {
            return Err(Error::input("benchmark", "the batched DP pass fell back to one pass per example"));
        }
        Ok(stats.loss)
    }
}

/// Two `n`×`n` random matrices for the matmul probe.
pub struct MatmulProbe {
    a: Tensor<2>,
    b: Tensor<2>,
}

impl MatmulProbe {
    pub fn new(device: &Device, n: usize) -> Self {
        let a = Tensor::random([n, n], Distribution::Uniform(-1.0, 1.0), device);
        let b = Tensor::random([n, n], Distribution::Uniform(-1.0, 1.0), device);
        Self { a, b }
    }

    /// Floating-point operations in one matmul (2n³).
    pub fn flops(&self) -> f64 {
        2.0 * (self.a.dims()[0] as f64).powi(3)
    }

    /// `reps` matmuls, waiting until the device has finished all of them
    /// (one small read at the end).
    pub async fn run(&self, reps: usize) -> Result<()> {
        let mut acc = self.a.clone().slice([0..1, 0..1]).mul_scalar(0.0);
        for _ in 0..reps {
            acc = acc + self.a.clone().matmul(self.b.clone()).slice([0..1, 0..1]);
        }
        read_f32(acc).await.map(|_| ())
    }
}

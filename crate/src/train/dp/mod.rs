//! Differentially private training (DP-SGD, as Opacus does it): per-example
//! gradients clipped to `max_grad_norm` over all trainable tensors together
//! (flat clipping), summed, Gaussian noise of std
//! `noise_multiplier * max_grad_norm` on every trainable value, divided by
//! the expected batch size; Poisson-sampled batches; and the accountant that
//! turns the run into (epsilon, delta): Opacus's [`prv`] (the default, as in
//! Opacus's `PrivacyEngine`) or its RDP [`accountant`].
//!
//! Per-example gradients come from one backward pass over the padded batch
//! where every trainable tensor has a closed form ([`crate::models::taps`]:
//! LoRA, DoRA, (IA)³, biases, LayerNorms, trained heads, prompt and prefix
//! tables), else from a backward pass per example (`Trainer::clipped_sum`). The clip factors stay on the device
//! as tensor ops, so the step reads nothing synchronously (wasm-safe).

pub mod accountant;
pub mod fourier;
pub mod prv;
pub mod quad;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The privacy accountant of a DP run, named as Opacus's `mechanism()` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli-cpu", derive(clap::ValueEnum))]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum Accountant {
    /// Privacy loss random variables composed numerically (Gopi et al. 2021):
    /// Opacus's `PrivacyEngine` default, and tighter than RDP.
    #[default]
    Prv,
    /// Rényi DP over Opacus's default orders (Opacus's `get_noise_multiplier` default).
    Rdp,
}

impl Accountant {
    /// The name Opacus's `mechanism()` gives (`prv`, `rdp`).
    pub fn name(self) -> &'static str {
        match self {
            Accountant::Prv => prv::MECHANISM,
            Accountant::Rdp => accountant::MECHANISM,
        }
    }

    /// Epsilon spent after `steps` steps at (`noise_multiplier`, `sample_rate`) for `delta`.
    pub fn epsilon(self, noise_multiplier: f64, sample_rate: f64, steps: u64, delta: f64) -> Result<f64> {
        match self {
            Accountant::Prv => prv::epsilon(noise_multiplier, sample_rate, steps, delta),
            Accountant::Rdp => Ok(accountant::epsilon(noise_multiplier, sample_rate, steps, delta)),
        }
    }

    /// Opacus's `get_noise_multiplier(accountant=name, epsilon_tolerance=0.01)`;
    /// `None` when the budget is too low.
    pub fn noise_multiplier(self, target_epsilon: f64, delta: f64, sample_rate: f64, steps: u64) -> Result<Option<f64>> {
        match self {
            Accountant::Prv => prv::get_noise_multiplier(target_epsilon, delta, sample_rate, steps, 0.01),
            Accountant::Rdp => Ok(accountant::get_noise_multiplier(target_epsilon, delta, sample_rate, steps, 0.01)),
        }
    }
}

/// The `dp` option of a training job (its fields cased like the rest of `TrainSpec`).
/// The CLI takes these flags after `--dp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "cli-cpu", derive(clap::Args))]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "DpOptions", rename_all = "camelCase", optional_fields))]
pub struct DpSpec {
    /// The epsilon to reach at the end of the run; the noise multiplier is
    /// found with Opacus's `get_noise_multiplier` and `accountant`. Ignored
    /// when `noise_multiplier` is given.
    #[cfg_attr(feature = "cli-cpu", arg(long, requires = "dp"))]
    pub target_epsilon: Option<f64>,
    #[cfg_attr(feature = "cli-cpu", arg(long, requires = "dp", default_value_t = DpSpec::default().delta))]
    pub delta: f64,
    /// Per-example clipping norm `C`, over all trainable tensors together.
    #[cfg_attr(feature = "cli-cpu", arg(long, requires = "dp", default_value_t = DpSpec::default().max_grad_norm))]
    pub max_grad_norm: f64,
    /// Noise std relative to `max_grad_norm`; overrides `target_epsilon`.
    #[cfg_attr(feature = "cli-cpu", arg(long, requires = "dp"))]
    pub noise_multiplier: Option<f64>,
    /// Seeds the noise and the Poisson sampling. For tests only: anyone who
    /// knows the seed can subtract the noise, which voids the guarantee. Unset,
    /// both come from the operating system's entropy.
    #[cfg_attr(feature = "cli-cpu", arg(long = "dp-seed", id = "dp_seed", requires = "dp", hide = true))]
    pub seed: Option<u64>,
    /// The accountant that calibrates the noise and reports epsilon: `prv`
    /// (Opacus's `PrivacyEngine` default) or `rdp`.
    #[cfg_attr(feature = "cli-cpu", arg(long, requires = "dp", value_enum, default_value_t = DpSpec::default().accountant))]
    pub accountant: Accountant,
}

impl Default for DpSpec {
    fn default() -> Self {
        Self { target_epsilon: None, delta: 1e-5, max_grad_norm: 1.0, noise_multiplier: None, seed: None, accountant: Accountant::default() }
    }
}

/// A DP run's resolved settings, as `webpeft.json` records them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpPlan {
    /// The accountant (serialised as its name, `prv` or `rdp`).
    pub accountant: Accountant,
    pub target_epsilon: Option<f64>,
    pub delta: f64,
    pub noise_multiplier: f64,
    pub max_grad_norm: f64,
    /// Poisson sampling rate `q = batch / dataset size`.
    pub sample_rate: f64,
    /// The expected batch size `q * N` (= `batch`), which the noisy sum is divided by.
    pub expected_batch_size: f64,
    /// Steps the run is planned for (the noise multiplier is calibrated for them).
    pub steps: usize,
}

impl DpPlan {
    /// Resolves `spec` for `train_len` examples, `batch` expected per step and
    /// `steps` steps.
    pub fn new(spec: &DpSpec, train_len: usize, batch: usize, steps: usize) -> Result<Self> {
        let bad = |what: &str, msg: String| Err(Error::input(format!("dp.{what}"), msg));
        if !(spec.delta > 0.0 && spec.delta < 1.0) {
            return bad("delta", format!("{} must be in (0, 1); 1/dataset size or less is usual", spec.delta));
        }
        if !(spec.max_grad_norm > 0.0 && spec.max_grad_norm.is_finite()) {
            return bad("max_grad_norm", format!("{} must be a positive number", spec.max_grad_norm));
        }
        if batch > train_len {
            return Err(Error::input("batch", format!("the batch of {batch} is larger than the {train_len} training examples; DP's sample rate batch/examples must be at most 1")));
        }
        let sample_rate = batch as f64 / train_len as f64;
        let noise_multiplier = match (spec.noise_multiplier, spec.target_epsilon) {
            (Some(s), _) if s >= 0.0 && s.is_finite() => s,
            (Some(s), _) => return bad("noise_multiplier", format!("{s} must be a non-negative number")),
            (None, Some(eps)) if eps > 0.0 && eps.is_finite() => spec.accountant.noise_multiplier(eps, spec.delta, sample_rate, steps as u64)?.ok_or_else(|| {
                Error::input("dp.target_epsilon", format!("epsilon {eps} at delta {} over {steps} steps is too low a budget (Opacus: \"The privacy budget is too low\")", spec.delta))
            })?,
            (None, Some(eps)) => return bad("target_epsilon", format!("{eps} must be a positive number")),
            (None, None) => return bad("target_epsilon", "give target_epsilon or noise_multiplier".into()),
        };
        let plan = Self {
            accountant: spec.accountant,
            target_epsilon: spec.noise_multiplier.is_none().then_some(spec.target_epsilon).flatten(),
            delta: spec.delta,
            noise_multiplier,
            max_grad_norm: spec.max_grad_norm,
            sample_rate,
            expected_batch_size: batch as f64,
            steps,
        };
        if spec.noise_multiplier.is_some() {
            // A calibrated noise has been accounted for at `steps` already; a
            // given one is checked here, before training, not at a late step.
            plan.epsilon(steps)?;
        }
        Ok(plan)
    }

    /// Epsilon spent after `steps` steps, by the plan's accountant (an error
    /// where Opacus's accountant raises).
    pub fn epsilon(&self, steps: usize) -> Result<f64> {
        self.accountant.epsilon(self.noise_multiplier, self.sample_rate, steps as u64, self.delta)
    }
}

/// What `webpeft.json` records about a DP-trained adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpRecord {
    /// Epsilon spent by the steps taken, at `delta`.
    pub epsilon: f64,
    pub delta: f64,
    /// The accountant's name: `prv` (Opacus's PRV accountant, eps_error 0.01,
    /// the upper bound) or `rdp` (its RDP accountant, default orders).
    pub accountant: String,
    pub noise_multiplier: f64,
    pub max_grad_norm: f64,
    pub sample_rate: f64,
    /// Steps taken.
    pub steps: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_epsilon: Option<f64>,
}

impl DpPlan {
    /// The record of a run that took `steps` steps.
    pub fn record(&self, steps: usize) -> Result<DpRecord> {
        Ok(self.record_spent(steps, self.epsilon(steps)?))
    }

    /// The record of a run that took `steps` steps and spent `epsilon` (as
    /// [`DpPlan::epsilon`] gave it).
    pub fn record_spent(&self, steps: usize, epsilon: f64) -> DpRecord {
        DpRecord {
            epsilon,
            delta: self.delta,
            accountant: self.accountant.name().into(),
            noise_multiplier: self.noise_multiplier,
            max_grad_norm: self.max_grad_norm,
            sample_rate: self.sample_rate,
            steps,
            target_epsilon: self.target_epsilon,
        }
    }
}

/// The random source of a DP run: seeded only for tests.
pub fn rng(spec: &DpSpec) -> StdRng {
    match spec.seed {
        Some(s) => StdRng::seed_from_u64(s),
        None => StdRng::from_os_rng(),
    }
}

/// Poisson sampling (Opacus's `UniformWithReplacementSampler`): each of `n`
/// examples joins the batch independently with probability `q`; the batch
/// can be empty.
pub fn poisson_batch(rng: &mut StdRng, n: usize, q: f64) -> Vec<usize> {
    (0..n).filter(|_| rng.random::<f64>() < q).collect()
}

/// `n` draws of a normal distribution with mean 0 and standard deviation
/// `std` (Box-Muller in f64).
pub fn gaussian(rng: &mut StdRng, n: usize, std: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // 1 - u is in (0, 1], so the log is finite.
        let (u1, u2) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let t = std::f64::consts::TAU * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(n);
    out
}

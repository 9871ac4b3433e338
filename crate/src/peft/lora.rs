//! LoRA, rsLoRA and DoRA, as HF PEFT defines them (`peft/tuners/lora/`).
//!
//! The update stays factored, `base(x) + s * B(A(x))`; the dense `W + dW` is
//! only formed for DoRA's weight norm.

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::tensor::module::linear;
use burn::tensor::{Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::models::taps::{self, Rule};

/// `adapter_config.json` of a LoRA adapter (PEFT's field names; the fields webpeft uses).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoraConfig {
    #[serde(default = "default_r")]
    pub r: usize,
    #[serde(default = "default_alpha")]
    pub lora_alpha: f64,
    #[serde(default)]
    pub lora_dropout: f64,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default)]
    pub use_dora: bool,
    /// `"none"`, `"all"` or `"lora_only"`.
    #[serde(default = "default_bias")]
    pub bias: String,
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, usize>,
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, f64>,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub lora_bias: bool,
}

fn default_r() -> usize {
    8
}
fn default_alpha() -> f64 {
    8.0
}
fn default_bias() -> String {
    "none".into()
}

/// The key in a pattern map that applies to `module`, as PEFT matches them
/// (the module name ends with the key, at a `.` boundary).
fn pattern_for<'a, T>(patterns: &'a BTreeMap<String, T>, module: &str) -> Option<&'a T> {
    patterns.iter().find(|(k, _)| module == k.as_str() || module.ends_with(&format!(".{k}"))).map(|(_, v)| v)
}

impl LoraConfig {
    /// Rank for `module`, honouring `rank_pattern`.
    pub fn rank_for(&self, module: &str) -> usize {
        pattern_for(&self.rank_pattern, module).copied().unwrap_or(self.r)
    }

    /// Scaling `alpha / r` (or `alpha / sqrt(r)` with rsLoRA) for `module`.
    pub fn scaling_for(&self, module: &str) -> f64 {
        let r = self.rank_for(module) as f64;
        let alpha = pattern_for(&self.alpha_pattern, module).copied().unwrap_or(self.lora_alpha);
        if self.use_rslora {
            alpha / r.sqrt()
        } else {
            alpha / r
        }
    }
}

/// The LoRA factors attached to one dense layer.
#[derive(Module, Debug)]
pub struct LoraLayer {
    /// `[in, r]` (PEFT's `lora_A.weight` transposed).
    pub lora_a: Param<Tensor<2>>,
    /// `[r, out]` (PEFT's `lora_B.weight` transposed).
    pub lora_b: Param<Tensor<2>>,
    pub scaling: f64,
    /// DoRA's magnitude vector `[out]`.
    pub magnitude: Option<Param<Tensor<1>>>,
    /// `lora_dropout`: applied to the adapter branch's input while training.
    pub dropout: f64,
    /// True only inside a training step (set by the trainer).
    pub training: bool,
    /// False while the adapter is switched off.
    pub enabled: bool,
}

impl LoraLayer {
    /// Adds the adapter to `base_out = x W + b`. `weight` is the frozen `[in, out]` W, which
    /// only DoRA reads (the caller passes it then).
    pub fn forward<const D: usize>(&self, x: Tensor<D>, base_out: Tensor<D>, weight: Option<Tensor<2>>, bias: Option<Tensor<1>>) -> Tensor<D> {
        // PEFT: B(A(dropout(x))), inverted dropout, only in training.
        let x = if self.training && self.dropout > 0.0 {
            let keep = 1.0 - self.dropout;
            let mask = Tensor::<D>::random(x.shape(), Distribution::Bernoulli(keep), &x.device());
            x * mask / keep
        } else {
            x
        };
        let h = linear(x.clone(), self.lora_a.val(), None);
        // DP's per-example gradients: A acts on x, B on h = A(x).
        let h = taps::tap_one(h, &self.lora_a, Rule::Weight, Some(x));
        let u = linear(h.clone(), self.lora_b.val(), None);
        let u = taps::tap_one(u, &self.lora_b, Rule::Weight, Some(h));
        let delta = u * self.scaling;
        let Some(m) = &self.magnitude else {
            return base_out + delta;
        };
        // DoRA: y = b + (m / ||W + s B A||) * (x W + s B A x), with the norm
        // (over the input dimension) detached, as PEFT and the paper do.
        let weight = weight.expect("DoRA is given the base weight");
        let full = weight + self.lora_a.val().matmul(self.lora_b.val()) * self.scaling;
        let norm = full.square().sum_dim(0).sqrt().detach();
        let out = norm.dims()[1];
        let scale = (m.val().reshape([1, out]) / norm.clone()).reshape([out]).unsqueeze::<D>();
        let (unscaled, b) = match bias {
            Some(b) => (base_out - b.clone().unsqueeze::<D>() + delta, Some(b)),
            None => (base_out + delta, None),
        };
        let y = unscaled.clone() * scale;
        let y = match b {
            Some(b) => y + b.unsqueeze::<D>(),
            None => y,
        };
        if !taps::recording() {
            return y;
        }
        // The magnitude scales each output by 1 / norm (a constant, detached).
        let per_unit = unscaled / norm.reshape([out]).unsqueeze::<D>();
        taps::tap_one(y, m, Rule::Scale, Some(per_unit))
    }
}

impl LoraLayer {
    /// Folds the adapter into the frozen `[in, out]` weight, as PEFT's
    /// `merge_and_unload` does: `W + s A B`, and for DoRA
    /// `(m / ||W + s A B||) (W + s A B)` per output (the bias is not rescaled).
    pub fn merge(&self, weight: Tensor<2>) -> Tensor<2> {
        let full = weight + self.lora_a.val().matmul(self.lora_b.val()) * self.scaling;
        match &self.magnitude {
            None => full,
            Some(m) => {
                let out = full.dims()[1];
                let norm = full.clone().square().sum_dim(0).sqrt();
                full * (m.val().reshape([1, out]) / norm)
            }
        }
    }
}

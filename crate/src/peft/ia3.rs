//! (IA)^3, as HF PEFT defines it (`peft/tuners/ia3/`): learned vectors that
//! rescale a layer's output, or its input for feed-forward modules.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::TargetModules;

/// `adapter_config.json` of an (IA)^3 adapter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ia3Config {
    #[serde(default)]
    pub target_modules: Option<TargetModules>,
    /// Modules scaled on their input side; a subset of the targets.
    #[serde(default)]
    pub feedforward_modules: Option<TargetModules>,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default = "yes")]
    pub init_ia3_weights: bool,
}

fn yes() -> bool {
    true
}

/// One (IA)^3 vector attached to a dense layer.
#[derive(Module, Debug)]
pub struct Ia3Layer {
    /// `[in]` for feed-forward modules, else `[out]`.
    pub vector: Param<Tensor<1>>,
    /// True: `base(x * l)`. False: `base(x) * l` (which also scales the bias).
    pub feedforward: bool,
    /// False while the adapter is switched off.
    pub enabled: bool,
}

impl Ia3Layer {
    /// Folds the vector into a `[in, out]` weight and its bias (PEFT's merge):
    /// feed-forward modules scale the weight's input rows; others scale the
    /// output columns and the bias.
    pub fn merge(&self, weight: Tensor<2>, bias: Option<Tensor<1>>) -> (Tensor<2>, Option<Tensor<1>>) {
        let [d_in, d_out] = weight.dims();
        if self.feedforward {
            (weight * self.vector.val().reshape([d_in, 1]), bias)
        } else {
            (weight * self.vector.val().reshape([1, d_out]), bias.map(|b| b * self.vector.val()))
        }
    }
}

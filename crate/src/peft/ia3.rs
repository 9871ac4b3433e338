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
}

//! (IA)^3, as HF PEFT defines it (`peft/tuners/ia3/`): learned vectors that
//! rescale a layer's output, or its input for feed-forward modules. The config, the layer,
//! and creating, loading and exporting an adapter.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::create::{host, targets_json, AdapterSpec, NewAdapter};
use super::{matches_targets, shape_err, Owned, TargetModules, Tuner, CONFIG};
use crate::error::{Error, Result};
use crate::models::hooks::{LinearAdapter, LinearMethod};
use crate::models::layers::{param, Linear, NamedTensor};
use crate::models::taps::{self, Rule};
use crate::models::{in_head, Model};

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

/// (IA)^3's code on one layer. Its adapter holds one vector: `[in]` for feed-forward
/// modules, else `[out]`.
#[derive(Debug, Clone)]
pub struct Ia3 {
    /// True: `base(x * l)`. False: `base(x) * l` (which also scales the bias).
    pub feedforward: bool,
}

impl Ia3 {
    /// The layer's (IA)^3 adapter: its settings and vector.
    pub fn of(layer: &Linear) -> Option<(&Ia3, &burn::module::Param<Tensor<1>>)> {
        layer.adapters.iter().find_map(|a| Some((a.method.as_any().downcast_ref::<Ia3>()?, &a.vectors[0])))
    }
}

impl LinearMethod for Ia3 {
    fn tensor_names(&self) -> (&'static [&'static str], &'static [&'static str]) {
        (&[], &["ia3_l"])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn input(&self, adapter: &LinearAdapter, x: Tensor<3>) -> Tensor<3> {
        if !self.feedforward {
            return x;
        }
        let l = &adapter.vectors[0];
        taps::tap_one(x.clone() * l.val().unsqueeze::<3>(), l, Rule::Scale, Some(x))
    }

    fn output(&self, adapter: &LinearAdapter, _layer: &Linear, _x: Tensor<3>, y: Tensor<3>) -> Tensor<3> {
        if self.feedforward {
            return y;
        }
        let l = &adapter.vectors[0];
        taps::tap_one(y.clone() * l.val().unsqueeze::<3>(), l, Rule::Scale, Some(y))
    }

    /// PEFT's merge: feed-forward modules scale the weight's input rows; others scale the
    /// output columns and the bias.
    fn merge(&self, adapter: &LinearAdapter, weight: Tensor<2>, bias: Option<Tensor<1>>) -> (Tensor<2>, Option<Tensor<1>>) {
        let v = adapter.vectors[0].val();
        let [d_in, d_out] = weight.dims();
        if self.feedforward {
            (weight * v.reshape([d_in, 1]), bias)
        } else {
            (weight * v.clone().reshape([1, d_out]), bias.map(|b| b * v))
        }
    }
}

fn adapter(feedforward: bool, vector: burn::module::Param<Tensor<1>>) -> LinearAdapter {
    LinearAdapter::new(Arc::new(Ia3 { feedforward }), vec![], vec![vector])
}

/// PEFT's default (IA)³ targets and feed-forward modules per architecture; `None` where PEFT has
/// none (XLM-RoBERTa), so that it asks for them.
pub fn default_ia3_targets(model: &Model) -> Option<(Vec<String>, Vec<String>)> {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let (targets, feedforward) = model.facts().ia3_targets?;
    Some((v(targets), v(feedforward)))
}

/// The (IA)^3 method in the registry (`peft_type` `IA3`).
pub struct Ia3Tuner;

impl Tuner for Ia3Tuner {
    fn peft_type(&self) -> &'static str {
        "IA3"
    }

    fn tensor_keys(&self) -> &'static [&'static str] {
        &["ia3_l"]
    }

    fn check(&self, _model: &Model, config: &Value) -> Result<()> {
        parse(config).map(|_| ())
    }

    fn create(&self, model: &mut Model, spec: &AdapterSpec, new: &mut NewAdapter) -> Result<Value> {
        let (t, f) = default_ia3_targets(model).ok_or_else(|| {
            Error::unsupported("--method", format!("PEFT has no default (IA)³ target and feed-forward modules for {}, and webpeft takes no feed-forward list", model.info.model_type))
        })?;
        let targets = spec.targets.clone().unwrap_or(TargetModules::Names(t));
        let ff = TargetModules::Names(f);
        let device = model.device.clone();
        let mut n = 0;
        for (name, lin) in model.named_layers().linears {
            if (spec.seq_cls && in_head(&name)) || !matches_targets(Some(&targets), &name) {
                continue;
            }
            // PEFT matches feedforward_modules with a plain `endswith`.
            let feedforward = match &ff {
                TargetModules::Names(f) => f.iter().any(|x| name.ends_with(x.as_str())),
                TargetModules::Regex(_) => false,
            };
            let (d_in, d_out) = lin.dims();
            let len = if feedforward { d_in } else { d_out };
            lin.adapters.push(adapter(feedforward, param(host(vec![len], vec![1.0; len]), &device)));
            n += 1;
        }
        if n == 0 {
            return Err(Error::input("--targets", format!("no module of {} matches target_modules {}", model.info.architecture, targets_json(&targets))));
        }
        Ok(json!({
            "auto_mapping": null, "base_model_name_or_path": spec.base_model, "exclude_modules": null,
            "fan_in_fan_out": model.facts().fan_in_fan_out, "feedforward_modules": targets_json(&ff), "inference_mode": true,
            "init_ia3_weights": true, "modules_to_save": new.heads, "peft_type": "IA3", "peft_version": super::PEFT_VERSION,
            "revision": null, "target_modules": targets_json(&targets), "task_type": new.task_type
        }))
    }

    fn load(&self, model: &mut Model, config: &Value, own: Owned) -> Result<()> {
        let cfg = parse(config)?;
        let device = model.device.clone();
        let arch = model.info.architecture.clone();
        let mut linears: HashMap<String, &mut Linear> = model.named_layers().linears.into_iter().collect();
        for (module, mut parts) in own {
            let key = format!("{module}.ia3_l");
            let t = parts.remove("ia3_l").expect("grouped by key");
            let lin = linears
                .get_mut(&module)
                .ok_or_else(|| crate::error::Error::format(super::WEIGHTS, format!("tensor {key} targets module '{module}', which does not exist in this model ({arch})")))?;
            let (d_in, d_out) = lin.dims();
            let feedforward = matches_targets(cfg.feedforward_modules.as_ref(), &module);
            let want = if feedforward { vec![1, d_in] } else { vec![d_out, 1] };
            if t.shape != want {
                let why = if feedforward { "a feed-forward module's input size" } else { "the module's output size" };
                return Err(shape_err(&key, &t.shape, &want, why));
            }
            let n = t.data.len();
            lin.adapters.push(adapter(feedforward, param(crate::formats::safetensors::HostTensor { shape: vec![n], ..t }, &device)));
        }
        Ok(())
    }

    fn export(&self, model: &mut Model) -> Result<Vec<NamedTensor>> {
        let mut out = vec![];
        for (name, lin) in model.named_layers().linears {
            let Some((ia3, v)) = Ia3::of(lin) else { continue };
            let (d_in, d_out) = lin.dims();
            let shape = if ia3.feedforward { [1, d_in] } else { [d_out, 1] };
            out.push(NamedTensor::new(format!("base_model.model.{name}.ia3_l"), v.val().reshape(shape)));
        }
        Ok(out)
    }
}

fn parse(config: &Value) -> Result<Ia3Config> {
    serde_json::from_value(config.clone()).map_err(|e| Error::format(CONFIG, e.to_string()))
}

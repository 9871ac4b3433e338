//! LoRA, rsLoRA and DoRA (and BitFit, written as PEFT's LoRA with `bias="all"`), as HF PEFT
//! defines them (`peft/tuners/lora/`): the config, the layer, and creating, loading and
//! exporting an adapter.
//!
//! The update stays factored, `base(x) + s * B(A(x))`; the dense `W + dW` is
//! only formed for DoRA's weight norm.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use burn::module::Param;
use burn::tensor::module::linear;
use burn::tensor::{Distribution, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::create::{host, normal, targets_json, train_linear, uniform, AdapterSpec, Method, NewAdapter};
use super::{layer_index, matches_targets, Owned, TargetModules, Tuner, CONFIG, WEIGHTS};
use crate::error::{Error, Result};
use crate::models::hooks::{LinearAdapter, LinearMethod};
use crate::models::layers::{param, Linear, NamedTensor};
use crate::models::taps::{self, Rule};
use crate::models::{head_param, in_head, Model, Original};

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

/// LoRA's code on one layer, with that layer's settings. Its adapter holds the matrices
/// A `[in, r]` and B `[r, out]` (PEFT's `lora_A`/`lora_B` weights, transposed) and, for DoRA,
/// the magnitude vector `[out]`.
#[derive(Debug, Clone)]
pub struct Lora {
    /// `alpha / r`, or `alpha / sqrt(r)` with rsLoRA.
    pub scaling: f64,
    /// `lora_dropout`: applied to the adapter branch's input while training.
    pub dropout: f64,
}

/// A layer's LoRA adapter, read through [`Lora::of`].
pub struct Factors<'a> {
    pub lora: &'a Lora,
    pub a: &'a Param<Tensor<2>>,
    pub b: &'a Param<Tensor<2>>,
    /// DoRA's magnitude.
    pub magnitude: Option<&'a Param<Tensor<1>>>,
}

impl Lora {
    /// The LoRA adapter on `layer`, if it has one.
    pub fn of(layer: &Linear) -> Option<Factors<'_>> {
        layer.adapters.iter().find_map(|a| {
            let lora = a.method.as_any().downcast_ref::<Lora>()?;
            Some(Factors { lora, a: &a.matrices[0], b: &a.matrices[1], magnitude: a.vectors.first() })
        })
    }

    /// A layer adapter from A `[in, r]`, B `[r, out]` and DoRA's magnitude.
    fn adapter(self, a: Param<Tensor<2>>, b: Param<Tensor<2>>, magnitude: Option<Param<Tensor<1>>>) -> LinearAdapter {
        LinearAdapter::new(Arc::new(self), vec![a, b], magnitude.into_iter().collect())
    }
}

impl LinearMethod for Lora {
    fn tensor_names(&self) -> (&'static [&'static str], &'static [&'static str]) {
        (&["lora_A", "lora_B"], &["lora_magnitude_vector"])
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn dropout(&self) -> f64 {
        self.dropout
    }

    fn output(&self, adapter: &LinearAdapter, layer: &Linear, x: Tensor<3>, base_out: Tensor<3>) -> Tensor<3> {
        let (a, b, magnitude) = (&adapter.matrices[0], &adapter.matrices[1], adapter.vectors.first());
        // PEFT: B(A(dropout(x))), inverted dropout, only in training.
        let x = if adapter.training && self.dropout > 0.0 {
            let keep = 1.0 - self.dropout;
            let mask = Tensor::<3>::random(x.shape(), Distribution::Bernoulli(keep), &x.device());
            x * mask / keep
        } else {
            x
        };
        let h = linear(x.clone(), a.val(), None);
        // DP's per-example gradients: A acts on x, B on h = A(x).
        let h = taps::tap_one(h, a, Rule::Weight, Some(x));
        let u = linear(h.clone(), b.val(), None);
        let u = taps::tap_one(u, b, Rule::Weight, Some(h));
        let delta = u * self.scaling;
        let Some(m) = magnitude else {
            return base_out + delta;
        };
        let bias = layer.bias.as_ref().map(|b| b.val());
        if taps::recording() && layer.bias.as_ref().and_then(taps::trained).is_some() {
            // DoRA uses the bias three times; the base layer's tap sees only one of them.
            taps::unusable("a trained bias under DoRA");
        }
        // DoRA: y = b + (m / ||W + s B A||) * (x W + s B A x), with the norm
        // (over the input dimension) detached, as PEFT and the paper do.
        let full = layer.weight() + a.val().matmul(b.val()) * self.scaling;
        let norm = full.square().sum_dim(0).sqrt().detach();
        let out = norm.dims()[1];
        let scale = (m.val().reshape([1, out]) / norm.clone()).reshape([1, 1, out]);
        let (unscaled, bias) = match bias {
            Some(b) => (base_out - b.clone().reshape([1, 1, out]) + delta, Some(b)),
            None => (base_out + delta, None),
        };
        let y = unscaled.clone() * scale;
        let y = match bias {
            Some(b) => y + b.reshape([1, 1, out]),
            None => y,
        };
        if !taps::recording() {
            return y;
        }
        // The magnitude scales each output by 1 / norm (a constant, detached).
        let per_unit = unscaled / norm.reshape([1, 1, out]);
        taps::tap_one(y, m, Rule::Scale, Some(per_unit))
    }

    /// PEFT's `merge_and_unload`: `W + s A B`, and for DoRA `(m / ||W + s A B||) (W + s A B)`
    /// per output (the bias is not rescaled).
    fn merge(&self, adapter: &LinearAdapter, weight: Tensor<2>, bias: Option<Tensor<1>>) -> (Tensor<2>, Option<Tensor<1>>) {
        let full = weight + adapter.matrices[0].val().matmul(adapter.matrices[1].val()) * self.scaling;
        match adapter.vectors.first() {
            None => (full, bias),
            Some(m) => {
                let out = full.dims()[1];
                let norm = full.clone().square().sum_dim(0).sqrt();
                (full * (m.val().reshape([1, out]) / norm), bias)
            }
        }
    }
}

/// The LoRA method in the registry (`peft_type` `LORA`).
pub struct LoraTuner;

impl Tuner for LoraTuner {
    fn peft_type(&self) -> &'static str {
        "LORA"
    }

    fn tensor_keys(&self) -> &'static [&'static str] {
        &["lora_A.weight", "lora_B.weight", "lora_magnitude_vector"]
    }

    fn check(&self, _model: &Model, config: &Value) -> Result<()> {
        let cfg = parse(config)?;
        if cfg.lora_bias {
            return Err(Error::unsupported(CONFIG, "lora_bias=true is not supported yet"));
        }
        Ok(())
    }

    fn create(&self, model: &mut Model, spec: &AdapterSpec, new: &mut NewAdapter) -> Result<Value> {
        let bitfit = spec.method == Method::Bitfit;
        let r = if bitfit { 1 } else { spec.r.unwrap_or(8) };
        let alpha = if bitfit { 1.0 } else { spec.alpha.unwrap_or(8.0) };
        let bias = if bitfit { "all".to_string() } else { spec.bias.clone().unwrap_or_else(|| "none".into()) };
        if !["none", "all", "lora_only"].contains(&bias.as_str()) {
            return Err(Error::input("bias", format!("'{bias}' is not one of none, all, lora_only")));
        }
        let targets = spec.targets.clone().unwrap_or_else(|| TargetModules::Names(default_lora_targets(model)));
        if spec.layers_to_transform.is_some() && matches!(targets, TargetModules::Regex(_)) {
            return Err(Error::input("--targets", "layers_to_transform needs a list of target names, not a regex (as in PEFT)"));
        }
        let cfg_json = json!({
            "alora_invocation_tokens": null, "alpha_pattern": {}, "arrow_config": null, "auto_mapping": null,
            "base_model_name_or_path": spec.base_model, "bias": bias, "corda_config": null,
            "ensure_weight_tying": false, "eva_config": null, "exclude_modules": null,
            "fan_in_fan_out": model.facts().fan_in_fan_out, "inference_mode": true,
            "init_lora_weights": if spec.gaussian_init { json!("gaussian") } else { json!(true) },
            "kasa_config": null, "layer_replication": null, "layers_pattern": null,
            "layers_to_transform": spec.layers_to_transform, "loftq_config": {},
            // PEFT's lora_alpha is an int unless set otherwise.
            "lora_alpha": if alpha.fract() == 0.0 { json!(alpha as i64) } else { json!(alpha) },
            "lora_bias": false, "lora_dropout": spec.dropout, "lora_ga_config": null, "megatron_config": null,
            "megatron_core": "megatron.core", "modules_to_save": new.heads, "monteclora_config": null,
            "peft_type": "LORA", "peft_version": super::PEFT_VERSION, "qalora_group_size": 16, "r": r, "rank_pattern": {},
            "revision": null, "target_modules": targets_json(&targets), "target_parameters": null,
            "task_type": new.task_type, "trainable_token_indices": null, "use_bdlora": null,
            "use_dora": spec.method == Method::Dora, "use_qalora": false, "use_rslora": spec.use_rslora,
            "velora_config": null
        });
        let cfg: LoraConfig = serde_json::from_value(cfg_json.clone()).map_err(|e| Error::input("adapter", e.to_string()))?;
        let device = model.device.clone();
        let arch = model.info.architecture.clone();
        let mut n = 0;
        for (name, lin) in model.named_layers().linears {
            let targeted = !in_head(&name)
                && matches_targets(Some(&targets), &name)
                && spec.layers_to_transform.as_ref().is_none_or(|ls| layer_index(&name).is_some_and(|i| ls.contains(&i)));
            if targeted {
                let (d_in, d_out) = lin.dims();
                let rng = &mut new.rng;
                let (a, b) = if bitfit {
                    (vec![0.0; d_in * r], vec![0.0; r * d_out])
                } else if spec.gaussian_init {
                    (normal(rng, d_in * r, 1.0 / r as f32), vec![0.0; r * d_out])
                } else {
                    (uniform(rng, d_in * r, 1.0 / (d_in as f32).sqrt()), vec![0.0; r * d_out])
                };
                // Stored [in, r] / [r, out]; the values are drawn in PEFT's [r, in] order.
                let a = host(vec![r, d_in], a).transposed();
                let magnitude = (spec.method == Method::Dora).then(|| Param::from_tensor(lin.weight().detach().square().sum_dim(0).sqrt().reshape([d_out])));
                let lora = Lora { scaling: cfg.scaling_for(&name), dropout: cfg.lora_dropout };
                lin.adapters.push(lora.adapter(param(a, &device), param(host(vec![r, d_out], b), &device), magnitude));
                n += 1;
                if bias == "lora_only" {
                    train_linear(&name, lin, false, &mut new.originals);
                }
            }
            if bias == "all" {
                if spec.seq_cls && in_head(&name) {
                    if let Some(b) = &lin.bias {
                        // PEFT saves the frozen original's bias too (see export).
                        new.extras.push((format!("base_model.model.{}", head_param(&name, "original_module", "bias")), b.val().detach()));
                    }
                }
                train_linear(&name, lin, false, &mut new.originals);
            }
        }
        if bias == "all" {
            for (name, norm) in model.named_layers().norms {
                if let Some(b) = norm.bias.as_mut() {
                    new.originals.push(Original { module: name, kind: "bias", value: b.val().detach() });
                    *b = b.clone().set_require_grad(true);
                }
            }
        }
        if n == 0 {
            return Err(Error::input("--targets", format!("no module of {arch} matches target_modules {}", targets_json(&targets))));
        }
        Ok(cfg_json)
    }

    fn load(&self, model: &mut Model, config: &Value, own: Owned) -> Result<()> {
        let cfg = parse(config)?;
        let device = model.device.clone();
        let arch = model.info.architecture.clone();
        let mut linears: std::collections::HashMap<String, &mut Linear> = model.named_layers().linears.into_iter().collect();
        for (module, mut parts) in own {
            let lin = linears.get_mut(&module).ok_or_else(|| {
                Error::format(WEIGHTS, format!("LoRA tensors target module '{module}', which does not exist in this model ({arch})"))
            })?;
            let (a, b, m) = (parts.remove("lora_A.weight"), parts.remove("lora_B.weight"), parts.remove("lora_magnitude_vector"));
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(Error::format(WEIGHTS, format!("module {module} needs both lora_A.weight and lora_B.weight"))),
            };
            let (d_in, d_out) = lin.dims();
            let r = cfg.rank_for(&module);
            let why = format!("r={r} from {CONFIG} and the module's size");
            if a.shape != [r, d_in] {
                return Err(super::shape_err(&format!("{module}.lora_A.weight"), &a.shape, &[r, d_in], &why));
            }
            if b.shape != [d_out, r] {
                return Err(super::shape_err(&format!("{module}.lora_B.weight"), &b.shape, &[d_out, r], &why));
            }
            let magnitude = match (cfg.use_dora, m) {
                (true, Some(m)) if m.shape == [d_out] => Some(param(m, &device)),
                (true, Some(m)) => return Err(super::shape_err(&format!("{module}.lora_magnitude_vector"), &m.shape, &[d_out], "the module's output size")),
                (true, None) => return Err(Error::format(WEIGHTS, format!("use_dora is set but {module}.lora_magnitude_vector is missing"))),
                (false, Some(_)) => return Err(Error::format(WEIGHTS, format!("{module}.lora_magnitude_vector is present but use_dora is false"))),
                (false, None) => None,
            };
            let lora = Lora { scaling: cfg.scaling_for(&module), dropout: cfg.lora_dropout };
            lin.adapters.push(lora.adapter(param(a.transposed(), &device), param(b.transposed(), &device), magnitude));
        }
        Ok(())
    }

    fn export(&self, model: &mut Model) -> Result<Vec<NamedTensor>> {
        let mut out = vec![];
        for (name, lin) in model.named_layers().linears {
            let Some(f) = Lora::of(lin) else { continue };
            out.push(NamedTensor::new(format!("base_model.model.{name}.lora_A.weight"), f.a.val().transpose()));
            out.push(NamedTensor::new(format!("base_model.model.{name}.lora_B.weight"), f.b.val().transpose()));
            if let Some(m) = f.magnitude {
                out.push(NamedTensor::new(format!("base_model.model.{name}.lora_magnitude_vector"), m.val()));
            }
        }
        Ok(out)
    }
}

fn parse(config: &Value) -> Result<LoraConfig> {
    serde_json::from_value(config.clone()).map_err(|e| Error::format(CONFIG, e.to_string()))
}

/// PEFT's default LoRA targets for the model's family (webpeft's where PEFT has none).
pub fn default_lora_targets(model: &Model) -> Vec<String> {
    model.facts().lora_targets.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tensor;

    use super::Lora;
    use crate::device;
    use crate::models::blocks::tests::{all_formats, max_rel, values};
    use crate::models::layers::LinearWeight;
    use crate::models::{LoadOptions, Model, Quantize};
    use crate::peft::create::{create_adapter, AdapterSpec, Method};
    use crate::train::{freeze, loss, Targets};

    /// Logits, LoRA loss and the LoRA gradients of every layer.
    fn run(quantize: Quantize, device: &burn::tensor::Device) -> (Vec<f32>, f32, Vec<f32>, usize) {
        let mut m = freeze(Model::load_with(&all_formats(), device, &LoadOptions { quantize, ..Default::default() }).unwrap());
        let blocks = m.named_layers().linears.iter().filter(|(_, l)| matches!(l.weight, LinearWeight::Blocks(_))).count();
        let ids = vec![vec![1u32, 2, 3, 4, 5, 1, 2, 0], vec![3, 3, 5, 1, 0, 2, 4, 4]];
        let logits = m.forward(&ids, None, None, None).unwrap().token_logits.unwrap();
        let n: usize = logits.dims().iter().product();
        let logits = values(logits.reshape([n]));
        let mut spec = AdapterSpec::new(Method::Lora);
        spec.r = Some(4);
        spec.gaussian_init = true;
        create_adapter(&mut m, &spec).unwrap();
        // B starts at zero; give it values so the gradients reach A and every layer's input.
        for (_, l) in m.named_layers().linears {
            if let Some(lora) = l.adapters.first_mut() {
                let [r, o] = lora.matrices[1].dims();
                let b = Tensor::<2>::ones([r, o], device) * 0.01;
                lora.matrices[1] = burn::module::Param::from_tensor(b).set_require_grad(true);
            }
        }
        let l = loss(&m, &ids, None, &Targets::CausalLm).unwrap();
        let value = values(l.clone())[0];
        let grads = l.backward();
        let mut g = Vec::new();
        for (_, lin) in m.named_layers().linears {
            if let Some(lora) = Lora::of(lin) {
                for p in [lora.a, lora.b] {
                    let t = p.val().grad(&grads).expect("a LoRA gradient");
                    let n: usize = t.dims().iter().product();
                    g.extend(values(t.reshape([n])));
                }
            }
        }
        (logits, value, g, blocks)
    }

    /// LoRA on the block-quantized base gives the logits, loss and gradients of the same base
    /// dequantised to f32, for every block format (only the summation order may differ).
    fn matches_f32(device: burn::tensor::Device) {
        let (l32, v32, g32, b32) = run(Quantize::F32, &device);
        let (lq, vq, gq, bq) = run(Quantize::None, &device);
        assert_eq!(b32, 0, "the f32 reference holds no block weights");
        assert_eq!(bq, 14, "every quantized, F16 and BF16 projection stays in blocks");
        assert!(l32.iter().all(|v| v.is_finite()) && g32.iter().any(|v| *v != 0.0));
        assert!(max_rel(&lq, &l32) < 1e-4, "logits differ by {}", max_rel(&lq, &l32));
        assert!(((vq - v32) / v32).abs() < 1e-4, "loss {vq} vs {v32}");
        assert!(max_rel(&gq, &g32) < 1e-4, "LoRA gradients differ by {}", max_rel(&gq, &g32));
    }

    #[test]
    fn block_base_matches_dequantised_f32_on_cpu() {
        matches_f32(device::cpu().autodiff());
    }

    #[cfg(feature = "gpu")]
    #[test]
    fn block_base_matches_dequantised_f32_on_wgpu() {
        matches_f32(device::gpu().expect("wgpu (lavapipe in CI)").autodiff());
    }
}

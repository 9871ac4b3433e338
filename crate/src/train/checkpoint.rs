//! Full checkpoints: the optimiser state, by parameter name, next to the
//! adapter files, so a run resumes exactly where it stopped (same moments,
//! same step count, same data order). Read asynchronously, so the browser can
//! write them to OPFS.

use std::collections::HashMap;

use burn::module::ParamId;
use burn::tensor::{Tensor, TensorData};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use super::optim::{OptimizerKind, ParamState};
use super::run::Run;
use crate::error::{Error, Result};
use crate::formats::safetensors::{write_f32, OutTensor};
use crate::generate::read_f32;
use crate::models::layers::LinearWeight;
use crate::models::Model;

const FILE: &str = "optimizer.safetensors";

/// `trainer_state.json`: where a checkpointed run stood.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    pub step: usize,
    pub total_steps: usize,
    pub epoch: f64,
    pub seed: u64,
    pub optimizer: String,
}

/// Every trainable parameter by a stable name (its module path and role).
pub fn trainable_names(model: &mut Model) -> Vec<(String, ParamId)> {
    let mut out = vec![];
    if let Some(v) = &model.virtual_tokens {
        out.push((v.method.checkpoint_name().into(), v.table.id));
    }
    let named = model.named_layers();
    for (name, l) in named.linears {
        if let LinearWeight::Dense(w) = &l.weight {
            if w.val().is_require_grad() {
                out.push((format!("{name}.weight"), w.id));
            }
        }
        if let Some(b) = l.bias.as_ref().filter(|b| b.val().is_require_grad()) {
            out.push((format!("{name}.bias"), b.id));
        }
        for a in &l.adapters {
            out.extend(a.named().into_iter().map(|(n, id)| (format!("{name}.{n}"), id)));
        }
    }
    for (name, n) in named.norms {
        if let Some(b) = n.bias.as_ref().filter(|b| b.val().is_require_grad()) {
            out.push((format!("{name}.bias"), b.id));
        }
        if n.weight.val().is_require_grad() {
            out.push((format!("{name}.weight"), n.weight.id));
        }
    }
    out
}

fn kind_name(k: &OptimizerKind) -> &'static str {
    match k {
        OptimizerKind::AdamW { .. } => "adamw",
        OptimizerKind::Sgd { .. } => "sgd",
    }
}

/// Serialises the run's optimiser state (`optimizer.safetensors`) and
/// `trainer_state.json`.
pub async fn save_state(run: &mut Run) -> Result<(Vec<u8>, Vec<u8>)> {
    let names = {
        let model = run.trainer.model_mut();
        trainable_names(model)
    };
    let mut tensors = vec![];
    for (name, id) in names {
        if let Some(st) = run.trainer.optimizer.state.get(&id) {
            let m = st.m.clone();
            let n = m.dims()[0];
            tensors.push(OutTensor { name: format!("{name}.m"), shape: vec![n], data: read_f32(m).await? });
            if let Some(v) = &st.v {
                tensors.push(OutTensor { name: format!("{name}.v"), shape: vec![n], data: read_f32(v.clone()).await? });
            }
        }
    }
    let bytes = write_f32(&tensors, None)?;
    let state = TrainerState {
        step: run.step,
        total_steps: run.total_steps,
        epoch: run.step as f64 / run.steps_per_epoch() as f64,
        seed: run.config.seed,
        optimizer: kind_name(&run.trainer.optimizer.kind).into(),
    };
    let json = serde_json::to_vec_pretty(&state).map_err(|e| Error::io("trainer_state.json", e.to_string()))?;
    Ok((bytes, json))
}

/// Restores a checkpoint's optimiser state into `run` (whose model already
/// carries the checkpoint's adapter) and moves it to the saved step.
pub fn load_state(run: &mut Run, optimizer_bytes: &[u8], state_json: &[u8]) -> Result<()> {
    let state: TrainerState = serde_json::from_slice(state_json).map_err(|e| Error::format("trainer_state.json", e.to_string()))?;
    if state.optimizer != kind_name(&run.trainer.optimizer.kind) {
        return Err(Error::input("--resume", format!("the checkpoint used {}, this run {}", state.optimizer, kind_name(&run.trainer.optimizer.kind))));
    }
    let st = SafeTensors::deserialize(optimizer_bytes).map_err(|e| Error::format(FILE, e.to_string()))?;
    let device = run.trainer.model().device.clone();
    let read = |name: &str| -> Result<Option<Tensor<1>>> {
        match st.tensor(name) {
            Ok(v) => {
                let data: Vec<f32> = v.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                let n = data.len();
                // Optimiser state lives off the autodiff graph, like the gradients.
                Ok(Some(Tensor::<1>::from_data(TensorData::new(data, [n]), &device).inner()))
            }
            Err(safetensors::SafeTensorError::TensorNotFound(_)) => Ok(None),
            Err(e) => Err(Error::format(FILE, format!("{name}: {e}"))),
        }
    };
    let names = trainable_names(run.trainer.model_mut());
    let mut restored: HashMap<ParamId, ParamState> = HashMap::new();
    for (name, id) in names {
        if let Some(m) = read(&format!("{name}.m"))? {
            restored.insert(id, ParamState { m, v: read(&format!("{name}.v"))? });
        }
    }
    if restored.is_empty() && state.step > 0 {
        return Err(Error::format(FILE, "no optimiser state matches this adapter's parameters"));
    }
    run.trainer.optimizer.state = restored;
    run.fast_forward(state.step)
}

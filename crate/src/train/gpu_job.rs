//! "Continue on a GPU machine": a checkpointed run as a directory that transformers' `Trainer`
//! and PEFT continue (`train.py`, `accelerate launch train.py`). It holds:
//! - `checkpoint/`: the PEFT adapter, and the optimiser state under PEFT's tensor names and
//!   layouts (`exp_avg.<key>`, `exp_avg_sq.<key>`, or `momentum_buffer.<key>` for SGD);
//! - `data/`: the data files as given, the encoded rows webpeft trains on (`examples.jsonl`) and
//!   the run's micro-batches in order (`batches.json`), so the resumed run sees the same batches;
//! - `job.json`: the hyperparameters, mapped one to one onto `TrainingArguments` by `train.py`;
//! - `train.py`, `requirements.txt` and `README.md`.
//!
//! The CLI writes it as a directory (`webpeft gpu-job`); the page zips it.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::Tensor;
use safetensors::SafeTensors;
use serde_json::json;

use super::run::Run;
use super::session::TrainSpec;
use super::OptimizerKind;
use crate::error::{Error, Result};
use crate::formats::safetensors::{write_f32, OutTensor};
use crate::models::Model;
use crate::peft::export::export_adapter;

/// The Python side: static, it reads everything from `job.json`.
const TRAIN_PY: &str = include_str!("gpu_job/train.py");
const README: &str = include_str!("gpu_job/README.md");
// gguf: transformers reads a .gguf base (the page's bundled SmolLM2 and Qwen) with it.
const REQUIREMENTS: &str = "torch>=2.2\ntransformers>=4.56\npeft>=0.17\naccelerate>=1.0\nsafetensors\ngguf>=0.10\n";

/// The files of a GPU job for `run`, which stands at a checkpoint (its adapter and optimiser
/// state loaded, see [`super::checkpoint::load_state`]). `spec` is the run's job; `labels` its
/// class names; `data_files` the data files to include as given (name, bytes).
pub async fn gpu_job_files(run: &mut Run, spec: &TrainSpec, labels: Option<Vec<String>>, data_files: &[(String, Vec<u8>)]) -> Result<Vec<(String, Vec<u8>)>> {
    if spec.dp.is_some() {
        return Err(Error::unsupported(
            "gpu-job",
            "a differentially private run cannot continue outside webpeft: its privacy accounting (Poisson sampling, the noise, the spent epsilon) would not carry over",
        ));
    }
    let mut files = vec![];
    let adapter = export_adapter(run.trainer.model_mut()).await?;
    files.push(("checkpoint/adapter_config.json".to_string(), adapter.config));
    files.push(("checkpoint/adapter_model.safetensors".to_string(), adapter.weights));
    files.push(("checkpoint/optimizer_state.safetensors".to_string(), optimizer_state(run).await?));

    let rows: Vec<String> = run
        .train_examples()
        .iter()
        .map(|e| match e.class {
            Some(c) => json!({"input_ids": e.ids, "label": c}).to_string(),
            None => json!({"input_ids": e.ids, "labels": e.labels}).to_string(),
        })
        .collect();
    files.push(("data/examples.jsonl".to_string(), (rows.join("\n") + "\n").into_bytes()));
    files.push(("data/batches.json".to_string(), json!(run.micro_batch_plan()).to_string().into_bytes()));
    for (name, bytes) in data_files {
        let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
        files.push((format!("data/{base}"), bytes.clone()));
    }

    let (betas, eps, weight_decay, momentum) = match run.trainer.optimizer.kind {
        OptimizerKind::AdamW { beta1, beta2, eps, weight_decay } => (json!([beta1, beta2]), json!(eps), weight_decay, json!(null)),
        OptimizerKind::Sgd { momentum, weight_decay } => (json!(null), json!(null), weight_decay, json!(momentum)),
    };
    let model = run.trainer.model();
    let job = json!({
        "generator": format!("webpeft {}", env!("CARGO_PKG_VERSION")),
        "base_model": spec.base_model,
        "base_files": model.base.files,
        "architecture": model.info.architecture,
        "task": spec.task.name(),
        "labels": labels,
        "pad_id": run.config.pad_id,
        "step": run.step,
        "total_steps": run.total_steps,
        "batch": spec.batch,
        "grad_accum": spec.grad_accum,
        "lr": spec.lr,
        "schedule": spec.schedule,
        "warmup": spec.warmup,
        "optimizer": spec.optimizer,
        "adam_betas": betas,
        "adam_eps": eps,
        "weight_decay": weight_decay,
        "momentum": momentum,
        "clip": spec.clip,
        "seed": spec.seed,
        "spec": spec,
    });
    files.push(("job.json".to_string(), serde_json::to_vec_pretty(&job).map_err(|e| Error::io("job.json", e.to_string()))?));
    files.push(("train.py".to_string(), TRAIN_PY.as_bytes().to_vec()));
    files.push(("requirements.txt".to_string(), REQUIREMENTS.as_bytes().to_vec()));
    files.push(("README.md".to_string(), README.as_bytes().to_vec()));
    Ok(files)
}

/// The optimiser state under PEFT's names and layouts. The adapter's exporter already knows how
/// each trainable tensor is named and laid out in PEFT's file, so each state tensor goes through
/// it: a copy of the model whose trainable values are that state, exported.
async fn optimizer_state(run: &mut Run) -> Result<Vec<u8>> {
    let state = &run.trainer.optimizer.state;
    let (first, second) = match run.trainer.optimizer.kind {
        OptimizerKind::AdamW { .. } => ("exp_avg", Some("exp_avg_sq")),
        OptimizerKind::Sgd { .. } => ("momentum_buffer", None),
    };
    let m: HashMap<ParamId, Tensor<1>> = state.iter().map(|(id, s)| (*id, s.m.clone())).collect();
    let v: HashMap<ParamId, Tensor<1>> = state.iter().filter_map(|(id, s)| s.v.clone().map(|v| (*id, v))).collect();
    let model = run.trainer.model();
    let trained = exported_with(model, &m).await?;
    let mut out: Vec<OutTensor> = vec![];
    let mut add = |prefix: &str, bytes: &[u8]| -> Result<()> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::format("adapter_model.safetensors", e.to_string()))?;
        for (name, view) in st.tensors() {
            let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            out.push(OutTensor { name: format!("{prefix}.{name}"), shape: view.shape().to_vec(), data });
        }
        Ok(())
    };
    add(first, &trained)?;
    if let Some(second) = second {
        add(second, &exported_with(model, &v).await?)?;
    }
    write_f32(&out, Some(&[("format", "pt"), ("step", &run.step.to_string())]))
}

/// `model`'s adapter exported with each trainable value replaced by `values` (zeros where a
/// parameter has none: it has not had a gradient yet).
async fn exported_with(model: &Model, values: &HashMap<ParamId, Tensor<1>>) -> Result<Vec<u8>> {
    struct Swap<'a>(&'a HashMap<ParamId, Tensor<1>>);
    impl ModuleMapper for Swap<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, tensor, mapper) = param.consume();
            if !tensor.is_require_grad() {
                return Param::from_mapped_value(id, tensor, mapper);
            }
            let shape = tensor.shape();
            let new = match self.0.get(&id) {
                Some(v) => Tensor::<D>::from_inner(v.clone().reshape(shape)),
                None => tensor.zeros_like().detach(),
            };
            Param::from_mapped_value(id, new.require_grad(), mapper)
        }
    }
    let mut copy = model.clone();
    copy.network = copy.network.map(&mut Swap(values));
    copy.virtual_tokens = copy.virtual_tokens.map(|v| v.map(&mut Swap(values)));
    // Tensors an adapter keeps only to write back (a saved head's frozen original) stay as they are.
    Ok(export_adapter(&mut copy).await?.weights)
}

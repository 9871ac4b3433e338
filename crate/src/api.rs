//! What the browser bindings (`web.rs`) return that is not a core type of its
//! own, and the TypeScript declarations of every JS-facing type.
//!
//! The npm package's types for options, events, model info, plans, data
//! validation and errors come from the Rust definitions: `cargo test` (the
//! `core_types` unit test below) renders them with ts-rs into
//! `web/src/core-types.ts` and fails when the committed file differs, and
//! `web/build.mjs` type-checks the package against that file. ts-rs is a
//! dev-dependency, so only test builds compile it.
//!
//! Casing: the core (and the CLI's JSON) writes snake_case keys; the package
//! hands JavaScript camelCase ones. The declarations say camelCase
//! (`rename_all = "camelCase"` for TypeScript only), and the worker renames the
//! keys of what the core returns (`web/src/casing.ts`) and of the options it
//! passes in, by the same rule. PEFT file formats (`adapter_config.json`,
//! `webpeft.json`) keep their snake_case fields.

use serde::Serialize;

use crate::error::{Error, ErrorKind};
use crate::models::ModelInfo;
use crate::plan::{Limits, MemoryPlan};

/// The loaded model, as `Tuner.info` describes it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "ModelInfo", rename_all = "camelCase"))]
pub struct ModelSummary {
    #[serde(flatten)]
    pub info: ModelInfo,
    /// Bytes the weights take once loaded (f32 values and quantized blocks; `weightBytes`).
    pub estimated_bytes: usize,
    /// Whether an adapter is attached (trained, loaded or resumed).
    pub has_adapter: bool,
    /// The attached adapter's PEFT type (`LORA`, `IA3`, ...), as its `adapter_config.json` says.
    pub peft_type: Option<String>,
}

/// One text's class: the most likely label and every label's probability.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Classification {
    pub label: String,
    /// Probability of each label, by label name (the names are the model's or the training data's).
    #[cfg_attr(test, ts(type = "Record<string, number>"))]
    pub probs: serde_json::Map<String, serde_json::Value>,
}

/// Why a plan does not fit.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PlanError {
    /// `device`.
    pub kind: ErrorKind,
    /// The item that does not fit (a tensor, the weights, `options`).
    pub source: String,
    /// What does not fit and what would.
    pub message: String,
}

/// A memory plan checked against a device's limits (`Tuner.plan`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(rename = "MemoryPlan", rename_all = "camelCase"))]
pub struct PlanReport {
    #[serde(flatten)]
    pub plan: MemoryPlan,
    /// Host (wasm) memory at its peak: the load, and on the CPU backend the weights and training state too.
    pub host_peak_bytes: u64,
    /// What the plan was checked against.
    pub limits: Limits,
    pub fits: bool,
    /// Why it does not fit (kind `device`): the largest item and what would fit.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub error: Option<PlanError>,
}

impl PlanReport {
    /// `plan` checked against `limits`.
    pub fn new(plan: MemoryPlan, limits: Limits) -> Self {
        let error = plan.check(&limits).err().map(|e: Error| PlanError { kind: e.kind, source: e.source.clone(), message: e.to_string() });
        Self { host_peak_bytes: plan.host_peak_bytes(limits.device_is_host), fits: error.is_none(), plan, limits, error }
    }
}

/// The TypeScript declarations of the JS-facing types, as `web/src/core-types.ts` holds them.
#[cfg(test)]
pub(crate) mod typescript {
    use ts_rs::{Config, TS};

    use crate::train::dp::DpSpec;
    use crate::train::run::{EvalMetrics, Event, StepEvent};
    use crate::train::session::{AdapterMode, Method, OptimizerName, Prepared, Schedule, Task, TrainSpec};

    /// The file `cargo test` checks (and writes with `WEBPEFT_WRITE_TYPES=1`).
    pub const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/src/core-types.ts");

    fn decl<T: TS>(cfg: &Config, out: &mut String) {
        out.push('\n');
        if let Some(docs) = T::docs() {
            out.push_str(&docs);
        }
        out.push_str("export ");
        out.push_str(&T::decl(cfg));
        out.push('\n');
    }

    /// Every JS-facing type, in one module.
    pub fn render() -> String {
        // Counts and byte sizes are JS numbers (exact up to 2^53), not bigints.
        let cfg = Config::new().with_large_int("number");
        let mut out = String::from(
            "// GENERATED from the Rust types by ts-rs (crate/src/api.rs). Do not edit: change the Rust\n\
             // definitions, then `WEBPEFT_WRITE_TYPES=1 cargo test --release --features cli -p webpeft --lib core_types`.\n\
             // `cargo test` fails while this file differs from what the Rust types give.\n",
        );
        decl::<crate::error::ErrorKind>(&cfg, &mut out);
        decl::<Task>(&cfg, &mut out);
        decl::<crate::models::Quantize>(&cfg, &mut out);
        decl::<Method>(&cfg, &mut out);
        decl::<AdapterMode>(&cfg, &mut out);
        decl::<Schedule>(&cfg, &mut out);
        decl::<OptimizerName>(&cfg, &mut out);
        decl::<crate::train::dp::Accountant>(&cfg, &mut out);
        decl::<DpSpec>(&cfg, &mut out);
        decl::<TrainSpec>(&cfg, &mut out);
        decl::<Prepared>(&cfg, &mut out);
        decl::<StepEvent>(&cfg, &mut out);
        decl::<EvalMetrics>(&cfg, &mut out);
        decl::<Event>(&cfg, &mut out);
        decl::<super::ModelSummary>(&cfg, &mut out);
        decl::<super::Classification>(&cfg, &mut out);
        decl::<crate::plan::TensorSize>(&cfg, &mut out);
        decl::<crate::plan::WeightsPlan>(&cfg, &mut out);
        decl::<crate::plan::TrainingPlan>(&cfg, &mut out);
        decl::<crate::plan::Limits>(&cfg, &mut out);
        decl::<super::PlanError>(&cfg, &mut out);
        decl::<super::PlanReport>(&cfg, &mut out);
        decl::<crate::train::data::ValidateOptions>(&cfg, &mut out);
        decl::<crate::train::data::Problem>(&cfg, &mut out);
        decl::<crate::train::data::LabelCount>(&cfg, &mut out);
        decl::<crate::train::data::LabelledExample>(&cfg, &mut out);
        decl::<crate::train::data::TokenCounts>(&cfg, &mut out);
        decl::<crate::train::data::Validation>(&cfg, &mut out);
        out
    }

    #[test]
    fn core_types_match_the_committed_declarations() {
        let want = render();
        if std::env::var("WEBPEFT_WRITE_TYPES").as_deref() == Ok("1") {
            std::fs::write(PATH, &want).expect("write web/src/core-types.ts");
            return;
        }
        let have = std::fs::read_to_string(PATH).unwrap_or_default();
        if have != want {
            let line = have.lines().zip(want.lines()).position(|(a, b)| a != b).unwrap_or_else(|| have.lines().count().min(want.lines().count()));
            panic!(
                "web/src/core-types.ts has drifted from the Rust types (first difference at line {}:\n  committed: {:?}\n  generated: {:?}).\n\
                 Regenerate it with `WEBPEFT_WRITE_TYPES=1 cargo test --release --features cli -p webpeft --lib core_types` and commit it.",
                line + 1,
                have.lines().nth(line).unwrap_or("<end of file>"),
                want.lines().nth(line).unwrap_or("<end of file>"),
            );
        }
    }
}

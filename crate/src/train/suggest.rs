//! One-button settings (issue #13): what "Train" uses when a person sets nothing, picked from
//! the model, the amount of data and the task, with one line saying what was chosen and why.
//!
//! The rules are few and measured, not tuned per model: LoRA r 8 (alpha 16) on PEFT's default
//! targets, enough passes over small data to make about [`MIN_STEPS`] optimiser steps, and a
//! learning rate per task. On the bundled ticket sample (60 rows, 3 classes) the earlier fixed
//! defaults (lr 1e-3, 3 epochs = 18 steps) left all-MiniLM-L6-v2 at chance (25% held out); these
//! settings (lr 5e-3, 10 epochs = 60 steps) reach 100% (`webpeft train ... --eval-split 0.2`).

use serde::Serialize;

use super::session::{Method, Task, TrainSpec};
use crate::models::ModelInfo;

/// Optimiser steps a run should make at least: below this, small data has not moved the new
/// classifier head and the adapter far enough from their initialisation.
pub const MIN_STEPS: usize = 60;

/// Most passes over the data the suggestion asks for (tiny data overfits beyond this).
pub const MAX_EPOCHS: usize = 30;

/// Settings for one run, and why.
/// (The package types it as `TrainSuggestion`, with the options as `TrainOptions`.)
#[derive(Debug, Clone, Serialize)]
pub struct Suggestion {
    /// The job (the CLI's flags in snake_case, as `TrainSpec` reads them).
    pub options: TrainSpec,
    /// What was chosen and why, in one sentence.
    pub why: String,
}

/// Settings for training `info`'s model on `rows` rows of data for `task` (classification when
/// the data has labels). `rows` counts every row; a share is held out for evaluation when there
/// are enough, or exactly `held_out` rows when the caller holds out its own (a page's per-class
/// split), so that the sentence counts what will be trained on.
pub fn suggest(info: &ModelInfo, task: Task, rows: usize, held_out: Option<usize>) -> Suggestion {
    let seq_cls = task == Task::SeqCls;
    // Hold out a fifth to show how well it learned, when that leaves enough to train on.
    let (eval_split, held) = match held_out {
        Some(h) => {
            let h = h.min(rows.saturating_sub(1));
            (h as f64 / rows.max(1) as f64, h)
        }
        None if rows >= 10 => (0.2, (rows as f64 * 0.2).round() as usize),
        None => (0.0, 0),
    };
    let train_rows = (rows - held).max(1);
    let batch = (if seq_cls { 8 } else { 4 }).min(train_rows);
    let per_epoch = train_rows.div_ceil(batch);
    let epochs = MIN_STEPS.div_ceil(per_epoch).clamp(if seq_cls { 3 } else { 1 }, MAX_EPOCHS);
    // A new classifier head learns fastest at a higher rate; a language model's LoRA at 2e-4
    // (PEFT's examples), a little faster on small data.
    let lr = match (seq_cls, rows) {
        (true, _) => 5e-3,
        (false, r) if r < 500 => 1e-3,
        _ => 2e-4,
    };
    // Above ~0.3B parameters the activations dominate: recompute them layer by layer.
    let checkpoint = !seq_cls && info.num_parameters > 300_000_000;
    let options = TrainSpec {
        task,
        method: Method::Lora,
        r: Some(8),
        alpha: Some(16.0),
        epochs,
        lr,
        batch,
        seq_len: if seq_cls { 64 } else { 128 },
        warmup: (epochs * per_epoch / 10).max(1),
        eval_split,
        eval_every: Some(per_epoch.max(1) * epochs.div_ceil(5).max(1)),
        gradient_checkpointing: checkpoint,
        ..TrainSpec::default()
    };
    let what = if seq_cls { "LoRA (rank 8) with a new classifier head" } else { "LoRA (rank 8)" };
    let held = if held > 0 { format!(", {held} held out to check it") } else { String::new() };
    let passes = if epochs * per_epoch >= MIN_STEPS || epochs == MAX_EPOCHS {
        format!("{epochs} passes over {train_rows} examples ({} steps of {batch}: small data needs several passes)", epochs * per_epoch)
    } else {
        format!("{epochs} pass{} over {train_rows} examples ({} steps of {batch})", if epochs == 1 { "" } else { "es" }, epochs * per_epoch)
    };
    let ckpt = if checkpoint { "; layers recomputed in the backward pass to fit memory" } else { "" };
    let why = format!("{what}, learning rate {lr:e}, {passes}{held}{ckpt}.");
    Suggestion { options, why }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(params: usize) -> ModelInfo {
        ModelInfo { num_parameters: params, ..Default::default() }
    }

    #[test]
    fn small_classification_data_gets_enough_steps() {
        let s = suggest(&info(22_000_000), Task::SeqCls, 60, None);
        let o = &s.options;
        assert_eq!((o.batch, o.epochs, o.eval_split, o.lr), (8, 10, 0.2, 5e-3));
        // 48 training rows: 6 steps a pass, 10 passes = 60 steps.
        assert!(s.why.contains("10 passes over 48 examples (60 steps of 8") && s.why.contains("12 held out"), "{}", s.why);
        // Large data: at least 3 passes, whatever MIN_STEPS asks.
        assert_eq!(suggest(&info(22_000_000), Task::SeqCls, 10_000, None).options.epochs, 3);
        // Tiny data: no evaluation, batch no larger than the data, at most MAX_EPOCHS passes.
        let t = suggest(&info(22_000_000), Task::SeqCls, 4, None).options;
        assert_eq!((t.batch, t.epochs, t.eval_split), (4, MAX_EPOCHS, 0.0));
    }

    #[test]
    fn a_callers_held_out_rows_are_what_the_sentence_counts() {
        // The page holds out 2 of each of 3 classes of 20: 54 rows train, 7 steps a pass.
        let s = suggest(&info(22_000_000), Task::SeqCls, 60, Some(6));
        assert!(s.why.contains("over 54 examples (63 steps of 8") && s.why.contains(", 6 held out"), "{}", s.why);
        assert_eq!(s.options.eval_split, 0.1);
        // Nothing held out: no clause about it; never all rows.
        assert!(!suggest(&info(22_000_000), Task::SeqCls, 60, Some(0)).why.contains("held out"));
        assert!(suggest(&info(22_000_000), Task::SeqCls, 5, Some(9)).why.contains("over 1 examples"));
    }

    #[test]
    fn large_language_models_recompute_layers() {
        let small = suggest(&info(135_000_000), Task::CausalLm, 40, None).options;
        assert!(!small.gradient_checkpointing && small.lr == 1e-3 && small.batch == 4);
        let big = suggest(&info(494_000_000), Task::CausalLm, 40, None);
        assert!(big.options.gradient_checkpointing && big.why.contains("recomputed"), "{}", big.why);
        assert_eq!(suggest(&info(494_000_000), Task::CausalLm, 5000, None).options.lr, 2e-4);
    }
}

//! Per-example gradients in one backward pass, for DP-SGD (what Opacus's
//! `GradSampleModule` does with hooks, done here with "probe" tensors).
//!
//! While a recording is open, each layer with trainable tensors adds a zero
//! leaf tensor (a probe) to the output those tensors produce, and records the
//! input they act on. After one backward pass of the summed per-example
//! losses, a probe's gradient is that output's gradient, row by row, and each
//! tensor's per-example gradient follows from it in closed form (`Rule`).
//! Rows of a batch never mix in these models (attention is masked per row),
//! so row `b`'s gradient is example `b`'s.
//!
//! Trainable tensors with no rule here (embeddings, RMSNorm weights, a bias
//! under DoRA) get no tap; the trainer sees the missing tensors (or the
//! recording marked unusable) and falls back to one backward pass per example. A layer that sees
//! rows it cannot tell apart (a batch flattened to `[rows * seq, dim]`) marks
//! the recording unusable, for the same fallback.

use std::cell::RefCell;
use std::collections::HashMap;

use burn::module::{Param, ParamId};
use burn::tensor::{Gradients, Tensor};

/// How a tensor's per-example gradient follows from its layer's input `a`
/// `[rows, n, in]` and output gradient `g` `[rows, n, out]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A weight `[in, out]` of `y = a W`: `a_bᵀ g_b`.
    Weight,
    /// A bias `[out]` of `y = ... + c`: `Σ_n g_b`.
    Bias,
    /// A scale `[out]` of `y = a ∘ v`: `Σ_n a_b ∘ g_b`.
    Scale,
    /// A table `[n, out]` that every row gets a copy of (prompt and prefix
    /// tuning's virtual tokens): `g_b`.
    Copy,
}

struct Tap {
    param: ParamId,
    rule: Rule,
    /// `[rows, n, in]`, outside the autodiff graph (none for a bias).
    input: Option<Tensor<3>>,
    probe: usize,
}

struct Recording {
    rows: usize,
    /// The zero leaves, `[rows, n, out]`.
    probes: Vec<Tensor<3>>,
    taps: Vec<Tap>,
    /// Why the recording cannot give per-example gradients.
    unusable: Option<String>,
}

/// The most values one tensor's per-example gradients may hold (1 GiB of f32).
pub const MAX_PER_EXAMPLE_VALUES: usize = 1 << 28;

thread_local! {
    // The trainer opens and closes it around one forward pass on this thread.
    static OPEN: RefCell<Option<Recording>> = const { RefCell::new(None) };
}

/// Opens a recording for a batch of `rows` examples.
pub fn start(rows: usize) {
    OPEN.with(|r| *r.borrow_mut() = Some(Recording { rows, probes: vec![], taps: vec![], unusable: None }));
}

/// `t` viewed as `[rows, n, last]`, when its leading dimension is the batch's rows.
fn by_row<const D: usize>(t: Tensor<D>, rows: usize) -> Option<Tensor<3>> {
    let dims = t.dims();
    let last = dims[D - 1];
    let n = dims.iter().product::<usize>() / last.max(1);
    let ok = (D >= 2 && dims[0] == rows) || rows == 1;
    ok.then(|| t.reshape([rows, n / rows, last]))
}

/// True while a recording is open (layers skip their taps otherwise).
pub fn recording() -> bool {
    OPEN.with(|r| r.borrow().is_some())
}

/// `param`'s id when it is trained.
pub fn trained<const K: usize>(param: &Param<Tensor<K>>) -> Option<ParamId> {
    param.val().is_require_grad().then_some(param.id)
}

/// Adds a probe to `y` for `uses`: trained tensors (see [`trained`]), each
/// with its rule and the input it acts on (shaped like `y` but for the last
/// dimension; none for a bias). Returns `y` unchanged when no recording is
/// open or `uses` is empty.
pub fn tap<const D: usize>(y: Tensor<D>, uses: Vec<(ParamId, Rule, Option<Tensor<D>>)>) -> Tensor<D> {
    OPEN.with(|open| {
        let mut open = open.borrow_mut();
        let Some(rec) = open.as_mut() else { return y };
        if uses.is_empty() || rec.unusable.is_some() {
            return y;
        }
        let shape = y.shape();
        let Some(rows_y) = by_row(y.clone(), rec.rows) else {
            rec.unusable = Some(format!("a layer's output {:?} is not split by the batch's {} rows", shape.dims::<D>(), rec.rows));
            return y;
        };
        let mut taps = Vec::with_capacity(uses.len());
        for (param, rule, input) in uses {
            // A weight's per-example gradients hold `rows` copies of it: a trained vocabulary-wide
            // head would not fit, so such a model takes a pass per example instead.
            if let (Rule::Weight, Some(a)) = (rule, &input) {
                let values = rec.rows * a.dims()[D - 1] * shape.dims::<D>()[D - 1];
                if values > MAX_PER_EXAMPLE_VALUES {
                    rec.unusable = Some(format!("per-example gradients of a {} x {} weight for {} examples ({values} values) would not fit", a.dims()[D - 1], shape.dims::<D>()[D - 1], rec.rows));
                    return y;
                }
            }
            let input = match input.map(|a| by_row(a.detach(), rec.rows)) {
                None => None,
                Some(Some(a)) => Some(a.inner()),
                Some(None) => {
                    rec.unusable = Some("a layer's input is not split by the batch's rows".into());
                    return y;
                }
            };
            taps.push(Tap { param, rule, input, probe: rec.probes.len() });
        }
        rec.taps.extend(taps);
        let probe = Tensor::<3>::zeros(rows_y.shape(), &y.device()).require_grad();
        rec.probes.push(probe.clone());
        y + probe.reshape(shape)
    })
}

/// [`tap`] for one tensor: `y` unchanged unless a recording is open and `param` is trained.
pub fn tap_one<const D: usize, const K: usize>(y: Tensor<D>, param: &Param<Tensor<K>>, rule: Rule, input: Option<Tensor<D>>) -> Tensor<D> {
    match trained(param).filter(|_| recording()) {
        Some(id) => tap(y, vec![(id, rule, input)]),
        None => y,
    }
}

/// Per-example gradients of the tapped tensors, each `[rows, numel]` (a
/// tensor's flat layout, outside the autodiff graph), summed over a tensor's
/// taps; or why there are none. Closes the recording.
pub fn finish(grads: &Gradients) -> std::result::Result<HashMap<ParamId, Tensor<2>>, String> {
    let rec = OPEN.with(|r| r.borrow_mut().take()).ok_or("no recording was open")?;
    if let Some(why) = rec.unusable {
        return Err(why);
    }
    let outs: Vec<Option<Tensor<3>>> = rec.probes.iter().map(|p| p.grad(grads)).collect();
    let mut per: HashMap<ParamId, Tensor<2>> = HashMap::new();
    for tap in rec.taps {
        // A probe without a gradient: its output did not reach the loss.
        let Some(g) = outs[tap.probe].clone() else { continue };
        let [rows, _, out] = g.dims();
        let grad = match (tap.rule, tap.input) {
            (Rule::Weight, Some(a)) => {
                let [_, _, inp] = a.dims();
                a.swap_dims(1, 2).matmul(g).reshape([rows, inp * out])
            }
            (Rule::Bias, _) => g.sum_dim(1).reshape([rows, out]),
            (Rule::Scale, Some(a)) => (a * g).sum_dim(1).reshape([rows, out]),
            (Rule::Copy, _) => {
                let n = g.dims()[1];
                g.reshape([rows, n * out])
            }
            (rule, None) => return Err(format!("a {rule:?} tap without its input")),
        };
        let grad = match per.remove(&tap.param) {
            Some(acc) => acc + grad,
            None => grad,
        };
        per.insert(tap.param, grad);
    }
    Ok(per)
}

/// Marks an open recording unusable: a layer uses a trained tensor in a way
/// the rules don't cover.
pub fn unusable(why: &str) {
    OPEN.with(|r| {
        if let Some(rec) = r.borrow_mut().as_mut() {
            rec.unusable.get_or_insert_with(|| why.to_string());
        }
    });
}

/// Closes a recording without using it (after an error in the forward pass).
pub fn abandon() {
    OPEN.with(|r| r.borrow_mut().take());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weight_too_large_to_copy_per_example_makes_the_recording_unusable() {
        let device = crate::device::cpu().autodiff();
        let side = 1 << 14; // 2 rows x 2^14 x 2^14 = 2^29 values, over the limit
        start(2);
        let x = Tensor::<3>::zeros([2, 1, side], &device);
        let y = tap(x.clone(), vec![(ParamId::new(), Rule::Weight, Some(x))]);
        assert_eq!(y.dims(), [2, 1, side]);
        let grads = Tensor::<1>::ones([1], &device).require_grad().sum().backward();
        let why = finish(&grads).unwrap_err();
        assert!(why.contains("16384 x 16384 weight for 2 examples") && why.contains("would not fit"), "{why}");
        // One row fits (2^28 values): the probe is added and its gradient read.
        start(1);
        let x = Tensor::<3>::zeros([1, 1, side], &device);
        let y = tap(x.clone(), vec![(ParamId::new(), Rule::Bias, None)]);
        let grads = y.sum().backward();
        assert_eq!(finish(&grads).unwrap().len(), 1);
    }
}

//! Opacus's RDP accountant for the sampled Gaussian mechanism, ported line by
//! line from `opacus/accountants/analysis/rdp.py`, `accountants/rdp.py` and
//! `accountants/utils.py` (Opacus 1.6.0; itself from TF Privacy), so that a
//! given (noise multiplier, sample rate, steps, delta) gives Opacus's epsilon
//! and a target epsilon gives Opacus's noise multiplier.
//!
//! Opacus's `PrivacyEngine` defaults to the PRV accountant; its
//! `get_noise_multiplier` defaults to RDP, the accountant implemented here.
//! Depends on nothing else in the crate.

/// The accountant's name as Opacus's `mechanism()` gives it.
pub const MECHANISM: &str = "rdp";

/// Opacus's `RDPAccountant.DEFAULT_ALPHAS`: `1 + x/10` for x in 1..=99, then 12..=63.
pub fn default_orders() -> Vec<f64> {
    // Same float operations as Python's `1 + x / 10.0`, so the same values (2.0 etc. exactly).
    let mut orders: Vec<f64> = (1..100).map(|x| 1.0 + x as f64 / 10.0).collect();
    orders.extend((12..64).map(|x| x as f64));
    orders
}

/// Opacus's `MAX_SIGMA` of the noise search.
const MAX_SIGMA: f64 = 1e6;

fn log_add(logx: f64, logy: f64) -> f64 {
    let (a, b) = (logx.min(logy), logx.max(logy));
    if a == f64::NEG_INFINITY {
        return b;
    }
    libm::log1p((a - b).exp()) + b
}

fn log_sub(logx: f64, logy: f64) -> f64 {
    // Opacus raises when logx < logy; the series below never asks for it
    // (A_alpha's partial sums stay above their next term), so saturate to 0.
    if logx < logy {
        return f64::NEG_INFINITY;
    }
    if logy == f64::NEG_INFINITY {
        return logx;
    }
    if logx == logy {
        return f64::NEG_INFINITY;
    }
    let d = libm::expm1(logx - logy);
    if d.is_infinite() {
        // Python's math.expm1 overflows (OverflowError) here; Opacus returns logx.
        return logx;
    }
    d.ln() + logy
}

/// `scipy.special.binom(n, k)` for a non-negative integer `k` (any real `n`),
/// as a product; for integer `n` it is exact while it fits in 53 bits.
fn binom(n: f64, k: usize) -> f64 {
    let mut c = 1.0f64;
    for j in 0..k {
        c = c * (n - j as f64) / (j as f64 + 1.0);
    }
    c
}

/// `erfcx(x) = exp(x^2) erfc(x)` for `x > 0.7`: libm's erfc where exp(x^2)
/// does not overflow the precision, a continued fraction beyond.
fn erfcx(x: f64) -> f64 {
    if x < 6.0 {
        return (x * x).exp() * libm::erfc(x);
    }
    // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))),
    // evaluated bottom-up; 60 levels are far more than double precision needs at x >= 6.
    let mut t = x;
    for k in (1..=60).rev() {
        t = x + (k as f64 / 2.0) / t;
    }
    1.0 / (t * std::f64::consts::PI.sqrt())
}

/// `log(erfc(x))`, accurate for large `x`: Opacus's `_log_erfc`, which is
/// `log(2) + scipy.special.log_ndtr(-x * sqrt(2))`; scipy's log_ndtr takes
/// `log(erfcx)` below -1 and `log1p(-erfc/2)` above, mirrored here.
fn log_erfc(x: f64) -> f64 {
    if x > std::f64::consts::FRAC_1_SQRT_2 {
        erfcx(x).ln() - x * x
    } else {
        // log(2) + log1p(-erfc(-x)/2) = log(2 - erfc(-x)) = log(erfc(x)).
        std::f64::consts::LN_2 + libm::log1p(-libm::erfc(-x) / 2.0)
    }
}

fn compute_log_a_int(q: f64, sigma: f64, alpha: usize) -> f64 {
    let mut log_a = f64::NEG_INFINITY;
    for i in 0..=alpha {
        let log_coef = binom(alpha as f64, i).ln() + i as f64 * q.ln() + (alpha - i) as f64 * (1.0 - q).ln();
        let s = log_coef + (i * i - i) as f64 / (2.0 * sigma * sigma);
        log_a = log_add(log_a, s);
    }
    log_a
}

fn compute_log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let sqrt2 = std::f64::consts::SQRT_2;
    let mut i = 0usize;
    // binom(alpha, i), updated with the same multiplications `binom` does
    // (so the same values), without its O(i) loop per term.
    let mut coef = 1.0f64;
    loop {
        let log_coef = coef.abs().ln();
        let fi = i as f64;
        let j = alpha - fi;
        let log_t0 = log_coef + fi * q.ln() + j * (1.0 - q).ln();
        let log_t1 = log_coef + j * q.ln() + fi * (1.0 - q).ln();
        let log_e0 = 0.5f64.ln() + log_erfc((fi - z0) / (sqrt2 * sigma));
        let log_e1 = 0.5f64.ln() + log_erfc((z0 - j) / (sqrt2 * sigma));
        let log_s0 = log_t0 + (fi * fi - fi) / (2.0 * sigma * sigma) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
        if coef > 0.0 {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            log_a0 = log_sub(log_a0, log_s0);
            log_a1 = log_sub(log_a1, log_s1);
        }
        coef = coef * (alpha - fi) / (fi + 1.0);
        i += 1;
        if log_s0.max(log_s1) < -30.0 {
            break;
        }
    }
    log_add(log_a0, log_a1)
}

/// RDP of one step of the sampled Gaussian mechanism at order `alpha`
/// (Opacus's `_compute_rdp`); can be infinite.
fn rdp_one(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q == 0.0 {
        return 0.0;
    }
    if sigma == 0.0 {
        return f64::INFINITY;
    }
    if q == 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    if alpha.is_infinite() {
        return f64::INFINITY;
    }
    let log_a = if alpha.fract() == 0.0 { compute_log_a_int(q, sigma, alpha as usize) } else { compute_log_a_frac(q, sigma, alpha) };
    log_a / (alpha - 1.0)
}

/// RDP of `steps` steps of the sampled Gaussian mechanism with sampling rate
/// `q` and `noise_multiplier`, at each of `orders` (Opacus's `compute_rdp`).
pub fn compute_rdp(q: f64, noise_multiplier: f64, steps: u64, orders: &[f64]) -> Vec<f64> {
    orders.iter().map(|&a| rdp_one(q, noise_multiplier, a) * steps as f64).collect()
}

/// (epsilon, best order) for `delta` from RDP values at `orders` (Opacus's
/// `get_privacy_spent`: the conversion of Balle et al. 2020, Theorem 21).
pub fn get_privacy_spent(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    assert_eq!(orders.len(), rdp.len(), "one RDP value per order");
    let eps: Vec<f64> = orders.iter().zip(rdp).map(|(&a, &r)| r - (delta.ln() + a.ln()) / (a - 1.0) + ((a - 1.0) / a).ln()).collect();
    // numpy's nanargmin: the first minimum, NaNs ignored; all NaN means no privacy.
    let mut best: Option<usize> = None;
    for (i, e) in eps.iter().enumerate() {
        if !e.is_nan() && best.is_none_or(|b| *e < eps[b]) {
            best = Some(i);
        }
    }
    match best {
        Some(i) => (eps[i], orders[i]),
        None => (f64::INFINITY, f64::NAN),
    }
}

/// Epsilon spent after `steps` steps at (`noise_multiplier`, `sample_rate`)
/// for `delta`, over Opacus's default orders (`RDPAccountant.get_epsilon`).
pub fn epsilon(noise_multiplier: f64, sample_rate: f64, steps: u64, delta: f64) -> f64 {
    if steps == 0 {
        return 0.0;
    }
    let orders = default_orders();
    get_privacy_spent(&orders, &compute_rdp(sample_rate, noise_multiplier, steps, &orders), delta).0
}

/// The noise multiplier that reaches `target_epsilon` at `delta` after
/// `steps` steps with `sample_rate`: Opacus's `get_noise_multiplier` (RDP,
/// its binary search with `epsilon_tolerance`, returning the upper end).
/// `None` when the budget is too low (Opacus's "The privacy budget is too low").
pub fn get_noise_multiplier(target_epsilon: f64, delta: f64, sample_rate: f64, steps: u64, epsilon_tolerance: f64) -> Option<f64> {
    // No noise reaches an epsilon below the conversion's floor (RDP 0 at every
    // order), where Opacus would double sigma up to MAX_SIGMA and then give up;
    // answering at once spares those very slow evaluations at huge sigma.
    let orders = default_orders();
    if target_epsilon < get_privacy_spent(&orders, &vec![0.0; orders.len()], delta).0 {
        return None;
    }
    let search = search_noise_multiplier(target_epsilon, epsilon_tolerance, |sigma| Ok::<_, std::convert::Infallible>(epsilon(sigma, sample_rate, steps, delta)));
    search.unwrap_or_else(|never| match never {})
}

/// The search of Opacus's `get_noise_multiplier` (`accountants/utils.py`)
/// over any accountant's `epsilon(sigma)`: double sigma from 20 until epsilon
/// is at most the target, then bisect until it is within `epsilon_tolerance`
/// below it, returning the upper end. `Ok(None)` past `MAX_SIGMA` ("The
/// privacy budget is too low"); an accountant's error ends the search.
pub fn search_noise_multiplier<E>(target_epsilon: f64, epsilon_tolerance: f64, mut epsilon: impl FnMut(f64) -> Result<f64, E>) -> Result<Option<f64>, E> {
    let mut eps_high = f64::INFINITY;
    let (mut sigma_low, mut sigma_high) = (0.0f64, 10.0f64);
    while eps_high > target_epsilon {
        sigma_high *= 2.0;
        eps_high = epsilon(sigma_high)?;
        if sigma_high > MAX_SIGMA {
            return Ok(None);
        }
    }
    while target_epsilon - eps_high > epsilon_tolerance {
        let sigma = (sigma_low + sigma_high) / 2.0;
        let eps = epsilon(sigma)?;
        if eps < target_epsilon {
            sigma_high = sigma;
            eps_high = eps;
        } else {
            sigma_low = sigma;
        }
    }
    Ok(Some(sigma_high))
}

/// Opacus's steps for a number of epochs: `int(epochs / sample_rate)`.
pub fn steps_for_epochs(epochs: f64, sample_rate: f64) -> u64 {
    (epochs / sample_rate) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_opacus_defaults() {
        let o = default_orders();
        assert_eq!(o.len(), 99 + 52);
        assert_eq!(o[0], 1.1);
        assert_eq!(o[9], 2.0);
        assert_eq!(*o.last().unwrap(), 63.0);
    }

    #[test]
    fn full_batch_is_plain_gaussian() {
        // q = 1: RDP of the Gaussian mechanism is alpha / (2 sigma^2) per step.
        let r = compute_rdp(1.0, 2.0, 3, &[2.0, 10.5]);
        assert_eq!(r, vec![3.0 * 2.0 / 8.0, 3.0 * 10.5 / 8.0]);
    }

    #[test]
    fn log_erfc_is_continuous_and_matches_asymptotics() {
        // Each branch agrees with the plain formula where both are accurate.
        for x in [std::f64::consts::FRAC_1_SQRT_2, 1.5, 3.0] {
            assert!((log_erfc(x) - libm::erfc(x).ln()).abs() < 1e-13, "{x}");
        }
        for x in [6.0f64, 7.0, 9.0] {
            let cf = erfcx(x + 1e-12); // the continued fraction (x >= 6)
            let plain = (x * x).exp() * libm::erfc(x);
            assert!((cf / plain - 1.0).abs() < 1e-11, "{x}: {cf} vs {plain}");
        }
        // Far out: log erfc(x) ~ -x^2 - log(x sqrt(pi)) + log(1 - 1/(2x^2) + 3/(4x^4)).
        let x = 40.0f64;
        let want = -x * x - (x * std::f64::consts::PI.sqrt()).ln() + (1.0 - 0.5 / (x * x) + 0.75 / x.powi(4)).ln();
        assert!((log_erfc(x) - want).abs() < 1e-9);
    }

    #[test]
    fn noise_multiplier_reaches_target() {
        let s = get_noise_multiplier(8.0, 1e-5, 0.01, 1000, 0.01).unwrap();
        let e = epsilon(s, 0.01, 1000, 1e-5);
        assert!(e <= 8.0 && e > 8.0 - 0.01, "sigma {s} gives epsilon {e}");
        // q = 1 is the closed form, so this search to MAX_SIGMA is quick; even
        // sigma = 2e6 leaves epsilon about 0.1 at delta 1e-5 (the conversion's floor).
        assert!(get_noise_multiplier(1e-3, 1e-5, 1.0, 1000, 0.01).is_none());
        // Below the floor (about 0.103 at delta 1e-5), at once.
        assert!(get_noise_multiplier(0.1, 1e-5, 0.01, 1000, 0.01).is_none());
        assert!(get_noise_multiplier(0.11, 1e-5, 0.01, 10, 0.01).is_some());
    }
}

//! Opacus's PRV accountant (Gopi et al. 2021, "Numerical composition of
//! differential privacy"; the default accountant of Opacus's `PrivacyEngine`)
//! for a run of `steps` identical steps of the Poisson-subsampled Gaussian
//! mechanism, ported line by line from Opacus 1.6.0's `accountants/prv.py`
//! and `accountants/analysis/prv/{prvs,domain,compose}.py`:
//! the privacy loss's cdf, truncated to a domain sized by the RDP accountant,
//! discretised on a mesh fine enough for `eps_error`, its mean restored by a
//! shift (`quad`, [`super::quad`]), composed `steps` times by FFT
//! ([`super::fourier`]) and turned into the upper bound on epsilon Opacus
//! returns. Summation orders follow numpy's where they change digits
//! (sequential `cumsum`, `linspace`'s formula), so a given (noise multiplier,
//! sample rate, steps, delta) gives Opacus's epsilon, and a target epsilon
//! Opacus's noise multiplier (`get_noise_multiplier(accountant="prv")`).
//!
//! Where Opacus raises, this returns an error with Opacus's words. One limit
//! is webpeft's own: domains over [`MAX_DOMAIN`] points (epsilons in the
//! hundreds, where Opacus needs gigabytes) are refused.

use super::{accountant, fourier, quad};
use crate::error::{Error, Result};

/// The accountant's name as Opacus's `mechanism()` gives it.
pub const MECHANISM: &str = "prv";

/// `PRVAccountant.get_epsilon`'s default `eps_error`.
pub const EPS_ERROR: f64 = 0.01;

/// The largest discretisation webpeft builds (2^25 points: about 1 GiB at the
/// peak of the FFT). Larger ones belong to epsilons in the hundreds.
pub const MAX_DOMAIN: usize = 1 << 25;

/// `np.finfo(np.longdouble).eps` on x86-64 Linux (80-bit long double), where
/// Opacus's references were made: its check on delta uses it.
const LONGDOUBLE_EPS: f64 = 1.0842021724855044e-19;

fn failure(message: impl Into<String>) -> Error {
    Error::input("dp.accountant", message)
}

/// `PoissonSubsampledGaussianPRV`: the privacy loss of one Poisson-subsampled
/// Gaussian step (Gopi et al., propositions B1 and B4).
struct Prv {
    q: f64,
    log_1mq: f64,
    /// `sigma**2` and `2 * SQRT2 * sigma`, as Opacus's expression evaluates them.
    s2: f64,
    c: f64,
}

impl Prv {
    fn new(sample_rate: f64, noise_multiplier: f64) -> Self {
        let sigma = noise_multiplier;
        // Python's `sigma**2` is libm's pow (x*x rounds the same, pow is what runs).
        Self { q: sample_rate, log_1mq: (1.0 - sample_rate).ln(), s2: sigma.powf(2.0), c: 2.0 * std::f64::consts::SQRT_2 * sigma }
    }

    fn cdf(&self, t: f64) -> f64 {
        let q = self.q;
        if !(t > self.log_1mq) {
            return 0.0;
        }
        let z = ((t.exp() + q - 1.0) / q).ln();
        -q * libm::erfc((2.0 * z * self.s2 - 1.0) / self.c) / 2.0 - (1.0 - q) * libm::erfc((2.0 * z * self.s2 + 1.0) / self.c) / 2.0 + 1.0
    }
}

/// `TruncatedPrivacyRandomVariable`: the PRV conditioned on `[t_min, t_max)`.
struct Truncated {
    prv: Prv,
    t_min: f64,
    t_max: f64,
    cdf_min: f64,
    remaining_mass: f64,
}

impl Truncated {
    fn new(prv: Prv, t_min: f64, t_max: f64) -> Self {
        let cdf_min = prv.cdf(t_min);
        let remaining_mass = prv.cdf(t_max) - cdf_min;
        Self { prv, t_min, t_max, cdf_min, remaining_mass }
    }

    fn cdf(&self, t: f64) -> f64 {
        if t < self.t_min {
            0.0
        } else if t < self.t_max {
            (self.prv.cdf(t) - self.cdf_min) / self.remaining_mass
        } else {
            1.0
        }
    }

    /// `TruncatedPrivacyRandomVariable.mean`: `E[T] = [t F(t)] - integral of F`,
    /// integrated by `quad` piecewise between log-spaced break points.
    fn mean(&self) -> f64 {
        // Python's int() truncates toward zero.
        let lower_exponent = self.t_min.abs().log10() as i64 as f64;
        let upper_exponent = self.t_max.log10() as i64 as f64;
        let mut points = vec![self.t_min];
        points.extend(logspace10(lower_exponent, -5.0).iter().map(|x| -x));
        points.push(0.0);
        points.extend(logspace10(-5.0, upper_exponent));
        points.push(self.t_max);
        let mut mean = 0.0;
        for w in points.windows(2) {
            let (left, right) = (w[0], w[1]);
            let integral = quad::qags(|t| self.cdf(t), left, right, quad::EPS_DEFAULT, quad::EPS_DEFAULT, 500).result;
            mean += right * self.cdf(right) - left * self.cdf(left) - integral;
        }
        mean
    }
}

/// `np.logspace(start, stop, num=10)`: `10 ** np.linspace(start, stop, 10)`.
fn logspace10(start: f64, stop: f64) -> [f64; 10] {
    let step = (stop - start) / 9.0;
    std::array::from_fn(|i| 10f64.powf(if i == 9 { stop } else { i as f64 * step + start }))
}

/// Opacus's `Domain`: `size` (even) points from `t_min` to `t_max`, moved by
/// `shifts` in all.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Domain {
    t_min: f64,
    t_max: f64,
    size: usize,
    shifts: f64,
}

impl Domain {
    /// `Domain.create_aligned`: the mesh `dt` aligned to 0, an even number of points.
    fn create_aligned(t_min: f64, t_max: f64, dt: f64) -> Result<Self> {
        let t_min = (t_min / dt).floor() * dt;
        let mut t_max = (t_max / dt).ceil() * dt;
        // np.round rounds half to even.
        let span = ((t_max - t_min) / dt).round_ties_even();
        if !span.is_finite() || span < 0.0 {
            // Opacus fails in int(): "cannot convert float infinity/NaN to integer".
            return Err(failure(format!("the PRV domain [{t_min}, {t_max}] at mesh {dt} is not finite (cannot convert float {span} to integer); the privacy loss is unbounded")));
        }
        if span >= MAX_DOMAIN as f64 {
            return Err(failure(format!(
                "the PRV accountant would discretise the privacy loss on {} points (more than webpeft's {MAX_DOMAIN}): epsilon is in the hundreds or more; use the rdp accountant, fewer steps or more noise",
                span + 1.0
            )));
        }
        let mut size = span as usize + 1;
        if size % 2 == 1 {
            size += 1;
            t_max += dt;
        }
        let domain = Self { t_min, t_max, size, shifts: 0.0 };
        if !((domain.dt() - dt).abs() / dt < 1e-8) {
            // Opacus raises a bare RuntimeError here.
            return Err(failure(format!("the PRV domain's mesh {} drifted from {dt} (Opacus: RuntimeError in Domain.create_aligned)", domain.dt())));
        }
        Ok(domain)
    }

    /// `Domain.dt`.
    fn dt(&self) -> f64 {
        (self.t_max - self.t_min) / (self.size - 1) as f64
    }

    /// `Domain.ts[i]`: `np.linspace(t_min, t_max, size)[i]` (`i * step + t_min`, the end exact).
    fn t(&self, i: usize) -> f64 {
        if i + 1 == self.size {
            self.t_max
        } else {
            i as f64 * self.dt() + self.t_min
        }
    }

    fn shift_right(&self, dt: f64) -> Self {
        Self { t_min: self.t_min + dt, t_max: self.t_max + dt, size: self.size, shifts: self.shifts + dt }
    }
}

/// `compute_safe_domain_size` for one (noise multiplier, sample rate, steps)
/// history: RDP bounds on the privacy loss's tails (Gopi et al., remark 5.6).
fn safe_domain_size(noise_multiplier: f64, sample_rate: f64, steps: u64, eps_error: f64, delta_error: f64) -> f64 {
    // Python's max(a, b) keeps a unless b > a.
    let max = |a: f64, b: f64| if b > a { b } else { a };
    let l_max = accountant::epsilon(noise_multiplier, sample_rate, steps, delta_error / 4.0);
    let l_max = max(l_max, accountant::epsilon(noise_multiplier, sample_rate, 1, delta_error / (8.0 * steps as f64)));
    max(l_max, eps_error) + 3.0
}

/// `discretize`: the truncated PRV's mass on each mesh cell, and the domain
/// shifted so the discrete mean is the continuous one.
fn discretize(prv: &Truncated, domain: Domain) -> Result<(Vec<f64>, Domain)> {
    let half = domain.dt() / 2.0;
    let pmf: Vec<f64> = (0..domain.size)
        .map(|i| {
            let tc = domain.t(i);
            prv.cdf(tc + half) - prv.cdf(tc - half)
        })
        .collect();
    let mut mean_d = 0.0;
    for (i, p) in pmf.iter().enumerate() {
        mean_d += domain.t(i) * p;
    }
    let mean_shift = prv.mean() - mean_d;
    if !(mean_shift.abs() < half) {
        return Err(failure("Discrete mean differs significantly from continuous mean."));
    }
    Ok((pmf, domain.shift_right(mean_shift)))
}

/// `np.searchsorted(a, key, side="left")` over `len` values given by `a(i)`:
/// numpy's bisection (NaN sorts last), which `ndelta`'s rounding wiggles make
/// matter.
fn searchsorted_left(len: usize, a: impl Fn(usize) -> f64, key: f64) -> usize {
    let less = |x: f64, y: f64| x < y || (y.is_nan() && !x.is_nan());
    let (mut lo, mut hi) = (0usize, len);
    while lo < hi {
        let mid = lo + ((hi - lo) >> 1);
        if less(a(mid), key) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// `DiscretePRV.compute_epsilon`'s upper bound (Opacus computes the lower
/// bound and the estimate too, and raises if any of them fails; so does this).
fn compute_epsilon(mut pmf: Vec<f64>, domain: Domain, delta: f64, delta_error: f64, eps_error: f64) -> Result<f64> {
    if delta <= 0.0 {
        return Ok(f64::INFINITY);
    }
    if LONGDOUBLE_EPS * domain.size as f64 > delta - delta_error {
        return Err(failure("Floating point errors will dominate for such small values of delta. Increase delta or reduce domain size."));
    }
    // d1 = flip(cumsum(flip(p))), d2 the same of p * exp(-t): numpy's
    // sequential sums from the end. d1 overwrites p.
    let n = domain.size;
    let mut d2 = vec![0.0; n];
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for i in (0..n).rev() {
        let p = pmf[i];
        s1 += p;
        s2 += p * (-domain.t(i)).exp();
        pmf[i] = s1;
        d2[i] = s2;
    }
    let d1 = pmf;
    let ndelta = |i: usize| domain.t(i).exp() * d2[i] - d1[i];
    let find_epsilon = |delta_target: f64| -> Result<f64> {
        let i = searchsorted_left(n, ndelta, -delta_target);
        if i == 0 {
            return Err(failure("Cannot compute epsilon"));
        }
        if i >= n {
            return Err(failure(format!("Cannot compute epsilon (index {i} is out of bounds for axis 0 with size {n})")));
        }
        Ok(((d1[i] - delta_target) / d2[i]).ln())
    };
    let eps_upper = find_epsilon(delta - delta_error)? + eps_error;
    find_epsilon(delta + delta_error)?;
    find_epsilon(delta)?;
    Ok(eps_upper)
}

/// `PRVAccountant.get_epsilon(delta, eps_error=eps_error, delta_error=delta_error)`
/// with history `[(noise_multiplier, sample_rate, steps)]`. No steps spend
/// nothing; steps without noise spend everything (infinity, as the RDP
/// accountant says; Opacus fails on the infinite domain instead).
pub fn epsilon_with(noise_multiplier: f64, sample_rate: f64, steps: u64, delta: f64, eps_error: f64, delta_error: f64) -> Result<f64> {
    if steps == 0 {
        return Ok(0.0);
    }
    if noise_multiplier == 0.0 && sample_rate > 0.0 {
        return Ok(f64::INFINITY);
    }
    let l = safe_domain_size(noise_multiplier, sample_rate, steps, eps_error, delta_error);
    let mesh_size = eps_error / ((steps as f64 * (12.0 / delta_error).ln()) / 2.0).sqrt();
    let domain = Domain::create_aligned(-l, l, mesh_size)?;
    let truncated = Truncated::new(Prv::new(sample_rate, noise_multiplier), domain.t_min, domain.t_max);
    let (pmf, domain) = discretize(&truncated, domain)?;
    // compose_heterogeneous of one PRV is its self-composition.
    let composed = fourier::self_compose(&pmf, steps);
    drop(pmf);
    let domain = domain.shift_right(domain.shifts * (steps - 1) as f64);
    compute_epsilon(composed, domain, delta, delta_error, eps_error)
}

/// Epsilon spent after `steps` steps at (`noise_multiplier`, `sample_rate`)
/// for `delta`: `PRVAccountant.get_epsilon(delta)` (eps_error 0.01,
/// delta_error delta / 1000), the upper bound Opacus reports.
pub fn epsilon(noise_multiplier: f64, sample_rate: f64, steps: u64, delta: f64) -> Result<f64> {
    epsilon_with(noise_multiplier, sample_rate, steps, delta, EPS_ERROR, delta / 1000.0)
}

/// Opacus's `get_noise_multiplier(accountant="prv", epsilon_tolerance=...)`
/// for `steps` steps: `Ok(None)` when the budget is too low ("The privacy
/// budget is too low"), an error when the accountant fails on the way.
pub fn get_noise_multiplier(target_epsilon: f64, delta: f64, sample_rate: f64, steps: u64, epsilon_tolerance: f64) -> Result<Option<f64>> {
    accountant::search_noise_multiplier(target_epsilon, epsilon_tolerance, |sigma| epsilon(sigma, sample_rate, steps, delta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_is_a_distribution_function() {
        let prv = Prv::new(0.01, 1.0);
        assert_eq!(prv.cdf(-0.02), 0.0, "no mass below log(1 - q)");
        let ts: Vec<f64> = (-200..=400).map(|i| i as f64 * 0.05).collect();
        let cdf: Vec<f64> = ts.iter().map(|&t| prv.cdf(t)).collect();
        assert!(cdf.windows(2).all(|w| w[1] >= w[0] - 1e-15), "non-decreasing");
        assert!(*cdf.last().unwrap() > 1.0 - 1e-12);
    }

    #[test]
    fn full_batch_gaussian_mean_is_closed_form() {
        // q = 1: the privacy loss of the Gaussian mechanism is N(mu, 2 mu) with
        // mu = 1/(2 sigma^2); truncated far out, its mean is mu.
        let sigma = 2.0;
        let mu = 1.0 / (2.0 * sigma * sigma);
        let t = Truncated::new(Prv::new(1.0 - 1e-15, sigma), -12.0, 12.0);
        assert!((t.mean() - mu).abs() < 1e-9, "{} vs {mu}", t.mean());
    }

    #[test]
    fn aligned_domain_is_even_and_symmetric_about_a_cell() {
        let d = Domain::create_aligned(-3.0, 3.0, 0.25).unwrap();
        assert_eq!((d.t_min, d.t_max, d.size), (-3.0, 3.25, 26), "one cell added to make the size even");
        assert_eq!(d.t(d.size / 2 - 1), 0.0, "t = 0 is cell size/2 - 1");
        assert_eq!(d.t(d.size - 1), d.t_max);
        assert!(Domain::create_aligned(-f64::INFINITY, f64::INFINITY, 0.01).is_err());
        assert!(Domain::create_aligned(-1e6, 1e6, 1e-3).unwrap_err().message.contains("rdp accountant"));
    }

    #[test]
    fn searchsorted_is_numpys_left_bisection() {
        let a = [-3.0, -2.0, -2.0, -1.0, 0.0];
        let f = |i: usize| a[i];
        assert_eq!(searchsorted_left(5, f, -2.0), 1);
        assert_eq!(searchsorted_left(5, f, -2.5), 1);
        assert_eq!(searchsorted_left(5, f, -4.0), 0);
        assert_eq!(searchsorted_left(5, f, 1.0), 5);
    }

    #[test]
    fn zero_steps_spend_nothing_and_more_steps_spend_more() {
        assert_eq!(epsilon(1.0, 0.01, 0, 1e-5).unwrap(), 0.0);
        let e: Vec<f64> = [1, 10, 100].iter().map(|&s| epsilon(1.0, 0.01, s, 1e-5).unwrap()).collect();
        assert!(e[0] < e[1] && e[1] < e[2], "{e:?}");
        // PRV is tighter than RDP (Opacus's reason for defaulting to it).
        assert!(e[2] < accountant::epsilon(1.0, 0.01, 100, 1e-5));
    }

    #[test]
    fn tiny_delta_is_refused_with_opacus_words() {
        let err = epsilon(1.0, 0.01, 1000, 1e-16).unwrap_err();
        assert!(err.message.starts_with("Floating point errors will dominate"), "{err}");
    }
}

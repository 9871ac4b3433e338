//! The PRV accountant's self-composition of a discretised privacy loss:
//! Opacus's `_compose_fourier` (`opacus/accountants/analysis/prv/compose.py`),
//! `irfft(rfft(pmf) ** k)` rolled back into place, with numpy's complex power
//! (repeated squaring below 100, glibc's `cpow` from 100 on) so that the
//! spectrum is raised the way Opacus raises it.

use realfft::num_complex::Complex64;
use realfft::RealFftPlanner;

/// The pmf of the sum of `k` independent copies of a discretised PRV with
/// the (even-length) `pmf` (Opacus's `_compose_fourier`; `k >= 1`).
pub fn self_compose(pmf: &[f64], k: u64) -> Vec<f64> {
    let n = pmf.len();
    let mut planner = RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(n);
    let mut input = pmf.to_vec();
    let mut spectrum = forward.make_output_vec();
    // Lengths match by construction, so `process` cannot fail.
    forward.process(&mut input, &mut spectrum).expect("rfft buffer lengths");
    for z in spectrum.iter_mut() {
        *z = numpy_pow(*z, k);
    }
    // pocketfft's irfft ignores the imaginary parts of the DC and Nyquist
    // terms (a negative Nyquist term raised by cpow gets a rounding-size one).
    spectrum[0].im = 0.0;
    if let Some(last) = spectrum.last_mut() {
        last.im = 0.0;
    }
    let inverse = planner.plan_fft_inverse(n);
    let mut composed = inverse.make_output_vec();
    inverse.process(&mut spectrum, &mut composed).expect("irfft buffer lengths");
    // scipy's irfft scales by 1/n ("backward" norm); realfft does not.
    let scale = 1.0 / n as f64;
    // np.roll(composed, m): the sum of k copies starts k - 1 bins (plus half
    // the domain for even k) after where a circular convolution puts it.
    let mut m = (k - 1) % n as u64;
    if k % 2 == 0 {
        m = (m + n as u64 / 2) % n as u64;
    }
    let m = m as usize;
    let mut out = vec![0.0; n];
    for (i, v) in composed.into_iter().enumerate() {
        out[(i + m) % n] = v * scale;
    }
    out
}

/// `z ** k` as numpy computes it for a complex array and a positive integer:
/// `square` for 2 (with an FMA, as numpy's SIMD loop does), repeated squaring
/// below 100 (`npy_cpow`), glibc's `cpow` from 100 on.
pub fn numpy_pow(z: Complex64, k: u64) -> Complex64 {
    let cmul = |a: Complex64, b: Complex64| Complex64::new(a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re);
    if z.re == 0.0 && z.im == 0.0 {
        return Complex64::new(0.0, 0.0);
    }
    match k {
        1 => z,
        2 => Complex64::new(z.re.mul_add(z.re, -(z.im * z.im)), z.re * z.im + z.im * z.re),
        3 => cmul(z, cmul(z, z)),
        4..=99 => {
            let (mut acc, mut p, mut mask) = (Complex64::new(1.0, 0.0), z, 1u64);
            loop {
                if k & mask != 0 {
                    acc = cmul(acc, p);
                }
                mask <<= 1;
                if k < mask {
                    return acc;
                }
                p = cmul(p, p);
            }
        }
        _ => cexp(Complex64::new(k as f64 * clog(z).re, k as f64 * clog(z).im)),
    }
}

/// glibc's `clog` (`s_clog_template.c`) for a finite non-zero `z`: log1p
/// forms near |z| = 1, where `log(hypot)` would lose the digits that the
/// power's exponent multiplies.
fn clog(z: Complex64) -> Complex64 {
    let (mut absx, mut absy) = (z.re.abs(), z.im.abs());
    if absx < absy {
        std::mem::swap(&mut absx, &mut absy);
    }
    let mut scale = 0i32;
    if absx > f64::MAX / 2.0 {
        scale = -1;
        absx *= 0.5;
        absy = if absy >= f64::MIN_POSITIVE * 2.0 { absy * 0.5 } else { 0.0 };
    } else if absx < f64::MIN_POSITIVE && absy < f64::MIN_POSITIVE {
        scale = 53;
        absx *= 2f64.powi(53);
        absy *= 2f64.powi(53);
    }
    let re = if absx == 1.0 && scale == 0 {
        (absy * absy).ln_1p() / 2.0
    } else if absx > 1.0 && absx < 2.0 && absy < 1.0 && scale == 0 {
        let mut d2m1 = (absx - 1.0) * (absx + 1.0);
        if absy >= f64::EPSILON {
            d2m1 += absy * absy;
        }
        d2m1.ln_1p() / 2.0
    } else if absx < 1.0 && absx >= 0.5 && absy < f64::EPSILON / 2.0 && scale == 0 {
        ((absx - 1.0) * (absx + 1.0)).ln_1p() / 2.0
    } else if absx < 1.0 && absx >= 0.5 && scale == 0 && absx * absx + absy * absy >= 0.5 {
        x2y2m1(absx, absy).ln_1p() / 2.0
    } else {
        absx.hypot(absy).ln() - scale as f64 * std::f64::consts::LN_2
    };
    Complex64::new(re, z.im.atan2(z.re))
}

/// glibc's `__x2y2m1`: `x^2 + y^2 - 1` with exact products and a sorted,
/// renormalised sum.
fn x2y2m1(x: f64, y: f64) -> f64 {
    let mul_split = |a: f64, b: f64| {
        let hi = a * b;
        (hi, a.mul_add(b, -hi))
    };
    let (xh, xl) = mul_split(x, x);
    let (yh, yl) = mul_split(y, y);
    let mut vals = [xl, xh, yl, yh, -1.0];
    let by_magnitude = |a: &f64, b: &f64| a.abs().total_cmp(&b.abs());
    vals.sort_by(by_magnitude);
    for i in 0..4 {
        // add_split: an exact two-sum of the two smallest remaining terms.
        let hi = vals[i + 1] + vals[i];
        let lo = (vals[i + 1] - hi) + vals[i];
        vals[i + 1] = hi;
        vals[i] = lo;
        vals[i + 1..].sort_by(by_magnitude);
    }
    vals[4] + vals[3] + vals[2] + vals[1] + vals[0]
}

/// glibc's `cexp` (`s_cexp_template.c`) for a finite argument.
fn cexp(w: Complex64) -> Complex64 {
    // (DBL_MAX_EXP - 1) * ln 2, truncated: where exp(re) starts to overflow.
    const T: f64 = 709.0;
    let (mut sinix, mut cosix) = if w.im.abs() > f64::MIN_POSITIVE { w.im.sin_cos() } else { (w.im, 1.0) };
    let mut re = w.re;
    if re > T {
        let exp_t = T.exp();
        for _ in 0..2 {
            if re > T {
                re -= T;
                sinix *= exp_t;
                cosix *= exp_t;
            }
        }
    }
    if re > T {
        return Complex64::new(f64::MAX * cosix, f64::MAX * sinix);
    }
    let e = re.exp();
    Complex64::new(e * cosix, e * sinix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_agree_across_methods() {
        // Repeated squaring and exp(k log z) are two roads to the same number.
        let z = Complex64::new(0.6, -0.7);
        for k in [2u64, 3, 7, 99] {
            let viaexp = cexp(Complex64::new(k as f64 * clog(z).re, k as f64 * clog(z).im));
            let got = numpy_pow(z, k);
            assert!((got - viaexp).norm() <= 1e-14 * got.norm(), "{k}: {got} vs {viaexp}");
        }
        let big = numpy_pow(z, 150);
        let sq = (0..150).fold(Complex64::new(1.0, 0.0), |a, _| a * z);
        assert!((big - sq).norm() <= 1e-12 * sq.norm(), "{big} vs {sq}");
        assert_eq!(numpy_pow(Complex64::new(0.0, 0.0), 500), Complex64::new(0.0, 0.0));
    }

    #[test]
    fn clog_is_log_modulus_and_argument() {
        // 0.75^2 + 0.5^2 - 1 = -0.1875 exactly; the exact-product sum gets it.
        assert_eq!(x2y2m1(0.75, 0.5), -0.1875);
        // Each branch of clog against log(hypot) where that is accurate.
        for (re, im) in [(0.6, 0.7), (1.5, 0.2), (0.9, 1e-17), (1.0, 0.3), (0.1, -0.05), (-0.7, 0.4)] {
            let z = Complex64::new(re, im);
            let (got, want) = (clog(z), Complex64::new(z.norm().ln(), im.atan2(re)));
            assert!((got - want).norm() < 1e-15, "{z}: {got} vs {want}");
        }
    }

    #[test]
    fn composing_two_point_masses_convolves_them() {
        // The roll puts the k-fold sum back on the same grid.
        let n = 10;
        let mut pmf = vec![0.0; n];
        pmf[n / 2 - 1] = 0.25;
        pmf[n / 2] = 0.75;
        let two = self_compose(&pmf, 2);
        // t = 0 is bin n/2 - 1 on Opacus's aligned domain; two copies of
        // {0: 1/4, dt: 3/4} are {0: 1/16, dt: 6/16, 2 dt: 9/16}.
        let want = [(n / 2 - 1, 0.0625), (n / 2, 0.375), (n / 2 + 1, 0.5625)];
        for (i, w) in want {
            assert!((two[i] - w).abs() < 1e-15, "{two:?}");
        }
        assert!((two.iter().sum::<f64>() - 1.0).abs() < 1e-15);
    }
}

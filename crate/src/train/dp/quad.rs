//! `scipy.integrate.quad` on a finite interval: QUADPACK's `dqagse`
//! (globally adaptive 21-point Gauss–Kronrod bisection with Wynn's epsilon
//! extrapolation) with its helpers `dqk21`, `dqpsrt` and `dqelg`, ported
//! from SciPy's C translation of QUADPACK (`scipy/integrate/__quadpack.c`,
//! SciPy 1.17) with the same subdivision order and the same sums, so that the
//! PRV accountant's mean ([`super::prv`]) is Opacus's to rounding.
//!
//! Indices are 0-based as in the C translation.

/// `np.finfo(np.float64).eps`, `.tiny` and `.max`, QUADPACK's `epmach`, `uflow`, `oflow`.
const EPMACH: f64 = f64::EPSILON;
const UFLOW: f64 = f64::MIN_POSITIVE;
const OFLOW: f64 = f64::MAX;

/// `quad`'s defaults: `epsabs = epsrel = 1.49e-8`.
pub const EPS_DEFAULT: f64 = 1.49e-8;

/// What `dqagse` returns: the integral, its error estimate, QUADPACK's `ier`
/// (0 when the tolerance was met; SciPy only warns otherwise) and the number
/// of subintervals used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quad {
    pub result: f64,
    pub abserr: f64,
    pub ier: i32,
    pub last: usize,
}

// Gauss–Kronrod 21 (Fullerton's 80-digit values, as QUADPACK lists them).
const WG: [f64; 5] = [
    0.066671344308688137593568809893332,
    0.149451349150580593145776339657697,
    0.219086362515982043995534934228163,
    0.269266719309996355091226921569469,
    0.295524224714752870173892994651338,
];
const XGK: [f64; 11] = [
    0.995657163025808080735527280689003,
    0.973906528517171720077964012084452,
    0.930157491355708226001207180059508,
    0.865063366688984510732096688423493,
    0.780817726586416897063717578345042,
    0.679409568299024406234327365114874,
    0.562757134668604683339000099272694,
    0.433395394129247190799265943165784,
    0.294392862701460198131126603103866,
    0.148874338981631210884826001129720,
    0.0,
];
const WGK: [f64; 11] = [
    0.011694638867371874278064396062192,
    0.032558162307964727478818972459390,
    0.054755896574351996031381300244580,
    0.075039674810919952767043140916190,
    0.093125454583697605535065465083366,
    0.109387158802297641899210590325805,
    0.123491976262065851077958109831074,
    0.134709217311473325928054001771707,
    0.142775938577060080797094273138717,
    0.147739104901338491374841515972068,
    0.149445554002916905664936468389821,
];

/// `dqk21`: (Kronrod result, error estimate, integral of |f|, integral of |f - mean|).
fn qk21(f: &mut impl FnMut(f64) -> f64, a: f64, b: f64) -> (f64, f64, f64, f64) {
    let centr = 0.5 * (a + b);
    let hlgth = 0.5 * (b - a);
    let dhlgth = hlgth.abs();
    let (mut fv1, mut fv2) = ([0.0f64; 10], [0.0f64; 10]);
    let fc = f(centr);
    let mut resg = 0.0;
    let mut resk = WGK[10] * fc;
    let mut resabs = resk.abs();
    // The Gauss nodes (odd indices) first, then the Kronrod ones, as dqk21 sums them.
    for jtw in (1..10).step_by(2).chain((0..10).step_by(2)) {
        let absc = hlgth * XGK[jtw];
        let (fval1, fval2) = (f(centr - absc), f(centr + absc));
        fv1[jtw] = fval1;
        fv2[jtw] = fval2;
        let fsum = fval1 + fval2;
        if jtw % 2 == 1 {
            resg += WG[jtw / 2] * fsum;
        }
        resk += WGK[jtw] * fsum;
        resabs += WGK[jtw] * (fval1.abs() + fval2.abs());
    }
    let reskh = resk * 0.5;
    let mut resasc = WGK[10] * (fc - reskh).abs();
    for j in 0..10 {
        resasc += WGK[j] * ((fv1[j] - reskh).abs() + (fv2[j] - reskh).abs());
    }
    let result = resk * hlgth;
    let resabs = resabs * dhlgth;
    let resasc = resasc * dhlgth;
    let mut abserr = ((resk - resg) * hlgth).abs();
    if resasc != 0.0 && abserr != 0.0 {
        abserr = resasc * (200.0 * abserr / resasc).powf(1.5).min(1.0);
    }
    if resabs > UFLOW / (50.0 * EPMACH) {
        abserr = (EPMACH * 50.0 * resabs).max(abserr);
    }
    (result, abserr, resabs, resasc)
}

/// `dqpsrt`: keeps `iord` pointing at the error estimates in descending order
/// (for the first `jupbn` of them) and picks the `nrmax`-th largest to bisect next.
fn qpsrt(limit: usize, last: usize, maxerr: &mut usize, ermax: &mut f64, elist: &[f64], iord: &mut [usize], nrmax: &mut usize) {
    if last <= 2 {
        iord[0] = 0;
        iord[1] = 1;
    } else {
        let errmax = elist[*maxerr];
        while *nrmax > 0 && errmax > elist[iord[*nrmax - 1]] {
            iord[*nrmax] = iord[*nrmax - 1];
            *nrmax -= 1;
        }
        let jupbn = if last > limit / 2 + 2 { limit + 2 - last } else { last - 1 };
        let errmin = elist[last - 1];
        let jbnd = jupbn - 1;
        // Insert errmax top-down, then errmin bottom-up.
        let mut at = None;
        for i in *nrmax + 1..=jbnd {
            if errmax >= elist[iord[i]] {
                at = Some(i);
                break;
            }
            iord[i - 1] = iord[i];
        }
        match at {
            None => {
                iord[jbnd] = *maxerr;
                iord[jupbn] = last - 1;
            }
            Some(i) => {
                iord[i - 1] = *maxerr;
                let mut k = jbnd;
                let mut slot = i;
                for _ in i..=jbnd {
                    if errmin < elist[iord[k]] {
                        slot = k + 1;
                        break;
                    }
                    iord[k + 1] = iord[k];
                    k -= 1;
                }
                iord[slot] = last - 1;
            }
        }
    }
    *maxerr = iord[*nrmax];
    *ermax = elist[*maxerr];
}

/// `dqelg`: Wynn's epsilon algorithm on the table `epstab` whose newest
/// element is `epstab[n]`; returns (extrapolated result, its error estimate).
fn qelg(n: &mut usize, epstab: &mut [f64; 52], res3la: &mut [f64; 3], nres: &mut usize) -> (f64, f64) {
    let starting_n = *n;
    *nres += 1;
    let mut abserr = OFLOW;
    let mut result = epstab[*n];
    if *n < 2 {
        return (result, abserr.max(5.0 * EPMACH * result.abs()));
    }
    const LIMEXP: usize = 49;
    epstab[*n + 2] = epstab[*n];
    let newelm = *n / 2;
    epstab[*n] = OFLOW;
    let mut k1 = *n;
    for i in 0..newelm {
        let (k2, k3) = (k1 - 1, k1 - 2);
        let mut res = epstab[k1 + 2];
        let (e0, e1, e2) = (epstab[k3], epstab[k2], res);
        let e1abs = e1.abs();
        let delta2 = e2 - e1;
        let err2 = delta2.abs();
        let tol2 = e2.abs().max(e1abs) * EPMACH;
        let delta3 = e1 - e0;
        let err3 = delta3.abs();
        let tol3 = e1abs.max(e0.abs()) * EPMACH;
        if !(err2 > tol2 || err3 > tol3) {
            // e0, e1 and e2 agree to machine accuracy: converged.
            return (res, (err2 + err3).max(5.0 * EPMACH * res.abs()));
        }
        let e3 = epstab[k1];
        epstab[k1] = e1;
        let delta1 = e1 - e3;
        let err1 = delta1.abs();
        let tol1 = e1abs.max(e3.abs()) * EPMACH;
        // Two elements very close, or irregular behaviour: drop part of the table.
        if err1 <= tol1 || err2 <= tol2 || err3 <= tol3 {
            *n = i + i;
            break;
        }
        let ss = 1.0 / delta1 + 1.0 / delta2 - 1.0 / delta3;
        let epsinf = (ss * e1).abs();
        if !(epsinf > 1e-4) {
            *n = i + i;
            break;
        }
        res = e1 + 1.0 / ss;
        epstab[k1] = res;
        k1 -= 2;
        let error = err2 + (res - e2).abs() + err3;
        if !(error > abserr) {
            abserr = error;
            result = res;
        }
    }
    if *n == LIMEXP {
        *n = 2 * (LIMEXP / 2);
    }
    let rem = starting_n % 2;
    for i in 0..=newelm {
        epstab[2 * i + rem] = epstab[2 * i + 2 + rem];
    }
    if *n != starting_n {
        let mut indx = starting_n - *n;
        for i in 0..=*n {
            epstab[i] = epstab[indx];
            indx += 1;
        }
    }
    if *nres < 4 {
        res3la[*nres - 1] = result;
        abserr = OFLOW;
    } else {
        abserr = (result - res3la[2]).abs() + (result - res3la[1]).abs() + (result - res3la[0]).abs();
        res3la[0] = res3la[1];
        res3la[1] = res3la[2];
        res3la[2] = result;
    }
    (result, abserr.max(5.0 * EPMACH * result.abs()))
}

/// `dqagse`: the integral of `f` over `[a, b]` to `max(epsabs, epsrel * |I|)`,
/// with at most `limit` subintervals (`quad(f, a, b, limit=limit)` with the
/// default tolerances is `qags(f, a, b, EPS_DEFAULT, EPS_DEFAULT, limit)`).
pub fn qags(mut f: impl FnMut(f64) -> f64, a: f64, b: f64, epsabs: f64, epsrel: f64, limit: usize) -> Quad {
    let limit = limit.max(1);
    let (mut alist, mut blist) = (vec![0.0; limit], vec![0.0; limit]);
    let (mut rlist, mut elist) = (vec![0.0; limit], vec![0.0; limit]);
    let mut iord = vec![0usize; limit];
    alist[0] = a;
    blist[0] = b;
    if epsabs <= 0.0 && epsrel < (50.0 * EPMACH).max(0.5e-28) {
        return Quad { result: 0.0, abserr: 0.0, ier: 6, last: 0 };
    }
    // First approximation. dqagse names qk21's |f| integral `defabs` and its
    // |f - mean| integral `resabs` here (and the other way round below).
    let (mut result, mut abserr, defabs, resabs) = qk21(&mut f, a, b);
    let dres = result.abs();
    let mut errbnd = epsabs.max(epsrel * dres);
    let mut last = 1;
    rlist[0] = result;
    elist[0] = abserr;
    let mut ier = 0;
    if abserr <= 100.0 * EPMACH * defabs && abserr > errbnd {
        ier = 2;
    }
    if limit == 1 {
        ier = 1;
    }
    if ier != 0 || (abserr <= errbnd && abserr != resabs) || abserr == 0.0 {
        return Quad { result, abserr, ier, last };
    }

    let mut rlist2 = [0.0f64; 52];
    let mut res3la = [0.0f64; 3];
    rlist2[0] = result;
    let mut errmax = abserr;
    let mut maxerr = 0usize;
    let mut area = result;
    let mut errsum = abserr;
    abserr = OFLOW;
    let (mut nrmax, mut nres, mut numrl2, mut ktmin) = (0usize, 0usize, 1usize, 0u32);
    let (mut extrap, mut noext) = (false, false);
    let (mut iroff1, mut iroff2, mut iroff3, mut ierror) = (0u32, 0u32, 0u32, 0i32);
    let (mut small, mut erlarg, mut ertest, mut correc) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let ksgn = if dres >= (1.0 - 50.0 * EPMACH) * defabs { 1 } else { -1 };

    // `sum_all`: leave through QUADPACK's label 115 (sum the subintervals).
    let mut sum_all = false;
    let mut l = 1;
    while l < limit {
        last = l + 1;
        // Bisect the subinterval with the nrmax-th largest error estimate.
        let a1 = alist[maxerr];
        let b1 = 0.5 * (alist[maxerr] + blist[maxerr]);
        let (a2, b2) = (b1, blist[maxerr]);
        let erlast = errmax;
        let (area1, error1, _, defab1) = qk21(&mut f, a1, b1);
        let (area2, error2, _, defab2) = qk21(&mut f, a2, b2);
        let area12 = area1 + area2;
        let error12 = error1 + error2;
        errsum = errsum + error12 - errmax;
        area = area + area12 - rlist[maxerr];
        if defab1 != error1 && defab2 != error2 {
            if !((rlist[maxerr] - area12).abs() > 1.0e-5 * area12.abs() || error12 < 0.99 * errmax) {
                if extrap {
                    iroff2 += 1;
                } else {
                    iroff1 += 1;
                }
            }
            if l > 9 && error12 > errmax {
                iroff3 += 1;
            }
        }
        rlist[maxerr] = area1;
        rlist[l] = area2;
        errbnd = epsabs.max(epsrel * area.abs());
        if iroff1 + iroff2 >= 10 || iroff3 >= 20 {
            ier = 2;
        }
        if iroff2 >= 5 {
            ierror = 3;
        }
        if last == limit {
            ier = 1;
        }
        if a1.abs().max(b2.abs()) <= (1.0 + 100.0 * EPMACH) * (a2.abs() + 1000.0 * UFLOW) {
            ier = 4;
        }
        if !(error2 > error1) {
            alist[l] = a2;
            blist[maxerr] = b1;
            blist[l] = b2;
            elist[maxerr] = error1;
            elist[l] = error2;
        } else {
            alist[maxerr] = a2;
            alist[l] = a1;
            blist[l] = b1;
            rlist[maxerr] = area2;
            rlist[l] = area1;
            elist[maxerr] = error2;
            elist[l] = error1;
        }
        qpsrt(limit, last, &mut maxerr, &mut errmax, &elist, &mut iord, &mut nrmax);
        if errsum <= errbnd {
            sum_all = true;
            break;
        }
        if ier != 0 {
            break;
        }
        if l == 1 {
            small = (b - a).abs() * 0.375;
            erlarg = errsum;
            ertest = errbnd;
            rlist2[1] = area;
            l += 1;
            continue;
        }
        if noext {
            l += 1;
            continue;
        }
        erlarg -= erlast;
        if (b1 - a1).abs() > small {
            erlarg += error12;
        }
        if !extrap {
            // Go on bisecting unless the next interval is the smallest one.
            if (blist[maxerr] - alist[maxerr]).abs() > small {
                l += 1;
                continue;
            }
            extrap = true;
            nrmax = 1;
        }
        if ierror != 3 && erlarg > ertest {
            // The smallest interval has the largest error: first bisect the
            // larger intervals (decrease erlarg), then extrapolate.
            let jupbnd = if last > 2 + limit / 2 { limit + 2 - l } else { l };
            let mut larger = false;
            for _ in nrmax..=jupbnd {
                maxerr = iord[nrmax];
                errmax = elist[maxerr];
                if (blist[maxerr] - alist[maxerr]).abs() > small {
                    larger = true;
                    break;
                }
                nrmax += 1;
            }
            if larger {
                l += 1;
                continue;
            }
        }
        // Extrapolate.
        numrl2 += 1;
        rlist2[numrl2] = area;
        let (reseps, abseps) = qelg(&mut numrl2, &mut rlist2, &mut res3la, &mut nres);
        ktmin += 1;
        if ktmin > 5 && abserr < 1.0e-3 * errsum {
            ier = 5;
        }
        if abseps < abserr {
            ktmin = 0;
            abserr = abseps;
            result = reseps;
            correc = erlarg;
            ertest = epsabs.max(epsrel * reseps.abs());
            if abserr <= ertest {
                break;
            }
        }
        // Prepare bisection of the smallest interval.
        if numrl2 == 0 {
            noext = true;
        }
        if ier == 5 {
            break;
        }
        maxerr = iord[0];
        errmax = elist[maxerr];
        nrmax = 0;
        extrap = false;
        small *= 0.5;
        erlarg = errsum;
        l += 1;
    }

    // Final result and error estimate (QUADPACK's labels 100 to 130).
    if !sum_all && abserr == OFLOW {
        sum_all = true;
    }
    if !sum_all {
        let mut test_divergence = true;
        if ier + ierror != 0 {
            if ierror == 3 {
                abserr += correc;
            }
            if ier == 0 {
                ier = 3;
            }
            if result != 0.0 && area != 0.0 {
                if abserr / result.abs() > errsum / area.abs() {
                    sum_all = true;
                }
            } else if abserr > errsum {
                sum_all = true;
            } else if area == 0.0 {
                test_divergence = false;
            }
        }
        if !sum_all && test_divergence && !(ksgn == -1 && result.abs().max(area.abs()) <= defabs * 0.01) && (0.01 > result / area || result / area > 100.0 || errsum > area.abs()) {
            ier = 6;
        }
    }
    if sum_all {
        result = 0.0;
        for r in &rlist[..=l.min(limit - 1)] {
            result += r;
        }
        abserr = errsum;
    }
    if ier > 2 {
        ier -= 1;
    }
    Quad { result, abserr, ier, last }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polynomials_are_exact_in_one_rule() {
        // Kronrod 21 integrates degree 31 exactly: x^5 on [0, 2] is 64/6.
        let q = qags(|x| x.powi(5), 0.0, 2.0, EPS_DEFAULT, EPS_DEFAULT, 500);
        assert_eq!(q.last, 1);
        assert!((q.result - 64.0 / 6.0).abs() < 1e-13, "{q:?}");
    }

    #[test]
    fn singular_integrand_needs_extrapolation() {
        // 1/sqrt(x) on (0, 1] = 2: QUADPACK's textbook case for the epsilon
        // algorithm; plain bisection would need far more intervals.
        let q = qags(|x| 1.0 / x.sqrt(), 0.0, 1.0, EPS_DEFAULT, EPS_DEFAULT, 500);
        assert_eq!(q.ier, 0, "{q:?}");
        assert!((q.result - 2.0).abs() < 1e-12, "{q:?}");
        assert!(q.last > 2 && q.last < 30, "{q:?}");
        // log(x) on (0, 1] = -1.
        let q = qags(f64::ln, 0.0, 1.0, EPS_DEFAULT, EPS_DEFAULT, 500);
        assert!((q.result + 1.0).abs() < 1e-12, "{q:?}");
    }

    #[test]
    fn a_low_limit_reports_ier_1() {
        let q = qags(|x| (1.0 / x).sin(), 1e-3, 1.0, 1e-14, 1e-14, 3);
        assert_eq!(q.ier, 1, "{q:?}");
        assert_eq!(q.last, 3);
    }
}

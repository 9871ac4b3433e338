//! Differential privacy against Opacus: the RDP accountant's epsilon and
//! noise multiplier (tests/fixtures/dp/accountant.json, written by
//! tests/fixtures/generate_dp.py).

use serde_json::Value;
use webpeft::train::dp::accountant;

fn fixture(name: &str) -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/dp/").to_string() + name;
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

#[test]
fn default_orders_are_opacus_alphas() {
    let doc = fixture("accountant.json");
    let want: Vec<f64> = doc["alphas"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(accountant::default_orders(), want);
}

#[test]
fn epsilon_matches_opacus_rdp_within_1e_6() {
    let doc = fixture("accountant.json");
    let rows = doc["epsilon"].as_array().unwrap();
    assert!(rows.len() >= 700);
    let orders = accountant::default_orders();
    let mut worst = 0.0f64;
    for r in rows {
        let (sigma, q, steps, delta) = (r["noise_multiplier"].as_f64().unwrap(), r["sample_rate"].as_f64().unwrap(), r["steps"].as_u64().unwrap(), r["delta"].as_f64().unwrap());
        let (eps, alpha) = accountant::get_privacy_spent(&orders, &accountant::compute_rdp(q, sigma, steps, &orders), delta);
        let want = r["epsilon"].as_f64().unwrap();
        assert!((eps - want).abs() <= 1e-6, "sigma {sigma} q {q} steps {steps} delta {delta}: epsilon {eps}, Opacus {want}");
        assert_eq!(alpha, r["best_alpha"].as_f64().unwrap(), "best order for sigma {sigma} q {q} steps {steps} delta {delta}");
        assert_eq!(eps, accountant::epsilon(sigma, q, steps, delta));
        worst = worst.max((eps - want).abs());
    }
    eprintln!("largest |epsilon - Opacus| over {} rows: {worst:e}", rows.len());
}

#[test]
fn noise_multiplier_matches_opacus_search() {
    let doc = fixture("accountant.json");
    let rows = doc["noise"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["epochs"].is_u64()));
    for r in rows {
        let q = r["sample_rate"].as_f64().unwrap();
        let steps = r["steps"].as_u64().unwrap_or_else(|| accountant::steps_for_epochs(r["epochs"].as_f64().unwrap(), q));
        let target = r["target_epsilon"].as_f64().unwrap();
        let got = accountant::get_noise_multiplier(target, r["delta"].as_f64().unwrap(), q, steps, 0.01);
        // Opacus's binary search halves exact powers of two, so equality is exact.
        assert_eq!(got, r["noise_multiplier"].as_f64(), "target epsilon {target}, q {q}, {steps} steps");
    }
}

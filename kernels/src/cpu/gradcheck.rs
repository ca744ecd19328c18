//! Finite-difference gradient checks for the ops' tests.

/// Deterministic pseudo-random values in [-1, 1) (an LCG; tests need no RNG crate).
pub fn values(seed: u64, len: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `sum(out · weights)` in f64: a scalar loss whose gradient with respect to `out` is `weights`.
pub fn dot(out: &[f32], weights: &[f32]) -> f64 {
    out.iter()
        .zip(weights)
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum()
}

/// Compare `analytic` with central differences of `loss` at `x`, on every coordinate.
pub fn check(name: &str, x: &[f32], analytic: &[f32], loss: impl Fn(&[f32]) -> f64) {
    assert_eq!(x.len(), analytic.len(), "{name}: gradient length");
    let eps = 1e-2f32;
    let mut probe = x.to_vec();
    for i in 0..x.len() {
        probe[i] = x[i] + eps;
        let up = loss(&probe);
        probe[i] = x[i] - eps;
        let down = loss(&probe);
        probe[i] = x[i];
        let numeric = (up - down) / (2.0 * eps as f64);
        let got = analytic[i] as f64;
        let tolerance = 2e-2 * numeric.abs().max(got.abs()).max(1.0);
        assert!(
            (numeric - got).abs() <= tolerance,
            "{name}[{i}]: analytic {got}, numeric {numeric}"
        );
    }
}

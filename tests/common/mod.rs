//! Shared test helpers: the one place where tolerances live, each with its reason.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A relative + absolute tolerance: `|a - b| <= abs + rel * |b|`.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub abs: f32,
    pub rel: f32,
    pub why: &'static str,
}

/// PyTorch golden outputs and losses: both sides compute in f32 with the same
/// formulas; differences come from summation order only (≈1e-7 relative),
/// so 1e-5 is comfortably above noise and far below any real bug.
pub const GOLDEN_OUTPUT: Tolerance = Tolerance { abs: 1e-5, rel: 0.0, why: "f32 vs f32, summation order only" };
/// Weights after one epoch of SGD/Adam against PyTorch: the bound; Adam divides by
/// sqrt(v) which amplifies rounding of tiny gradients.
pub const GOLDEN_WEIGHTS: Tolerance = Tolerance { abs: 1e-4, rel: 0.0, why: "one epoch of updates, Adam's normalisation amplifies f32 rounding" };
/// Central differences of an f32 loss (step 1e-2, 1e-3 for ReLU): truncation error
/// O(h²) ≈ 1e-4 relative, plus f32 rounding of the loss ≈ 1e-7/h ≈ 5e-5 absolute.
/// Tight enough that scaling one gate's gradient by 0.9 fails it (checked by mutation).
pub const GRADCHECK: Tolerance = Tolerance { abs: 2e-4, rel: 2e-3, why: "central differences of an f32 loss" };
/// Bit-exact: save/load round trips and seeded reproducibility.
pub const EXACT: Tolerance = Tolerance { abs: 0.0, rel: 0.0, why: "same bits expected" };

/// Asserts `got` is close to `want` element-wise; prints the first mismatches.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: Tolerance) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length {} vs {}", got.len(), want.len());
    let mut worst = 0.0f32;
    let mut bad = Vec::new();
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let diff = (a - b).abs();
        worst = worst.max(diff);
        if !(diff <= tol.abs + tol.rel * b.abs()) {
            bad.push((i, a, b, diff));
        }
    }
    if !bad.is_empty() {
        let first: Vec<String> = bad.iter().take(8).map(|(i, a, b, d)| format!("  [{i}] got {a:e} want {b:e} diff {d:e}")).collect();
        panic!(
            "{what}: {} of {} values differ beyond abs {} + rel {} ({}); largest diff {worst:e}\n{}",
            bad.len(),
            got.len(),
            tol.abs,
            tol.rel,
            tol.why,
            first.join("\n")
        );
    }
    worst
}

/// The golden cases folder.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// A fresh temporary folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("recurrent-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

//! Reliability (issue 6): exact resume, surviving a kill during a save,
//! non-finite losses, long sequences, determinism. One test binary (one link)
//! with a module per property.

#[path = "../common/mod.rs"]
mod common;

mod determinism;
mod kill;
mod long_sequences;
mod nonfinite;
mod resume;

use recurrent::rng::Rng;
use recurrent::{Dataset, Inputs, Targets};

/// `n` sequences of `t` steps with 3 features; class 1 when the first feature sums positive.
pub fn toy(n: usize, t: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = (0..n * t * 3).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let y: Vec<i64> = (0..n)
        .map(|i| (x[i * t * 3..(i + 1) * t * 3].iter().step_by(3).sum::<f32>() > 0.0) as i64)
        .collect();
    Dataset::new(
        Inputs::features(x, n, t, 3).unwrap(),
        Some(Targets::Classes {
            data: y,
            shape: vec![n],
        }),
        None,
    )
}

/// Bit patterns, so that `assert_eq!` compares -0.0/0.0 and NaNs exactly.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

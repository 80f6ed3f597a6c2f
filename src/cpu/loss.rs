//! Losses, mean-reduced as PyTorch does, with their gradients.

use crate::Loss;

/// Loss value and gradient of the output for one batch.
///
/// - `out [P, O]`: model output rows (P = N for `last`, N*T batch-first for `sequence`);
/// - `mask [P]`: false for positions outside a sequence's length (left out of the loss);
/// - `ce`: `classes [P]`, -100 = ignore; mean over counted positions
///   (`F.cross_entropy(..., ignore_index=-100)`);
/// - `mse`: `values [P, O]`; mean over counted elements (`F.mse_loss`, or the
///   masked mean with lengths).
///
/// A batch where no position counts has loss 0 and zero gradient (PyTorch would give NaN).
pub fn loss_and_grad(
    loss: Loss,
    out: &[f32],
    o: usize,
    mask: &[bool],
    classes: Option<&[i64]>,
    values: Option<&[f32]>,
    dout: &mut [f32],
) -> f32 {
    dout.fill(0.0);
    let rows = out.len() / o;
    match loss {
        Loss::Ce => {
            let y = classes.expect("ce needs class targets");
            let counted: Vec<usize> = (0..rows).filter(|&p| mask[p] && y[p] != -100).collect();
            if counted.is_empty() {
                return 0.0;
            }
            let scale = 1.0 / counted.len() as f64;
            let mut total = 0.0f64;
            for &p in &counted {
                let row = &out[p * o..(p + 1) * o];
                let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
                let sum: f64 = row.iter().map(|&v| (v as f64 - mx).exp()).sum();
                let lse = mx + sum.ln();
                let c = y[p] as usize;
                total += lse - row[c] as f64;
                for (j, d) in dout[p * o..(p + 1) * o].iter_mut().enumerate() {
                    let sm = (row[j] as f64 - lse).exp();
                    *d = ((sm - if j == c { 1.0 } else { 0.0 }) * scale) as f32;
                }
            }
            (total * scale) as f32
        }
        Loss::Mse => {
            let y = values.expect("mse needs value targets");
            let count = (0..rows).filter(|&p| mask[p]).count() * o;
            if count == 0 {
                return 0.0;
            }
            let scale = 1.0 / count as f64;
            let mut total = 0.0f64;
            for p in (0..rows).filter(|&p| mask[p]) {
                for j in p * o..(p + 1) * o {
                    let diff = out[j] as f64 - y[j] as f64;
                    total += diff * diff;
                    dout[j] = (2.0 * diff * scale) as f32;
                }
            }
            (total * scale) as f32
        }
    }
}

/// Correct predictions (arg-max equals the class) and counted positions, for accuracy.
pub fn correct(out: &[f32], o: usize, mask: &[bool], classes: &[i64]) -> (usize, usize) {
    let mut right = 0;
    let mut total = 0;
    for (p, row) in out.chunks_exact(o).enumerate() {
        if !mask[p] || classes[p] == -100 {
            continue;
        }
        total += 1;
        if argmax(row) == classes[p] as usize {
            right += 1;
        }
    }
    (right, total)
}

/// Index of the largest value (the first one on ties).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// `softmax(row)`, computed in f64 from the largest value down (no overflow).
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let mx = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let e: Vec<f64> = row.iter().map(|&v| ((v - mx) as f64).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|&v| (v / sum) as f32).collect()
}

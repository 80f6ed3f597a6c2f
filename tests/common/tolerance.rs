//! The one place where tolerances live (CPU vs PyTorch, gradient checks,
//! GPU vs CPU), each with its reason.
//!
//! A value passes when `|gpu - cpu| <= atol + rtol * |cpu|`.

/// Relative + absolute tolerance.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub rtol: f32,
    pub atol: f32,
    pub name: &'static str,
}

/// Outputs of a forward pass. Both paths run in f32 but sum dot products in
/// different orders (tiled GEMM vs packed SIMD sgemm) and the GPU's exp/tanh
/// are the driver's (a few ulp); over T steps of a recurrence the differences
/// stay near 1e-6 relative for contracting cells.
pub const FORWARD: Tolerance = Tolerance {
    rtol: 1e-4,
    atol: 2e-6,
    name: "forward",
};

/// One GEMM on the GPU (any tile configuration of the autotuner: register
/// block, tile, split-K) against the CPU path's `cpu::gemm`, values in
/// [-1, 1], K up to 700: both sum K f32 products, in different orders (per
/// k-tile, per split, then the splits in order), which differ by about
/// sqrt(K)·ε·|C| ≈ 1e-6 relative here (measured on lavapipe: 1.6e-5 absolute
/// at |C| ≈ 10). A dropped, doubled or misplaced element moves an output by
/// 1e-2 or more.
pub const GEMM: Tolerance = Tolerance {
    rtol: 1e-5,
    atol: 5e-5,
    name: "one GEMM, GPU vs CPU",
};

/// Loss values: the CPU reduces in f64, the GPU in an f32 tree.
pub const LOSS: Tolerance = Tolerance {
    rtol: 1e-5,
    atol: 1e-6,
    name: "loss",
};

/// Parameter gradients: BPTT sums T*B products per weight gradient and carries
/// dh through T steps, in a different order on each path; gradients that come
/// out near zero by cancellation need the absolute part.
pub const GRADIENTS: Tolerance = Tolerance {
    rtol: 1e-3,
    atol: 1e-5,
    name: "gradients",
};

/// Weights after N optimizer steps: Adam divides m by sqrt(v), so a gradient
/// that differs in its last bits moves a weight by up to ~lr * relative error
/// per step; the steps feed back through the forward pass. (lr 1e-2, N = 20.)
pub const TRAINED_WEIGHTS: Tolerance = Tolerance {
    rtol: 1e-3,
    atol: 2e-5,
    name: "weights after training",
};

/// Streaming on the CPU path, chunks against the whole sequence, where the
/// arithmetic differs: the GRU's input projection (and any cell's beyond the
/// size that folds it into each step) is one GEMM over the chunk's `T_c·B`
/// rows, and the `gemm` crate picks its kernel by the row count, summing the
/// K products in another order for 3 rows than for 39 (measured: 38 of 63
/// values differ in the last bits for 3x21x5 against the first 3 rows of
/// 39x21x5). Last-bit differences, carried through T steps of a contracting
/// recurrence; a wrong state carried between chunks moves outputs by 1e-2.
pub const STREAM_CPU: Tolerance = Tolerance {
    rtol: 1e-5,
    atol: 1e-6,
    name: "streaming, CPU chunks vs whole (GEMM row-count order)",
};

/// PyTorch golden outputs and losses: both sides compute in f32 with the same
/// formulas; differences come from summation order only (≈1e-7 relative),
/// so 1e-5 is comfortably above noise and far below any real bug.
pub const GOLDEN_OUTPUT: Tolerance = Tolerance {
    rtol: 0.0,
    atol: 1e-5,
    name: "golden output (f32 vs f32, summation order only)",
};

/// Weights after one epoch of SGD/Adam against PyTorch: the bound; Adam
/// divides by sqrt(v), which amplifies rounding of tiny gradients.
pub const GOLDEN_WEIGHTS: Tolerance = Tolerance {
    rtol: 0.0,
    atol: 1e-4,
    name: "golden weights after one epoch",
};

/// Central differences of an f32 loss (step 1e-2, 1e-3 for ReLU): truncation error
/// O(h²) ≈ 1e-4 relative, plus f32 rounding of the loss ≈ 1e-7/h ≈ 5e-5 absolute.
/// Tight enough that scaling one gate's gradient by 0.9 fails it (checked by mutation).
pub const GRADCHECK: Tolerance = Tolerance {
    rtol: 2e-3,
    atol: 2e-4,
    name: "central differences of an f32 loss",
};

/// GPU fit resumed from a checkpoint vs the same GPU fit uninterrupted: the
/// same program runs the same dispatches in the same order on both sides, and
/// a resume only moves f32 weights to the host and back (exact). No float
/// atomics are used, so the two agree bit for bit on lavapipe (measured); this
/// allows a few ulp for an adapter that schedules reductions differently per run.
pub const GPU_RESUME: Tolerance = Tolerance {
    rtol: 1e-6,
    atol: 1e-7,
    name: "GPU resumed vs uninterrupted (same program)",
};

/// GPU vs CPU over a long sequence (T = 2,000, LSTM/GRU/RNN H 8, B 2, clipping,
/// 3 Adam steps): the per-step rounding differences of FORWARD are carried by
/// the recurrence through 2,000 steps and by BPTT back; contracting cells keep
/// them from growing. Measured on lavapipe: weights 1.8e-7 absolute, 4.9e-6
/// relative; outputs 4.5e-8 absolute, 1.3e-6 relative. This bound is 5-20x
/// above that and far below what a wrong gate or a dropped step gives (> 1e-3).
pub const LONG_SEQUENCE: Tolerance = Tolerance {
    rtol: 1e-4,
    atol: 1e-6,
    name: "long sequence T=2000, GPU vs CPU",
};

/// Three optimizer updates of a 5-vector in f32 against torch.optim's printed
/// values: the same formulas in the same order, so only the last bit may differ.
pub const OPTIM: Tolerance = Tolerance {
    rtol: 1e-6,
    atol: 1e-7,
    name: "three f32 optimizer updates against torch.optim",
};

/// A loss printed with 6 decimals by the CLI on two paths: rounding of the
/// print (5e-7 each) plus the paths' own difference (~1e-7).
pub const PRINTED_LOSS: Tolerance = Tolerance {
    rtol: 0.0,
    atol: 2e-6,
    name: "loss printed to 6 decimals",
};

/// The GPU with the opt-in f16 copy of W_hh against the CPU path on the
/// *unrounded* model (against the rounded model the ordinary FORWARD /
/// GRADIENTS / TRAINED_WEIGHTS hold). Rounding each weight to f16 moves it by
/// up to 2^-11 ≈ 4.9e-4 relative; a pre-activation Σ_k h_k·W_jk then moves
/// by about 2^-12·sqrt(H)·|h||W| (random signs), and the recurrence carries
/// that through T steps; gradients also pass it back through BPTT and can
/// cancel to near zero (hence the absolute part). Measured on lavapipe
/// (`tests/gpu_f16.rs`, H 1-67, T 3-7, 1-2 layers, bidirectional): at most
/// 4.5e-5 absolute, 7e-3 relative (a near-cancelled gradient), outputs and
/// gradients alike; this bound is 4x above the absolute part and 1.4x above
/// the relative one, and the GPU with the copy stays within the ordinary
/// FORWARD / GRADIENTS of the rounded model (measured: 1.3e-7 absolute).
/// Longer sequences or larger H move more: this is the tests' bound, not a
/// promise for every model.
pub const F16_WEIGHTS: Tolerance = Tolerance {
    rtol: 1e-2,
    atol: 2e-4,
    name: "f16 W_hh vs the unrounded f32 model",
};

/// Largest deviations seen by a comparison (for the report).
#[derive(Clone, Copy, Debug, Default)]
pub struct Deviation {
    pub max_abs: f32,
    /// Largest |diff| / |cpu| over values with |cpu| > 1e-3.
    pub max_rel: f32,
}

impl Deviation {
    pub fn max(self, o: Deviation) -> Deviation {
        Deviation {
            max_abs: self.max_abs.max(o.max_abs),
            max_rel: self.max_rel.max(o.max_rel),
        }
    }
}

impl std::fmt::Display for Deviation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "max |diff| {:.2e}, max rel {:.2e}",
            self.max_abs, self.max_rel
        )
    }
}

/// The largest deviations of `a` from `b` (as [`assert_close`] reports them),
/// asserting nothing: for checks that two results differ.
pub fn deviation(a: &[f32], b: &[f32]) -> Deviation {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let mut dev = Deviation::default();
    for (&x, &y) in a.iter().zip(b) {
        let diff = (x - y).abs();
        dev.max_abs = dev.max_abs.max(diff);
        if y.abs() > 1e-3 {
            dev.max_rel = dev.max_rel.max(diff / y.abs());
        }
    }
    dev
}

/// Asserts `gpu` is close to `cpu` element-wise; prints the first mismatches
/// with index, both values and the difference, and returns the largest deviations.
#[track_caller]
pub fn assert_close(what: &str, gpu: &[f32], cpu: &[f32], tol: Tolerance) -> Deviation {
    assert_eq!(
        gpu.len(),
        cpu.len(),
        "{what}: lengths differ (gpu {}, cpu {})",
        gpu.len(),
        cpu.len()
    );
    let mut dev = Deviation::default();
    let mut bad = Vec::new();
    for (i, (&g, &c)) in gpu.iter().zip(cpu).enumerate() {
        let diff = (g - c).abs();
        let ok = diff <= tol.atol + tol.rtol * c.abs();
        if !ok || !g.is_finite() {
            bad.push((i, g, c, diff));
        }
        dev.max_abs = dev.max_abs.max(diff);
        if c.abs() > 1e-3 {
            dev.max_rel = dev.max_rel.max(diff / c.abs());
        }
    }
    if !bad.is_empty() {
        let lines: Vec<String> = bad
            .iter()
            .take(10)
            .map(|(i, g, c, d)| format!("  [{i}] gpu {g:e} cpu {c:e} diff {d:e}"))
            .collect();
        panic!(
            "{what}: {} of {} values outside {} tolerance (rtol {}, atol {}); first:\n{}",
            bad.len(),
            gpu.len(),
            tol.name,
            tol.rtol,
            tol.atol,
            lines.join("\n")
        );
    }
    dev
}

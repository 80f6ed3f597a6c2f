//! The opt-in f16 copy of W_hh (`GpuModel::with_f16_weights`,
//! `RECURRENT_GPU_F16=1`): the step kernels read the recurrent weights in
//! half precision and accumulate in f32; everything else stays f32.
//!
//! The strong check: the GPU with the f16 copy against the CPU path run on
//! the same model with W_hh rounded to f16 on the host (round to nearest
//! even, `recurrent::gpu::internals`) must agree to the ordinary f32 GPU
//! tolerances, forward and every gradient; against the unrounded model, to
//! `F16_WEIGHTS`. Training: the copy follows the master weights after every
//! optimizer step, bit for bit. Tolerances: `common::tolerance`.
//!
//! Without a GPU adapter each test prints `SKIPPED` and passes, unless
//! `RECURRENT_REQUIRE_GPU=1`.

mod common;

use common::tolerance::{
    assert_close, deviation, Deviation, F16_WEIGHTS, FORWARD, GRADIENTS, LOSS, TRAINED_WEIGHTS,
};
use common::{gpu, Case};
use recurrent::gpu::internals::{f16_bits_to_f32, f32_to_f16_bits, round_to_f16};
use recurrent::gpu::GpuModel;
use recurrent::{Cell, Loss, Model, Optimizer, OptimizerKind, OutputMode, StepOptions};

const CELLS: [Cell; 3] = [Cell::Lstm, Cell::Gru, Cell::Rnn];

/// Rounds every W_hh block of `params` (laid out as `model`'s) to f16 in place.
fn round_whh(model: &Model, params: &mut [f32]) {
    for l in &model.layout().layers {
        for v in &mut params[l.w_hh.clone()] {
            *v = round_to_f16(*v);
        }
    }
}

/// `model` with every W_hh rounded to f16: what the f16 step kernels compute with.
fn rounded(model: &Model) -> Model {
    let mut m = model.clone();
    let mut p = m.params().to_vec();
    round_whh(model, &mut p);
    m.params_mut().copy_from_slice(&p);
    m
}

/// The f16 bits of every W_hh of `params`, per layer-direction, as the GPU's copy should hold them.
fn whh_bits(model: &Model, params: &[f32]) -> Vec<Vec<u16>> {
    model
        .layout()
        .layers
        .iter()
        .map(|l| {
            params[l.w_hh.clone()]
                .iter()
                .map(|&v| f32_to_f16_bits(v))
                .collect()
        })
        .collect()
}

/// Forward, loss and gradients of `case` on the GPU with the f16 copy, against
/// the CPU path with W_hh rounded (f32 tolerances) and unrounded (`F16_WEIGHTS`).
fn check_case(case: &Case, loss: Loss, seed: u64) {
    let Some(ctx) = gpu("f16 parity") else { return };
    let model = case.model(seed);
    let m16 = rounded(&model);
    let data = case.data(loss, seed + 100);
    let what = format!("{} f16", case.label(loss));
    let mut g = GpuModel::with_f16_weights(ctx.ctx.clone(), &model, true).unwrap();
    assert!(g.f16_weights());
    let out = g.forward(&data).unwrap();
    let out16 = m16.forward(&data).unwrap();
    let out32 = model.forward(&data).unwrap();
    let (l, gr) = g.loss_and_gradients(&data, loss).unwrap();
    let (l16, gr16) = m16.loss_and_gradients(&data, loss).unwrap();
    let (l32, gr32) = model.loss_and_gradients(&data, loss).unwrap();
    // (a) Against the rounded model: only summation order differs.
    let d_out = assert_close(&format!("{what}: output"), &out.data, &out16.data, FORWARD);
    assert_close(&format!("{what}: loss"), &[l], &[l16], LOSS);
    let mut d_grad = Deviation::default();
    for e in &model.layout().entries {
        d_grad = d_grad.max(assert_close(
            &format!("{what}: grad {}", e.name),
            &gr[e.range()],
            &gr16[e.range()],
            GRADIENTS,
        ));
    }
    // (b) Against the unrounded model: the f16 tolerance.
    let d_out32 = assert_close(
        &format!("{what}: output vs unrounded"),
        &out.data,
        &out32.data,
        F16_WEIGHTS,
    );
    assert_close(
        &format!("{what}: loss vs unrounded"),
        &[l],
        &[l32],
        F16_WEIGHTS,
    );
    let mut d_grad32 = Deviation::default();
    for e in &model.layout().entries {
        d_grad32 = d_grad32.max(assert_close(
            &format!("{what}: grad {} vs unrounded", e.name),
            &gr[e.range()],
            &gr32[e.range()],
            F16_WEIGHTS,
        ));
    }
    // The check discriminates: the GPU is much closer to the rounded model than
    // the rounded model is to the unrounded one, so a GPU that ignored its f16
    // copy (or rounded it differently) would not pass (a).
    let d_round = deviation(&out32.data, &out16.data).max(deviation(&gr32, &gr16));
    let d_gpu = d_out.max(d_grad);
    eprintln!(
        "{what}: vs rounded: output {d_out}, gradients {d_grad}; vs unrounded: output {d_out32}, gradients {d_grad32}; rounding alone moves them by {d_round}"
    );
    assert!(
        d_round.max_abs > 8.0 * d_gpu.max_abs,
        "{what}: the rounding of W_hh ({d_round}) is not clearly above the GPU's distance from the rounded model ({d_gpu})"
    );
}

#[test]
fn forward_and_gradients_match_the_cpu_path_with_rounded_weights() {
    let mut seed = 1;
    for cell in CELLS {
        for (output, lengths, hidden) in [
            (OutputMode::Last, true, 8),
            (OutputMode::Sequence, true, 13),
            (OutputMode::Last, false, 37),
        ] {
            let case = Case {
                layers: 2,
                bidirectional: true,
                lengths,
                output,
                hidden,
                batch: 5,
                steps: 7,
                ..Case::new(cell)
            };
            let loss = if seed % 2 == 0 { Loss::Ce } else { Loss::Mse };
            check_case(&case, loss, seed);
            seed += 1;
        }
    }
}

#[test]
fn awkward_shapes_match_the_cpu_path_with_rounded_weights() {
    for (i, cell) in CELLS.into_iter().enumerate() {
        let base = Case::new(cell);
        for (j, case) in [
            Case { batch: 1, ..base },
            Case {
                hidden: 1,
                input: 1,
                out: 1,
                steps: 3,
                ..base
            },
            // Several step tiles in both dimensions, sequence output, a relu RNN.
            Case {
                batch: 19,
                hidden: 67,
                input: 4,
                lengths: true,
                relu: cell == Cell::Rnn,
                output: OutputMode::Sequence,
                ..base
            },
        ]
        .iter()
        .enumerate()
        {
            check_case(case, Loss::Mse, 40 + 3 * i as u64 + j as u64);
        }
    }
}

/// The GPU's f16 copy, bit for bit, against the host's rounding of `params`.
fn assert_copy_is(g: &GpuModel, model: &Model, params: &[f32], what: &str) {
    let got = g.whh_f16_bits().unwrap().expect("the f16 copy is on");
    let want = whh_bits(model, params);
    assert_eq!(got.len(), want.len(), "{what}: blocks");
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        if a != b {
            let k = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
            panic!(
                "{what}: block {i} differs at {k}: gpu {:#06x} ({:e}) host {:#06x} ({:e}) from {:e}",
                a[k],
                f16_bits_to_f32(a[k]),
                b[k],
                f16_bits_to_f32(b[k]),
                params[model.layout().layers[i].w_hh.start + k]
            );
        }
    }
}

/// The conversion kernel rounds exactly as the host: ties to even,
/// subnormals, overflow, signs, for every element position of odd-sized blocks.
#[test]
fn the_copy_is_rounded_bit_for_bit_as_on_the_host() {
    let Some(ctx) = gpu("f16 copy bits") else {
        return;
    };
    // GRU H 5: blocks of 75 elements (odd: the last word holds one half).
    let case = Case {
        hidden: 5,
        layers: 2,
        bidirectional: true,
        ..Case::new(Cell::Gru)
    };
    let model = case.model(3);
    let mut g = GpuModel::with_f16_weights(ctx.ctx.clone(), &model, true).unwrap();
    assert_copy_is(&g, &model, model.params(), "after creation");
    let special = [
        1.0 + 2f32.powi(-11),       // tie, down to even
        1.0 + 3.0 * 2f32.powi(-11), // tie, up to even
        -(1.0 + 2f32.powi(-11)),
        1.0 + 2f32.powi(-11) + 2f32.powi(-23), // just above a tie
        2f32.powi(-25),                        // tie to zero
        1.5 * 2f32.powi(-24),                  // subnormal tie
        -3.3e-6,                               // subnormal
        6.2e-5,                                // just above the smallest normal
        65504.0,
        65519.0,
        65520.0, // overflows to infinity
        -1e9,
        0.0,
        -0.0,
        1.0 / 3.0,
        0.1,
    ];
    let mut p = model.params().to_vec();
    for l in &model.layout().layers {
        for (i, v) in p[l.w_hh.clone()].iter_mut().enumerate() {
            *v = special[i % special.len()] * if i % 32 >= 16 { -1.0 } else { 1.0 };
        }
    }
    g.upload(&p).unwrap();
    assert_copy_is(&g, &model, &p, "after upload");
}

/// `steps` optimizer steps on the GPU with the f16 copy against the CPU path
/// that rounds W_hh before each step's forward and backward and updates the
/// unrounded master weights: losses and weights agree to the f32 training
/// tolerance, and after the steps the copy is the master weights rounded, bit for bit.
fn check_training(case: &Case, kind: OptimizerKind, clip: Option<f32>, steps: usize, seed: u64) {
    let Some(ctx) = gpu("f16 training") else {
        return;
    };
    let mut master = case.model(seed);
    let mut g = GpuModel::with_f16_weights(ctx.ctx.clone(), &master, true).unwrap();
    let loss = Loss::Ce;
    let data = case.data(loss, seed + 1);
    let opts = StepOptions { loss, clip };
    let (mut o_cpu, mut o_gpu) = (Optimizer::new(kind), Optimizer::new(kind));
    let mut losses = Vec::new();
    let before = g.submissions;
    for _ in 0..steps {
        let (l, mut grads) = rounded(&master).loss_and_gradients(&data, loss).unwrap();
        if let Some(c) = clip {
            recurrent::cpu::optim::clip_grad_norm(&mut grads, c);
        }
        o_cpu.update(master.params_mut(), &grads);
        losses.push(l);
        g.train_step(&data, &opts, &mut o_gpu).unwrap();
    }
    let stats = g.finish().unwrap();
    assert_eq!(
        g.submissions - before,
        steps as u64,
        "the refresh of the copy is inside each step's submission"
    );
    let what = format!("{} {kind:?} f16", case.label(loss));
    let lg: Vec<f32> = stats.iter().map(|s| s.loss).collect();
    assert_close(&format!("{what}: losses"), &lg, &losses, TRAINED_WEIGHTS);
    let w = g.download().unwrap();
    let mut d_w = Deviation::default();
    for e in &master.layout().entries {
        d_w = d_w.max(assert_close(
            &format!("{what}: {} after {steps} steps", e.name),
            &w[e.range()],
            &master.params()[e.range()],
            TRAINED_WEIGHTS,
        ));
    }
    // The copy follows the master weights (the GPU's own, rounded on the host).
    assert_copy_is(&g, &master, &w, &format!("{what}: after {steps} steps"));
    // And the master weights are not rounded: the optimizer works in f32.
    let whh = &w[master.layout().layers[0].w_hh.clone()];
    assert!(
        whh.iter().any(|&v| round_to_f16(v) != v),
        "{what}: the master W_hh is f32"
    );
    eprintln!("{what}, {steps} steps: weights {d_w}");
}

#[test]
fn the_copy_follows_the_master_weights_through_training() {
    let adam = OptimizerKind::Adam {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let sgd = OptimizerKind::Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 1e-3,
        nesterov: false,
    };
    for (i, cell) in CELLS.into_iter().enumerate() {
        let case = Case {
            layers: 2,
            bidirectional: true,
            lengths: true,
            ..Case::new(cell)
        };
        check_training(&case, adam, None, 3, 80 + i as u64);
        check_training(&case, sgd, Some(0.5), 3, 90 + i as u64);
    }
}

/// Off by default (unless `RECURRENT_GPU_F16` is set), the context's setting
/// decides for `GpuModel::new`, and the copy really is what the kernels read.
#[test]
fn the_copy_is_opt_in_and_leaves_the_f32_path_alone() {
    let Some(ctx) = gpu("f16 opt-in") else { return };
    assert!(
        std::env::var("RECURRENT_GPU_F16").is_ok() || !ctx.f16_weights(),
        "off unless RECURRENT_GPU_F16 is set"
    );
    let case = Case::dispatch_count();
    let model = case.model(3);
    let data = case.data(Loss::Ce, 4);
    let mut off = GpuModel::with_f16_weights(ctx.ctx.clone(), &model, false).unwrap();
    let mut on = GpuModel::with_f16_weights(ctx.ctx.clone(), &model, true).unwrap();
    assert!(!off.f16_weights() && on.f16_weights());
    assert!(off.whh_f16_bits().unwrap().is_none());
    // The same plan, plus the copy's refresh after the optimizer: one dispatch per layer.
    assert_eq!(
        off.dispatches_per_step(case.batch, case.steps).unwrap() + case.layers,
        on.dispatches_per_step(case.batch, case.steps).unwrap()
    );
    let a = off.forward(&data).unwrap();
    let b = on.forward(&data).unwrap();
    assert_ne!(a.data, b.data, "the f16 copy changes the outputs");
    // The context's default decides for GpuModel::new.
    let was = ctx.set_f16_weights(true);
    let via_ctx = GpuModel::new(ctx.ctx.clone(), &model);
    ctx.set_f16_weights(was);
    assert!(via_ctx.unwrap().f16_weights());
}

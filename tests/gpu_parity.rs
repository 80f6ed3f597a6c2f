//! GPU vs CPU: the same random models and batches through both paths —
//! outputs, loss, every parameter gradient, and the weights after training
//! steps — for every cell, 1-3 layers, bidirectional, lengths, both output
//! modes, both losses, embeddings and awkward shapes. Tolerances: `common::tolerance`.
//!
//! Without a GPU adapter each test prints `SKIPPED` and passes, unless
//! `RECURRENT_REQUIRE_GPU=1`. Lavapipe (Mesa's software Vulkan) runs them anywhere.

mod common;

use common::tolerance::{assert_close, Deviation, FORWARD, GRADIENTS, LOSS, TRAINED_WEIGHTS};
use common::{gpu, Case};
use recurrent::gpu::GpuModel;
use recurrent::{Cell, Loss, Optimizer, OptimizerKind, OutputMode, StepOptions};

const CELLS: [Cell; 3] = [Cell::Lstm, Cell::Gru, Cell::Rnn];

/// Forward, loss and gradients of `case` on both paths.
fn check_case(case: &Case, loss: Loss, seed: u64) {
    let Some(ctx) = gpu("parity") else { return };
    let model = case.model(seed);
    let data = case.data(loss, seed + 100);
    let what = format!("{case:?} {loss:?}");
    let mut g = GpuModel::new(ctx.ctx.clone(), &model).unwrap();
    let out_gpu = g.forward(&data).unwrap();
    let out_cpu = model.forward(&data).unwrap();
    assert_eq!(out_gpu.shape, out_cpu.shape, "{what}: output shape");
    let d_out = assert_close(
        &format!("{what}: output"),
        &out_gpu.data,
        &out_cpu.data,
        FORWARD,
    );
    let (l_gpu, g_gpu) = g.loss_and_gradients(&data, loss).unwrap();
    let (l_cpu, g_cpu) = model.loss_and_gradients(&data, loss).unwrap();
    let d_loss = assert_close(&format!("{what}: loss"), &[l_gpu], &[l_cpu], LOSS);
    let mut d_grad = Deviation::default();
    for e in &model.layout().entries {
        d_grad = d_grad.max(assert_close(
            &format!("{what}: grad {}", e.name),
            &g_gpu[e.range()],
            &g_cpu[e.range()],
            GRADIENTS,
        ));
    }
    eprintln!(
        "{}: output {d_out}; loss {d_loss}; gradients {d_grad}",
        case.label(loss)
    );
}

#[test]
fn forward_and_gradients_match_cpu_for_every_cell_and_stack() {
    let mut seed = 1;
    for cell in CELLS {
        for (layers, bidirectional) in [(1, false), (2, true), (3, false)] {
            for output in [OutputMode::Last, OutputMode::Sequence] {
                for lengths in [false, true] {
                    let case = Case {
                        layers,
                        bidirectional,
                        output,
                        lengths,
                        ..Case::new(cell)
                    };
                    let loss = if seed % 2 == 0 { Loss::Ce } else { Loss::Mse };
                    check_case(&case, loss, seed);
                    seed += 1;
                }
            }
        }
    }
}

#[test]
fn both_losses_match_cpu() {
    for loss in [Loss::Ce, Loss::Mse] {
        for output in [OutputMode::Last, OutputMode::Sequence] {
            let case = Case {
                output,
                lengths: true,
                bidirectional: true,
                out: 7,
                ..Case::new(Cell::Lstm)
            };
            check_case(&case, loss, 40);
        }
    }
}

#[test]
fn relu_rnn_matches_cpu() {
    let case = Case {
        relu: true,
        layers: 2,
        bidirectional: true,
        lengths: true,
        output: OutputMode::Sequence,
        ..Case::new(Cell::Rnn)
    };
    check_case(&case, Loss::Mse, 50);
}

#[test]
fn awkward_shapes_match_cpu() {
    for cell in CELLS {
        let base = Case::new(cell);
        let cases = [
            Case { batch: 1, ..base },
            Case {
                steps: 1,
                bidirectional: true,
                ..base
            },
            Case {
                hidden: 1,
                input: 1,
                out: 1,
                ..base
            },
            // H not a multiple of any tile or workgroup, I != H, 2H input to layer 1.
            Case {
                hidden: 67,
                input: 13,
                layers: 2,
                bidirectional: true,
                lengths: true,
                ..base
            },
            // Batch and hidden size spanning several step tiles in both dimensions.
            Case {
                batch: 9,
                hidden: 37,
                input: 4,
                lengths: true,
                output: OutputMode::Sequence,
                ..base
            },
            // The MNIST training shape.
            Case {
                layers: 2,
                input: 28,
                hidden: 128,
                out: 10,
                batch: 64,
                steps: 28,
                ..base
            },
            // Long sequence, sequence output.
            Case {
                steps: 100,
                batch: 3,
                hidden: 16,
                lengths: true,
                output: OutputMode::Sequence,
                ..base
            },
        ];
        for (i, c) in cases.iter().enumerate() {
            check_case(
                c,
                if i % 2 == 0 { Loss::Ce } else { Loss::Mse },
                60 + i as u64,
            );
        }
    }
}

#[test]
fn embedding_matches_cpu() {
    for cell in CELLS {
        let case = Case {
            vocab: Some(11),
            input: 6,
            output: OutputMode::Sequence,
            lengths: true,
            bidirectional: true,
            ..Case::new(cell)
        };
        check_case(&case, Loss::Ce, 70);
    }
}

/// `steps` training steps on both paths from the same weights; compares the
/// losses of every step and the weights at the end.
fn check_training(
    case: &Case,
    loss: Loss,
    kind: OptimizerKind,
    clip: Option<f32>,
    steps: usize,
    seed: u64,
) {
    let Some(ctx) = gpu("training parity") else {
        return;
    };
    let mut cpu = case.model(seed);
    let mut g = GpuModel::new(ctx.ctx.clone(), &cpu).unwrap();
    let data = case.data(loss, seed + 1);
    let opts = StepOptions { loss, clip };
    let (mut o_cpu, mut o_gpu) = (Optimizer::new(kind), Optimizer::new(kind));
    let mut losses_cpu = Vec::new();
    for _ in 0..steps {
        losses_cpu.push(cpu.train_step(&data, &opts, &mut o_cpu).unwrap().loss);
        g.train_step(&data, &opts, &mut o_gpu).unwrap();
    }
    let stats = g.finish().unwrap();
    assert_eq!(stats.len(), steps, "one StepStats per step");
    let losses_gpu: Vec<f32> = stats.iter().map(|s| s.loss).collect();
    let what = format!("{case:?} {kind:?} clip {clip:?}");
    assert_close(
        &format!("{what}: losses"),
        &losses_gpu,
        &losses_cpu,
        TRAINED_WEIGHTS,
    );
    assert_eq!(o_gpu.step, o_cpu.step);
    let w = g.download().unwrap();
    let mut d_w = Deviation::default();
    for e in &cpu.layout().entries {
        d_w = d_w.max(assert_close(
            &format!("{what}: {} after {steps} steps", e.name),
            &w[e.range()],
            &cpu.params()[e.range()],
            TRAINED_WEIGHTS,
        ));
    }
    eprintln!(
        "{} {kind:?} clip {clip:?}, {steps} steps: weights {d_w}",
        case.label(loss)
    );
}

#[test]
fn twenty_adam_steps_match_cpu() {
    let adam = OptimizerKind::Adam {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    for (i, cell) in CELLS.into_iter().enumerate() {
        let case = Case {
            layers: 2,
            bidirectional: true,
            lengths: true,
            ..Case::new(cell)
        };
        check_training(&case, Loss::Ce, adam, None, 20, 80 + i as u64);
    }
}

#[test]
fn adam_with_clipping_and_weight_decay_matches_cpu() {
    let adam = OptimizerKind::Adam {
        lr: 5e-3,
        beta1: 0.8,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 1e-2,
    };
    let case = Case {
        output: OutputMode::Sequence,
        lengths: true,
        ..Case::new(Cell::Gru)
    };
    check_training(&case, Loss::Mse, adam, Some(0.05), 20, 90);
}

#[test]
fn sgd_with_momentum_and_clipping_matches_cpu() {
    for (nesterov, wd) in [(false, 0.0), (true, 1e-3)] {
        let sgd = OptimizerKind::Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: wd,
            nesterov,
        };
        let case = Case {
            layers: 2,
            lengths: true,
            ..Case::new(Cell::Lstm)
        };
        check_training(&case, Loss::Ce, sgd, Some(0.5), 20, 95);
        let plain = OptimizerKind::Sgd {
            lr: 0.1,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        };
        check_training(&case, Loss::Mse, plain, None, 5, 96);
    }
}

#[test]
fn stats_come_back_for_every_step_without_waiting_inside_the_step() {
    let Some(ctx) = gpu("stats ring") else { return };
    let case = Case {
        layers: 2,
        ..Case::new(Cell::Lstm)
    };
    let mut cpu = case.model(7);
    let mut g = GpuModel::new(ctx.ctx.clone(), &cpu).unwrap();
    let data = case.data(Loss::Ce, 8);
    let opts = StepOptions {
        loss: Loss::Ce,
        clip: Some(1.0),
    };
    let (mut o_cpu, mut o_gpu) = (Optimizer::adam(1e-2), Optimizer::adam(1e-2));
    let mut want = Vec::new();
    let mut got = Vec::new();
    for _ in 0..10 {
        want.push(cpu.train_step(&data, &opts, &mut o_cpu).unwrap());
        g.train_step(&data, &opts, &mut o_gpu).unwrap();
        got.extend(g.poll_stats().unwrap());
    }
    got.extend(g.finish().unwrap());
    assert_eq!(got.len(), 10, "one StepStats per step");
    let l: Vec<f32> = got.iter().map(|s| s.loss).collect();
    let lw: Vec<f32> = want.iter().map(|s| s.loss).collect();
    assert_close("losses", &l, &lw, TRAINED_WEIGHTS);
    let n: Vec<f32> = got.iter().map(|s| s.grad_norm).collect();
    let nw: Vec<f32> = want.iter().map(|s| s.grad_norm).collect();
    assert_close("grad norms", &n, &nw, GRADIENTS);
}

#[test]
fn a_training_step_is_one_submission_of_a_fixed_dispatch_list() {
    let Some(ctx) = gpu("dispatch count") else {
        return;
    };
    // The MNIST shape: 2-layer LSTM over 28 steps of 28 features.
    let case = Case::dispatch_count();
    let model = case.model(3);
    let mut g = GpuModel::new(ctx.ctx.clone(), &model).unwrap();
    let data = case.data(Loss::Ce, 4);
    let opts = StepOptions {
        loss: Loss::Ce,
        clip: Some(1.0),
    };
    let mut opt = Optimizer::adam(1e-3);
    let before = g.submissions;
    for _ in 0..3 {
        g.train_step(&data, &opts, &mut opt).unwrap();
    }
    assert_eq!(
        g.submissions - before,
        3,
        "one queue submission per training step"
    );
    assert_eq!(g.finish().unwrap().len(), 3);
    // forward: 2 x (input GEMM + 28 steps) + head GEMM; loss 1; backward: head
    // (2 GEMMs + bias sums) + 2 x 28 steps + 2 x (2 weight GEMMs + 2 bias sums)
    // + dX of layer 1; norm 2; optimizer 1: 131 with one dispatch per GEMM.
    // The GEMMs' tile configurations were chosen (measured) when the plan was
    // built, before the first step; a GEMM the tuner split over K takes a
    // second dispatch (the reduction), every step alike.
    let gemms = g.gemm_choices(8, 28).unwrap();
    assert_eq!(gemms.len(), 3 + 2 + 2 * 2 + 1, "{gemms:?}");
    let split: usize = gemms
        .iter()
        .map(|c| c.config.dispatches(&c.shape) - 1)
        .sum();
    let want = 2 * (1 + 28) + 1 + 1 + 3 + 2 * 28 + 2 * 4 + 1 + 2 + 1 + split;
    assert_eq!(g.dispatches_per_step(8, 28).unwrap(), want);
    // Fixed: more steps do not change the list, nor tune anything again.
    let tuned = ctx.tuned_gemms();
    for _ in 0..2 {
        g.train_step(&data, &opts, &mut opt).unwrap();
    }
    g.finish().unwrap();
    assert_eq!(g.dispatches_per_step(8, 28).unwrap(), want);
    assert_eq!(g.gemm_choices(8, 28).unwrap(), gemms);
    assert_eq!(ctx.tuned_gemms(), tuned);
    assert_eq!(
        g.submissions - before,
        5,
        "one queue submission per training step"
    );
    eprintln!(
        "2-layer LSTM, T=28: {want} dispatches ({split} split-K reductions), 1 submission per training step"
    );
    if g.context()
        .features
        .contains(wgpu::Features::TIMESTAMP_QUERY)
    {
        let prof = g.profile_train_step(&data, &opts, &mut opt).unwrap();
        let n: usize = prof.iter().map(|p| p.1).sum();
        assert_eq!(n, want, "the profile times every dispatch once");
        assert!(prof
            .iter()
            .any(|p| p.0 == "lstm.l1.step_backward" && p.1 == 28));
    } else {
        eprintln!("(no TIMESTAMP_QUERY on this adapter: profile not checked)");
    }
}

/// Not a parity test: time per training step, GPU vs CPU, for a few shapes.
/// `cargo test --test gpu_parity -- --ignored --nocapture training_throughput`;
/// `RECURRENT_BENCH=full` adds DeepBench-sized LSTMs (slow on a software adapter);
/// `RECURRENT_BENCH_NO_CPU=1` skips the CPU timings.
#[test]
#[ignore]
fn training_throughput() {
    let Some(ctx) = gpu("throughput") else { return };
    let mut shapes = vec![(
        "mnist lstm L2 I28 H128 B64 T28",
        Case {
            layers: 2,
            input: 28,
            hidden: 128,
            out: 10,
            batch: 64,
            steps: 28,
            ..Case::new(Cell::Lstm)
        },
    )];
    if std::env::var("RECURRENT_BENCH").as_deref() == Ok("full") {
        shapes.push((
            "deepbench lstm H512 B64 T25",
            Case {
                input: 512,
                hidden: 512,
                out: 10,
                batch: 64,
                steps: 25,
                ..Case::new(Cell::Lstm)
            },
        ));
        shapes.push((
            "deepbench lstm H1024 B64 T25",
            Case {
                input: 1024,
                hidden: 1024,
                out: 10,
                batch: 64,
                steps: 25,
                ..Case::new(Cell::Lstm)
            },
        ));
        shapes.push((
            "gru L2 bi H256 B32 T50",
            Case {
                layers: 2,
                bidirectional: true,
                input: 64,
                hidden: 256,
                out: 10,
                batch: 32,
                steps: 50,
                ..Case::new(Cell::Gru)
            },
        ));
    }
    for (name, case) in shapes {
        let mut cpu = case.model(1);
        let mut g = GpuModel::new(ctx.ctx.clone(), &cpu).unwrap();
        let data = case.data(Loss::Ce, 2);
        let opts = StepOptions {
            loss: Loss::Ce,
            clip: Some(1.0),
        };
        let mut opt = Optimizer::adam(1e-3);
        for _ in 0..3 {
            g.train_step(&data, &opts, &mut opt).unwrap();
        }
        g.finish().unwrap();
        let n = 20;
        let start = std::time::Instant::now();
        for _ in 0..n {
            g.train_step(&data, &opts, &mut opt).unwrap();
        }
        g.finish().unwrap();
        let gpu_ms = start.elapsed().as_secs_f64() * 1e3 / n as f64;
        let dispatches = g.dispatches_per_step(case.batch, case.steps).unwrap();
        eprintln!(
            "{name}: gpu {gpu_ms:.2} ms/step ({dispatches} dispatches) on {}",
            ctx.describe()
        );
        if ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            let mut prof = g.profile_train_step(&data, &opts, &mut opt).unwrap();
            let total: f64 = prof.iter().map(|p| p.2).sum();
            prof.sort_by(|a, b| b.2.total_cmp(&a.2));
            eprintln!("  GPU time of one step, by kernel (sum {total:.0} us):");
            for (label, n, us) in prof.iter().take(12) {
                eprintln!("  {us:>9.1} us  {n:>3} x {label}");
            }
        }
        if std::env::var("RECURRENT_BENCH_NO_CPU").as_deref() == Ok("1") {
            continue;
        }
        let mut o = Optimizer::adam(1e-3);
        let m = 3;
        let start = std::time::Instant::now();
        for _ in 0..m {
            cpu.train_step(&data, &opts, &mut o).unwrap();
        }
        let cpu_ms = start.elapsed().as_secs_f64() * 1e3 / m as f64;
        eprintln!("{name}: cpu {cpu_ms:.2} ms/step");
    }
}

/// An embedding larger than one dispatch's grid: V = 70,000 rows of width 64
/// is 4.48M table entries, more than 65,535 workgroups x 64 invocations, so
/// both embedding kernels must stride over the grid. The batch repeats ids
/// (within a sequence and across sequences), uses the first and last rows and
/// rows past the first grid's reach, and puts a repeated id in a masked step.
#[test]
fn large_vocabulary_embedding_with_repeated_ids_matches_cpu() {
    let Some(ctx) = gpu("large_vocabulary_embedding_with_repeated_ids_matches_cpu") else {
        return;
    };
    const V: usize = 70_000;
    const W: usize = 64;
    // The table must exceed one dispatch's grid (65,535 workgroups of 64).
    const _: () = assert!(V * W > 65_535 * 64);
    let cfg = recurrent::ModelConfig::new(Cell::Lstm, W, 8, 3).embedding(V);
    let model = recurrent::Model::new(cfg, &recurrent::Init::seed(9)).unwrap();
    #[rustfmt::skip]
    let ids: Vec<i64> = vec![
        69_999, 5, 69_999, 0, 66_000,
        0, 66_000, 66_000, 69_999, 7,
        12_345, 69_999, 5, 0, 69_999, // the last two steps are past this row's length
    ];
    let data = recurrent::Dataset::new(
        recurrent::Inputs::tokens(ids.clone(), 3, 5).unwrap(),
        Some(recurrent::Targets::Classes {
            data: vec![2, 0, 1],
            shape: vec![3],
        }),
        Some(vec![5, 5, 3]),
    );
    let mut g = GpuModel::new(ctx.ctx.clone(), &model).unwrap();
    let out_gpu = g.forward(&data).unwrap();
    let out_cpu = model.forward(&data).unwrap();
    assert_close("V70000 output", &out_gpu.data, &out_cpu.data, FORWARD);
    let (l_gpu, g_gpu) = g.loss_and_gradients(&data, Loss::Ce).unwrap();
    let (l_cpu, g_cpu) = model.loss_and_gradients(&data, Loss::Ce).unwrap();
    assert_close("V70000 loss", &[l_gpu], &[l_cpu], LOSS);
    let e = model.layout().entry("embed.weight").unwrap();
    let table = &g_gpu[e.range()];
    assert_close(
        "V70000 embed.weight grad",
        table,
        &g_cpu[e.range()],
        GRADIENTS,
    );
    for e in &model.layout().entries {
        assert_close(
            &format!("V70000 grad {}", e.name),
            &g_gpu[e.range()],
            &g_cpu[e.range()],
            GRADIENTS,
        );
    }
    // Rows in the batch get gradient (the last ones too); the rest stay zero.
    let row = |id: usize| &table[id * W..(id + 1) * W];
    for id in [0, 5, 7, 12_345, 66_000, 69_999] {
        assert!(
            row(id).iter().any(|&v| v != 0.0),
            "row {id} has no gradient on the GPU"
        );
    }
    assert!(row(69_998).iter().all(|&v| v == 0.0));
    assert!(row(1).iter().all(|&v| v == 0.0));
}

#[test]
fn a_fresh_optimizer_starts_from_zero_moments() {
    let Some(ctx) = gpu("fresh optimizer") else {
        return;
    };
    let case = Case {
        layers: 1,
        lengths: true,
        ..Case::new(Cell::Gru)
    };
    let mut cpu = case.model(11);
    let mut g = GpuModel::new(ctx.ctx.clone(), &cpu).unwrap();
    let data = case.data(Loss::Ce, 12);
    let opts = StepOptions {
        loss: Loss::Ce,
        clip: None,
    };
    for lr in [1e-2, 3e-3] {
        // A new Adam each round: its moments must not carry over on the GPU either.
        let (mut oc, mut og) = (Optimizer::adam(lr), Optimizer::adam(lr));
        for _ in 0..5 {
            cpu.train_step(&data, &opts, &mut oc).unwrap();
            g.train_step(&data, &opts, &mut og).unwrap();
        }
    }
    g.finish().unwrap();
    let w = g.download().unwrap();
    assert_close(
        "weights after two optimizers",
        &w,
        cpu.params(),
        TRAINED_WEIGHTS,
    );
}

/// With [`GpuModel::set_input_gradient`], the GPU's gradient of the loss
/// with respect to the input features (`[N, T, I]`) agrees with central
/// differences of the CPU path's loss, for every cell through two
/// bidirectional layers with lengths (entries past a row's length included:
/// zero on both sides); asked for without it, or of token ids, it is an error.
#[test]
fn the_input_gradient_matches_central_differences_of_the_cpu_loss() {
    use common::tolerance::GRADCHECK;
    use recurrent::{Dataset, Inputs};
    let Some(ctx) = gpu("input gradient") else {
        return;
    };
    for (i, cell) in CELLS.into_iter().enumerate() {
        let case = Case {
            layers: 2,
            bidirectional: true,
            lengths: true,
            output: if i == 1 {
                OutputMode::Last
            } else {
                OutputMode::Sequence
            },
            ..Case::new(cell)
        };
        let loss = if i == 0 { Loss::Ce } else { Loss::Mse };
        let model = case.model(70 + i as u64);
        let data = case.data(loss, 170 + i as u64);
        let mut g = GpuModel::new(ctx.ctx.clone(), &model).unwrap();
        let (n, t) = (case.batch, case.steps);
        g.loss_and_gradients(&data, loss).unwrap();
        let e = g.input_gradient(n, t).unwrap_err().to_string();
        assert!(e.contains("set_input_gradient(true)"), "{e}");
        g.set_input_gradient(true);
        g.loss_and_gradients(&data, loss).unwrap();
        let dx = g.input_gradient(n, t).unwrap();
        assert_eq!(dx.shape, vec![n, t, case.input]);
        let Inputs::Features { data: x, .. } = &data.x else {
            panic!("features expected")
        };
        let with_x = |x: Vec<f32>| {
            Dataset::new(
                Inputs::features(x, n, t, case.input).unwrap(),
                data.y.clone(),
                data.lengths.clone(),
            )
        };
        let eps = 1e-2f32;
        let (mut num, mut ana) = (Vec::new(), Vec::new());
        for k in (0..x.len()).step_by(7).chain([x.len() - 1]) {
            let mut plus = x.clone();
            plus[k] += eps;
            let mut minus = x.clone();
            minus[k] -= eps;
            let lp = model.loss_and_gradients(&with_x(plus), loss).unwrap().0 as f64;
            let lm = model.loss_and_gradients(&with_x(minus), loss).unwrap().0 as f64;
            num.push(((lp - lm) / (2.0 * eps as f64)) as f32);
            ana.push(dx.data[k]);
        }
        let what = format!("{}: input gradient", case.label(loss));
        assert!(
            ana.iter().any(|v| v.abs() > 1e-3),
            "{what}: all near zero, the check would prove nothing"
        );
        let d = assert_close(&what, &ana, &num, GRADCHECK);
        eprintln!("{what}: {} entries, {d}", ana.len());
    }
    // Token ids have no gradient.
    let case = Case {
        vocab: Some(11),
        ..Case::new(Cell::Gru)
    };
    let mut g = GpuModel::new(ctx.ctx.clone(), &case.model(80)).unwrap();
    g.set_input_gradient(true);
    let data = case.data(Loss::Ce, 180);
    g.loss_and_gradients(&data, Loss::Ce).unwrap();
    let e = g
        .input_gradient(case.batch, case.steps)
        .unwrap_err()
        .to_string();
    assert!(e.contains("token ids"), "{e}");
}

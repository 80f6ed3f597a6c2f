//! Per-shape GEMM autotuning (`recurrent::gpu::internals`): every candidate
//! configuration computes the CPU path's GEMM at awkward shapes (tiles that do
//! not divide the shape, each transpose, split-K, batches), the tuner picks the
//! fastest candidate of an injected timing source, measures each shape once
//! per context (shared by every model on it), and tuning off takes the fixed
//! choice without measuring anything. Without a GPU adapter each test prints
//! `SKIPPED` and passes, unless `RECURRENT_REQUIRE_GPU=1`.

mod common;

use common::tolerance::{assert_close, Deviation, FORWARD, GEMM, GRADIENTS, LOSS};
use common::{gpu, recurrent_cli, Case};
use recurrent::gpu::internals::GemmBench;
use recurrent::gpu::{Decision, GemmConfig, GemmShape, GemmTimer, GpuDevice};
use recurrent::gpu::{DevicePreference, GpuContext, GpuModel};
use recurrent::rng::Rng;
use recurrent::{Cell, Loss};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

fn shape(m: u32, n: u32, k: u32, a_t: bool, b_t: bool, batch: u32) -> GemmShape {
    GemmShape {
        m,
        n,
        k,
        a_t,
        b_t,
        batch,
    }
}

/// Every configuration the GEMM kernels support, whether or not the tuner
/// would try it for a given shape.
fn all_configs() -> Vec<GemmConfig> {
    let mut v = Vec::new();
    for tile in [8, 16] {
        for rm in [2, 4, 8] {
            v.push(GemmConfig::Blocked { tile, rm });
        }
        for splits in [1, 2, 3, 5, 32] {
            v.push(GemmConfig::Small { tile, splits });
        }
    }
    v.push(GemmConfig::Wide { tile: 16 });
    v.push(GemmConfig::Wide { tile: 8 });
    v
}

/// `C = beta·C + op(A)·op(B)` per batch entry on the CPU path.
fn cpu_gemm(s: &GemmShape, a: &[f32], b: &[f32], c: &mut [f32], beta: f32) {
    let (m, n, k) = (s.m as usize, s.n as usize, s.k as usize);
    for z in 0..s.batch as usize {
        recurrent::cpu::gemm::gemm(
            m,
            n,
            k,
            &a[z * m * k..(z + 1) * m * k],
            s.a_t,
            &b[z * k * n..(z + 1) * k * n],
            s.b_t,
            &mut c[z * m * n..(z + 1) * m * n],
            beta,
        );
    }
}

#[test]
fn every_candidate_configuration_matches_the_cpu_gemm() {
    let Some(ctx) = gpu("every_candidate_configuration_matches_the_cpu_gemm") else {
        return;
    };
    // (shape, beta): none a multiple of 8; every transpose; K long enough to
    // split; batches (both directions of a layer); grids large and small.
    let cases = [
        (shape(37, 29, 19, false, false, 1), 0.0),
        (shape(70, 33, 130, true, false, 1), 1.0),
        (shape(65, 67, 45, false, true, 1), 0.0),
        (shape(19, 100, 301, true, true, 2), 1.0),
        // A weight gradient: small M x N, K = T*B, split over K.
        (shape(12, 7, 700, true, false, 2), 1.0),
        // An input projection: many rows, B transposed, a grid that fills the GPU.
        (shape(300, 130, 17, false, true, 1), 0.0),
        // More than one 128x128 block each way with partial edge blocks, K
        // not a multiple of gemm_wide's step of 8, each transpose, a batch.
        (shape(261, 258, 37, false, false, 1), 1.0),
        (shape(130, 131, 21, true, true, 2), 0.0),
        (shape(257, 129, 9, true, false, 1), 0.0),
        (shape(129, 257, 1, false, true, 1), 1.0),
        (shape(1, 1, 1, false, false, 1), 0.0),
    ];
    let mut rng = Rng::new(5);
    let mut worst = Deviation::default();
    let mut runs = 0;
    for (s, beta) in cases {
        let (m, n, k, z) = (s.m as usize, s.n as usize, s.k as usize, s.batch as usize);
        let a: Vec<f32> = (0..z * m * k).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let b: Vec<f32> = (0..z * k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let c0: Vec<f32> = (0..z * m * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let mut want = c0.clone();
        cpu_gemm(&s, &a, &b, &mut want, beta);
        let mut configs = ctx.gemm_candidates(&s);
        assert_eq!(
            configs[0],
            ctx.gemm_fixed_config(&s),
            "{s}: fixed choice first"
        );
        assert!(configs.len() <= recurrent::gpu::internals::GEMM_MAX_CANDIDATES);
        for c in all_configs() {
            if c.valid_for(&s, &ctx.limits) && !configs.contains(&c) {
                configs.push(c);
            }
        }
        for c in configs {
            assert!(
                c.valid_for(&s, &ctx.limits),
                "{s}: candidate {c} is not valid"
            );
            let g = GemmBench::with_config(&ctx, s, beta, c).unwrap();
            g.write_operands(&a, &b, Some(&c0)).unwrap();
            g.run(1).unwrap();
            let got = g.read_c().unwrap();
            let d = assert_close(&format!("{s} beta {beta} with {c}"), &got, &want, GEMM);
            let kernels = g.kernels();
            if c.effective_splits(&s) > 1 {
                assert_eq!(kernels, ["gemm_small", "gemm_split_reduce"], "{s} {c}");
            } else {
                assert_eq!(kernels, [c.kernel()], "{s} {c}");
            }
            // RM = 4 runs the measured vec4 `gemm`; other register blocks `gemm_rm`.
            match c {
                GemmConfig::Blocked { rm: 4, .. } => assert_eq!(kernels, ["gemm"], "{s} {c}"),
                GemmConfig::Blocked { .. } => assert_eq!(kernels, ["gemm_rm"], "{s} {c}"),
                GemmConfig::Wide { .. } => assert_eq!(kernels, ["gemm_wide"], "{s} {c}"),
                GemmConfig::Small { .. } => {}
            }
            worst = worst.max(d);
            runs += 1;
        }
    }
    // Split-K really ran at the long-K shapes.
    let s = shape(12, 7, 700, true, false, 2);
    assert!(
        GemmConfig::Small {
            tile: 16,
            splits: 5
        }
        .effective_splits(&s)
            > 1
    );
    eprintln!(
        "{runs} GEMM configurations x shapes on {}: {worst}",
        ctx.describe()
    );
}

/// A timing source that answers from a table (and counts what it was asked).
struct FakeTimer {
    /// µs per configuration; configurations not listed take 1000.
    times: HashMap<GemmConfig, f64>,
    /// Shapes asked, in order.
    asked: Mutex<Vec<GemmShape>>,
}

impl GemmTimer for FakeTimer {
    fn time(
        &self,
        _gpu: &GpuDevice,
        shape: &GemmShape,
        configs: &[GemmConfig],
    ) -> recurrent::Result<Option<Vec<Option<f64>>>> {
        self.asked.lock().unwrap().push(*shape);
        Ok(Some(
            configs
                .iter()
                .map(|c| Some(*self.times.get(c).unwrap_or(&1000.0)))
                .collect(),
        ))
    }
}

/// A context of its own (its cache starts empty; the shared one stays untouched).
/// A new context with tuning on (it is opt-in: `RECURRENT_AUTOTUNE=1`).
fn fresh_context() -> Arc<GpuContext> {
    let ctx = GpuContext::new(DevicePreference::Auto).expect("common::gpu found an adapter");
    ctx.set_autotune(true);
    ctx
}

#[test]
fn the_tuner_keeps_the_fastest_candidate_and_measures_each_shape_once() {
    let Some(_turn) = gpu("the_tuner_keeps_the_fastest_candidate_and_measures_each_shape_once")
    else {
        return;
    };
    if std::env::var_os("RECURRENT_AUTOTUNE").is_none() {
        let plain = GpuContext::new(DevicePreference::Auto).unwrap();
        assert!(
            !plain.autotune(),
            "off by default (RECURRENT_AUTOTUNE unset)"
        );
    }
    let ctx = fresh_context();
    // A small grid with a long K: the fixed choice is split-K gemm_small.
    let s = shape(12, 7, 700, true, false, 2);
    let cands = ctx.gemm_candidates(&s);
    assert!(cands.len() >= 3, "{cands:?}");
    assert!(matches!(cands[0], GemmConfig::Small { splits, .. } if splits > 1));
    // Candidate 2 and the last one tie at the fastest time: the earlier wins.
    let mut times: HashMap<GemmConfig, f64> = cands
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, 100.0 + i as f64))
        .collect();
    times.insert(cands[2], 7.0);
    times.insert(*cands.last().unwrap(), 7.0);
    let timer = Arc::new(FakeTimer {
        times,
        asked: Mutex::new(Vec::new()),
    });
    ctx.set_gemm_timer(timer.clone());
    assert_eq!(ctx.gemm_config(&s).unwrap(), cands[2]);
    let t = ctx.tuned_gemm(&s).expect("cached");
    assert_eq!(t.choice, cands[2]);
    assert_eq!(t.us, Some(7.0));
    assert_eq!(t.decision, Decision::Measured);
    assert_eq!(
        t.candidates.iter().map(|c| c.0).collect::<Vec<_>>(),
        cands,
        "every candidate measured, in order"
    );
    // The second lookup comes from the cache.
    assert_eq!(ctx.gemm_config(&s).unwrap(), cands[2]);
    assert_eq!(timer.asked.lock().unwrap().len(), 1, "measured once");
    assert_eq!(ctx.tuned_gemms(), vec![(s, t)]);

    // Whole models: the timer prefers the tuner's last candidate of every
    // shape (unusual configurations), and the model must still match the CPU.
    let mut times = HashMap::new();
    for c in [
        GemmConfig::Blocked { tile: 8, rm: 2 },
        GemmConfig::Blocked { tile: 8, rm: 8 },
        GemmConfig::Small { tile: 8, splits: 1 },
    ] {
        times.insert(c, 1.0);
    }
    let timer = Arc::new(FakeTimer {
        times,
        asked: Mutex::new(Vec::new()),
    });
    ctx.set_gemm_timer(timer.clone());
    let case = Case {
        layers: 2,
        bidirectional: true,
        lengths: true,
        input: 13,
        hidden: 37,
        batch: 9,
        steps: 11,
        output: recurrent::OutputMode::Sequence,
        ..Case::new(Cell::Gru)
    };
    let model = case.model(21);
    let data = case.data(Loss::Mse, 22);
    let mut g = GpuModel::new(ctx.clone(), &model).unwrap();
    let choices = g.gemm_choices(case.batch, case.steps).unwrap();
    let asked = timer.asked.lock().unwrap().clone();
    let mut shapes: Vec<GemmShape> = choices.iter().map(|c| c.shape).collect();
    shapes.sort();
    shapes.dedup();
    for s in &shapes {
        let n = asked.iter().filter(|a| *a == s).count();
        let t = ctx
            .tuned_gemm(s)
            .expect("every shape of the plan is cached");
        match t.decision {
            Decision::Measured => assert_eq!(n, 1, "{s} measured once"),
            Decision::Single => assert_eq!(n, 0, "{s}: one candidate, nothing to measure"),
            d => panic!("{s}: unexpected decision {d:?}"),
        }
    }
    assert_eq!(asked.len(), {
        let mut a = asked.clone();
        a.sort();
        a.dedup();
        a.len()
    });
    for c in &choices {
        let t = ctx.tuned_gemm(&c.shape).unwrap();
        assert_eq!(
            c.config, t.choice,
            "{}: the plan runs the cached choice",
            c.label
        );
        assert_eq!(c.decision, t.decision);
        // The fake's favourites win wherever they are candidates.
        let fav = t
            .candidates
            .iter()
            .find(|(cfg, _)| timer.times.contains_key(cfg));
        if let Some((fav, _)) = fav {
            assert_eq!(c.config, *fav, "{}", c.label);
        }
    }
    let unusual = choices
        .iter()
        .filter(|c| c.config != ctx.gemm_fixed_config(&c.shape))
        .count();
    assert!(
        unusual > 0,
        "the fake timer moved some GEMM off the fixed choice"
    );
    let out_gpu = g.forward(&data).unwrap();
    let out_cpu = model.forward(&data).unwrap();
    assert_close("tuned forward", &out_gpu.data, &out_cpu.data, FORWARD);
    let (l_gpu, g_gpu) = g.loss_and_gradients(&data, Loss::Mse).unwrap();
    let (l_cpu, g_cpu) = model.loss_and_gradients(&data, Loss::Mse).unwrap();
    assert_close("tuned loss", &[l_gpu], &[l_cpu], LOSS);
    for e in &model.layout().entries {
        assert_close(
            &format!("tuned grad {}", e.name),
            &g_gpu[e.range()],
            &g_cpu[e.range()],
            GRADIENTS,
        );
    }
    // A second model on the same context: every shape comes from the cache.
    let before = timer.asked.lock().unwrap().len();
    let mut g2 = GpuModel::new(ctx.clone(), &model).unwrap();
    assert_eq!(g2.gemm_choices(case.batch, case.steps).unwrap(), choices);
    assert_eq!(timer.asked.lock().unwrap().len(), before, "shared cache");
    eprintln!(
        "{} GEMMs, {} shapes, {unusual} off the fixed choice; tuned model matches the CPU",
        choices.len(),
        shapes.len()
    );
}

#[test]
fn autotune_off_takes_the_fixed_choice_without_measuring() {
    let Some(_turn) = gpu("autotune_off_takes_the_fixed_choice_without_measuring") else {
        return;
    };
    let ctx = fresh_context();
    let timer = Arc::new(FakeTimer {
        times: HashMap::new(),
        asked: Mutex::new(Vec::new()),
    });
    ctx.set_gemm_timer(timer.clone());
    assert!(ctx.set_autotune(false), "was on");
    assert!(!ctx.autotune());
    let s = shape(12, 7, 700, true, false, 2);
    assert_eq!(ctx.gemm_config(&s).unwrap(), ctx.gemm_fixed_config(&s));
    // The MNIST-shaped case of gpu_parity's dispatch count: the fixed list.
    let case = Case::dispatch_count();
    let mut g = GpuModel::new(ctx.clone(), &case.model(3)).unwrap();
    let choices = g.gemm_choices(8, 28).unwrap();
    assert_eq!(choices.len(), 10);
    for c in &choices {
        assert_eq!(c.config, ctx.gemm_fixed_config(&c.shape), "{}", c.label);
        assert_eq!(c.decision, Decision::Off);
        assert_eq!(c.us, None);
    }
    assert_eq!(g.dispatches_per_step(8, 28).unwrap(), 131);
    assert!(timer.asked.lock().unwrap().is_empty(), "nothing measured");
    assert!(ctx.tuned_gemms().is_empty());
    // Back on: the next lookup measures.
    ctx.set_autotune(true);
    ctx.gemm_config(&s).unwrap();
    assert_eq!(timer.asked.lock().unwrap().len(), 1);
}

/// The default timing source on this device: it runs, gives finite times for
/// every candidate and picks one of them (which one means nothing on a
/// software adapter).
#[test]
fn the_device_timer_measures_every_candidate() {
    let Some(_turn) = gpu("the_device_timer_measures_every_candidate") else {
        return;
    };
    let ctx = fresh_context();
    for s in [
        shape(12, 7, 700, true, false, 2),
        shape(300, 130, 17, false, true, 1),
    ] {
        let t0 = std::time::Instant::now();
        let chosen = ctx.gemm_config(&s).unwrap();
        let t = ctx.tuned_gemm(&s).unwrap();
        assert_eq!(t.decision, Decision::Measured);
        assert_eq!(t.choice, chosen);
        assert_eq!(t.candidates.len(), ctx.gemm_candidates(&s).len());
        for (c, us) in &t.candidates {
            let us = us.unwrap_or_else(|| panic!("{s}: {c} did not run"));
            assert!(us.is_finite() && us >= 0.0, "{s}: {c}: {us}");
            assert!(us >= t.us.unwrap(), "{s}: the chosen one is the fastest");
        }
        eprintln!(
            "{s}: picked {chosen} ({:.1} us) of {} candidates in {:.0} ms on {} ({}; not a performance figure)",
            t.us.unwrap(),
            t.candidates.len(),
            t0.elapsed().as_secs_f64() * 1e3,
            ctx.describe(),
            if ctx.has_timestamps() { "GPU timestamps" } else { "wall clock" },
        );
    }
}

/// The device basics `recurrent bench --kernels` prints (at small sizes
/// here: lavapipe takes minutes at 4096³): a dispatch's cost in one pass and
/// in passes of one, and a GEMM's TFLOP/s under the configuration asked for.
#[test]
fn the_kernel_basics_time_a_dispatch_and_a_gemm() {
    let Some(ctx) = gpu("the_kernel_basics_time_a_dispatch_and_a_gemm") else {
        return;
    };
    use recurrent::gpu::internals::{dispatch_overhead, gemm_tflops};
    let (one, many) = dispatch_overhead(&ctx, 50, 1).unwrap();
    assert!(
        one > 0.0 && one.is_finite() && many > 0.0 && many.is_finite(),
        "{one} {many}"
    );
    assert!(dispatch_overhead(&ctx, 0, 1).is_err());
    let s = shape(64, 48, 40, false, true, 1);
    let (c, t) = gemm_tflops(&ctx, s, None, 2, 1).unwrap();
    assert_eq!(c, ctx.gemm_fixed_config(&s));
    assert!(t > 0.0 && t.is_finite(), "{t}");
    let wide = GemmConfig::Wide { tile: 8 };
    let (c, t) = gemm_tflops(&ctx, s, Some(wide), 2, 1).unwrap();
    assert_eq!(c, wide);
    assert!(t > 0.0 && t.is_finite(), "{t}");
    let out = recurrent_cli(&["bench", "--device", "cpu", "--kernels"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--device gpu"));
}

//! Criterion benches of the kernels and layers, named `device/what/role/shape`:
//!
//! - `cpu/gemm/recurrent/mM_nN_kK`: a per-step-sized product `h·W_hhᵀ` (M = B, N = 4H, K = H);
//! - `cpu/gemm/weight_grad/mM_nN_kK`: `dW_hh = dGᵀ·H` over all steps (M = 4H, N = H, K = T·B);
//!   both through the packed GEMM crate (`cpu::gemm`), which the CPU path uses for
//!   products over all steps;
//! - `cpu/step/joint_product/mM_nN_kI+H`: the CPU path's own per-step product
//!   (`cpu::recur`), `[x_t | h_prev]·[W_ih | W_hh]ᵀ` for one thread's B/2 rows;
//! - `cpu/layer/lstm_fwd_bwd/iI_hH_bB_tT`: one LSTM layer forward, then backward from
//!   an all-ones output gradient (input and weight gradients), as `recurrent bench`;
//! - `gpu/gemm/{recurrent,weight_grad}/...`: the GPU path's GEMM kernel at the same
//!   shapes (the GPU's per-step product is fused into the step kernels, so the
//!   `recurrent` shape is the generic GEMM there, for comparison);
//! - `gpu/layer/lstm_train_step/...`: one training step of a one-layer LSTM
//!   (forward, mse loss on a one-unit head, backward, norm, Adam), waited for.
//!
//! Shapes: the MNIST layer (I28 H128 B32 T28) and DeepBench's I512 H512 B64 T25.
//! `cargo bench --bench kernels [-- FILTER]`; `-- --test` runs each once.
//! The GPU benches skip (with a message) when wgpu finds no adapter, unless
//! `RECURRENT_REQUIRE_GPU=1`; on a software adapter (lavapipe, llvmpipe), whose
//! timings mean nothing, only the small shape runs, to keep the code path checked.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use recurrent::cpu::dims::Dims;
use recurrent::cpu::gemm::gemm;
use recurrent::cpu::layer::{self, GradsOut, Weights};
use recurrent::cpu::recur::{product, Packed, Src};
use recurrent::gpu::internals::GemmBench;
use recurrent::gpu::{GpuContext, GpuModel};
use recurrent::rng::Rng;
use recurrent::{
    Cell, Dataset, Init, Inputs, Loss, Model, ModelConfig, Nonlinearity, Optimizer, StepOptions,
    Targets,
};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A one-layer LSTM size: input, hidden, batch, steps.
#[derive(Clone, Copy)]
struct Layer {
    i: usize,
    h: usize,
    b: usize,
    t: usize,
}

const MNIST: Layer = Layer {
    i: 28,
    h: 128,
    b: 32,
    t: 28,
};
const DEEPBENCH: Layer = Layer {
    i: 512,
    h: 512,
    b: 64,
    t: 25,
};

impl Layer {
    fn name(&self) -> String {
        format!("i{}_h{}_b{}_t{}", self.i, self.h, self.b, self.t)
    }
    /// The per-step product `h·W_hhᵀ` (overwrites its output).
    fn recurrent(&self) -> Gemm {
        Gemm {
            m: self.b,
            n: 4 * self.h,
            k: self.h,
            a_t: false,
            b_t: true,
            beta: 0.0,
        }
    }
    /// `dW_hh += dGᵀ·H_prev` over all steps (accumulates, as backward does).
    fn weight_grad(&self) -> Gemm {
        Gemm {
            m: 4 * self.h,
            n: self.h,
            k: self.t * self.b,
            a_t: true,
            b_t: false,
            beta: 1.0,
        }
    }
}

/// `C[m×n] = beta·C + op(A)·op(B)`, `op(A)` `[m, k]` (`A` stored `[k, m]` when
/// `a_t`), `op(B)` `[k, n]` (`B` stored `[n, k]` when `b_t`).
#[derive(Clone, Copy)]
struct Gemm {
    m: usize,
    n: usize,
    k: usize,
    a_t: bool,
    b_t: bool,
    beta: f32,
}

impl Gemm {
    fn name(&self) -> String {
        format!("m{}_n{}_k{}", self.m, self.n, self.k)
    }
    /// Floating-point operations of one product.
    fn flops(&self) -> u64 {
        (2 * self.m * self.n * self.k) as u64
    }
}

fn uniform(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.uniform(-scale, scale)).collect()
}

fn cpu_gemm(c: &mut Criterion) {
    for (role, shapes) in [
        ("recurrent", [MNIST.recurrent(), DEEPBENCH.recurrent()]),
        (
            "weight_grad",
            [MNIST.weight_grad(), DEEPBENCH.weight_grad()],
        ),
    ] {
        let mut g = c.benchmark_group(format!("cpu/gemm/{role}"));
        for s in shapes {
            let a = uniform(s.m * s.k, 1, 1.0);
            let b = uniform(s.k * s.n, 2, 1.0);
            let mut out = vec![0.0f32; s.m * s.n];
            // Elements = floating-point operations (2·M·N·K): elements/s is FLOP/s.
            g.throughput(Throughput::Elements(s.flops()));
            g.bench_function(BenchmarkId::from_parameter(s.name()), |bench| {
                bench.iter(|| {
                    gemm(s.m, s.n, s.k, &a, s.a_t, &b, s.b_t, &mut out, s.beta);
                    black_box(&out);
                })
            });
        }
        g.finish();
    }
}

/// The CPU path's own per-step product (`cpu::recur`): `[x_t | h_prev]` rows
/// times the packed `[W_ih | W_hh]ᵀ`, one thread's share of the batch (B/2 rows).
fn cpu_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu/step/joint_product");
    for l in [MNIST, DEEPBENCH] {
        let (m, n) = (l.b / 2, 4 * l.h);
        let (x, h) = (uniform(m * l.i, 1, 1.0), uniform(m * l.h, 2, 1.0));
        let packed = Packed::stacked_transposed(
            &uniform(n * l.i, 3, 0.1),
            l.i,
            &uniform(n * l.h, 4, 0.1),
            l.h,
            n,
        );
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * n * (l.i + l.h)) as u64));
        let name = format!("m{m}_n{n}_k{}+{}", l.i, l.h);
        g.bench_function(BenchmarkId::from_parameter(name), |bench| {
            bench.iter(|| {
                let xs = Src {
                    a: &x,
                    ld: l.i,
                    k: l.i,
                };
                let hs = Src {
                    a: &h,
                    ld: l.h,
                    k: l.h,
                };
                product(m, xs, hs, &packed, &mut out, n);
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn cpu_layer(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu/layer/lstm_fwd_bwd");
    g.sample_size(10);
    for l in [MNIST, DEEPBENCH] {
        let d = Dims {
            cell: Cell::Lstm,
            act: Nonlinearity::Tanh,
            t: l.t,
            b: l.b,
            i: l.i,
            h: l.h,
            reverse: false,
        };
        let gh = d.gh();
        let s = 1.0 / (l.h as f32).sqrt();
        let (w_ih, w_hh) = (uniform(gh * l.i, 1, s), uniform(gh * l.h, 2, s));
        let (b_ih, b_hh) = (uniform(gh, 3, s), uniform(gh, 4, s));
        let x = uniform(l.t * l.b * l.i, 5, 1.0);
        let dy = vec![1.0f32; l.t * l.b * l.h];
        let mut grads = [
            vec![0.0f32; gh * l.i],
            vec![0.0f32; gh * l.h],
            vec![0.0f32; gh],
            vec![0.0f32; gh],
        ];
        let mut dx = vec![0.0f32; x.len()];
        g.bench_function(BenchmarkId::from_parameter(l.name()), |bench| {
            bench.iter(|| {
                let w = Weights {
                    w_ih: &w_ih,
                    w_hh: &w_hh,
                    b_ih: &b_ih,
                    b_hh: &b_hh,
                    h_mask: None,
                };
                let saved = layer::forward(&d, w, &x, None, None, None);
                let [gw_ih, gw_hh, gb_ih, gb_hh] = &mut grads;
                let out = layer::backward(
                    &d,
                    w,
                    &x,
                    &saved,
                    None,
                    &dy,
                    None,
                    None,
                    GradsOut {
                        w_ih: gw_ih,
                        w_hh: gw_hh,
                        b_ih: gb_ih,
                        b_hh: gb_hh,
                    },
                    Some(&mut dx),
                );
                black_box((&out, &dx));
            })
        });
    }
    g.finish();
}

/// The GPU context, or `None` after saying why the GPU benches are skipped.
fn gpu() -> Option<Arc<GpuContext>> {
    match recurrent::gpu::try_context() {
        Ok(ctx) => {
            eprintln!("GPU benches on {}", ctx.describe());
            Some(ctx)
        }
        Err(e) if std::env::var("RECURRENT_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("RECURRENT_REQUIRE_GPU=1 but no GPU adapter: {e}")
        }
        Err(e) => {
            eprintln!("skipping the gpu/ benches: no GPU adapter ({e})");
            None
        }
    }
}

/// The layer sizes to run on `ctx`: on a software adapter only the small one.
fn gpu_layers(ctx: &GpuContext) -> Vec<Layer> {
    if ctx.info.device_type == wgpu::DeviceType::Cpu {
        eprintln!(
            "{} is a software adapter: skipping the {} shapes on it (its timings mean nothing)",
            ctx.describe(),
            DEEPBENCH.name()
        );
        vec![MNIST]
    } else {
        vec![MNIST, DEEPBENCH]
    }
}

fn gpu_benches(c: &mut Criterion) {
    let Some(ctx) = gpu() else { return };
    let layers = gpu_layers(&ctx);
    for (role, shape) in [
        ("recurrent", Layer::recurrent as fn(&Layer) -> Gemm),
        ("weight_grad", Layer::weight_grad),
    ] {
        let mut g = c.benchmark_group(format!("gpu/gemm/{role}"));
        for l in &layers {
            let s = shape(l);
            let gemm = GemmBench::new(&ctx, (s.m, s.n, s.k), s.a_t, s.b_t, s.beta)
                .expect("GEMM bench set-up");
            g.throughput(Throughput::Elements(s.flops()));
            g.bench_function(BenchmarkId::from_parameter(s.name()), |bench| {
                // Back-to-back runs in one pass, then one wait: the GEMM's cost
                // inside a step, not a submission's round trip.
                bench.iter_custom(|iters| {
                    let t0 = Instant::now();
                    gemm.run(iters).expect("GEMM bench run");
                    t0.elapsed()
                })
            });
        }
        g.finish();
    }
    let mut g = c.benchmark_group("gpu/layer/lstm_train_step");
    g.sample_size(10);
    for l in &layers {
        let model = Model::new(ModelConfig::new(Cell::Lstm, l.i, l.h, 1), &Init::seed(1))
            .expect("bench model");
        let mut gpu = GpuModel::new(ctx.clone(), &model).expect("GPU model");
        let x = Inputs::features(uniform(l.b * l.t * l.i, 5, 1.0), l.b, l.t, l.i)
            .expect("bench inputs");
        let y = Targets::Values {
            data: vec![0.5; l.b],
            shape: vec![l.b, 1],
        };
        let data = Dataset::new(x, Some(y), None);
        let opts = StepOptions {
            loss: Loss::Mse,
            clip: None,
        };
        let mut opt = Optimizer::adam(1e-3);
        // Compile the pipelines and build the workspace before timing.
        gpu.train_step_sync(&data, &opts, &mut opt)
            .expect("GPU training step");
        g.bench_function(BenchmarkId::from_parameter(l.name()), |bench| {
            bench.iter(|| {
                black_box(
                    gpu.train_step_sync(&data, &opts, &mut opt)
                        .expect("GPU training step"),
                )
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = cpu_gemm, cpu_step, cpu_layer, gpu_benches
}
criterion_main!(benches);

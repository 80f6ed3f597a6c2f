//! `recurrent bench`: time the recurrent stack alone (no head) forward, and
//! forward + backward from an all-ones output gradient (as `y.sum().backward()`
//! in PyTorch), producing the input gradient and every weight gradient.
//! `benches/pytorch_lstm.py` runs the same sizes in PyTorch with the same JSON.

use crate::cpu::{self, States};
use crate::data::Inputs;
use crate::error::{Error, Result};
use crate::model::config::{Cell, ModelConfig};
use crate::model::params::{Init, Layout};
use crate::rng::Rng;
use crate::timing::median;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One benchmark size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Size {
    pub cell: Cell,
    pub input: usize,
    pub hidden: usize,
    pub batch: usize,
    pub steps: usize,
    pub layers: usize,
    /// Recurrent dropout's probability in the timed training steps (masks
    /// on: `bench --recurrent-dropout`), 0 for none.
    #[serde(default)]
    pub recurrent_dropout: f32,
}

/// One measured row of the JSON report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub device: String,
    pub adapter: String,
    pub cell: String,
    pub input: usize,
    pub hidden: usize,
    pub batch: usize,
    pub steps: usize,
    pub layers: usize,
    /// Median milliseconds of the stack's forward.
    pub forward_ms: f64,
    /// Median milliseconds of forward + backward (input and weight gradients).
    pub train_ms: f64,
    /// Recurrent-GEMM GFLOP/s of the training step (see [`recurrent_flops`]).
    pub gflops: f64,
    /// GPU time per kernel of one training step (`bench --profile`), most
    /// expensive first; absent unless asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Vec<KernelTime>>,
    /// The configuration of every GEMM of the GPU training step (`bench
    /// --show-tuning`), in program order; absent unless asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<Vec<GemmTuning>>,
    /// The step kernels' tile of the GPU plan and how it was chosen (`bench
    /// --show-tuning`); absent unless asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_tile: Option<StepTuning>,
    /// The timed training steps ran with recurrent dropout of this
    /// probability (`bench --recurrent-dropout`); absent (0) otherwise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recurrent_dropout: f32,
    /// GPU: the step kernels read W_hh from an f16 copy (`bench --f16`,
    /// `RECURRENT_GPU_F16=1`); absent (false) otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub f16_weights: bool,
    /// GPU: the shaders ran without wgpu's runtime checks
    /// (`RECURRENT_SHADER_CHECKS=unchecked`); absent (false) otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchecked_shaders: bool,
}

/// One GEMM of a GPU training step and the tile configuration it runs with
/// (chosen per shape at first use: `crate::gpu::autotune`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GemmTuning {
    /// Its role in the step (e.g. `lstm.l0.input_projection`).
    pub label: String,
    /// `C[m×n] (+)= op(A)·op(B)`, `op(A)` `[m×k]`, over `batch` entries
    /// (in the JSON as the fields `m`, `n`, `k`, `a_t`, `b_t`, `batch`).
    #[serde(flatten)]
    pub shape: crate::gpu::GemmShape,
    /// The configuration, e.g. `gemm 16x16 rm4` or `gemm_small 16x16 split-k 4`.
    pub config: String,
    /// How it was chosen: `measured`, `single` (one valid candidate),
    /// `too-large` (not measured) or `fixed` (tuning off).
    pub decision: String,
    /// Its measured time per run in microseconds (median), when measured.
    pub us: Option<f64>,
    /// Candidates measured for the shape.
    pub candidates: usize,
}

/// The step kernels' tile of a GPU plan (`crate::gpu::step_tune`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepTuning {
    /// `units,rows,chunk,rb` (as `RECURRENT_STEP_TILE` takes it).
    pub tile: String,
    /// `measured`, `single` (one candidate fits), `pinned`
    /// (`RECURRENT_STEP_TILE`) or `fixed` (tuning off).
    pub decision: String,
    /// Median ms of one forward+backward with it, when measured.
    pub ms: Option<f64>,
    /// Every candidate measured, with its median ms (the default first).
    pub candidates: Vec<StepCandidate>,
}

/// One measured step tile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepCandidate {
    pub tile: String,
    /// Median ms of one forward+backward; `None` where it failed to build or run.
    pub ms: Option<f64>,
}

/// One row of a GPU profile: one kernel (entry point) in one role of the
/// training step, e.g. `lstm_step_forward` as `lstm.l0.step_forward`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelTime {
    /// The kernel's entry point in `shaders/*.wgsl` (e.g. `gemm_small`).
    pub kernel: String,
    /// Its role in the step (e.g. `lstm.l0.weight_hh_grad`).
    pub label: String,
    /// Dispatches of this kernel in this role per step.
    pub dispatches: usize,
    /// Their GPU time in microseconds (median over the profiled steps).
    pub total_us: f64,
}

impl Row {
    /// A row for size `s` with its timings; GFLOP/s from [`recurrent_flops`].
    fn measured(s: &Size, device: &str, adapter: String, forward_ms: f64, train_ms: f64) -> Row {
        Row {
            device: device.into(),
            adapter,
            cell: s.cell.name().into(),
            input: s.input,
            hidden: s.hidden,
            batch: s.batch,
            steps: s.steps,
            layers: s.layers,
            forward_ms,
            train_ms,
            gflops: recurrent_flops(s) / (train_ms * 1e-3) / 1e9,
            profile: None,
            tuning: None,
            step_tile: None,
            recurrent_dropout: s.recurrent_dropout,
            f16_weights: false,
            unchecked_shaders: false,
        }
    }
}

fn is_zero(v: &f32) -> bool {
    *v == 0.0
}

/// The model configuration a size times: one output, its layers, and its
/// recurrent dropout.
fn size_config(s: &Size) -> ModelConfig {
    ModelConfig::new(s.cell, s.input, s.hidden, 1)
        .layers(s.layers)
        .dropout(crate::dropout::Dropout {
            recurrent: s.recurrent_dropout,
            ..Default::default()
        })
}

/// The JSON file: `{"results": [...]}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub results: Vec<Row>,
}

/// FLOPs of the recurrent GEMMs of one training step, counted as DeepBench
/// counts them: `2·G·H·H·B·T` per layer-direction for the forward product
/// `h·W_hhᵀ`, and three such products for a training step (forward, `dh`, `dW_hh`).
pub fn recurrent_flops(s: &Size) -> f64 {
    // In f64: the product of the sizes may not fit a usize.
    3.0 * 2.0
        * s.cell.gates() as f64
        * s.hidden as f64
        * s.hidden as f64
        * s.batch as f64
        * s.steps as f64
        * s.layers as f64
}

/// The prepared tables.
pub fn suite(name: &str) -> Result<Vec<Size>> {
    let lstm = |input, hidden, batch, steps| Size {
        cell: Cell::Lstm,
        input,
        hidden,
        batch,
        steps,
        layers: 1,
        recurrent_dropout: 0.0,
    };
    match name {
        // DeepBench's LSTM training sizes (input = hidden).
        "deepbench" => {
            let mut v = Vec::new();
            for h in [512, 1024, 2048, 4096] {
                for b in [16, 32, 64, 128] {
                    v.push(lstm(h, h, b, 25));
                }
            }
            for b in [8, 16, 32] {
                v.push(lstm(1536, 1536, b, 50));
            }
            for b in [16, 32, 64] {
                v.push(lstm(256, 256, b, 150));
            }
            Ok(v)
        }
        // The main job's layer, and the second CPU size.
        "mnist" => Ok(vec![lstm(28, 128, 32, 28), lstm(512, 512, 64, 25)]),
        // Time against hidden size, for the plot in BENCHMARKS.md.
        "hidden" => Ok([64, 128, 256, 512, 1024]
            .iter()
            .map(|&h| lstm(h, h, 32, 25))
            .collect()),
        other => Err(Error::Argument(format!(
            "unknown suite '{other}': use deepbench, mnist or hidden"
        ))),
    }
}

/// Most f32 values one buffer of a bench may hold (inputs, gate activations of
/// all steps): 2^31, 8 GiB. Larger sizes are refused up front instead of
/// failing an allocation (which aborts the process).
pub const MAX_VALUES: usize = 1 << 31;

/// Checks that a size is runnable: batch and steps at least 1, and the
/// largest buffer (`B * T * max(I, G * H)` per layer) within [`MAX_VALUES`].
pub fn check_size(s: &Size) -> Result<()> {
    if s.batch == 0 || s.steps == 0 {
        return Err(Error::Argument(format!(
            "--batch ({}) and --steps ({}) must be at least 1",
            s.batch, s.steps
        )));
    }
    let widest = s.input.max(s.cell.gates().saturating_mul(s.hidden));
    let values = s
        .batch
        .checked_mul(s.steps)
        .and_then(|v| v.checked_mul(widest))
        .and_then(|v| v.checked_mul(s.layers.max(1)));
    if values.is_none_or(|v| v > MAX_VALUES) {
        return Err(Error::Argument(format!(
            "batch {} x steps {} x width {widest} x {} layer(s) is more than {MAX_VALUES} values per buffer; use a smaller size",
            s.batch, s.steps, s.layers
        )));
    }
    Ok(())
}

/// Times a size on the CPU path: `reps` timed runs after one warm-up.
pub fn run_cpu(s: &Size, reps: usize) -> Result<Row> {
    if reps == 0 {
        return Err(Error::Argument("--reps must be at least 1".into()));
    }
    check_size(s)?;
    let cfg = size_config(s);
    cfg.validate()?;
    let layout = Layout::new(&cfg);
    let p = crate::model::params::initialise(&cfg, &layout, &Init::seed(1));
    let mut rng = Rng::new(2);
    let x = Inputs::features(
        (0..s.batch * s.steps * s.input)
            .map(|_| rng.uniform(-1.0, 1.0))
            .collect(),
        s.batch,
        s.steps,
        s.input,
    )?;
    let mut grads = vec![0.0f32; layout.total];
    let dhn = vec![0.0f32; s.layers * s.batch * s.hidden];
    let ones_len = s.steps * s.batch * s.hidden;
    // Recurrent dropout's masks on, as in a training step.
    let dropout = (s.recurrent_dropout > 0.0).then(|| crate::dropout::StepDropout {
        rates: cfg.dropout,
        key: crate::dropout::StepKey::new(0, 1),
    });
    let (mut fwd, mut train) = (Vec::new(), Vec::new());
    for rep in 0..=reps {
        let t0 = Instant::now();
        let cache = cpu::forward_stack(&cfg, &layout, &p, &x, None, &States::default(), dropout);
        let t1 = Instant::now();
        let (_, dx) = cpu::backward_stack(
            &cfg,
            &layout,
            &p,
            &cache,
            {
                // An all-ones output gradient, in a pooled buffer (no fresh pages a rep).
                let mut dy = cpu::scratch::for_overwrite(ones_len);
                dy.fill(1.0);
                dy
            },
            &dhn,
            None,
            &mut grads,
            true,
        );
        let t2 = Instant::now();
        std::hint::black_box(&dx);
        cpu::scratch::recycle(dx);
        if rep > 0 {
            fwd.push((t1 - t0).as_secs_f64() * 1e3);
            train.push((t2 - t0).as_secs_f64() * 1e3);
        }
    }
    let train_ms = median(&train).unwrap_or(f64::NAN);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Row::measured(
        s,
        "cpu",
        format!("{threads} threads"),
        median(&fwd).unwrap_or(f64::NAN),
        train_ms,
    ))
}

/// Times a size on the GPU path. The GPU program always carries the model's
/// head (here one output) and loss (mse) — a few microseconds beside the stack.
/// Like the CPU and PyTorch figures, its backward computes the gradient of
/// layer 0's input ([`GpuModel::set_input_gradient`](crate::gpu::GpuModel::set_input_gradient)),
/// which training itself skips.
pub fn run_gpu(s: &Size, reps: usize, ctx: &std::sync::Arc<crate::gpu::GpuContext>) -> Result<Row> {
    run_gpu_with(s, reps, ctx, false, false)
}

/// [`run_gpu`], then `reps` training steps (forward, loss, backward, gradient
/// norm, optimizer) profiled with GPU timestamps around every dispatch: the
/// row's `profile` holds, per kernel and role, the dispatches and the median
/// of their total GPU time. Fails with [`Error::MissingFeature`], before
/// timing anything, on an adapter without timestamp queries.
pub fn run_gpu_profiled(
    s: &Size,
    reps: usize,
    ctx: &std::sync::Arc<crate::gpu::GpuContext>,
) -> Result<Row> {
    run_gpu_with(s, reps, ctx, true, false)
}

/// Groups a profiled step's dispatches by (kernel, label), in program order.
fn group(step: Vec<crate::gpu::DispatchTime>) -> Vec<KernelTime> {
    let mut out: Vec<KernelTime> = Vec::new();
    for d in step {
        let kernel = d.kernel.entry();
        match out
            .iter_mut()
            .find(|k| k.kernel == kernel && k.label == d.label)
        {
            Some(k) => {
                k.dispatches += 1;
                k.total_us += d.us;
            }
            None => out.push(KernelTime {
                kernel: kernel.into(),
                label: d.label,
                dispatches: 1,
                total_us: d.us,
            }),
        }
    }
    out
}

/// [`run_gpu`] (with `profile`: [`run_gpu_profiled`]); with `tuning` the row's
/// `tuning` lists every GEMM of the training step with its configuration,
/// and its `step_tile` the step kernels' tile.
pub fn run_gpu_with(
    s: &Size,
    reps: usize,
    ctx: &std::sync::Arc<crate::gpu::GpuContext>,
    profile: bool,
    tuning: bool,
) -> Result<Row> {
    if profile {
        ctx.require_timestamps("bench --profile")?;
    }
    if reps == 0 {
        return Err(Error::Argument("--reps must be at least 1".into()));
    }
    check_size(s)?;
    let cfg = size_config(s);
    let model = crate::model::Model::new(cfg, &Init::seed(1))?;
    let mut rng = Rng::new(2);
    let x = Inputs::features(
        (0..s.batch * s.steps * s.input)
            .map(|_| rng.uniform(-1.0, 1.0))
            .collect(),
        s.batch,
        s.steps,
        s.input,
    )?;
    let y = crate::data::Targets::Values {
        data: vec![0.5; s.batch],
        shape: vec![s.batch, 1],
    };
    let data = crate::data::Dataset::new(x, Some(y), None);
    let mut gpu = crate::gpu::GpuModel::new(ctx.clone(), &model)?;
    // dX as well, as `y.sum().backward()` on an input with requires_grad.
    gpu.set_input_gradient(true);
    let (forward_ms, train_ms) = gpu.time_forward_backward(&data, crate::Loss::Mse, reps)?;
    let mut row = Row::measured(s, "gpu", ctx.describe(), forward_ms, train_ms);
    row.f16_weights = gpu.f16_weights();
    row.unchecked_shaders = ctx.shader_checks() == crate::gpu::ShaderChecks::Unchecked;
    if tuning {
        let choices = gpu.gemm_choices(s.batch, s.steps)?;
        row.tuning = Some(
            choices
                .into_iter()
                .map(|g| GemmTuning {
                    label: g.label,
                    shape: g.shape,
                    config: g.config.to_string(),
                    decision: g.decision.name().into(),
                    us: g.us,
                    candidates: ctx.tuned_gemm(&g.shape).map_or(0, |t| t.candidates.len()),
                })
                .collect(),
        );
        row.step_tile = gpu.step_tile_for(s.batch).map(|t| StepTuning {
            tile: t.choice.to_string(),
            decision: t.decision.name().into(),
            ms: t.us.map(|us| us / 1e3),
            candidates: t
                .candidates
                .iter()
                .map(|(tile, us)| StepCandidate {
                    tile: tile.to_string(),
                    ms: us.map(|us| us / 1e3),
                })
                .collect(),
        });
    }
    if profile {
        let opts = crate::StepOptions {
            loss: crate::Loss::Mse,
            clip: None,
        };
        let mut opt = crate::Optimizer::adam(1e-3);
        // The same program every step: the groups line up across steps.
        let mut steps = Vec::with_capacity(reps);
        for _ in 0..reps {
            steps.push(group(gpu.profile_dispatches(&data, &opts, &mut opt)?));
        }
        let mut rows = steps[0].clone();
        for (i, r) in rows.iter_mut().enumerate() {
            r.total_us = median(&steps.iter().map(|st| st[i].total_us).collect::<Vec<_>>())
                .unwrap_or(f64::NAN);
        }
        rows.sort_by(|a, b| b.total_us.total_cmp(&a.total_us));
        row.profile = Some(rows);
    }
    Ok(row)
}

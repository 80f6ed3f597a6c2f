//! Streaming speed: steps per second through [`recurrent::Stream`] (CPU) and
//! [`recurrent::gpu::GpuStream`] (GPU) with one step a call — a keyword
//! spotter or sensor model fed sample by sample — for one stream and for 64
//! at once, side by side in one run. The figures go into BENCHMARKS.md.
//!
//! ```text
//! cargo run --release --example stream_speed -- --hidden 128 --input 28 --calls 2000
//! ```
//!
//! Each measurement: 50 warm-up calls, then `--calls` timed calls, three
//! times; the median of the three is printed (calls per second; stream-steps
//! per second = calls x streams).

use clap::Parser;
use recurrent::gpu::{GpuModel, GpuStream};
use recurrent::{Cell, Error, Init, Inputs, Model, ModelConfig, OutputMode, Stream, Tensor};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Steps per second of streaming, one step a call, CPU and GPU")]
struct Args {
    #[arg(long, default_value = "lstm")]
    cell: String,
    #[arg(long, default_value_t = 28)]
    input: usize,
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    #[arg(long, default_value_t = 1)]
    layers: usize,
    /// Stream counts to measure, comma-separated.
    #[arg(long, default_value = "1,64", value_delimiter = ',')]
    streams: Vec<usize>,
    /// Timed calls per measurement.
    #[arg(long, default_value_t = 2000)]
    calls: usize,
    /// Skip the GPU (or the CPU) path.
    #[arg(long)]
    no_gpu: bool,
    #[arg(long)]
    no_cpu: bool,
}

/// Median seconds of `calls` calls of `step` (after 50 warm-up calls), over three runs.
fn time(calls: usize, mut step: impl FnMut() -> Result<Tensor, Error>) -> Result<f64, Error> {
    for _ in 0..50 {
        step()?;
    }
    let mut runs = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        for _ in 0..calls {
            std::hint::black_box(step()?);
        }
        runs.push(start.elapsed().as_secs_f64());
    }
    runs.sort_by(f64::total_cmp);
    Ok(runs[1])
}

fn main() -> Result<(), Error> {
    let a = Args::parse();
    let cell = Cell::parse(&a.cell)?;
    let cfg = ModelConfig::new(cell, a.input, a.hidden, 10)
        .layers(a.layers)
        .output(OutputMode::Sequence);
    let model = Model::new(cfg, &Init::seed(7))?;
    let chunk = |b: usize| {
        Inputs::features(
            (0..b * a.input)
                .map(|i| ((i % 17) as f32 - 8.0) / 8.0)
                .collect(),
            b,
            1,
            a.input,
        )
    };
    println!("| path | adapter | cell | I | H | layers | streams | calls/s | stream-steps/s |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let row = |path: &str, adapter: &str, b: usize, secs: f64| {
        let per = a.calls as f64 / secs;
        println!(
            "| {path} | {adapter} | {} | {} | {} | {} | {b} | {per:.0} | {:.0} |",
            cell.name(),
            a.input,
            a.hidden,
            a.layers,
            per * b as f64
        );
    };
    if !a.no_cpu {
        for &b in &a.streams {
            let x = chunk(b)?;
            let mut s = Stream::new(&model)?;
            let secs = time(a.calls, || s.step(x.clone()))?;
            row("cpu", "-", b, secs);
        }
    }
    if !a.no_gpu {
        let ctx = recurrent::gpu::try_context()?;
        let adapter = ctx.describe();
        let mut g = GpuModel::new(ctx, &model)?;
        for &b in &a.streams {
            let x = chunk(b)?;
            let mut s = GpuStream::new(&mut g)?;
            let secs = time(a.calls, || s.step(x.clone()))?;
            row("gpu", &adapter, b, secs);
        }
    }
    Ok(())
}

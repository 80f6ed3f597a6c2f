//! MNIST with an LSTM reading each image row by row: 28 steps of 28 pixels,
//! LSTM(128), a linear head to 10 classes, Adam 1e-3, batch 32, cross-entropy.
//!
//! ```text
//! cargo run --release --example mnist -- --epochs 10 --seed 7
//! cargo run --release --example mnist -- --data /path/to/full-mnist   # the 60k/10k files
//! ```
//!
//! The model is PyTorch's `nn.LSTM(28, 128)` + `nn.Linear(128, 10)`. Two
//! choices differ from the plain PyTorch reference (which reaches 94–95% in
//! 10 epochs), and take the bundled 2,004 test images to 95% and more:
//! - `--init keras` (default): orthogonal recurrent weights and a forget-gate
//!   bias of 1 (Keras' defaults); `--init pytorch` draws everything from
//!   U(±1/√H) as `nn.LSTM` does.
//! - `--schedule cosine` (default): the learning rate follows a cosine from
//!   1e-3 down towards 0 over the epochs, instead of staying at 1e-3.
//!
//! With `--init pytorch --schedule constant` this is the PyTorch reference
//! exactly (measured here: 94.21% after 10 epochs, seed 7). With the defaults,
//! release build, 10 epochs: 95.71% (seed 7), 95.21% (seed 1), 95.31% (seed 2). The test set is evaluated after every epoch for display only:
//! nothing is selected on it, the reported accuracy is the last epoch's.

#[path = "common/mod.rs"]
mod common;

use clap::Parser;
use recurrent::io::idx::{load_mnist_dir, Split};
use recurrent::train::{self, CheckpointConfig, FitConfig, LrSchedule, Trainer};
use recurrent::{Cell, Init, Loss, Model, ModelConfig, Optimizer};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Train an LSTM on MNIST rows and report the test accuracy")]
struct Args {
    /// Folder with train-/t10k- images and labels (IDX, gzipped or not).
    #[arg(long, default_value = "data/mnist-10k")]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    device: common::Device,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Learning-rate schedule: constant, step:EVERY:GAMMA, cosine[:ETA_MIN].
    #[arg(long, default_value = "cosine")]
    schedule: String,
    /// Weight initialisation: pytorch (U(±1/√H)) or keras (orthogonal recurrent weights, forget bias 1).
    #[arg(long, default_value = "keras")]
    init: String,
    /// Train on the first N training images only.
    #[arg(long)]
    limit: Option<usize>,
    /// Write a checkpoint here after every epoch (atomically; resume or inspect it while training runs).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Save the trained model here (safetensors, PyTorch names).
    #[arg(long)]
    save: Option<PathBuf>,
    /// Gather and upload every batch from the host, instead of keeping the
    /// training set on the GPU (to compare the two).
    #[arg(long)]
    upload_batches: bool,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = common::resolve(args.device)?;
    let mut train = load_mnist_dir(&args.data, Split::Train)?;
    let test = load_mnist_dir(&args.data, Split::Test)?;
    if let Some(n) = args.limit {
        train = train.slice(0, n.min(train.len()));
    }
    let shape = train.x.shape();
    println!("device: {}", device.describe());
    println!(
        "data: {} training and {} test images of {}x{} from {}",
        train.len(),
        test.len(),
        shape[1],
        shape[2],
        args.data.display()
    );

    let init = match args.init.as_str() {
        "pytorch" => Init::seed(args.seed),
        "keras" => Init {
            seed: args.seed,
            orthogonal: true,
            forget_bias_one: true,
        },
        other => return Err(format!("unknown --init '{other}': use pytorch or keras").into()),
    };
    let mut model = Model::new(
        ModelConfig::new(Cell::Lstm, shape[2], args.hidden, 10),
        &init,
    )?;
    println!(
        "model: LSTM({}) over {} rows + linear head to 10 classes, {} parameters, init {}",
        args.hidden,
        shape[1],
        model.num_params(),
        args.init
    );
    let mut opt = Optimizer::adam(args.lr);
    let cfg = FitConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        seed: args.seed,
        loss: Loss::Ce,
        schedule: LrSchedule::parse(&args.schedule)?,
        verbose: true,
        checkpoint: args.checkpoint.clone().map(|path| CheckpointConfig {
            path,
            every: 1,
            best_only: false,
        }),
        keep_on_device: !args.upload_batches,
        ..FitConfig::default()
    };
    let start = Instant::now();
    let mut backend = device.backend(&model)?;
    let history = Trainer::new(cfg).fit_on(&mut *backend, &mut opt, &train, Some(&test))?;
    backend.sync_to(&mut model)?;
    let total = start.elapsed().as_secs_f64();

    let epoch_times: Vec<f64> = history.epochs.iter().map(|e| e.train_seconds).collect();
    let mean = epoch_times.iter().sum::<f64>() / epoch_times.len() as f64;
    let eval = train::evaluate(&mut *backend, &test, Loss::Ce, 256)?;
    let acc = eval.accuracy.unwrap_or(0.0);
    println!(
        "time per epoch: {mean:.2} s mean (training steps; {:.1} s in all with evaluation)",
        total
    );
    println!(
        "test accuracy: {:.2}% ({} of {} images), test loss {:.4}",
        acc * 100.0,
        (acc * test.len() as f32).round(),
        test.len(),
        eval.loss
    );
    if let Some(path) = &args.save {
        recurrent::io::checkpoint::save(&model, path)?;
        println!("saved {}", path.display());
    }
    Ok(())
}

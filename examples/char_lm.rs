//! A character-level LSTM language model on `data/fortunes.txt`: token
//! embedding, LSTM, a head over the vocabulary at every step (output
//! `sequence`, loss `ce`), validation perplexity per epoch, and text sampled
//! at a chosen temperature.
//!
//! ```text
//! cargo run --release --example char_lm -- --epochs 5 --temperature 0.8
//! ```
//!
//! The first 90% of the corpus trains, the last 10% validates, each as one
//! token stream trained statefully as PyTorch's `word_language_model` does
//! (`FitConfig::stateful`): cut into `--batch-size` parallel streams, batches
//! of `--seq-len` steps in order, each starting from the states the last one
//! left; each step's target is the next character. Text is then sampled on
//! the streaming API (`recurrent::generate`). The saved model keeps its
//! vocabulary in the checkpoint metadata under `recurrent.vocab`, so
//! `recurrent generate --model ... --prime ...` samples from it too.
//!
//! Measured (release, CPU path, 2 shared cores, defaults: LSTM(256), 5 epochs,
//! seed 7; 2026-12-02): validation perplexity 8.21, 6.65, 6.04, 5.73, 5.58
//! after each epoch (1.72 nats/char), 13-15 s of training an epoch, 74 s in
//! all. `benches/char_lm_pytorch.py`, the same model and loop in PyTorch 2.15
//! on the same cores: 5.82 after 5 epochs, 14 s an epoch (BENCHMARKS.md).
//! With `word_language_model`'s dropouts (`--input-dropout 0.2
//! --output-dropout 0.2`; `--layers` and `--dropout` for more layers): 5.91
//! against PyTorch's 6.09 with the same (2026-12-03).

#[path = "common/mod.rs"]
mod common;

use clap::Parser;
use recurrent::generate::{generate_text, Sampling};
use recurrent::io::text::{self, Vocab, VOCAB_KEY};
use recurrent::train::{Control, FitConfig, LrSchedule, Stateful, Trainer};
use recurrent::{
    Cell, Dataset, Dropout, Init, Inputs, Loss, Model, ModelConfig, Optimizer, OutputMode, Stream,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Train a character LSTM language model and sample text from it")]
struct Args {
    #[arg(long, default_value = "data/fortunes.txt")]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    device: common::Device,
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    /// Width of the character embedding.
    #[arg(long, default_value_t = 32)]
    embed: usize,
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    /// Use only the first N characters of the corpus.
    #[arg(long)]
    max_chars: Option<usize>,
    /// Sampling temperature: lower is more conservative, 1 samples the model's distribution.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Characters to sample after training.
    #[arg(long, default_value_t = 400)]
    sample_len: usize,
    /// Text the sample starts from.
    #[arg(long, default_value = "The ")]
    prime: String,
    /// Recurrent layers.
    #[arg(long, default_value_t = 1)]
    layers: usize,
    /// Dropout on the output of every LSTM layer but the last (`nn.LSTM`'s).
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Dropout on the embedding's output (`word_language_model`'s first `nn.Dropout`).
    #[arg(long, default_value_t = 0.0)]
    input_dropout: f32,
    /// Dropout on the top layer's output before the head (its second).
    #[arg(long, default_value_t = 0.0)]
    output_dropout: f32,
    #[arg(long)]
    save: Option<PathBuf>,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = common::resolve(args.device)?;
    if args.temperature.is_nan() || args.temperature <= 0.0 {
        return Err("--temperature must be > 0".into());
    }
    let mut corpus = text::read_text(&args.data)?;
    if let Some(n) = args.max_chars {
        corpus = corpus.chars().take(n).collect();
    }
    let vocab = Vocab::from_text(&corpus)?;
    let ids = vocab.encode(&corpus)?;
    let cut = ids.len() * 9 / 10;
    // Stateful training (as PyTorch's word_language_model): each part is one
    // token stream, cut into parallel streams; batches of --seq-len steps go
    // in order, each starting from the states the last one left.
    let stream = |part: &[i64]| -> recurrent::Result<Dataset> {
        Ok(Dataset::new(
            Inputs::tokens(part.to_vec(), 1, part.len())?,
            None,
            None,
        ))
    };
    let (train, val) = (stream(&ids[..cut])?, stream(&ids[cut..])?);
    println!("device: {}", device.describe());
    println!(
        "data: {} characters, vocabulary {}, {} training and {} validation characters, {} parallel streams, batches of {} steps",
        ids.len(),
        vocab.len(),
        cut,
        ids.len() - cut,
        args.batch_size,
        args.seq_len
    );

    let cfg = ModelConfig::new(Cell::Lstm, args.embed, args.hidden, vocab.len())
        .embedding(vocab.len())
        .layers(args.layers)
        .output(OutputMode::Sequence)
        .dropout(Dropout {
            dropout: args.dropout,
            input: args.input_dropout,
            output: args.output_dropout,
            seed: args.seed,
            ..Dropout::default()
        });
    let mut model = Model::new(cfg, &Init::seed(args.seed))?;
    println!(
        "model: embedding {} -> LSTM({}, {} layer(s)) -> head {} at every step, {} parameters; \
         dropout {} between layers, {} on the embedding, {} before the head",
        args.embed,
        args.hidden,
        args.layers,
        vocab.len(),
        model.num_params(),
        args.dropout,
        args.input_dropout,
        args.output_dropout
    );
    let mut opt = Optimizer::adam(args.lr);
    let fit = FitConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        seed: args.seed,
        loss: Loss::Ce,
        clip: Some(5.0),
        schedule: LrSchedule::Cosine {
            eta_min: args.lr / 10.0,
        },
        eval_batch_size: 10,
        shuffle: false,
        stateful: Some(Stateful {
            seq_len: args.seq_len,
        }),
        verbose: true,
        ..FitConfig::default()
    };
    let start = Instant::now();
    let mut backend = device.backend(&model)?;
    let history = Trainer::new(fit)
        .on_epoch(|m| {
            let ppl = m.val_loss.map(|l| l.exp()).unwrap_or(f32::NAN);
            println!(
                "epoch {}: validation perplexity {ppl:.2} ({:.1} s)",
                m.epoch,
                m.train_seconds + m.val_seconds
            );
            Control::Continue
        })
        .fit_on(&mut *backend, &mut opt, &train, Some(&val))?;
    backend.sync_to(&mut model)?;
    let last = history.last().expect("at least one epoch");
    println!(
        "final: validation loss {:.4} nats/char, perplexity {:.2}, {:.1} s in all",
        last.val_loss.unwrap_or(f32::NAN),
        last.val_loss.unwrap_or(f32::NAN).exp(),
        start.elapsed().as_secs_f64()
    );

    // Sampling on the streaming API: the prime once, then one character at a
    // time, the states kept between calls (here the CPU path's Stream; a
    // GpuStream keeps them on the device).
    let sampling = Sampling {
        temperature: args.temperature,
        seed: args.seed,
        ..Sampling::default()
    };
    let mut stream = Stream::new(&model)?;
    let sample = generate_text(
        &mut stream,
        model.config(),
        &vocab,
        &args.prime,
        args.sample_len,
        &sampling,
    )?;
    println!(
        "--- sample (temperature {}) ---\n{}{}\n---",
        args.temperature, args.prime, sample
    );
    if let Some(path) = &args.save {
        let meta = HashMap::from([(VOCAB_KEY.to_string(), vocab.to_json())]);
        recurrent::io::checkpoint::save_with(&model, path, &meta)?;
        println!("saved {}", path.display());
    }
    Ok(())
}

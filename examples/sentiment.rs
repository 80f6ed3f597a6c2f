//! Tweet sentiment (negative / neutral / positive) with a word-level LSTM:
//! Embedding(64) -> LSTM(128) -> linear head to 3 classes, on the 37,202
//! labelled tweets of `data/tweets-sentiment.csv`.
//!
//! ```text
//! cargo run --release --example sentiment -- --device cpu --epochs 4 --seed 7 --save sentiment.safetensors
//! recurrent predict --model sentiment.safetensors --text "I love my new self-driving car"
//! ```
//!
//! - Split: a seeded permutation of all rows (`--seed`), the first 20% test,
//!   the rest training. Nothing is selected on the test set: it is evaluated
//!   after every epoch for display only, the reported numbers are the last epoch's.
//! - Vocabulary (`recurrent::text`): built from the training texts only,
//!   lowercased, words and single punctuation marks (the documented split
//!   rule), tokens seen at least `--min-count` times, at most `--vocab-size`
//!   ids (`<pad>` = 0 and `<unk>` = 1 included). Each tweet is cut to
//!   `--max-len` tokens; a batch is padded to its own longest tweet and the
//!   LSTM reads each tweet up to its length (packed-sequence semantics).
//! - Training: Adam, gradient norm clipped to `--clip`, the learning rate
//!   following a cosine from `--lr` to `--lr / 10` over the epochs, batch 32,
//!   cross-entropy; PyTorch's default initialisation.
//! - `--save` writes the model with its vocabulary and class names in the
//!   checkpoint metadata, so `recurrent predict --text` reads raw text with it.
//!
//! Reported: test accuracy beside the majority-class baseline (the training
//! set's most frequent class, scored on the test set) and the confusion matrix.
//!
//! Choices (the defaults): vocabulary of at most 10,000 ids, words seen at
//! least twice (6.0% of test tokens are then `<unk>`); 48 tokens per tweet (the
//! longest has 73, 16 of the 37,202 are cut); Adam 2e-3 cosine down to 2e-4,
//! clipping at 1.0, batch 32, 4 epochs. They were set before the first full
//! run and not tuned on the test set (the only other run was a 1-epoch smoke
//! test: 70.46%).
//!
//! Measured with `cargo run --release --example sentiment -- --device cpu
//! --epochs 4 --seed 7 --save sentiment.safetensors` (CPU path, 2 cores shared
//! with other builds): 150 s wall time in all (30–35 s per epoch, 840–980
//! tweets/s; 115–127 s on a quieter machine).
//!
//! ```text
//! epoch 1/4  loss 0.7812  test_loss 0.7074  test_acc 70.52%
//! epoch 2/4  loss 0.6137  test_loss 0.6569  test_acc 73.28%
//! epoch 3/4  loss 0.5016  test_loss 0.6390  test_acc 73.13%
//! epoch 4/4  loss 0.4061  test_loss 0.6489  test_acc 74.35%
//! test accuracy 74.35% (5532/7440); majority class 'negative' scores 42.39%
//! confusion matrix (rows: true class, columns: predicted):
//!             negative   neutral  positive    recall
//!   negative      2552       450       152     80.9%
//!    neutral       551      2170       204     74.2%
//!   positive       224       327       810     59.5%
//! ```
//!
//! A run is deterministic for a given build (repeated runs print the same
//! numbers), but the CPU GEMM's kernels set the rounding: the same seed gave
//! 74.70% (epoch 1: 70.46%) before the `gemm` dependency was switched to its
//! `x86-v4` (AVX-512) kernels.
//!
//! The issue quotes about 74% for PyTorch with this architecture after 3–4
//! epochs (not rerun here). The test loss is lowest after epoch 3 (0.6390)
//! while accuracy still rises in epoch 4; training loss 0.41 against 0.65 on
//! the test set says the model is starting to overfit (more epochs not tried).
//! The majority baseline is 42.39% on this split (negative is 42.9% of all
//! tweets; the issue's 43.7% presumably comes from another split).
//! Positive, the smallest class (18% of the tweets), is the hardest.

#[path = "common/mod.rs"]
mod common;

use clap::Parser;
use recurrent::io::checkpoint;
use recurrent::io::csv::Table;
use recurrent::rng::Rng;
use recurrent::text::{self, Vocab, VocabOptions};
use recurrent::train::{Control, FitConfig, LrSchedule, Trainer};
use recurrent::{Cell, Init, Loss, Model, ModelConfig, Optimizer};
use std::path::PathBuf;
use std::time::Instant;

/// Batch size of the final prediction pass (bigger is faster; memory grows with it).
const PREDICT_BATCH: usize = 256;

#[derive(Parser)]
#[command(about = "Classify tweet sentiment with a word-level LSTM and report test accuracy")]
struct Args {
    /// CSV with columns sentiment, confidence, text.
    #[arg(long, default_value = "data/tweets-sentiment.csv")]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    device: common::Device,
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Seed of the split, the initialisation and the shuffling.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Width of the word embedding.
    #[arg(long, default_value_t = 64)]
    embed: usize,
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Vocabulary ids in all, <pad> and <unk> included (the embedding's rows).
    #[arg(long, default_value_t = 10_000)]
    vocab_size: usize,
    /// Leave out words seen fewer times than this in the training tweets.
    #[arg(long, default_value_t = 2)]
    min_count: usize,
    /// Tokens kept per tweet (the first ones).
    #[arg(long, default_value_t = 48)]
    max_len: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 2e-3)]
    lr: f32,
    /// Clip the global gradient norm to this value.
    #[arg(long, default_value_t = 1.0)]
    clip: f32,
    /// Fraction of the tweets held out for testing.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Save the trained model (with vocabulary and class names) here.
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
    let start = Instant::now();
    let device = common::resolve(args.device)?;
    if !(args.test_fraction > 0.0 && args.test_fraction < 1.0) {
        return Err("--test-fraction must be between 0 and 1".into());
    }
    let table = Table::read(&args.data)?;
    let texts = table.values("text")?;
    let (classes, labels) = text::label_ids(&table.values("sentiment")?);

    // Seeded split: a permutation of all rows, the first part tests.
    let mut order: Vec<usize> = (0..texts.len()).collect();
    Rng::new(args.seed).shuffle(&mut order);
    let n_test = (texts.len() as f64 * args.test_fraction).round() as usize;
    let (test_idx, train_idx) = order.split_at(n_test);
    let pick = |idx: &[usize]| -> (Vec<&str>, Vec<i64>) {
        (
            idx.iter().map(|&i| texts[i]).collect(),
            idx.iter().map(|&i| labels[i]).collect(),
        )
    };
    let (train_texts, train_y) = pick(train_idx);
    let (test_texts, test_y) = pick(test_idx);

    let opts = VocabOptions::words()
        .max_size(args.vocab_size)
        .min_count(args.min_count);
    let vocab = Vocab::build(&train_texts, &opts)?;
    let max_len = Some(args.max_len);
    let train = text::dataset(&vocab, &train_texts, Some(&train_y), max_len)?;
    let test = text::dataset(&vocab, &test_texts, Some(&test_y), max_len)?;
    let unk = vocab.unk().expect("built vocabularies have <unk>") as i64;
    let (tokens, unknown) = count_unknown(&test, unk);
    let longest = texts
        .iter()
        .map(|t| vocab.split(t).len())
        .max()
        .unwrap_or(0);
    let cut = texts
        .iter()
        .filter(|t| vocab.split(t).len() > args.max_len)
        .count();
    println!("device: {}", device.describe());
    println!(
        "data: {} tweets, classes {classes:?}; {} training, {} test; vocabulary {} ids; \
         test tokens unknown {:.1}%; longest tweet {longest} tokens, {cut} cut to {}",
        texts.len(),
        train.len(),
        test.len(),
        vocab.len(),
        100.0 * unknown as f64 / tokens.max(1) as f64,
        args.max_len
    );

    let cfg =
        ModelConfig::new(Cell::Lstm, args.embed, args.hidden, classes.len()).embedding(vocab.len());
    let mut model = Model::new(cfg, &Init::seed(args.seed))?;
    println!(
        "model: embedding {}x{} -> LSTM({}) -> head {}, {} parameters",
        vocab.len(),
        args.embed,
        args.hidden,
        classes.len(),
        model.num_params()
    );
    let mut opt = Optimizer::adam(args.lr);
    let fit = FitConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        seed: args.seed,
        loss: Loss::Ce,
        clip: Some(args.clip),
        schedule: LrSchedule::Cosine {
            eta_min: args.lr / 10.0,
        },
        eval_batch_size: 256,
        ..FitConfig::default()
    };
    let mut backend = device.backend(&model)?;
    let epochs = args.epochs;
    Trainer::new(fit)
        .on_epoch(|m| {
            println!("{}", m.summary(epochs).replace("val_", "test_"));
            Control::Continue
        })
        .fit_on(&mut *backend, &mut opt, &train, Some(&test))?;
    backend.sync_to(&mut model)?;

    // Test accuracy, majority baseline, confusion matrix.
    let (preds, _) = text::classify(&mut *backend, &vocab, &test_texts, max_len, PREDICT_BATCH)?;
    let k = classes.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (p, &y) in preds.iter().zip(&test_y) {
        confusion[y as usize][p.class] += 1;
    }
    let right: usize = (0..k).map(|c| confusion[c][c]).sum();
    let mut train_counts = vec![0usize; k];
    for &y in &train_y {
        train_counts[y as usize] += 1;
    }
    let majority = (0..k).max_by_key(|&c| train_counts[c]).unwrap_or(0);
    let baseline = test_y.iter().filter(|&&y| y as usize == majority).count();
    println!(
        "test accuracy {:.2}% ({right}/{}); majority class '{}' scores {:.2}%",
        100.0 * right as f64 / test.len() as f64,
        test.len(),
        classes[majority],
        100.0 * baseline as f64 / test.len() as f64
    );
    println!("confusion matrix (rows: true class, columns: predicted):");
    print!("{:>10}", "");
    for c in &classes {
        print!("{c:>10}");
    }
    println!("{:>10}", "recall");
    for (i, row) in confusion.iter().enumerate() {
        print!("{:>10}", classes[i]);
        for v in row {
            print!("{v:>10}");
        }
        let total: usize = row.iter().sum();
        println!("{:>9.1}%", 100.0 * row[i] as f64 / total.max(1) as f64);
    }
    if let Some(path) = &args.save {
        checkpoint::save_with(&model, path, &text::metadata(&vocab, Some(&classes)))?;
        println!("saved {} (with vocabulary and class names)", path.display());
    }
    println!("wall time {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Tokens (up to each length) and how many of them are `<unk>`.
fn count_unknown(data: &recurrent::Dataset, unk: i64) -> (usize, usize) {
    let recurrent::Inputs::Tokens { ids, t, .. } = &data.x else {
        return (0, 0);
    };
    let lengths = data.lengths.as_deref().unwrap_or(&[]);
    let (mut tokens, mut unknown) = (0, 0);
    for (row, &len) in ids.chunks_exact(*t).zip(lengths) {
        tokens += len;
        unknown += row[..len].iter().filter(|&&id| id == unk).count();
    }
    (tokens, unknown)
}

//! The `recurrent` command line: train, predict, evaluate, bench, generate, export, info.

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use recurrent::io::{checkpoint, dataset};
use recurrent::text;
use recurrent::train::{
    CheckpointConfig, Control, EarlyStopping, FitConfig, LrSchedule, Stateful, Trainer,
};
use recurrent::{
    Cell, Dataset, Device, DeviceChoice, Error, Init, Inputs, Loss, Model, ModelConfig,
    Nonlinearity, Optimizer, OptimizerKind, OutputMode, Result,
};
use std::path::PathBuf;

mod seq2seq;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "recurrent",
    version,
    about = "Train and run LSTM, GRU and RNN models (PyTorch-compatible safetensors)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a model on a data file and save it.
    Train(TrainArgs),
    /// Write the raw model output (logits for ce) for every sequence of a data file,
    /// or classify raw text (--text, --text-file) with a model saved with its vocabulary.
    Predict(PredictArgs),
    /// Mean loss (and accuracy for ce) of a model on a data file.
    Evaluate(EvaluateArgs),
    /// Time the recurrent stack forward and forward+backward (see BENCHMARKS.md).
    Bench(BenchArgs),
    /// Sample text from a language model saved with its vocabulary (an embedding and a
    /// head over the same tokens), one token at a time on the streaming API.
    Generate(GenerateArgs),
    /// Write a model as ONNX, for ONNX Runtime, tract, OpenVINO (see README, "Deploying with ONNX").
    Export(ExportArgs),
    /// The GPU adapters wgpu finds, their backends and limits, and what `auto` picks.
    Info,
}

#[derive(Args)]
struct GenerateArgs {
    #[arg(long)]
    model: PathBuf,
    /// Language models: the text generation starts from (every token must be in the
    /// model's vocabulary).
    #[arg(long)]
    prime: Option<String>,
    /// Language models: tokens to generate after the prime.
    #[arg(long)]
    length: Option<usize>,
    /// seq2seq: decode the sources of this data file (src, optional src_lengths) into
    /// --output (tensor `generated` i64 [N, max-len], 0 after each row's eos).
    #[arg(long)]
    data: Option<PathBuf>,
    /// seq2seq: translate this text (repeat for several); the model must have been saved
    /// with its source and target vocabularies. Prints one line each.
    #[arg(long)]
    text: Vec<String>,
    /// seq2seq: tokens to decode at most per row.
    #[arg(long)]
    max_len: Option<usize>,
    /// seq2seq: beam search with this many hypotheses per row (default: greedy).
    #[arg(long)]
    beam: Option<usize>,
    /// seq2seq with --beam: rank finished hypotheses by log-probability per token.
    #[arg(long)]
    length_norm: bool,
    /// seq2seq with --data: where to write the tokens.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Logits are divided by it before the softmax (lower is more conservative).
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Draw from the K most likely tokens only (1 = greedy).
    #[arg(long)]
    top_k: Option<usize>,
    /// Draw from the most likely tokens whose probabilities sum to P, in (0, 1].
    #[arg(long)]
    top_p: Option<f32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
}

#[derive(Args)]
struct ExportArgs {
    #[arg(long)]
    model: PathBuf,
    /// The .onnx file to write (atomically; its folder must exist).
    #[arg(long)]
    output: PathBuf,
    /// A `lengths` i64 [N] input (PyTorch packed semantics, as `lengths` in a data file).
    #[arg(long)]
    with_lengths: bool,
    /// `h0` (and `c0`) f32 [L*D, N, H] inputs and `h_n` (and `c_n`) outputs.
    #[arg(long)]
    with_states: bool,
    /// ONNX opset (13 to 21).
    #[arg(long, default_value_t = recurrent::onnx::DEFAULT_OPSET)]
    opset: i64,
    /// How the recurrent layers are written: `operators` (ONNX's LSTM/GRU/RNN, what
    /// PyTorch writes; ONNX Runtime, OpenVINO) or `scan` (Scan loops over the cell;
    /// also for tract, which lacks sequence_lens and ReLU RNNs in its operators).
    #[arg(long, default_value = "operators")]
    recurrence: String,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    #[arg(long, value_enum, default_value = "lstm")]
    cell: CellArg,
    #[arg(long, default_value_t = 28)]
    input: usize,
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 28)]
    steps: usize,
    #[arg(long, default_value_t = 1)]
    layers: usize,
    /// Timed repetitions (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Prepared tables instead of one size: deepbench, mnist, hidden (comma-separated).
    #[arg(long)]
    suite: Option<String>,
    /// Write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// GPU only: after each size, profile training steps with GPU timestamps and
    /// print the time per kernel (also in the JSON as `profile`). Needs an
    /// adapter with timestamp queries (`recurrent info`).
    #[arg(long)]
    profile: bool,
    /// GPU only: after each size, list every GEMM of the training step with the
    /// tile configuration it runs (chosen per shape at first use, measured and
    /// cached when RECURRENT_AUTOTUNE=1, else the fixed choice), and the step
    /// kernels' tile (likewise). Also in the JSON as `tuning` and `step_tile`.
    #[arg(long)]
    show_tuning: bool,
    /// GPU only: the per-step kernels read the recurrent weights W_hh from a
    /// half-precision copy (f32 accumulation; as RECURRENT_GPU_F16=1). Run the
    /// same sizes with and without it to compare. Rows say `gpu+f16`.
    #[arg(long)]
    f16: bool,
    /// Time training steps with recurrent dropout of this probability, masks on
    /// (the GPU fuses them into the step kernels); rows say `+rdrop`.
    #[arg(long, default_value_t = 0.0)]
    recurrent_dropout: f32,
    /// GPU only: instead of model sizes, time the device's basics — µs per
    /// dispatch of a trivial kernel (1000 dependent dispatches in one pass,
    /// and in 1000 passes) and GEMMs alone (TFLOP/s at 4096³ and at the
    /// H2048 B64 T25 training step's shapes, the fixed configuration beside
    /// gemm_wide).
    #[arg(long)]
    kernels: bool,
}

#[derive(Clone, Copy, ValueEnum, Debug, PartialEq)]
enum DeviceArg {
    Auto,
    Cpu,
    Gpu,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum ArchArg {
    Plain,
    Seq2seq,
}

#[derive(Clone, Copy, ValueEnum)]
enum AttentionArg {
    General,
    Dot,
    None,
}

#[derive(Clone, Copy, ValueEnum)]
enum CellArg {
    Lstm,
    Gru,
    Rnn,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputArg {
    Last,
    Sequence,
}

#[derive(Clone, Copy, ValueEnum)]
enum LossArg {
    Ce,
    Mse,
}

#[derive(Clone, Copy, ValueEnum)]
enum OptArg {
    Sgd,
    Adam,
}

#[derive(Args)]
struct TrainArgs {
    /// Training data (safetensors: x, y, optional lengths; for --arch seq2seq: src,
    /// optional src_lengths, tgt_in, tgt_out).
    #[arg(long)]
    data: PathBuf,
    /// What a new model is: `plain` (one recurrent stack and a linear head) or
    /// `seq2seq` (an encoder-decoder with attention; see README, "Sequence to sequence").
    #[arg(long, value_enum, default_value = "plain")]
    arch: ArchArg,
    /// seq2seq: attention over the encoder's outputs.
    #[arg(long, value_enum, default_value = "general")]
    attention: AttentionArg,
    /// seq2seq: source vocabulary size (default: largest source id + 1).
    #[arg(long)]
    src_vocab: Option<usize>,
    /// seq2seq: target vocabulary size (default: largest target id + 1).
    #[arg(long)]
    tgt_vocab: Option<usize>,
    /// seq2seq: the target token decoding starts from.
    #[arg(long, default_value_t = 1)]
    bos: usize,
    /// seq2seq: the target token that ends a sequence.
    #[arg(long, default_value_t = 2)]
    eos: usize,
    /// Start from this checkpoint instead of a new model.
    #[arg(long, conflicts_with_all = ["cell", "hidden", "layers", "bidirectional", "out_features"])]
    model: Option<PathBuf>,
    /// Cell of a new model.
    #[arg(long, value_enum, required_unless_present_any = ["model", "resume"])]
    cell: Option<CellArg>,
    /// Hidden units per direction of a new model.
    #[arg(long, required_unless_present_any = ["model", "resume"])]
    hidden: Option<usize>,
    /// Recurrent layers of a new model.
    #[arg(long, default_value_t = 1)]
    layers: usize,
    /// Bidirectional new model.
    #[arg(long)]
    bidirectional: bool,
    /// rnn only: tanh or relu.
    #[arg(long, default_value = "tanh")]
    nonlinearity: String,
    /// Head reads the last state (`last`) or every step (`sequence`).
    #[arg(long, value_enum, default_value = "last")]
    output: OutputArg,
    /// Width of the head (classes for ce); required for a new plain model.
    #[arg(long)]
    out_features: Option<usize>,
    /// Embedding width for token-id data (new models only; both embeddings of seq2seq).
    #[arg(long, alias = "embed")]
    embed_dim: Option<usize>,
    /// Vocabulary size for token-id data (default: largest id in the data + 1).
    #[arg(long)]
    vocab: Option<usize>,
    /// Required for plain models; seq2seq trains with ce.
    #[arg(long, value_enum)]
    loss: Option<LossArg>,
    #[arg(long, value_enum, default_value = "adam")]
    optimizer: OptArg,
    #[arg(long, default_value_t = 0.001)]
    lr: f32,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.0)]
    momentum: f32,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// Clip the global gradient norm to this value.
    #[arg(long)]
    clip: Option<f32>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Batches in file order, the last one partial (as a PyTorch DataLoader).
    #[arg(long)]
    no_shuffle: bool,
    /// Stateful (truncated-BPTT) training of a language model, as PyTorch's
    /// word_language_model: --data (and --validation) hold one token stream, x i64 [1, L];
    /// it is cut into --batch-size parallel streams and batches of --seq-len steps in
    /// order, each starting from the last one's final states; the targets are the next
    /// tokens. Batches go in stream order (no shuffling). Needs an embedding, output
    /// sequence, a head over the vocabulary and loss ce.
    #[arg(long)]
    stateful: bool,
    /// Steps per batch with --stateful (PyTorch's --bptt).
    #[arg(long, default_value_t = 35, requires = "stateful")]
    seq_len: usize,
    /// Dropout on the output of every recurrent layer but the last (nn.LSTM's
    /// dropout), in [0, 1); training only, on either device (the same masks). With
    /// --model or --resume it replaces the model's.
    #[arg(long)]
    dropout: Option<f32>,
    /// Dropout on the stack's input (the features or the embedding's output), in [0, 1).
    #[arg(long)]
    input_dropout: Option<f32>,
    /// Dropout on the top layer's output before the head, in [0, 1).
    #[arg(long)]
    output_dropout: Option<f32>,
    /// Recurrent (variational) dropout on the state feeding W_hh, one mask per
    /// sequence for all its steps, in [0, 1).
    #[arg(long)]
    recurrent_dropout: Option<f32>,
    /// Seed for initialisation, shuffling and the dropout masks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Orthogonal recurrent weights and forget-gate bias 1 for a new model (Keras' defaults).
    #[arg(long)]
    keras_init: bool,
    /// Validation data, evaluated after every epoch.
    #[arg(long)]
    validation: Option<PathBuf>,
    /// Learning-rate schedule: constant, step:EVERY:GAMMA or cosine[:ETA_MIN] (per epoch).
    #[arg(long, default_value = "constant")]
    schedule: String,
    /// Stop when the monitored loss (validation if given, else training) has not
    /// improved for this many epochs, and keep the best weights.
    #[arg(long)]
    patience: Option<usize>,
    /// Write a checkpoint here after every epoch (atomically), with its optimizer
    /// state next to it in `NAME.optim.safetensors` (for --resume).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Continue the fit saved in this checkpoint (written by --checkpoint): weights,
    /// optimizer state, epochs done and shuffling order are restored; --epochs is the total.
    #[arg(long, conflicts_with_all = ["model", "cell", "hidden", "layers", "bidirectional", "out_features"])]
    resume: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// GPU only: the per-step kernels read the recurrent weights W_hh from a
    /// half-precision copy (f32 accumulation, f32 master weights; as
    /// RECURRENT_GPU_F16=1). Opt-in: results differ from f32 by the rounding.
    #[arg(long)]
    f16: bool,
    /// Where to save the trained model.
    #[arg(long)]
    save: PathBuf,
}

#[derive(Args)]
#[command(group(ArgGroup::new("input").required(true).args(["data", "text", "text_file"])))]
struct PredictArgs {
    #[arg(long)]
    model: PathBuf,
    /// Data file (safetensors: x, optional lengths); writes the raw outputs to --output.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Raw text to classify (repeat the flag for several); the model must have been
    /// saved with its vocabulary (metadata `recurrent.vocab`).
    #[arg(long)]
    text: Vec<String>,
    /// A UTF-8 file of raw texts to classify, one sequence per line.
    #[arg(long)]
    text_file: Option<PathBuf>,
    /// Raw text: cut each text to its first N tokens.
    #[arg(long)]
    max_len: Option<usize>,
    /// Output file (safetensors with tensor `output`, the raw outputs): required
    /// with --data, optional with raw text (the logits).
    #[arg(long)]
    output: Option<PathBuf>,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
}

#[derive(Args)]
struct EvaluateArgs {
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    data: PathBuf,
    /// Required for plain models; seq2seq models evaluate ce and token accuracy.
    #[arg(long, value_enum)]
    loss: Option<LossArg>,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
}

fn loss_of(l: LossArg) -> Loss {
    match l {
        LossArg::Ce => Loss::Ce,
        LossArg::Mse => Loss::Mse,
    }
}

/// `bench --kernels`: one trivial dispatch's cost, and GEMMs alone.
fn bench_kernels(a: &BenchArgs) -> Result<()> {
    use recurrent::gpu::internals::{dispatch_overhead, gemm_tflops};
    use recurrent::gpu::{GemmConfig, GemmShape};
    if a.device == DeviceArg::Cpu {
        return Err(Error::Argument(
            "--kernels times GPU kernels: use --device gpu".into(),
        ));
    }
    let Device::Gpu(ctx) = pick_device(a.device)? else {
        return Err(Error::Argument(
            "--kernels needs a GPU: no adapter was found".into(),
        ));
    };
    let n = 1000;
    let (one, many) = dispatch_overhead(&ctx, n, a.reps)?;
    println!("dispatch: {one:.2} us each, {n} dependent dispatches in one pass; {many:.2} us each in {n} passes");
    let shape = |m, n, k, a_t, b_t| GemmShape {
        m,
        n,
        k,
        a_t,
        b_t,
        batch: 1,
    };
    for (what, s, iters) in [
        ("4096^3", shape(4096, 4096, 4096, false, false), 3),
        (
            "H2048 B64 T25 input projection",
            shape(1600, 8192, 2048, false, true),
            10,
        ),
        (
            "H2048 B64 T25 weight gradient",
            shape(8192, 2048, 1600, true, false),
            10,
        ),
        (
            "H2048 B64 T25 input gradient",
            shape(1600, 2048, 8192, false, false),
            10,
        ),
    ] {
        let mut line = format!("gemm {what} ({}x{}x{}):", s.m, s.n, s.k);
        for cfg in [None, Some(GemmConfig::Wide { tile: 16 })] {
            match gemm_tflops(&ctx, s, cfg, iters, a.reps.min(5)) {
                Ok((c, t)) => line += &format!(" {c} {t:.2} TFLOP/s;"),
                Err(e) => {
                    line += &format!(" {}: {e};", cfg.map_or("fixed".into(), |c| c.to_string()))
                }
            }
        }
        println!("{line}");
    }
    Ok(())
}

/// Resolves `--device` and says on stderr which device runs the work.
fn pick_device(d: DeviceArg) -> Result<Device> {
    let choice = match d {
        DeviceArg::Auto => DeviceChoice::Auto,
        DeviceArg::Cpu => DeviceChoice::Cpu,
        DeviceArg::Gpu => DeviceChoice::Gpu,
    };
    let (device, why) = Device::resolve_verbose(choice)?;
    match why {
        Some(why) => eprintln!(
            "device: {} (auto: no hardware GPU: {why})",
            device.describe()
        ),
        None => eprintln!("device: {}", device.describe()),
    }
    Ok(device)
}

/// `--f16`: models on the GPU keep an f16 copy of W_hh; an argument error on the CPU path.
fn use_f16_weights(device: &Device, what: &str) -> Result<()> {
    match device {
        Device::Gpu(ctx) => {
            ctx.set_f16_weights(true);
            Ok(())
        }
        Device::Cpu => Err(Error::Argument(format!(
            "{what} stores the GPU step kernels' weights in f16, but the CPU path runs: use --device gpu"
        ))),
    }
}

fn new_model(a: &TrainArgs, data: &Dataset) -> Result<Model> {
    let cell = cell_of(a.cell.expect("clap requires it"));
    let output = match a.output {
        OutputArg::Last => OutputMode::Last,
        OutputArg::Sequence => OutputMode::Sequence,
    };
    let hidden = a.hidden.expect("clap requires it");
    let out = a.out_features.ok_or_else(|| {
        Error::Argument(
            "a new model needs --out-features (the head's width: classes for ce)".into(),
        )
    })?;
    let mut cfg = match &data.x {
        Inputs::Features { f, .. } => ModelConfig::new(cell, *f, hidden, out),
        Inputs::Tokens { ids, .. } => {
            let dim = a.embed_dim.ok_or_else(|| {
                Error::Argument(
                    "x holds token ids: give --embed-dim for the embedding width".into(),
                )
            })?;
            let vocab = a
                .vocab
                .unwrap_or_else(|| ids.iter().copied().max().unwrap_or(0).max(0) as usize + 1);
            ModelConfig::new(cell, dim, hidden, out).embedding(vocab)
        }
    };
    cfg = cfg
        .layers(a.layers)
        .bidirectional(a.bidirectional)
        .output(output)
        .nonlinearity(Nonlinearity::parse(&a.nonlinearity)?);
    let init = Init {
        seed: a.seed,
        orthogonal: a.keras_init,
        forget_bias_one: a.keras_init,
    };
    Model::new(cfg, &init)
}

/// The model with the dropout the flags give (the others as the model has
/// them, the seed `--seed`); unchanged without dropout flags.
fn with_dropout(model: Model, a: &TrainArgs) -> Result<Model> {
    if a.dropout.is_none()
        && a.input_dropout.is_none()
        && a.output_dropout.is_none()
        && a.recurrent_dropout.is_none()
    {
        return Ok(model);
    }
    let was = model.config().dropout;
    let d = recurrent::Dropout {
        dropout: a.dropout.unwrap_or(was.dropout),
        input: a.input_dropout.unwrap_or(was.input),
        output: a.output_dropout.unwrap_or(was.output),
        recurrent: a.recurrent_dropout.unwrap_or(was.recurrent),
        seed: a.seed,
    };
    // from_params validates the probabilities with the rest of the config.
    let cfg = model.config().clone().dropout(d);
    let params = model.params().to_vec();
    Model::from_params(cfg, params)
}

/// `--loss`, which plain models need.
fn loss_given(l: Option<LossArg>) -> Result<Loss> {
    l.map(loss_of)
        .ok_or_else(|| Error::Argument("give --loss ce or --loss mse".into()))
}

/// The optimizer the flags describe.
fn optimizer_of(a: &TrainArgs) -> Result<Optimizer> {
    let kind = match a.optimizer {
        OptArg::Sgd => OptimizerKind::Sgd {
            lr: a.lr,
            momentum: a.momentum,
            weight_decay: a.weight_decay,
            nesterov: false,
        },
        OptArg::Adam => OptimizerKind::Adam {
            lr: a.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: a.weight_decay,
        },
    };
    let opt = Optimizer::new(kind);
    opt.validate()?;
    Ok(opt)
}

fn train(a: TrainArgs) -> Result<()> {
    if a.arch == ArchArg::Seq2seq
        || seq2seq::is_seq2seq_checkpoint(a.model.as_ref().or(a.resume.as_ref()))?
    {
        return seq2seq::train(a);
    }
    let loss = loss_given(a.loss)?;
    if a.batch_size == 0 {
        return Err(Error::Argument("--batch-size must be at least 1".into()));
    }
    if a.epochs == 0 {
        return Err(Error::Argument("--epochs must be at least 1".into()));
    }
    let device = pick_device(a.device)?;
    if a.f16 {
        use_f16_weights(&device, "train --f16")?;
    }
    let data = dataset::load(&a.data)?;
    let model = match (&a.resume, &a.model) {
        (Some(p), _) | (None, Some(p)) => checkpoint::load(p)?,
        (None, None) => new_model(&a, &data)?,
    };
    let mut model = with_dropout(model, &a)?;
    data.check_inputs(model.config())?;
    // Stateful data has no y: the fit checks the stream and takes the targets from it.
    if !a.stateful {
        data.check_targets(model.config(), loss)?;
    }
    let validation = match &a.validation {
        Some(p) => {
            let v = dataset::load(p)?;
            v.check_inputs(model.config())?;
            if !a.stateful {
                v.check_targets(model.config(), loss)?;
            }
            Some(v)
        }
        None => None,
    };
    let mut opt = optimizer_of(&a)?;
    let cfg = model.config();
    eprintln!(
        "model: {} input {} hidden {} layers {}{} output {} out {} ({} parameters); {} sequences of {} steps",
        cfg.cell.name(),
        cfg.input,
        cfg.hidden,
        cfg.layers,
        if cfg.bidirectional { " bidirectional" } else { "" },
        cfg.output.name(),
        cfg.out_features,
        model.num_params(),
        data.len(),
        data.steps()
    );
    let fit = FitConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        shuffle: !a.no_shuffle && !a.stateful,
        seed: a.seed,
        loss,
        clip: a.clip,
        schedule: LrSchedule::parse(&a.schedule)?,
        early_stopping: a.patience.map(EarlyStopping::patience),
        checkpoint: a.checkpoint.clone().map(|path| CheckpointConfig {
            path,
            every: 1,
            best_only: false,
        }),
        progress: true,
        verbose: false,
        resume: a.resume.clone(),
        stateful: a.stateful.then_some(Stateful { seq_len: a.seq_len }),
        // Stateful validation runs as many parallel streams as training.
        eval_batch_size: if a.stateful {
            a.batch_size
        } else {
            FitConfig::default().eval_batch_size
        },
        ..FitConfig::default()
    };
    let mut backend = device.backend(&model)?;
    let epochs = a.epochs;
    Trainer::new(fit)
        .on_epoch(|m| {
            println!("{}", m.summary(epochs));
            Control::Continue
        })
        .fit_on(&mut *backend, &mut opt, &data, validation.as_ref())?;
    backend.sync_to(&mut model)?;
    checkpoint::save(&model, &a.save)?;
    println!("saved {}", a.save.display());
    Ok(())
}

fn predict(a: PredictArgs) -> Result<()> {
    if seq2seq::is_seq2seq_checkpoint(Some(&a.model))? {
        return seq2seq::predict(a);
    }
    if a.batch_size == 0 {
        return Err(Error::Argument("--batch-size must be at least 1".into()));
    }
    let Some(data_path) = &a.data else {
        return predict_text(a);
    };
    let output = a.output.as_ref().ok_or_else(|| Error::Argument("predict --data needs --output OUT.safetensors for the outputs (raw text with --text or --text-file prints them instead)".into()))?;
    let device = pick_device(a.device)?;
    let model = checkpoint::load(&a.model)?;
    let data = dataset::load(data_path)?;
    let p = device
        .backend(&model)?
        .predict_states(&data, a.batch_size)?;
    let mut tensors = vec![("output", &p.output), ("h_n", &p.h_n)];
    if let Some(c) = &p.c_n {
        tensors.push(("c_n", c));
    }
    dataset::save_tensors(output, &tensors)?;
    println!(
        "wrote output {:?} and the final states{} {:?} to {}",
        p.output.shape,
        if p.c_n.is_some() { " h_n, c_n" } else { " h_n" },
        p.h_n.shape,
        output.display()
    );
    Ok(())
}

/// `predict --text/--text-file`: one line per text, `CLASS<TAB>name=p ...<TAB>TEXT`.
fn predict_text(a: PredictArgs) -> Result<()> {
    let (model, meta) = checkpoint::load_with_metadata(&a.model)?;
    let path = a.model.display().to_string();
    let vocab = text::vocab_from_metadata(&meta)
        .map_err(|e| Error::Checkpoint { path: path.clone(), reason: e.to_string() })?
        .ok_or_else(|| Error::Checkpoint {
            path: path.clone(),
            reason: format!("has no vocabulary (metadata `{}`), so raw text cannot be encoded; save the model with its vocabulary (recurrent::text::metadata + checkpoint::save_with), or give token ids with --data", text::VOCAB_KEY),
        })?;
    let classes = text::classes_from_metadata(&meta).map_err(|e| Error::Checkpoint {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if let Some(c) = &classes {
        if c.len() != model.config().out_features {
            return Err(Error::Checkpoint {
                path,
                reason: format!(
                    "metadata `{}` names {} classes but the head has {} outputs",
                    text::CLASSES_KEY,
                    c.len(),
                    model.config().out_features
                ),
            });
        }
    }
    let mut texts = a.text.clone();
    if let Some(f) = &a.text_file {
        let body = recurrent::io::text::read_text(f)?;
        let before = texts.len();
        texts.extend(body.lines().map(|l| l.trim_end_matches('\r').to_string()));
        if texts.len() == before {
            return Err(Error::Empty(format!("{} (one text per line)", f.display())));
        }
    }
    let device = pick_device(a.device)?;
    let mut backend = device.backend(&model)?;
    let (preds, logits) = text::classify(&mut *backend, &vocab, &texts, a.max_len, a.batch_size)?;
    let name = |i: usize| {
        classes
            .as_ref()
            .map_or_else(|| i.to_string(), |c| c[i].clone())
    };
    for (p, t) in preds.iter().zip(&texts) {
        let probs: Vec<String> = p
            .probabilities
            .iter()
            .enumerate()
            .map(|(i, q)| format!("{}={q:.4}", name(i)))
            .collect();
        println!("{}\t{}\t{}", name(p.class), probs.join(" "), t);
    }
    if let Some(out) = &a.output {
        dataset::save_tensors(out, &[("output", &logits)])?;
        eprintln!("wrote output {:?} to {}", logits.shape, out.display());
    }
    Ok(())
}

fn evaluate(a: EvaluateArgs) -> Result<()> {
    if seq2seq::is_seq2seq_checkpoint(Some(&a.model))? {
        return seq2seq::evaluate(a);
    }
    let loss = loss_given(a.loss)?;
    let device = pick_device(a.device)?;
    let model = checkpoint::load(&a.model)?;
    let data = dataset::load(&a.data)?;
    let e = device
        .backend(&model)?
        .evaluate(&data, loss, a.batch_size)?;
    match e.accuracy {
        Some(acc) => println!(
            "loss {:.6} accuracy {:.2}% ({} sequences)",
            e.loss,
            acc * 100.0,
            data.len()
        ),
        None => println!("loss {:.6} ({} sequences)", e.loss, data.len()),
    }
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    use recurrent::bench::{self, Report, Size};
    if a.kernels {
        return bench_kernels(&a);
    }
    let sizes = match &a.suite {
        Some(names) => names
            .split(',')
            .map(bench::suite)
            .collect::<Result<Vec<_>>>()?
            .concat(),
        None => vec![Size {
            cell: cell_of(a.cell),
            input: a.input,
            hidden: a.hidden,
            batch: a.batch,
            steps: a.steps,
            layers: a.layers,
            recurrent_dropout: 0.0,
        }],
    };
    if !(0.0..1.0).contains(&a.recurrent_dropout) {
        return Err(Error::Argument(format!(
            "--recurrent-dropout {} is outside [0, 1)",
            a.recurrent_dropout
        )));
    }
    let sizes: Vec<Size> = sizes
        .into_iter()
        .map(|s| Size {
            recurrent_dropout: a.recurrent_dropout,
            ..s
        })
        .collect();
    if a.show_tuning && a.device == DeviceArg::Cpu {
        return Err(Error::Argument(
            "--show-tuning lists GPU GEMM tiles: use it with --device gpu".into(),
        ));
    }
    if a.profile && a.device == DeviceArg::Cpu {
        return Err(Error::Argument(
            "--profile times GPU kernels: use it with --device gpu (the CPU path has no profile)"
                .into(),
        ));
    }
    if a.f16 && a.device == DeviceArg::Cpu {
        return Err(Error::Argument(
            "--f16 stores the GPU step kernels' weights in f16: use it with --device gpu".into(),
        ));
    }
    let device = pick_device(a.device)?;
    if a.f16 {
        use_f16_weights(&device, "bench --f16")?;
    }
    if a.profile {
        match &device {
            Device::Cpu => {
                return Err(Error::Argument(
                    "--profile times GPU kernels, but --device auto picked the CPU path: use --device gpu"
                        .into(),
                ))
            }
            // Fail before timing anything.
            Device::Gpu(ctx) => ctx.require_timestamps("bench --profile")?,
        }
    }
    let mut report = Report::default();
    println!(
        "{:<6} {:<5} {:>5} {:>5} {:>5} {:>5} {:>6} {:>12} {:>12} {:>9}",
        "device", "cell", "I", "H", "B", "T", "layers", "forward_ms", "train_ms", "GFLOP/s"
    );
    for s in &sizes {
        let r = match &device {
            Device::Cpu => bench::run_cpu(s, a.reps)?,
            Device::Gpu(ctx) => bench::run_gpu_with(s, a.reps, ctx, a.profile, a.show_tuning)?,
        };
        let mut dev = r.device.clone();
        if r.f16_weights {
            dev.push_str("+f16");
        }
        if r.unchecked_shaders {
            dev.push_str("+unchecked");
        }
        if r.recurrent_dropout > 0.0 {
            dev.push_str("+rdrop");
        }
        println!(
            "{:<6} {:<5} {:>5} {:>5} {:>5} {:>5} {:>6} {:>12.3} {:>12.3} {:>9.1}",
            dev,
            r.cell,
            r.input,
            r.hidden,
            r.batch,
            r.steps,
            r.layers,
            r.forward_ms,
            r.train_ms,
            r.gflops
        );
        if let Some(p) = &r.profile {
            print_profile(p);
        }
        if let Some(t) = &r.tuning {
            print_tuning(t);
        }
        if let Some(t) = &r.step_tile {
            print_step_tile(t);
        }
        report.results.push(r);
    }
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&report).expect("report serialises");
        std::fs::write(p, text).map_err(|e| Error::Io {
            path: p.clone(),
            source: e,
        })?;
    }
    Ok(())
}

/// The per-kernel table of `bench --profile`, under its size's row.
fn print_profile(p: &[recurrent::bench::KernelTime]) {
    let total: f64 = p.iter().map(|k| k.total_us).sum();
    let dispatches: usize = p.iter().map(|k| k.dispatches).sum();
    println!(
        "  profile of one training step (forward, loss, backward, gradient norm, optimizer; \
         GPU timestamps around each dispatch): {dispatches} dispatches, {total:.1} us"
    );
    println!(
        "  {:<20} {:<28} {:>10} {:>12} {:>7}",
        "kernel", "label", "dispatches", "total_us", "share"
    );
    for k in p {
        let share = if total > 0.0 {
            100.0 * k.total_us / total
        } else {
            0.0
        };
        println!(
            "  {:<20} {:<28} {:>10} {:>12.1} {:>6.1}%",
            k.kernel, k.label, k.dispatches, k.total_us, share
        );
    }
}

/// The GEMM table of `bench --show-tuning`, under its size's row.
fn print_tuning(t: &[recurrent::bench::GemmTuning]) {
    println!(
        "  GEMM tiles of one training step (per shape: measured at first use and cached; \
         fixed unless RECURRENT_AUTOTUNE=1):"
    );
    println!(
        "  {:<28} {:<28} {:<28} {:<14} {:>10}",
        "label", "shape (m x n x k op x batch)", "config", "decision", "us"
    );
    for g in t {
        let shape = g.shape.to_string();
        let us = g.us.map_or("-".to_string(), |u| format!("{u:.1}"));
        let decision = if g.decision == "measured" {
            format!("{} of {}", g.decision, g.candidates)
        } else {
            g.decision.clone()
        };
        println!(
            "  {:<28} {:<28} {:<28} {:<14} {:>10}",
            g.label, shape, g.config, decision, us
        );
    }
}

/// The step tile line of `bench --show-tuning`.
fn print_step_tile(t: &recurrent::bench::StepTuning) {
    let mut line = format!(
        "  step kernel tile (units,rows,chunk,rb[,sk[,direct]][,ub=N][,persist[=P]]): {} ({}",
        t.tile, t.decision
    );
    if !t.candidates.is_empty() {
        let each: Vec<String> = t
            .candidates
            .iter()
            .map(|c| match c.ms {
                Some(ms) => format!("{} {ms:.3} ms", c.tile),
                None => format!("{} failed", c.tile),
            })
            .collect();
        line += &format!(
            " of {}, forward+backward: {}",
            t.candidates.len(),
            each.join(", ")
        );
    }
    println!("{line})");
}

fn info() -> Result<()> {
    println!("recurrent {}", env!("CARGO_PKG_VERSION"));
    println!(
        "cpu path: {} threads",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    print!("{}", recurrent::device::adapter_report());
    let (device, why) = Device::resolve_verbose(DeviceChoice::Auto)?;
    match why {
        Some(why) => println!(
            "--device auto picks: {} (no hardware GPU: {why})",
            device.describe()
        ),
        None => println!("--device auto picks: {}", device.describe()),
    }
    Ok(())
}

fn cell_of(c: CellArg) -> Cell {
    match c {
        CellArg::Lstm => Cell::Lstm,
        CellArg::Gru => Cell::Gru,
        CellArg::Rnn => Cell::Rnn,
    }
}

fn generate(a: GenerateArgs) -> Result<()> {
    use recurrent::generate::{check_language_model, generate_text, Sampling};
    if seq2seq::is_seq2seq_checkpoint(Some(&a.model))? {
        return seq2seq::generate(a);
    }
    let (Some(prime), Some(length)) = (a.prime.clone(), a.length) else {
        return Err(Error::Argument(
            "a language model generates from --prime TEXT for --length N tokens".into(),
        ));
    };
    let sampling = Sampling {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        seed: a.seed,
    };
    sampling.check()?;
    let (model, meta) = checkpoint::load_with_metadata(&a.model)?;
    check_language_model(model.config())?;
    let vocab = text::vocab_from_metadata(&meta)?.ok_or_else(|| {
        Error::Argument(format!(
            "{} has no vocabulary (metadata `{}`): generation turns tokens into text with the vocabulary the model was trained with; save the model with it (examples/char_lm.rs --save does)",
            a.model.display(),
            text::VOCAB_KEY
        ))
    })?;
    let device = pick_device(a.device)?;
    // The stream of the device: its states stay there between tokens.
    let (mut cpu, mut gpu_model, mut gpu);
    let stream: &mut dyn recurrent::generate::Steps = match &device {
        Device::Cpu => {
            cpu = recurrent::Stream::new(&model)?;
            &mut cpu
        }
        Device::Gpu(ctx) => {
            gpu_model = recurrent::gpu::GpuModel::new(ctx.clone(), &model)?;
            gpu = recurrent::gpu::GpuStream::new(&mut gpu_model)?;
            &mut gpu
        }
    };
    let text = generate_text(stream, model.config(), &vocab, &prime, length, &sampling)?;
    // Words are joined by spaces; characters as they are.
    let gap = match vocab.level() {
        text::Level::Word if !prime.is_empty() && !text.is_empty() => " ",
        _ => "",
    };
    println!("{prime}{gap}{text}");
    Ok(())
}

fn export(a: ExportArgs) -> Result<()> {
    let opts = recurrent::onnx::ExportOptions {
        lengths: a.with_lengths,
        states: a.with_states,
        opset: a.opset,
        recurrence: recurrent::onnx::Recurrence::parse(&a.recurrence)?,
    };
    let model = checkpoint::load(&a.model)?;
    recurrent::onnx::save(&model, &a.output, &opts)?;
    println!(
        "wrote {}: {}",
        a.output.display(),
        recurrent::onnx::describe(&model, &opts)
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Train(a) => train(a),
        Cmd::Predict(a) => predict(a),
        Cmd::Evaluate(a) => evaluate(a),
        Cmd::Bench(a) => bench(a),
        Cmd::Export(a) => export(a),
        Cmd::Generate(a) => generate(a),
        Cmd::Info => info(),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

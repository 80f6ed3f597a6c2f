//! The training loop: epochs of mini-batches, validation, early stopping,
//! checkpoints, learning-rate schedule, and the history of per-epoch metrics.

use super::backend::Backend;
use super::batches::batch_indices;
use super::progress::EpochBar;
use super::schedule::LrSchedule;
use super::stateful::{self, Stateful};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::io::checkpoint;
use crate::io::optim_state::{self, MonitorState, TrainState};
use crate::model::{Model, StepOptions};
use crate::optim::Optimizer;
use crate::rng::Rng;
use crate::Loss;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Instant;

/// Metadata key of the training state stored in checkpoints written during a fit
/// (JSON `{"epoch", "train_loss", "val_loss", "val_accuracy", "lr"}`).
pub const CHECKPOINT_TRAIN_KEY: &str = "recurrent.train";

/// The quantity early stopping and best-only checkpoints watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Monitor {
    /// Validation loss, lower is better (the training loss when there is no validation data).
    #[default]
    ValLoss,
    /// Validation accuracy, higher is better (needs validation data with class targets).
    ValAccuracy,
}

/// Stop when the monitored quantity has not improved for `patience` epochs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EarlyStopping {
    /// Epochs without improvement before stopping (at least 1).
    pub patience: usize,
    /// An epoch improves only if it beats the best by more than this.
    pub min_delta: f32,
    /// At the end of the fit, put back the weights of the best epoch (Keras' `restore_best_weights`).
    pub restore_best: bool,
}

impl EarlyStopping {
    /// `patience` epochs, any improvement counts, best weights restored.
    pub fn patience(patience: usize) -> Self {
        EarlyStopping {
            patience,
            min_delta: 0.0,
            restore_best: true,
        }
    }
}

/// Checkpoints written during training, atomically (a crash leaves the previous file whole).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointConfig {
    /// The file, overwritten at each save.
    pub path: PathBuf,
    /// Save after every `every` epochs (at least 1).
    pub every: usize,
    /// Save only when the monitored quantity improved (the file then always holds the best weights so far).
    pub best_only: bool,
}

/// What a fit does when a training step's loss or gradient norm is NaN or infinite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnNonFinite {
    /// End the fit with [`Error::Diverged`]. The bad step's update is never
    /// applied (on the CPU path the backend holds the weights of the last good
    /// step; on a GPU path the statistics arrive a few steps late, so steps
    /// submitted after the bad one may have been applied: see `docs/RELIABILITY.md`).
    #[default]
    Stop,
    /// Leave the bad step out (no update) and go on; the epoch's metrics count it
    /// in [`EpochMetrics::skipped_steps`]. An epoch whose every step is bad ends the fit.
    Skip,
}

/// Everything a fit needs besides the model, optimizer and data.
#[derive(Clone, Debug, PartialEq)]
pub struct FitConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Shuffle rows each epoch (seeded); `false` = file order with a partial last batch.
    pub shuffle: bool,
    /// Leave out a final batch shorter than `batch_size`.
    pub drop_last: bool,
    /// Seed of the shuffling.
    pub seed: u64,
    pub loss: Loss,
    /// Clip the global gradient norm to this value (`clip_grad_norm_`).
    pub clip: Option<f32>,
    /// Learning rate per epoch, from the optimizer's rate at the start of the fit.
    pub schedule: LrSchedule,
    pub monitor: Monitor,
    pub early_stopping: Option<EarlyStopping>,
    pub checkpoint: Option<CheckpointConfig>,
    /// Batch size of validation passes (bigger is faster; memory grows with it).
    pub eval_batch_size: usize,
    /// Show a progress bar per epoch (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Print one summary line per epoch to stderr.
    pub verbose: bool,
    /// What to do with a step whose loss or gradient is not finite.
    pub on_nonfinite: OnNonFinite,
    /// Continue the fit saved in this checkpoint (written by a fit with
    /// [`FitConfig::checkpoint`], with its optimizer-state sidecar, see
    /// [`crate::io::optim_state`]): the weights, the optimizer (kind,
    /// hyper-parameters as saved, step count, moments), the epochs done, the
    /// shuffling generator and the early-stopping bookkeeping are restored, and
    /// the fit runs the epochs from there up to `epochs` (a total, as Keras'
    /// `initial_epoch`). The result is the same as a fit never interrupted
    /// (bit for bit on the CPU path). The checkpoint's architecture must be the backend's.
    pub resume: Option<PathBuf>,
    /// With `lengths`, cut each gathered batch to its own longest sequence
    /// ([`Dataset::trim_to_longest`]): the same losses and gradients for less
    /// work when lengths vary. On by default; off runs every batch at the full `T`.
    pub trim_to_longest: bool,
    /// Stateful (truncated-BPTT) training of a language model
    /// ([`super::stateful`]): `train` and `val` are token streams `[1, L]`,
    /// cut into `batch_size` (`eval_batch_size`) parallel streams and
    /// batches of `seq_len` steps in order, each batch starting from the
    /// previous one's final states. Needs `shuffle: false`.
    pub stateful: Option<Stateful>,
    /// Keep the training set where the steps run when the backend can (the
    /// GPU path, when it fits in the adapter's buffers and has no initial
    /// states): uploaded once, each batch gathered there by its rows'
    /// indices. The same results; on by default. The set is let go at the
    /// end of the fit (it replaces one the program kept on the backend).
    pub keep_on_device: bool,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig {
            epochs: 10,
            batch_size: 32,
            shuffle: true,
            drop_last: false,
            seed: 0,
            loss: Loss::Ce,
            clip: None,
            schedule: LrSchedule::Constant,
            monitor: Monitor::ValLoss,
            early_stopping: None,
            checkpoint: None,
            eval_batch_size: 256,
            progress: true,
            verbose: false,
            on_nonfinite: OnNonFinite::Stop,
            resume: None,
            trim_to_longest: true,
            stateful: None,
            keep_on_device: true,
        }
    }
}

impl FitConfig {
    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Argument(m.to_string()));
        if self.epochs == 0 {
            return bad("epochs must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("batch size must be at least 1");
        }
        if self.eval_batch_size == 0 {
            return bad("evaluation batch size must be at least 1");
        }
        if let Some(c) = self.clip {
            if !(c.is_finite() && c > 0.0) {
                return Err(Error::Argument(format!(
                    "gradient clipping norm {c} must be a finite number > 0"
                )));
            }
        }
        self.schedule.validate()?;
        if let Some(es) = &self.early_stopping {
            if es.patience == 0 {
                return bad("early stopping patience must be at least 1 epoch");
            }
            if !(es.min_delta.is_finite() && es.min_delta >= 0.0) {
                return bad("early stopping min_delta must be a finite number >= 0");
            }
        }
        if let Some(c) = &self.checkpoint {
            if c.every == 0 {
                return bad("checkpoint interval must be at least 1 epoch");
            }
        }
        Ok(())
    }
}

/// What one epoch did.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    /// Counted from 1.
    pub epoch: usize,
    /// Learning rate used during the epoch.
    pub lr: f32,
    /// Mean training loss over the epoch's batches (each weighted by its number of sequences),
    /// measured before each update.
    pub train_loss: f32,
    /// Mean global gradient norm before clipping.
    pub grad_norm: f32,
    pub val_loss: Option<f32>,
    /// Validation accuracy (`ce` only).
    pub val_accuracy: Option<f32>,
    /// Wall time of the epoch's training steps (validation excluded).
    pub train_seconds: f64,
    /// Wall time of the validation pass.
    pub val_seconds: f64,
    /// Training sequences per second.
    pub sequences_per_second: f64,
    /// The monitored quantity was the best so far after this epoch.
    pub improved: bool,
    /// Steps left out because their loss or gradient was not finite ([`OnNonFinite::Skip`]).
    pub skipped_steps: usize,
}

impl EpochMetrics {
    /// One line: `epoch 3/10  loss 0.1234  val_loss 0.1100  val_acc 96.51%  lr 1.0e-3  2.1 s (3800 seq/s)`.
    pub fn summary(&self, epochs: usize) -> String {
        let mut s = format!("epoch {}/{epochs}  loss {:.4}", self.epoch, self.train_loss);
        if let Some(v) = self.val_loss {
            s += &format!("  val_loss {v:.4}");
        }
        if let Some(a) = self.val_accuracy {
            s += &format!("  val_acc {:.2}%", a * 100.0);
        }
        s += &format!(
            "  lr {:.1e}  {:.2} s ({:.0} seq/s)",
            self.lr, self.train_seconds, self.sequences_per_second
        );
        if self.improved {
            s += "  *";
        }
        s
    }
}

/// What a fit did, epoch by epoch.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct History {
    pub epochs: Vec<EpochMetrics>,
    /// Epoch (from 1) where the monitored quantity was best.
    pub best_epoch: Option<usize>,
    /// Training stopped before the configured number of epochs (early stopping or a callback).
    pub stopped_early: bool,
    /// The weights were put back to those of `best_epoch` at the end.
    pub restored_best: bool,
}

impl History {
    /// Metrics of the last epoch run.
    pub fn last(&self) -> Option<&EpochMetrics> {
        self.epochs.last()
    }
    /// Metrics of the best epoch.
    pub fn best(&self) -> Option<&EpochMetrics> {
        self.best_epoch
            .and_then(|e| self.epochs.iter().find(|m| m.epoch == e))
    }
}

/// A callback's answer after each epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

type EpochCallback<'a> = Box<dyn FnMut(&EpochMetrics) -> Control + 'a>;

/// Runs fits with one configuration and an optional per-epoch callback.
pub struct Trainer<'a> {
    pub config: FitConfig,
    on_epoch: Option<EpochCallback<'a>>,
}

impl<'a> Trainer<'a> {
    pub fn new(config: FitConfig) -> Self {
        Trainer {
            config,
            on_epoch: None,
        }
    }

    /// Calls `f` after each epoch (after validation and checkpointing);
    /// returning [`Control::Stop`] ends the fit there.
    pub fn on_epoch(mut self, f: impl FnMut(&EpochMetrics) -> Control + 'a) -> Self {
        self.on_epoch = Some(Box::new(f));
        self
    }

    /// Trains `model` on the CPU path.
    ///
    /// `train` and `val`: `x [N, T, F]` (or token ids `[N, T]`) with targets `y` for `config.loss`.
    pub fn fit(
        &mut self,
        model: &mut Model,
        opt: &mut Optimizer,
        train: &Dataset,
        val: Option<&Dataset>,
    ) -> Result<History> {
        self.fit_on(model, opt, train, val)
    }

    /// Trains through any [`Backend`]. At the end the backend holds the final
    /// weights (or the best ones, with early stopping's `restore_best`); the
    /// optimizer's learning rate is set back to its value at the start.
    pub fn fit_on<B: Backend + ?Sized>(
        &mut self,
        backend: &mut B,
        opt: &mut Optimizer,
        train: &Dataset,
        val: Option<&Dataset>,
    ) -> Result<History> {
        let cfg = self.config.clone();
        check_fit(&cfg, backend, opt, train, val)?;
        let mcfg = backend.config().clone();
        let mut watch = Watch::default();
        let mut history = History::default();
        let mut rng = Rng::new(cfg.seed);
        let mut start_epoch = 0;
        if let Some(path) = &cfg.resume {
            let state = resume(backend, opt, path, cfg.epochs)?;
            rng = Rng::from_state(state.rng_state);
            start_epoch = state.epoch;
            watch = Watch {
                best: state.monitor.best,
                since_best: state.monitor.since_best,
            };
            history.best_epoch = state.monitor.best_epoch;
            if cfg.verbose {
                eprintln!(
                    "resumed from {} after epoch {} (optimizer step {})",
                    path.display(),
                    state.epoch,
                    opt.step
                );
            }
        }
        // Stateful training: the streams' batches, cut once.
        let streams = match &cfg.stateful {
            Some(st) => Some((
                stateful::stream_batches(train, cfg.batch_size, st.seq_len, "training")?,
                val.map(|v| {
                    stateful::stream_batches(v, cfg.eval_batch_size, st.seq_len, "validation")
                })
                .transpose()?,
            )),
            None => None,
        };
        let base_lr = opt.lr();
        // Host copies of the weights, made only when something needs them.
        let mut host: Option<Model> = None;
        let mut best_weights: Option<Model> = None;
        let keep_best = cfg.early_stopping.is_some_and(|e| e.restore_best);
        // The GPU path keeps the training set on the device when it can;
        // each step then sends only its rows' indices.
        let kept = cfg.keep_on_device
            && streams.is_none()
            && backend.keep_training_set(train, cfg.loss)?;

        let result = (|| -> Result<()> {
            for epoch in start_epoch..cfg.epochs {
                let lr = cfg.schedule.lr(base_lr, epoch, cfg.epochs);
                opt.set_lr(lr);
                let stream = streams.as_ref().map(|s| s.0.as_slice());
                let run = train_epoch(&cfg, backend, opt, train, stream, kept, &mut rng, epoch)?;

                let vstart = Instant::now();
                let eval = match (val, &streams) {
                    (Some(_), Some((_, Some(vb)))) => Some(stateful::evaluate(backend, vb)?),
                    (Some(v), _) => Some(backend.evaluate(v, cfg.loss, cfg.eval_batch_size)?),
                    (None, _) => None,
                };
                let val_seconds = vstart.elapsed().as_secs_f64();
                let watched = match cfg.monitor {
                    Monitor::ValLoss => eval.map_or(run.loss, |e| e.loss),
                    // Checked above: validation data with ce targets, so accuracy is there.
                    Monitor::ValAccuracy => -eval.and_then(|e| e.accuracy).unwrap_or(0.0),
                };
                let improved =
                    watch.update(watched, cfg.early_stopping.map_or(0.0, |e| e.min_delta));
                if improved {
                    history.best_epoch = Some(epoch + 1);
                    if keep_best {
                        let m = best_weights.get_or_insert_with(|| blank(&mcfg));
                        backend.sync_to(m)?;
                    }
                }

                let metrics = EpochMetrics {
                    epoch: epoch + 1,
                    lr,
                    train_loss: run.loss,
                    grad_norm: run.grad_norm,
                    val_loss: eval.map(|e| e.loss),
                    val_accuracy: eval.and_then(|e| e.accuracy),
                    train_seconds: run.seconds,
                    val_seconds,
                    sequences_per_second: run.seen as f64 / run.seconds.max(1e-9),
                    improved,
                    skipped_steps: run.skipped,
                };

                if let Some(c) = &cfg.checkpoint {
                    if (epoch + 1) % c.every == 0 && (!c.best_only || improved) {
                        let m = host.get_or_insert_with(|| blank(&mcfg));
                        let monitor = MonitorState {
                            best: watch.best,
                            best_epoch: history.best_epoch,
                            since_best: watch.since_best,
                        };
                        save_checkpoint(
                            backend, opt, m, &c.path, &metrics, base_lr, &rng, monitor,
                        )?;
                    }
                }
                if cfg.verbose {
                    eprintln!("{}", metrics.summary(cfg.epochs));
                }
                let control = match &mut self.on_epoch {
                    Some(f) => f(&metrics),
                    None => Control::Continue,
                };
                history.epochs.push(metrics);
                let patience_out = cfg
                    .early_stopping
                    .is_some_and(|es| watch.since_best >= es.patience);
                if control == Control::Stop || patience_out {
                    history.stopped_early = epoch + 1 < cfg.epochs;
                    break;
                }
            }
            Ok(())
        })();
        opt.set_lr(base_lr);
        if kept {
            backend.release_training_set();
        }
        result?;

        if let (Some(best_model), Some(best_epoch)) = (&best_weights, history.best_epoch) {
            if history.last().is_some_and(|m| m.epoch != best_epoch) {
                backend.load_from(best_model)?;
                history.restored_best = true;
                if cfg.verbose {
                    eprintln!("restored the weights of epoch {best_epoch} (the best)");
                }
            }
        }
        Ok(history)
    }
}

/// The monitored quantity's best value and the epochs since it.
#[derive(Default)]
struct Watch {
    best: Option<f32>,
    since_best: usize,
}

impl Watch {
    /// Takes an epoch's value (lower is better); true if it improved on the best by more than `min_delta`.
    fn update(&mut self, value: f32, min_delta: f32) -> bool {
        let improved = self.best.is_none_or(|b| value < b - min_delta);
        if improved {
            self.best = Some(value);
            self.since_best = 0;
        } else {
            self.since_best += 1;
        }
        improved
    }
}

/// Everything about a fit's arguments that can be checked before any work.
fn check_fit<B: Backend + ?Sized>(
    cfg: &FitConfig,
    backend: &B,
    opt: &Optimizer,
    train: &Dataset,
    val: Option<&Dataset>,
) -> Result<()> {
    cfg.validate()?;
    if let Some(c) = &cfg.checkpoint {
        // Found now, not after the first epoch's work.
        let dir = c
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if c.path.file_name().is_none() || !dir.is_dir() {
            return Err(Error::Argument(format!(
                "checkpoint path {}: the folder does not exist or the path names no file; create the folder or choose another path",
                c.path.display()
            )));
        }
    }
    opt.validate()?;
    let mcfg = backend.config();
    if train.is_empty() {
        return Err(Error::Empty("the training data".into()));
    }
    if let Some(st) = &cfg.stateful {
        stateful::check(
            st,
            (cfg.shuffle, cfg.drop_last),
            cfg.loss,
            (cfg.batch_size, cfg.eval_batch_size),
            mcfg,
            train,
            val,
        )?;
    } else {
        train.check_inputs(mcfg)?;
        train.check_targets(mcfg, cfg.loss)?;
        if let Some(v) = val {
            v.check_inputs(mcfg)?;
            v.check_targets(mcfg, cfg.loss)?;
        }
    }
    if cfg.monitor == Monitor::ValAccuracy && (val.is_none() || cfg.loss != Loss::Ce) {
        return Err(Error::Argument("monitoring validation accuracy needs validation data and loss ce; monitor the validation loss instead".into()));
    }
    Ok(())
}

/// What one epoch of training did.
struct EpochRun {
    /// Mean loss over the sequences of the steps that counted.
    loss: f32,
    /// Mean gradient norm over the epoch's batches.
    grad_norm: f32,
    /// Sequences in the steps that counted.
    seen: usize,
    /// Steps skipped for a non-finite loss or gradient.
    skipped: usize,
    seconds: f64,
}

/// One epoch over `train`: batches in order (or shuffled by `rng`), one
/// backend step each, the statistics gathered as they come back. With
/// `stream` (stateful training) the batches are those, in order, each
/// starting from the states the one before left.
#[allow(clippy::too_many_arguments)]
fn train_epoch<B: Backend + ?Sized>(
    cfg: &FitConfig,
    backend: &mut B,
    opt: &mut Optimizer,
    train: &Dataset,
    stream: Option<&[Dataset]>,
    kept: bool,
    rng: &mut Rng,
    epoch: usize,
) -> Result<EpochRun> {
    let opts = StepOptions {
        loss: cfg.loss,
        clip: cfg.clip,
    };
    let skip = cfg.on_nonfinite == OnNonFinite::Skip;
    let batches = match stream {
        // Stream batches are taken whole, in order: indices stand for them.
        Some(s) => (0..s.len()).map(|i| vec![i]).collect(),
        None => batch_indices(
            train.len(),
            cfg.batch_size,
            if cfg.shuffle { Some(rng) } else { None },
            cfg.drop_last,
        ),
    };
    if batches.is_empty() {
        return Err(Error::Argument(format!(
            "drop_last leaves no batch: {} sequences is fewer than the batch size {}",
            train.len(),
            cfg.batch_size
        )));
    }
    let mut bar = EpochBar::new(cfg.progress, epoch + 1, cfg.epochs, batches.len());
    let start = Instant::now();
    let (mut loss_sum, mut norm_sum, mut seen) = (0.0f64, 0.0f64, 0usize);
    // Batch sizes of submitted steps whose statistics have not come back yet.
    let mut pending: VecDeque<usize> = Default::default();
    let mut take =
        |stats: Vec<crate::StepStats>, pending: &mut VecDeque<usize>, bar: &mut EpochBar| {
            for s in stats {
                let n = pending.pop_front().unwrap_or(0);
                loss_sum += s.loss as f64 * n as f64;
                norm_sum += s.grad_norm as f64;
                seen += n;
                bar.step(n, loss_sum / seen.max(1) as f64);
            }
        };
    let mut skipped = 0usize;
    // A diverged step: with Skip, its update was not applied; count it and go on.
    let mut bad_step = |e: Error, pending: &mut VecDeque<usize>| match e {
        Error::Diverged { step, loss } if skip => {
            pending.pop_front();
            skipped += 1;
            if cfg.verbose {
                eprintln!("step {step}: loss or gradient {loss}; step skipped");
            }
            Ok(())
        }
        e => Err(e),
    };
    // Stateful: the states the last batch left (none at the epoch's start).
    let mut carried = None;
    for idx in &batches {
        // A kept set is gathered where it is kept: no host batch.
        let batch = match stream {
            Some(s) => Some(stateful::with_states(&s[idx[0]], &carried)),
            None if kept => None,
            None if cfg.trim_to_longest => Some(train.gather(idx).trim_to_longest()),
            None => Some(train.gather(idx)),
        };
        // Each step's loss is weighted by its sequences (stateful: its tokens).
        pending.push_back(match (stream, &batch) {
            (Some(_), Some(b)) => b.len() * b.steps(),
            _ => idx.len(),
        });
        loop {
            let before = opt.step;
            let step = match (stream, &batch) {
                // Stateful: the next batch starts from this one's final
                // states; after a failed (or skipped) step from zeros: its
                // states may not be finite, and an asynchronous backend may
                // report an earlier step's failure instead.
                (Some(_), Some(batch)) => match backend.train_step_states(batch, &opts, opt) {
                    Ok((stats, finals)) => {
                        carried = Some(finals);
                        Ok(stats)
                    }
                    Err(e) => {
                        carried = None;
                        Err(e)
                    }
                },
                (_, Some(batch)) => backend.train_step(batch, &opts, opt),
                (_, None) => backend.train_step_rows(idx, cfg.trim_to_longest, &opts, opt),
            };
            match step {
                Ok(stats) => take(stats, &mut pending, &mut bar),
                Err(e) => {
                    // An asynchronous backend (the GPU path) may report an
                    // earlier step's divergence while waiting for room,
                    // before it submits this batch: the error names a step
                    // already counted and the count did not move. Then this
                    // batch is still to do.
                    let earlier = matches!(e, Error::Diverged { step, .. } if step as u64 <= before)
                        && opt.step == before;
                    bad_step(e, &mut pending)?;
                    if earlier {
                        continue;
                    }
                }
            }
            break;
        }
    }
    // `finish` stops at a diverged step; call it again for the steps behind it.
    loop {
        match backend.finish() {
            Ok(stats) => {
                take(stats, &mut pending, &mut bar);
                break;
            }
            Err(e) => bad_step(e, &mut pending)?,
        }
    }
    bar.finish();
    if seen == 0 {
        return Err(Error::Argument(format!(
            "every step of epoch {} had a non-finite loss or gradient and was skipped, so nothing was learned; lower the learning rate or enable gradient clipping",
            epoch + 1
        )));
    }
    Ok(EpochRun {
        loss: (loss_sum / seen as f64) as f32,
        grad_norm: (norm_sum / batches.len() as f64) as f32,
        seen,
        skipped,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Writes the checkpoint and its training-state sidecar after an epoch
/// (weights from the backend into `host`, the optimizer's moments to the host).
#[allow(clippy::too_many_arguments)]
fn save_checkpoint<B: Backend + ?Sized>(
    backend: &mut B,
    opt: &mut Optimizer,
    host: &mut Model,
    path: &std::path::Path,
    metrics: &EpochMetrics,
    base_lr: f32,
    rng: &Rng,
    monitor: MonitorState,
) -> Result<()> {
    backend.sync_to(host)?;
    let bytes = checkpoint::to_bytes(host, &checkpoint_meta(metrics))?;
    backend.moments_to_host(opt)?;
    let mut saved = opt.clone();
    saved.set_lr(base_lr);
    let state = TrainState {
        optimizer: saved,
        moments_saved: true,
        epoch: metrics.epoch,
        rng_state: rng.state(),
        monitor,
    };
    optim_state::save_pair(path, &bytes, &state)
}

/// Restores a fit from checkpoint `path` and its sidecar into `backend` and `opt`.
fn resume<B: Backend + ?Sized>(
    backend: &mut B,
    opt: &mut Optimizer,
    path: &std::path::Path,
    epochs: usize,
) -> Result<TrainState> {
    let (model, state) = optim_state::load_pair(path)?;
    let bad = |reason: String| Error::Checkpoint {
        path: path.display().to_string(),
        reason,
    };
    if model.config() != backend.config() {
        return Err(bad(format!(
            "its model ({:?}) is not the architecture being trained ({:?}); build the model from the checkpoint",
            model.config(),
            backend.config()
        )));
    }
    let saved = &state.optimizer;
    if std::mem::discriminant(&saved.kind) != std::mem::discriminant(&opt.kind) {
        return Err(bad(format!(
            "it was trained with {:?}, not {:?}: resume with the same optimizer",
            saved.kind, opt.kind
        )));
    }
    let stateful = saved.step > 0
        && match saved.kind {
            crate::OptimizerKind::Sgd { momentum, .. } => momentum != 0.0,
            crate::OptimizerKind::Adam { .. } => true,
        };
    if stateful && !state.moments_saved {
        return Err(bad("its optimizer moments were not saved (it was written by a GPU fit: the GPU path keeps the moments on the device); an exact resume is not possible. Start a new fit from the weights alone (--model), or use plain SGD without momentum, which has no moments".into()));
    }
    if state.epoch >= epochs {
        return Err(Error::Argument(format!(
            "the checkpoint {} has already done {} epoch(s), and the fit asks for {epochs} in total: raise the number of epochs to train further",
            path.display(),
            state.epoch
        )));
    }
    backend.load_from(&model)?;
    // As torch's optimizer.load_state_dict: the saved hyper-parameters win.
    *opt = state.optimizer.clone();
    backend.moments_from_host(opt)?;
    Ok(state)
}

/// A zero model of architecture `cfg`, to receive weights from a backend.
fn blank(cfg: &crate::model::config::ModelConfig) -> Model {
    let total = crate::model::params::Layout::new(cfg).total;
    Model::from_params(cfg.clone(), vec![0.0; total]).expect("the backend's config is valid")
}

fn checkpoint_meta(m: &EpochMetrics) -> HashMap<String, String> {
    let json = serde_json::json!({
        "epoch": m.epoch,
        "train_loss": m.train_loss,
        "val_loss": m.val_loss,
        "val_accuracy": m.val_accuracy,
        "lr": m.lr,
    });
    HashMap::from([(CHECKPOINT_TRAIN_KEY.to_string(), json.to_string())])
}

//! The training loop: it learns (MNIST subset), keeps the best weights with
//! early stopping, writes checkpoints that load, is reproducible from its
//! seed, follows its schedule, clips, and batches as a PyTorch DataLoader.

use recurrent::io::checkpoint;
use recurrent::io::idx::{load_mnist_dir, Split};
use recurrent::model::{Evaluation, StepOptions, StepStats};
use recurrent::rng::Rng;
use recurrent::train::{
    self, Backend, CheckpointConfig, Control, EarlyStopping, FitConfig, LrSchedule, Monitor,
    Trainer,
};
use recurrent::{
    Cell, Dataset, Error, Init, Inputs, Loss, Model, ModelConfig, Optimizer, Targets, Tensor,
};
use std::cell::RefCell;

const MNIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-10k");

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("recurrent-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `n` sequences of 6 steps with 3 features; class 1 when the first feature sums positive.
/// With `noise_labels` the labels are random instead (nothing to learn, everything to overfit).
fn toy(n: usize, seed: u64, noise_labels: bool) -> Dataset {
    let mut rng = Rng::new(seed);
    let x: Vec<f32> = (0..n * 18).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let y: Vec<i64> = (0..n)
        .map(|i| {
            if noise_labels {
                rng.below(2) as i64
            } else {
                (x[i * 18..(i + 1) * 18].iter().step_by(3).sum::<f32>() > 0.0) as i64
            }
        })
        .collect();
    Dataset::new(
        Inputs::features(x, n, 6, 3).unwrap(),
        Some(Targets::Classes {
            data: y,
            shape: vec![n],
        }),
        None,
    )
}

fn quiet(cfg: FitConfig) -> FitConfig {
    FitConfig {
        progress: false,
        ..cfg
    }
}

#[test]
fn short_mnist_run_on_a_subset_reaches_80_percent() {
    // 4,000 training images, 3 epochs of LSTM(64), Adam 3e-3, batch 32:
    // measured 85.8% on the first 1,000 test images (seed 7; debug build).
    let train = load_mnist_dir(MNIST, Split::Train).unwrap().slice(0, 4000);
    let test = load_mnist_dir(MNIST, Split::Test).unwrap().slice(0, 1000);
    let mut model = Model::new(ModelConfig::new(Cell::Lstm, 28, 64, 10), &Init::seed(7)).unwrap();
    let mut opt = Optimizer::adam(3e-3);
    let cfg = quiet(FitConfig {
        epochs: 3,
        batch_size: 32,
        seed: 7,
        ..FitConfig::default()
    });
    let h = Trainer::new(cfg)
        .fit(&mut model, &mut opt, &train, None)
        .unwrap();
    assert!(h.epochs[2].train_loss < h.epochs[0].train_loss);
    let acc = train::evaluate(&mut model, &test, Loss::Ce, 500)
        .unwrap()
        .accuracy
        .unwrap();
    eprintln!("short MNIST run: test accuracy {acc}");
    assert!(acc >= 0.80, "test accuracy {acc}");
    // predict_classes agrees with evaluate's accuracy.
    let classes = train::predict_classes(&mut model, &test, 128).unwrap();
    let Some(Targets::Classes { data: y, .. }) = &test.y else {
        panic!()
    };
    let right = classes
        .iter()
        .zip(y)
        .filter(|(&c, &t)| c as i64 == t)
        .count();
    assert_eq!(right as f32 / 1000.0, acc);
}

#[test]
fn early_stopping_stops_and_restores_the_best_weights() {
    // Random labels: the model overfits the 48 training rows, so the validation loss
    // rises after its first epochs and early stopping must fire.
    let train = toy(48, 1, true);
    let val = toy(64, 2, true);
    let mut model = Model::new(ModelConfig::new(Cell::Lstm, 3, 32, 2), &Init::seed(1)).unwrap();
    let mut opt = Optimizer::adam(2e-2);
    let patience = 3;
    let cfg = quiet(FitConfig {
        epochs: 40,
        batch_size: 8,
        seed: 1,
        early_stopping: Some(EarlyStopping::patience(patience)),
        ..FitConfig::default()
    });
    let h = Trainer::new(cfg)
        .fit(&mut model, &mut opt, &train, Some(&val))
        .unwrap();
    assert!(
        h.stopped_early,
        "validation loss never stopped improving: {:?}",
        h.epochs.iter().map(|e| e.val_loss).collect::<Vec<_>>()
    );
    let best = h.best_epoch.unwrap();
    assert_eq!(
        h.epochs.len(),
        best + patience,
        "stops `patience` epochs after the best"
    );
    assert!(h.restored_best);
    let best_loss = h.best().unwrap().val_loss.unwrap();
    assert!(h.epochs[best..]
        .iter()
        .all(|e| e.val_loss.unwrap() >= best_loss && !e.improved));
    let now = model.evaluate(&val, Loss::Ce, 256).unwrap().loss;
    assert_eq!(now, best_loss, "the model holds the best epoch's weights");
    assert_ne!(now, h.last().unwrap().val_loss.unwrap());
}

#[test]
fn checkpoints_written_during_training_load() {
    let train = toy(96, 3, false);
    let val = toy(32, 4, false);
    let path = tmp("during.safetensors");
    let mut model = Model::new(ModelConfig::new(Cell::Gru, 3, 16, 2), &Init::seed(2)).unwrap();
    let mut opt = Optimizer::adam(1e-2);
    let cfg = quiet(FitConfig {
        epochs: 3,
        batch_size: 16,
        checkpoint: Some(CheckpointConfig {
            path: path.clone(),
            every: 1,
            best_only: false,
        }),
        ..FitConfig::default()
    });
    let seen = RefCell::new(Vec::new());
    let h = Trainer::new(cfg)
        .on_epoch(|m| {
            // The file on disk now is this epoch's: it loads, says so, and gives the same validation loss.
            let (loaded, meta) = checkpoint::load_with_metadata(&path).unwrap();
            let info: serde_json::Value =
                serde_json::from_str(&meta[train::fit::CHECKPOINT_TRAIN_KEY]).unwrap();
            assert_eq!(info["epoch"], m.epoch);
            assert_eq!(
                loaded.evaluate(&val, Loss::Ce, 256).unwrap().loss,
                m.val_loss.unwrap()
            );
            seen.borrow_mut().push(m.epoch);
            Control::Continue
        })
        .fit(&mut model, &mut opt, &train, Some(&val))
        .unwrap();
    assert_eq!(*seen.borrow(), vec![1, 2, 3]);
    assert_eq!(checkpoint::load(&path).unwrap().params(), model.params());
    assert_eq!(h.epochs.len(), 3);
    // No temporary files left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".during.safetensors.tmp-")
        })
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn best_only_checkpoint_holds_the_best_epoch() {
    let train = toy(48, 1, true);
    let val = toy(64, 2, true);
    let path = tmp("best.safetensors");
    let mut model = Model::new(ModelConfig::new(Cell::Lstm, 3, 32, 2), &Init::seed(1)).unwrap();
    let mut opt = Optimizer::adam(2e-2);
    let cfg = quiet(FitConfig {
        epochs: 8,
        batch_size: 8,
        seed: 1,
        checkpoint: Some(CheckpointConfig {
            path: path.clone(),
            every: 1,
            best_only: true,
        }),
        ..FitConfig::default()
    });
    let h = Trainer::new(cfg)
        .fit(&mut model, &mut opt, &train, Some(&val))
        .unwrap();
    let (best, meta) = checkpoint::load_with_metadata(&path).unwrap();
    let info: serde_json::Value =
        serde_json::from_str(&meta[train::fit::CHECKPOINT_TRAIN_KEY]).unwrap();
    assert_eq!(info["epoch"], h.best_epoch.unwrap());
    assert_eq!(
        best.evaluate(&val, Loss::Ce, 256).unwrap().loss,
        h.best().unwrap().val_loss.unwrap()
    );
}

#[test]
fn same_seed_gives_bit_identical_weights() {
    let data = toy(100, 5, false);
    let run = |seed: u64, shuffle: bool| {
        let mut model = Model::new(ModelConfig::new(Cell::Lstm, 3, 12, 2), &Init::seed(9)).unwrap();
        let mut opt = Optimizer::adam(1e-2);
        let cfg = quiet(FitConfig {
            epochs: 2,
            batch_size: 16,
            seed,
            shuffle,
            clip: Some(1.0),
            ..FitConfig::default()
        });
        Trainer::new(cfg)
            .fit(&mut model, &mut opt, &data, None)
            .unwrap();
        model.params().to_vec()
    };
    let a = run(11, true);
    assert_eq!(a, run(11, true), "same seed, same weights, bit for bit");
    assert_ne!(a, run(12, true), "another seed shuffles differently");
    assert_eq!(
        run(11, false),
        run(12, false),
        "without shuffling the seed does not matter"
    );
}

#[test]
fn schedules_give_the_expected_learning_rates() {
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-7 * b.abs().max(1.0);
    let step = LrSchedule::Step {
        every: 2,
        gamma: 0.5,
    };
    let got: Vec<f32> = (0..5).map(|e| step.lr(0.1, e, 5)).collect();
    for (g, w) in got.iter().zip([0.1, 0.1, 0.05, 0.05, 0.025]) {
        assert!(close(*g, w), "{got:?}");
    }
    let cos = LrSchedule::Cosine { eta_min: 0.0 };
    let got: Vec<f32> = (0..5).map(|e| cos.lr(0.1, e, 5)).collect();
    // 0.1 * (1 + cos(pi * e / 5)) / 2
    for (g, w) in got
        .iter()
        .zip([0.1, 0.090_450_85, 0.065_450_85, 0.034_549_15, 0.009_549_15])
    {
        assert!(close(*g, w), "{got:?}");
    }
    assert!(close(
        LrSchedule::Cosine { eta_min: 0.01 }.lr(0.1, 5, 5),
        0.01
    ));
    assert!(close(
        LrSchedule::Cosine { eta_min: 0.01 }.lr(0.1, 4, 5),
        0.01 + 0.09 * 0.095_491_5
    ));
    assert_eq!(LrSchedule::Constant.lr(0.3, 7, 10), 0.3);
    assert_eq!(LrSchedule::parse("step:2:0.5").unwrap(), step);
    assert_eq!(
        LrSchedule::parse("cosine:0.001").unwrap(),
        LrSchedule::Cosine { eta_min: 0.001 }
    );
    assert!(LrSchedule::parse("step:0:0.5").is_err());
    assert!(LrSchedule::parse("linear").is_err());

    // The trainer applies it each epoch and puts the base rate back at the end.
    let data = toy(32, 6, false);
    let mut model = Model::new(ModelConfig::new(Cell::Rnn, 3, 8, 2), &Init::seed(1)).unwrap();
    let mut opt = Optimizer::sgd(0.1);
    let cfg = quiet(FitConfig {
        epochs: 5,
        batch_size: 32,
        schedule: step,
        ..FitConfig::default()
    });
    let h = Trainer::new(cfg)
        .fit(&mut model, &mut opt, &data, None)
        .unwrap();
    let lrs: Vec<f32> = h.epochs.iter().map(|e| e.lr).collect();
    assert_eq!(lrs, (0..5).map(|e| step.lr(0.1, e, 5)).collect::<Vec<_>>());
    assert_eq!(opt.lr(), 0.1);
}

#[test]
fn gradient_clipping_bounds_the_update() {
    // One full-batch SGD step with lr 1 and clip 1e-3 moves the weights by at most 1e-3.
    let data = toy(64, 7, false);
    let mut model = Model::new(ModelConfig::new(Cell::Lstm, 3, 16, 2), &Init::seed(3)).unwrap();
    let before = model.params().to_vec();
    let mut opt = Optimizer::sgd(1.0);
    let cfg = quiet(FitConfig {
        epochs: 1,
        batch_size: 64,
        clip: Some(1e-3),
        ..FitConfig::default()
    });
    let h = Trainer::new(cfg)
        .fit(&mut model, &mut opt, &data, None)
        .unwrap();
    let moved = before
        .iter()
        .zip(model.params())
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(
        h.epochs[0].grad_norm > 1e-2,
        "the raw gradient is much larger than the clip"
    );
    assert!(
        moved <= 1e-3 * 1.001 && moved > 1e-3 * 0.99,
        "update norm {moved}"
    );
}

/// A backend wrapping the CPU path that records every training batch: the
/// trainer only talks to the `Backend` trait, so any path can be plugged in.
struct Recording {
    inner: Model,
    batches: Vec<Vec<f32>>,
}

impl Backend for Recording {
    fn device(&self) -> String {
        "recording cpu".into()
    }
    fn config(&self) -> &ModelConfig {
        self.inner.config()
    }
    fn train_step(
        &mut self,
        batch: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> recurrent::Result<Vec<StepStats>> {
        let Inputs::Features { data, t, f, .. } = &batch.x else {
            unreachable!()
        };
        self.batches
            .push(data.chunks(t * f).map(|row| row[0]).collect());
        Ok(vec![self.inner.train_step(batch, opts, opt)?])
    }
    fn evaluate(
        &mut self,
        data: &Dataset,
        loss: Loss,
        batch_size: usize,
    ) -> recurrent::Result<Evaluation> {
        self.inner.evaluate(data, loss, batch_size)
    }
    fn predict(&mut self, data: &Dataset, batch_size: usize) -> recurrent::Result<Tensor> {
        Backend::predict(&mut self.inner, data, batch_size)
    }
    fn predict_states(
        &mut self,
        data: &Dataset,
        batch_size: usize,
    ) -> recurrent::Result<recurrent::train::Prediction> {
        Backend::predict_states(&mut self.inner, data, batch_size)
    }
    fn sync_to(&mut self, model: &mut Model) -> recurrent::Result<()> {
        self.inner.sync_to(model)
    }
    fn load_from(&mut self, model: &Model) -> recurrent::Result<()> {
        self.inner.load_from(model)
    }
}

#[test]
fn without_shuffle_batches_come_in_file_order_with_a_partial_last_batch() {
    // Row i's first value is i, so the recorded batches show the order.
    let n = 70;
    let x: Vec<f32> = (0..n)
        .flat_map(|i| std::iter::once(i as f32).chain(std::iter::repeat_n(0.0, 5)))
        .collect();
    let data = Dataset::new(
        Inputs::features(x, n, 2, 3).unwrap(),
        Some(Targets::Classes {
            data: vec![0; n],
            shape: vec![n],
        }),
        None,
    );
    let mut b = Recording {
        inner: Model::new(ModelConfig::new(Cell::Gru, 3, 4, 2), &Init::seed(1)).unwrap(),
        batches: Vec::new(),
    };
    let mut opt = Optimizer::sgd(0.01);
    let cfg = quiet(FitConfig {
        epochs: 2,
        batch_size: 32,
        shuffle: false,
        ..FitConfig::default()
    });
    Trainer::new(cfg.clone())
        .fit_on(&mut b, &mut opt, &data, None)
        .unwrap();
    let sizes: Vec<usize> = b.batches.iter().map(|r| r.len()).collect();
    assert_eq!(sizes, vec![32, 32, 6, 32, 32, 6]);
    let order: Vec<f32> = b.batches[..3].concat();
    assert_eq!(order, (0..n).map(|i| i as f32).collect::<Vec<_>>());
    assert_eq!(b.batches[..3], b.batches[3..]);

    // Shuffled: each epoch a different permutation of all rows.
    b.batches.clear();
    Trainer::new(FitConfig {
        shuffle: true,
        seed: 4,
        ..cfg
    })
    .fit_on(&mut b, &mut opt, &data, None)
    .unwrap();
    let (e1, e2) = (b.batches[..3].concat(), b.batches[3..].concat());
    assert_ne!(e1, e2);
    let mut sorted = e1.clone();
    sorted.sort_by(f32::total_cmp);
    assert_eq!(sorted, (0..n).map(|i| i as f32).collect::<Vec<_>>());
}

#[test]
fn bad_settings_and_data_are_refused_before_training() {
    let data = toy(16, 1, false);
    let mut model = Model::new(ModelConfig::new(Cell::Lstm, 3, 4, 2), &Init::seed(1)).unwrap();
    let before = model.params().to_vec();
    let mut opt = Optimizer::adam(1e-3);
    let fit = |cfg: FitConfig, model: &mut Model, opt: &mut Optimizer, d: &Dataset| {
        Trainer::new(quiet(cfg)).fit(model, opt, d, None)
    };
    for cfg in [
        FitConfig {
            epochs: 0,
            ..FitConfig::default()
        },
        FitConfig {
            batch_size: 0,
            ..FitConfig::default()
        },
        FitConfig {
            clip: Some(-1.0),
            ..FitConfig::default()
        },
        FitConfig {
            early_stopping: Some(EarlyStopping::patience(0)),
            ..FitConfig::default()
        },
        FitConfig {
            monitor: Monitor::ValAccuracy,
            ..FitConfig::default()
        },
    ] {
        assert!(matches!(
            fit(cfg, &mut model, &mut opt, &data),
            Err(Error::Argument(_))
        ));
    }
    let wrong = Dataset::new(
        Inputs::features(vec![0.0; 16 * 6 * 5], 16, 6, 5).unwrap(),
        data.y.clone(),
        None,
    );
    assert!(matches!(
        fit(FitConfig::default(), &mut model, &mut opt, &wrong),
        Err(Error::Shape { .. })
    ));
    let mse = FitConfig {
        loss: Loss::Mse,
        ..FitConfig::default()
    };
    assert!(matches!(
        fit(mse, &mut model, &mut opt, &data),
        Err(Error::Dtype { .. })
    ));
    assert_eq!(model.params(), &before[..], "nothing trained");
}

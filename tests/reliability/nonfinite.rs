//! Non-finite loss: the Trainer stops with a clear message and the last good
//! weights (`OnNonFinite::Stop`), or leaves the bad step out and goes on
//! (`OnNonFinite::Skip`), on the CPU path and through the GPU backend.

use crate::bits;
use crate::common::{self, assert_close, TRAINED_WEIGHTS};
use recurrent::gpu::GpuModel;
use recurrent::model::StepOptions;
use recurrent::rng::Rng;
use recurrent::train::{Backend, FitConfig, OnNonFinite, Trainer};
use recurrent::{Cell, Dataset, Error, Init, Inputs, Loss, Model, ModelConfig, Optimizer, Targets};

const N: usize = 24;
const BATCH: usize = 4;

/// 6 batches of 4 (file order); targets of batch `bad` are 1e30, whose square
/// overflows f32: that batch's mse loss is infinite.
fn data(bad: usize) -> Dataset {
    let mut rng = Rng::new(8);
    let x: Vec<f32> = (0..N * 5 * 3).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let y: Vec<f32> = (0..N * 2)
        .map(|i| {
            if i / (2 * BATCH) == bad {
                1e30
            } else {
                rng.uniform(-1.0, 1.0)
            }
        })
        .collect();
    Dataset::new(
        Inputs::features(x, N, 5, 3).unwrap(),
        Some(Targets::Values {
            data: y,
            shape: vec![N, 2],
        }),
        None,
    )
}

fn model() -> Model {
    Model::new(ModelConfig::new(Cell::Lstm, 3, 6, 2), &Init::seed(4)).unwrap()
}

fn fit_cfg(on_nonfinite: OnNonFinite) -> FitConfig {
    FitConfig {
        epochs: 1,
        batch_size: BATCH,
        shuffle: false,
        loss: Loss::Mse,
        on_nonfinite,
        progress: false,
        ..FitConfig::default()
    }
}

/// The CPU weights after training step by step on the batches `which`.
fn reference(d: &Dataset, which: &[usize], mut opt: Optimizer) -> Model {
    let mut m = model();
    let opts = StepOptions {
        loss: Loss::Mse,
        clip: None,
    };
    for &b in which {
        m.train_step(&d.slice(b * BATCH, (b + 1) * BATCH), &opts, &mut opt)
            .unwrap();
    }
    m
}

#[test]
fn cpu_stop_keeps_the_last_good_weights_and_says_why() {
    let d = data(2);
    let mut m = model();
    let mut opt = Optimizer::adam(1e-2);
    let err = Trainer::new(fit_cfg(OnNonFinite::Stop))
        .fit(&mut m, &mut opt, &d, None)
        .unwrap_err();
    assert!(matches!(err, Error::Diverged { step: 3, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("step 3") && msg.contains("last good step") && msg.contains("learning rate"),
        "{msg}"
    );
    assert_eq!(
        bits(m.params()),
        bits(reference(&d, &[0, 1], Optimizer::adam(1e-2)).params())
    );
    assert_eq!(opt.step, 2, "the bad step is not counted");
}

#[test]
fn cpu_skip_leaves_the_bad_step_out() {
    let d = data(2);
    let mut m = model();
    let mut opt = Optimizer::adam(1e-2);
    let h = Trainer::new(fit_cfg(OnNonFinite::Skip))
        .fit(&mut m, &mut opt, &d, None)
        .unwrap();
    assert_eq!(h.epochs[0].skipped_steps, 1);
    assert!(h.epochs[0].train_loss.is_finite());
    assert_eq!(
        bits(m.params()),
        bits(reference(&d, &[0, 1, 3, 4, 5], Optimizer::adam(1e-2)).params())
    );
    // Every batch bad: the fit ends instead of reporting a loss of nothing.
    let all = Dataset::new(
        d.x.clone(),
        Some(Targets::Values {
            data: vec![1e30; N * 2],
            shape: vec![N, 2],
        }),
        None,
    );
    let err = Trainer::new(fit_cfg(OnNonFinite::Skip))
        .fit(&mut model(), &mut Optimizer::adam(1e-2), &all, None)
        .unwrap_err();
    assert!(err.to_string().contains("every step of epoch 1"), "{err}");
}

#[test]
fn gpu_stop_and_skip_keep_the_good_weights() {
    let Some(ctx) = common::gpu("gpu_stop_and_skip_keep_the_good_weights") else {
        return;
    };
    // Stop, bad batch last: no step is in flight behind it, so the GPU holds
    // the weights after the five good steps (its optimizer kernel skips a
    // step whose loss or norm is not finite).
    let d = data(5);
    let mut g = GpuModel::new(ctx.clone(), &model()).unwrap();
    let err = Trainer::new(fit_cfg(OnNonFinite::Stop))
        .fit_on(&mut g, &mut Optimizer::sgd(0.1), &d, None)
        .unwrap_err();
    assert!(matches!(err, Error::Diverged { step: 6, .. }), "{err:?}");
    let mut got = model();
    g.sync_to(&mut got).unwrap();
    let want = reference(&d, &[0, 1, 2, 3, 4], Optimizer::sgd(0.1));
    assert_close(
        "GPU weights after Stop",
        got.params(),
        want.params(),
        TRAINED_WEIGHTS,
    );

    // Stop, bad batch in the middle: the statistics come back asynchronously,
    // so the steps submitted behind the bad one (at most STATS_RING - 1) have
    // run by the time the fit stops. What holds: the bad step's update is never
    // applied, and the weights are those after the good steps 0, 1 and then
    // 3..3+k for some k < STATS_RING (here at most the 3 batches left).
    let d = data(2);
    let mut g = GpuModel::new(ctx.clone(), &model()).unwrap();
    let err = Trainer::new(fit_cfg(OnNonFinite::Stop))
        .fit_on(&mut g, &mut Optimizer::sgd(0.1), &d, None)
        .unwrap_err();
    assert!(matches!(err, Error::Diverged { step: 3, .. }), "{err:?}");
    let mut got = model();
    g.sync_to(&mut got).unwrap();
    let ring = recurrent::gpu::internals::STATS_RING;
    let k = (0..ring.min(4))
        .find(|&k| {
            let which: Vec<usize> = [0, 1].into_iter().chain(3..3 + k).collect();
            let want = reference(&d, &which, Optimizer::sgd(0.1));
            got.params().iter().zip(want.params()).all(|(a, b)| (a - b).abs() <= TRAINED_WEIGHTS.atol + TRAINED_WEIGHTS.rtol * b.abs())
        })
        .unwrap_or_else(|| panic!("GPU weights after Stop are not those of good steps 0, 1, 3..3+k for any k < {ring}"));
    eprintln!("GPU Stop at step 3: {k} later step(s) had been applied when the fit stopped");

    // Skip, bad batch in the middle (plain SGD: no step-count-dependent state).
    let d = data(2);
    let mut g = GpuModel::new(ctx.ctx.clone(), &model()).unwrap();
    let h = Trainer::new(fit_cfg(OnNonFinite::Skip))
        .fit_on(&mut g, &mut Optimizer::sgd(0.1), &d, None)
        .unwrap();
    assert_eq!(h.epochs[0].skipped_steps, 1);
    let mut got = model();
    g.sync_to(&mut got).unwrap();
    let want = reference(&d, &[0, 1, 3, 4, 5], Optimizer::sgd(0.1));
    let dev = assert_close(
        "GPU weights after Skip",
        got.params(),
        want.params(),
        TRAINED_WEIGHTS,
    );
    eprintln!("GPU skip vs CPU skip: {dev}");
}

/// A CPU model behind an asynchronous front, as the GPU path is: at most
/// `RING` steps in flight, statistics handed back late, and a divergence of an
/// earlier step reported while waiting for room, before the new batch is
/// submitted. The bad step is counted in `opt.step`, as on the GPU.
struct Lagging {
    model: Model,
    in_flight: std::collections::VecDeque<recurrent::Result<recurrent::StepStats>>,
}

const RING: usize = 2;

impl Backend for Lagging {
    fn device(&self) -> String {
        "lagging cpu".into()
    }
    fn config(&self) -> &ModelConfig {
        self.model.config()
    }
    fn train_step(
        &mut self,
        batch: &Dataset,
        opts: &StepOptions,
        opt: &mut Optimizer,
    ) -> recurrent::Result<Vec<recurrent::StepStats>> {
        let mut out = Vec::new();
        if self.in_flight.len() == RING {
            out.push(self.in_flight.pop_front().unwrap()?);
        }
        let r = self
            .model
            .train_step(batch, opts, opt)
            .map_err(|e| match e {
                Error::Diverged { loss, .. } => {
                    opt.step += 1;
                    Error::Diverged {
                        step: opt.step as usize,
                        loss,
                    }
                }
                e => e,
            });
        self.in_flight.push_back(r);
        Ok(out)
    }
    fn finish(&mut self) -> recurrent::Result<Vec<recurrent::StepStats>> {
        let mut out = Vec::new();
        while let Some(r) = self.in_flight.pop_front() {
            out.push(r?);
        }
        Ok(out)
    }
    fn evaluate(
        &mut self,
        data: &Dataset,
        loss: Loss,
        batch_size: usize,
    ) -> recurrent::Result<recurrent::Evaluation> {
        self.model.evaluate(data, loss, batch_size)
    }
    fn predict(
        &mut self,
        data: &Dataset,
        batch_size: usize,
    ) -> recurrent::Result<recurrent::Tensor> {
        Backend::predict(&mut self.model, data, batch_size)
    }
    fn predict_states(
        &mut self,
        data: &Dataset,
        batch_size: usize,
    ) -> recurrent::Result<recurrent::train::Prediction> {
        Backend::predict_states(&mut self.model, data, batch_size)
    }
    fn sync_to(&mut self, model: &mut Model) -> recurrent::Result<()> {
        self.model.sync_to(model)
    }
    fn load_from(&mut self, model: &Model) -> recurrent::Result<()> {
        self.model.load_from(model)
    }
}

#[test]
fn skip_on_an_asynchronous_backend_still_trains_every_good_batch() {
    // Bad batch 2: its divergence surfaces when batch 4 waits for room; batch 4
    // must still be trained (it was dropped before the Trainer resubmitted it).
    let d = data(2);
    let mut b = Lagging {
        model: model(),
        in_flight: Default::default(),
    };
    let h = Trainer::new(fit_cfg(OnNonFinite::Skip))
        .fit_on(&mut b, &mut Optimizer::sgd(0.1), &d, None)
        .unwrap();
    assert_eq!(h.epochs[0].skipped_steps, 1);
    assert_eq!(
        bits(b.model.params()),
        bits(reference(&d, &[0, 1, 3, 4, 5], Optimizer::sgd(0.1)).params())
    );
    // Bad last batch: reported by `finish`.
    let d = data(5);
    let mut b = Lagging {
        model: model(),
        in_flight: Default::default(),
    };
    let h = Trainer::new(fit_cfg(OnNonFinite::Skip))
        .fit_on(&mut b, &mut Optimizer::sgd(0.1), &d, None)
        .unwrap();
    assert_eq!(h.epochs[0].skipped_steps, 1);
    assert_eq!(
        bits(b.model.params()),
        bits(reference(&d, &[0, 1, 2, 3, 4], Optimizer::sgd(0.1)).params())
    );
}

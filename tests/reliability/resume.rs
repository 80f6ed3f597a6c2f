//! Resume: K epochs, a checkpoint, then the rest from it gives the weights of
//! an uninterrupted fit (bit for bit on the CPU path; on the GPU path within
//! tolerance, with the optimizer moments downloaded into the checkpoint's
//! sidecar and uploaded on resume).

use crate::common::{self, assert_close, temp_dir, GPU_RESUME};
use crate::{bits, toy};
use recurrent::gpu::GpuModel;
use recurrent::io::{checkpoint, optim_state};
use recurrent::train::{
    Backend, CheckpointConfig, Control, EarlyStopping, FitConfig, LrSchedule, Trainer,
};
use recurrent::{Cell, Error, Init, Model, ModelConfig, Optimizer, OptimizerKind};
use std::path::Path;

fn config(epochs: usize, ckpt: &Path, resume: Option<&Path>) -> FitConfig {
    FitConfig {
        epochs,
        batch_size: 8,
        shuffle: true,
        seed: 11,
        clip: Some(1.0),
        schedule: LrSchedule::Cosine { eta_min: 1e-4 },
        early_stopping: Some(EarlyStopping {
            patience: 100,
            min_delta: 0.0,
            restore_best: false,
        }),
        checkpoint: Some(CheckpointConfig {
            path: ckpt.to_path_buf(),
            every: 1,
            best_only: false,
        }),
        resume: resume.map(Path::to_path_buf),
        progress: false,
        ..FitConfig::default()
    }
}

/// Runs `epochs` epochs straight, and `stop_after` epochs of the same fit
/// (stopped there as a killed process would be) then a resume with a fresh
/// model and optimizer; returns both final weight vectors and the per-epoch losses.
fn straight_and_resumed<B: Backend>(
    make: &dyn Fn(&Model) -> B,
    opt: &Optimizer,
    epochs: usize,
    stop_after: usize,
    dir: &Path,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let cfg = ModelConfig::new(Cell::Lstm, 3, 8, 2).layers(2);
    let data = toy(44, 5, 3);
    let start = Model::new(cfg.clone(), &Init::seed(5)).unwrap();

    let mut b = make(&start);
    let mut o = opt.clone();
    let h = Trainer::new(config(epochs, &dir.join("straight.safetensors"), None))
        .fit_on(&mut b, &mut o, &data, Some(&data))
        .unwrap();
    let mut straight = start.clone();
    b.sync_to(&mut straight).unwrap();
    let straight_losses: Vec<f32> = h.epochs.iter().map(|m| m.train_loss).collect();

    let ckpt = dir.join("part.safetensors");
    let mut b = make(&start);
    let mut o = opt.clone();
    Trainer::new(config(epochs, &ckpt, None))
        .on_epoch(|m| {
            if m.epoch == stop_after {
                Control::Stop
            } else {
                Control::Continue
            }
        })
        .fit_on(&mut b, &mut o, &data, Some(&data))
        .unwrap();
    // A fresh process: other initial weights, an optimizer with no state.
    let other = Model::new(cfg, &Init::seed(99)).unwrap();
    let mut b = make(&other);
    let mut o = opt.clone();
    let h2 = Trainer::new(config(epochs, &ckpt, Some(&ckpt)))
        .fit_on(&mut b, &mut o, &data, Some(&data))
        .unwrap();
    assert_eq!(
        h2.epochs.first().map(|m| m.epoch),
        Some(stop_after + 1),
        "the resumed fit starts after the saved epoch"
    );
    assert_eq!(
        o.step,
        opt.step + (epochs as u64) * 6,
        "optimizer steps continue from the saved count (6 batches per epoch)"
    );
    let mut resumed = other.clone();
    b.sync_to(&mut resumed).unwrap();
    let resumed_losses: Vec<f32> = h2.epochs.iter().map(|m| m.train_loss).collect();
    (
        straight.params().to_vec(),
        resumed.params().to_vec(),
        straight_losses[stop_after..].to_vec(),
        resumed_losses,
    )
}

#[test]
fn resume_on_cpu_is_bit_identical_to_an_uninterrupted_fit() {
    let dir = temp_dir("resume-cpu");
    let opts = [
        Optimizer::adam(1e-2),
        Optimizer::new(OptimizerKind::Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
            nesterov: true,
        }),
    ];
    for opt in &opts {
        let (straight, resumed, l1, l2) =
            straight_and_resumed(&|m: &Model| m.clone(), opt, 5, 2, &dir);
        assert_eq!(
            bits(&l1),
            bits(&l2),
            "{:?}: losses of epochs 3..5 differ after the resume",
            opt.kind
        );
        assert_eq!(
            bits(&straight),
            bits(&resumed),
            "{:?}: weights differ after the resume",
            opt.kind
        );
        // The fit moved the weights: an untrained model is not what we compared.
        let start = Model::new(
            ModelConfig::new(Cell::Lstm, 3, 8, 2).layers(2),
            &Init::seed(5),
        )
        .unwrap();
        assert_ne!(bits(start.params()), bits(&straight));
    }
}

#[test]
fn the_model_file_stays_a_plain_state_dict_and_pairs_with_its_sidecar() {
    let dir = temp_dir("resume-pairing");
    let ckpt = dir.join("m.safetensors");
    let data = toy(16, 4, 1);
    let mut model = Model::new(ModelConfig::new(Cell::Gru, 3, 4, 2), &Init::seed(1)).unwrap();
    let mut opt = Optimizer::adam(1e-2);
    Trainer::new(config(2, &ckpt, None))
        .fit(&mut model, &mut opt, &data, None)
        .unwrap();
    // Only the model's tensors in the model file (PyTorch's strict load).
    let file = recurrent::io::st::read(&ckpt).unwrap();
    let names: Vec<&String> = file.tensors.keys().collect();
    let mut want: Vec<&String> = model.layout().entries.iter().map(|e| &e.name).collect();
    want.sort();
    assert_eq!(names, want);
    let side = optim_state::sidecar_path(&ckpt);
    assert_eq!(side, dir.join("m.optim.safetensors"));
    let (m, state) = optim_state::load_pair(&ckpt).unwrap();
    assert_eq!(bits(m.params()), bits(model.params()));
    assert_eq!((state.epoch, state.optimizer.step), (2, 4));
    assert_eq!(bits(&state.optimizer.m), bits(&opt.m));
    assert_eq!(bits(&state.optimizer.v), bits(&opt.v));

    // Another save of the model next to the old sidecar: refused, with the reason.
    let mut changed = model.clone();
    changed.params_mut()[0] += 1.0;
    checkpoint::save(&changed, &ckpt).unwrap();
    let err = optim_state::load_pair(&ckpt).unwrap_err().to_string();
    assert!(err.contains("different save"), "{err}");
    // No sidecar at all: refused, saying what to do instead.
    std::fs::remove_file(&side).unwrap();
    std::fs::remove_file(optim_state::previous_sidecar_path(&ckpt)).unwrap();
    let mut o = Optimizer::adam(1e-2);
    let err = Trainer::new(config(3, &ckpt, Some(&ckpt)))
        .fit(&mut model, &mut o, &data, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no optimizer state") && err.contains("--model"),
        "{err}"
    );
}

#[test]
fn resume_refuses_a_finished_fit_and_another_optimizer() {
    let dir = temp_dir("resume-refusals");
    let ckpt = dir.join("m.safetensors");
    let data = toy(16, 4, 2);
    let mut model = Model::new(ModelConfig::new(Cell::Rnn, 3, 4, 2), &Init::seed(2)).unwrap();
    let mut opt = Optimizer::adam(1e-2);
    Trainer::new(config(2, &ckpt, None))
        .fit(&mut model, &mut opt, &data, None)
        .unwrap();
    let mut o = Optimizer::adam(1e-2);
    let err = Trainer::new(config(2, &ckpt, Some(&ckpt)))
        .fit(&mut model, &mut o, &data, None)
        .unwrap_err();
    assert!(
        matches!(err, Error::Argument(_)) && err.to_string().contains("raise the number of epochs"),
        "{err}"
    );
    let mut o = Optimizer::sgd(0.1);
    let err = Trainer::new(config(4, &ckpt, Some(&ckpt)))
        .fit(&mut model, &mut o, &data, None)
        .unwrap_err();
    assert!(err.to_string().contains("same optimizer"), "{err}");
}

#[test]
fn resume_on_gpu_matches_an_uninterrupted_gpu_fit() {
    let Some(ctx) = common::gpu("resume_on_gpu_matches_an_uninterrupted_gpu_fit") else {
        return;
    };
    let dir = temp_dir("resume-gpu");
    let make = |m: &Model| GpuModel::new(ctx.clone(), m).unwrap();
    let (straight, resumed, l1, l2) = straight_and_resumed(&make, &Optimizer::sgd(0.2), 4, 2, &dir);
    let d = assert_close(
        "GPU weights, resumed vs straight",
        &resumed,
        &straight,
        GPU_RESUME,
    );
    let dl = assert_close(
        "GPU epoch losses, resumed vs straight",
        &l2,
        &l1,
        GPU_RESUME,
    );
    eprintln!(
        "GPU resume (plain SGD): weights {d}; losses {dl}; bit-identical: {}",
        bits(&straight) == bits(&resumed)
    );

    // Optimizers with moments: they come down into the sidecar and go back up on resume.
    for opt in [
        Optimizer::adam(1e-2),
        Optimizer::new(OptimizerKind::Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-3,
            nesterov: true,
        }),
    ] {
        let (straight, resumed, l1, l2) = straight_and_resumed(&make, &opt, 4, 2, &dir);
        assert_close(
            &format!("GPU {:?} weights, resumed vs straight", opt.kind),
            &resumed,
            &straight,
            GPU_RESUME,
        );
        assert_close(
            &format!("GPU {:?} losses, resumed vs straight", opt.kind),
            &l2,
            &l1,
            GPU_RESUME,
        );
    }
    // A CPU checkpoint resumes on the GPU (and continues as the CPU fit would, within tolerance).
    let ckpt = dir.join("cpu-adam.safetensors");
    let data = toy(16, 4, 4);
    let start = Model::new(ModelConfig::new(Cell::Lstm, 3, 8, 2), &Init::seed(5)).unwrap();
    let mut cpu = start.clone();
    let mut o = Optimizer::adam(1e-2);
    Trainer::new(config(2, &ckpt, None))
        .fit(&mut cpu, &mut o, &data, None)
        .unwrap();
    let mut cpu_on = cpu.clone();
    let mut o_cpu = Optimizer::adam(1e-2);
    Trainer::new(config(3, &dir.join("cpu-on.safetensors"), Some(&ckpt)))
        .fit(&mut cpu_on, &mut o_cpu, &data, None)
        .unwrap();
    let mut g = make(&start);
    let mut o_gpu = Optimizer::adam(1e-2);
    Trainer::new(config(3, &dir.join("gpu-on.safetensors"), Some(&ckpt)))
        .fit_on(&mut g, &mut o_gpu, &data, None)
        .unwrap();
    let mut gpu_on = start.clone();
    g.sync_to(&mut gpu_on).unwrap();
    assert_close(
        "CPU checkpoint resumed on the GPU vs on the CPU",
        gpu_on.params(),
        cpu_on.params(),
        GPU_RESUME,
    );
}

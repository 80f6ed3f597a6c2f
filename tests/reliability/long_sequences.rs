//! Long sequences: T = 2,000 trains without NaN on both paths with clipping,
//! and the paths agree (small H and B, so it runs in seconds in debug).

use crate::common::{self, assert_close, LONG_SEQUENCE, LOSS};
use recurrent::gpu::GpuModel;
use recurrent::model::StepOptions;
use recurrent::rng::Rng;
use recurrent::{Cell, Dataset, Init, Inputs, Loss, Model, ModelConfig, Optimizer, Targets};

const T: usize = 2000;

/// Two sequences of T steps; the target is the mean of the first feature over the last 50 steps.
fn data() -> Dataset {
    let mut rng = Rng::new(2);
    let x: Vec<f32> = (0..2 * T * 2).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let y: Vec<f32> = (0..2)
        .map(|n| (T - 50..T).map(|t| x[(n * T + t) * 2]).sum::<f32>() / 50.0)
        .collect();
    Dataset::new(
        Inputs::features(x, 2, T, 2).unwrap(),
        Some(Targets::Values {
            data: y,
            shape: vec![2, 1],
        }),
        None,
    )
}

#[test]
fn t2000_trains_without_nan_on_both_paths_and_they_agree() {
    let d = data();
    let opts = StepOptions {
        loss: Loss::Mse,
        clip: Some(1.0),
    };
    let ctx = common::gpu("t2000_trains_without_nan_on_both_paths_and_they_agree");
    for cell in [Cell::Lstm, Cell::Gru, Cell::Rnn] {
        let start = Model::new(ModelConfig::new(cell, 2, 8, 1), &Init::seed(6)).unwrap();
        let mut cpu = start.clone();
        let mut opt = Optimizer::adam(1e-2);
        let mut cpu_losses = Vec::new();
        for _ in 0..3 {
            let s = cpu.train_step(&d, &opts, &mut opt).unwrap();
            assert!(
                s.loss.is_finite() && s.grad_norm.is_finite(),
                "{cell:?} CPU: {s:?}"
            );
            cpu_losses.push(s.loss);
        }
        assert!(
            cpu.params().iter().all(|p| p.is_finite()),
            "{cell:?}: CPU weights not finite"
        );
        assert_ne!(cpu.params(), start.params());
        let Some(ctx) = &ctx else { continue };
        let mut gpu = GpuModel::new(ctx.ctx.clone(), &start).unwrap();
        let mut opt = Optimizer::adam(1e-2);
        let mut gpu_losses = Vec::new();
        for _ in 0..3 {
            gpu_losses.push(gpu.train_step_sync(&d, &opts, &mut opt).unwrap().loss);
        }
        let out_gpu = gpu.forward(&d).unwrap();
        let w = gpu.download().unwrap();
        assert_close(
            &format!("{cell:?} T=2000 losses"),
            &gpu_losses,
            &cpu_losses,
            LOSS,
        );
        let dev = assert_close(
            &format!("{cell:?} T=2000 weights after 3 Adam steps"),
            &w,
            cpu.params(),
            LONG_SEQUENCE,
        );
        let out_cpu = cpu.forward(&d).unwrap();
        let devo = assert_close(
            &format!("{cell:?} T=2000 outputs"),
            &out_gpu.data,
            &out_cpu.data,
            LONG_SEQUENCE,
        );
        eprintln!("{cell:?} T=2000: weights {dev}; outputs {devo}");
    }
}

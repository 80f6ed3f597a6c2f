//! Model-level behaviour: initialisation, reproducibility, states in and out, clipping.

mod common;
use common::*;
use recurrent::cpu::optim::clip_grad_norm;
use recurrent::rng::Rng;
use recurrent::{
    Cell, Dataset, Init, Inputs, Loss, Model, ModelConfig, Optimizer, OutputMode, States,
    StepOptions, Targets,
};

fn batch(n: usize, t: usize, f: usize, classes: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    Dataset::new(
        Inputs::features(
            (0..n * t * f).map(|_| rng.normal() as f32).collect(),
            n,
            t,
            f,
        )
        .unwrap(),
        Some(Targets::Classes {
            data: (0..n).map(|_| rng.below(classes) as i64).collect(),
            shape: vec![n],
        }),
        None,
    )
}

#[test]
fn default_init_is_pytorch_uniform_and_seeded() {
    let cfg = ModelConfig::new(Cell::Gru, 6, 16, 3)
        .layers(2)
        .bidirectional(true);
    let a = Model::new(cfg.clone(), &Init::seed(3)).unwrap();
    let b = Model::new(cfg.clone(), &Init::seed(3)).unwrap();
    let c = Model::new(cfg, &Init::seed(4)).unwrap();
    assert_eq!(a.params(), b.params());
    assert_ne!(a.params(), c.params());
    let k = 1.0 / 16f32.sqrt();
    for e in &a.layout().entries {
        let v = &a.params()[e.range()];
        let bound = if e.name.starts_with("head.") {
            1.0 / 32f32.sqrt()
        } else {
            k
        };
        assert!(
            v.iter().all(|x| x.abs() <= bound),
            "{} outside ±{bound}",
            e.name
        );
        // Uniform over the whole range: with 48+ draws the extremes are approached.
        if v.len() >= 48 {
            assert!(v.iter().any(|x| x.abs() > 0.8 * bound), "{}", e.name);
        }
    }
}

#[test]
fn orthogonal_init_and_forget_bias_one() {
    let h = 12;
    let init = Init {
        seed: 5,
        orthogonal: true,
        forget_bias_one: true,
    };
    let m = Model::new(ModelConfig::new(Cell::Lstm, 4, h, 2), &init).unwrap();
    let w = m.param("rnn.weight_hh_l0").unwrap().data;
    for g in 0..4 {
        let q = &w[g * h * h..(g + 1) * h * h];
        for i in 0..h {
            for j in 0..h {
                let dot: f32 = (0..h).map(|c| q[i * h + c] * q[j * h + c]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-5, "gate {g}: Q·Qᵀ[{i},{j}] = {dot}");
            }
        }
    }
    let b_ih = m.param("rnn.bias_ih_l0").unwrap().data;
    let b_hh = m.param("rnn.bias_hh_l0").unwrap().data;
    assert!(b_ih[h..2 * h].iter().all(|&v| v == 1.0));
    assert!(b_hh[h..2 * h].iter().all(|&v| v == 0.0));
}

#[test]
fn same_seed_same_training_bit_for_bit() {
    let run = || {
        let mut m = Model::new(
            ModelConfig::new(Cell::Lstm, 3, 8, 4).layers(2),
            &Init::seed(9),
        )
        .unwrap();
        let mut opt = Optimizer::adam(1e-2);
        let d = batch(16, 7, 3, 4, 1);
        for _ in 0..5 {
            m.train_step(
                &d,
                &StepOptions {
                    loss: Loss::Ce,
                    clip: Some(0.5),
                },
                &mut opt,
            )
            .unwrap();
        }
        m.params().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn final_states_chain_across_calls() {
    // Running T steps at once equals running T1 then T2 steps with the states handed over.
    for cell in [Cell::Lstm, Cell::Gru, Cell::Rnn] {
        let m = Model::new(
            ModelConfig::new(cell, 3, 5, 2)
                .layers(2)
                .output(OutputMode::Sequence),
            &Init::seed(2),
        )
        .unwrap();
        let d = batch(4, 9, 3, 2, 3);
        let Inputs::Features { data, .. } = &d.x else {
            unreachable!()
        };
        let (full, full_states) = m.forward_with_states(&d, &States::default()).unwrap();
        let part = |from: usize, to: usize| {
            let mut x = Vec::new();
            for b in 0..4 {
                x.extend_from_slice(&data[(b * 9 + from) * 3..(b * 9 + to) * 3]);
            }
            Dataset::new(Inputs::features(x, 4, to - from, 3).unwrap(), None, None)
        };
        let (o1, s1) = m
            .forward_with_states(&part(0, 4), &States::default())
            .unwrap();
        let (o2, s2) = m.forward_with_states(&part(4, 9), &s1).unwrap();
        let mut joined = Vec::new();
        for b in 0..4 {
            joined.extend_from_slice(&o1.data[b * 4 * 2..(b + 1) * 4 * 2]);
            joined.extend_from_slice(&o2.data[b * 5 * 2..(b + 1) * 5 * 2]);
        }
        assert_close(
            &format!("{cell:?} chained output"),
            &joined,
            &full.data,
            GOLDEN_OUTPUT,
        );
        assert_close(
            &format!("{cell:?} chained h_n"),
            s2.h.as_ref().unwrap(),
            full_states.h.as_ref().unwrap(),
            GOLDEN_OUTPUT,
        );
    }
}

#[test]
fn clipping_scales_to_the_max_norm_and_leaves_small_gradients() {
    let mut g = vec![3.0, 4.0];
    let norm = clip_grad_norm(&mut g, 1.0);
    assert_eq!(norm, 5.0);
    assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
    let mut small = vec![0.3, 0.4];
    clip_grad_norm(&mut small, 1.0);
    assert_eq!(small, vec![0.3, 0.4]);
}

#[test]
fn training_reduces_the_loss_with_every_optimizer() {
    use recurrent::OptimizerKind;
    for kind in [
        OptimizerKind::Sgd {
            lr: 0.5,
            momentum: 0.9,
            weight_decay: 1e-4,
            nesterov: false,
        },
        OptimizerKind::Sgd {
            lr: 0.5,
            momentum: 0.9,
            weight_decay: 0.0,
            nesterov: true,
        },
        OptimizerKind::Adam {
            lr: 0.02,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-4,
        },
    ] {
        let mut m = Model::new(ModelConfig::new(Cell::Gru, 3, 8, 3), &Init::seed(1)).unwrap();
        let d = batch(24, 6, 3, 3, 2);
        let mut opt = Optimizer::new(kind);
        let opts = StepOptions {
            loss: Loss::Ce,
            clip: Some(5.0),
        };
        let first = m.train_step(&d, &opts, &mut opt).unwrap().loss;
        for _ in 0..60 {
            m.train_step(&d, &opts, &mut opt).unwrap();
        }
        let last = m.evaluate(&d, Loss::Ce, 8).unwrap().loss;
        assert!(last < 0.5 * first, "{kind:?}: {first} -> {last}");
    }
}

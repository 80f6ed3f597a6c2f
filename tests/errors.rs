//! Bad input gets a clear, typed error, never a panic.

mod common;
use common::*;
use recurrent::io::{checkpoint, dataset, st};
use recurrent::{
    Cell, Dataset, Error, Init, Inputs, Loss, Model, ModelConfig, Optimizer, StepOptions, Targets,
};
use std::collections::HashMap;

fn model() -> Model {
    Model::new(ModelConfig::new(Cell::Lstm, 3, 4, 2), &Init::seed(1)).unwrap()
}

fn data(f: usize, labels: Vec<i64>) -> Dataset {
    let n = labels.len();
    Dataset::new(
        Inputs::features(vec![0.5; n * 5 * f], n, 5, f).unwrap(),
        Some(Targets::Classes {
            data: labels,
            shape: vec![n],
        }),
        None,
    )
}

#[test]
fn wrong_feature_count_is_a_shape_error() {
    let e = model().forward(&data(4, vec![0, 1])).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    assert!(e.to_string().contains("[N, T, 3]"), "{e}");
}

#[test]
fn label_out_of_range_is_reported_with_its_index() {
    let mut m = model();
    let e = m
        .train_step(
            &data(3, vec![0, 2]),
            &StepOptions {
                loss: Loss::Ce,
                clip: None,
            },
            &mut Optimizer::sgd(0.1),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::LabelOutOfRange {
                label: 2,
                index: 1,
                classes: 2
            }
        ),
        "{e}"
    );
    let e = m.evaluate(&data(3, vec![-1, 0]), Loss::Ce, 2).unwrap_err();
    assert!(matches!(e, Error::LabelOutOfRange { label: -1, .. }), "{e}");
}

#[test]
fn nan_in_the_data_is_refused() {
    let mut d = data(3, vec![0, 1]);
    if let Inputs::Features { data, .. } = &mut d.x {
        data[7] = f32::NAN;
    }
    let e = model().forward(&d).unwrap_err();
    assert!(matches!(e, Error::NonFinite { index: 7, .. }), "{e}");
    let mut d = Dataset::new(
        Inputs::features(vec![0.0; 2 * 5 * 3], 2, 5, 3).unwrap(),
        Some(Targets::Values {
            data: vec![0.0, f32::INFINITY, 0.0, 0.0],
            shape: vec![2, 2],
        }),
        None,
    );
    let e = model().loss_and_gradients(&d, Loss::Mse).unwrap_err();
    assert!(matches!(e, Error::NonFinite { .. }), "{e}");
    d.y = None;
    assert!(model().loss_and_gradients(&d, Loss::Mse).is_err());
}

#[test]
fn lengths_and_empty_batches_are_checked() {
    let mut d = data(3, vec![0, 1]);
    d.lengths = Some(vec![5, 6]);
    assert!(matches!(
        model().forward(&d).unwrap_err(),
        Error::LengthOutOfRange {
            index: 1,
            length: 6,
            steps: 5
        }
    ));
    d.lengths = Some(vec![0, 2]);
    assert!(matches!(
        model().forward(&d).unwrap_err(),
        Error::LengthOutOfRange { index: 0, .. }
    ));
    let empty = Dataset::new(Inputs::features(vec![], 0, 5, 3).unwrap(), None, None);
    assert!(matches!(
        model().forward(&empty).unwrap_err(),
        Error::Empty(_)
    ));
}

#[test]
fn checkpoint_shapes_that_do_not_match_are_refused() {
    let m = model();
    let p = m.params();
    let mut tensors: Vec<_> = m
        .layout()
        .entries
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.shape.clone(),
                st::Write_::F32(&p[e.range()]),
            )
        })
        .collect();
    // head.weight [2, 4] replaced by a [2, 5] tensor.
    let wrong = vec![0.0f32; 10];
    let i = tensors.iter().position(|t| t.0 == "head.weight").unwrap();
    tensors[i] = ("head.weight".into(), vec![2, 5], st::Write_::F32(&wrong));
    let e =
        checkpoint::from_bytes(&st::serialize(&tensors, HashMap::new()).unwrap(), "m").unwrap_err();
    assert!(
        e.to_string().contains("head.weight") && e.to_string().contains("[2, 5]"),
        "{e}"
    );
    // A missing tensor.
    tensors.retain(|t| t.0 != "rnn.bias_hh_l0");
    let e =
        checkpoint::from_bytes(&st::serialize(&tensors, HashMap::new()).unwrap(), "m").unwrap_err();
    assert!(
        e.to_string().contains("missing tensor `rnn.bias_hh_l0`"),
        "{e}"
    );
}

#[test]
fn unknown_cell_in_metadata_and_corrupt_files_are_refused() {
    let m = model();
    let mut meta = HashMap::new();
    meta.insert(
        "recurrent".to_string(),
        r#"{"cell":"transformer"}"#.to_string(),
    );
    let p = m.params();
    let tensors: Vec<_> = m
        .layout()
        .entries
        .iter()
        .map(|e| {
            (
                e.name.clone(),
                e.shape.clone(),
                st::Write_::F32(&p[e.range()]),
            )
        })
        .collect();
    let e = checkpoint::from_bytes(&st::serialize(&tensors, meta).unwrap(), "m").unwrap_err();
    assert!(e.to_string().contains("unknown cell 'transformer'"), "{e}");
    let good = checkpoint::to_bytes(&m, &HashMap::new()).unwrap();
    for cut in [0, 4, 8, 20, good.len() / 2, good.len() - 1] {
        assert!(
            checkpoint::from_bytes(&good[..cut], "cut").is_err(),
            "cut at {cut}"
        );
    }
    let mut garbage = good.clone();
    garbage[9] = b'!';
    assert!(checkpoint::from_bytes(&garbage, "garbage").is_err());
    let tmp = temp_dir("errors-data");
    std::fs::write(tmp.join("d.safetensors"), &good[..good.len() / 3]).unwrap();
    assert!(matches!(
        dataset::load(tmp.join("d.safetensors")).unwrap_err(),
        Error::Data { .. }
    ));
    assert!(matches!(
        dataset::load(tmp.join("nope.safetensors")).unwrap_err(),
        Error::Io { .. }
    ));
}

#[test]
fn tokens_for_a_feature_model_and_ids_out_of_vocabulary_are_refused() {
    let d = Dataset::new(Inputs::tokens(vec![1, 2, 3, 4], 2, 2).unwrap(), None, None);
    assert!(matches!(
        model().forward(&d).unwrap_err(),
        Error::Dtype { .. }
    ));
    let em = Model::new(
        ModelConfig::new(Cell::Gru, 3, 4, 2).embedding(4),
        &Init::seed(1),
    )
    .unwrap();
    assert!(matches!(
        em.forward(&d).unwrap_err(),
        Error::TokenOutOfRange {
            id: 4,
            index: 3,
            vocab: 4
        }
    ));
}

#[test]
fn bad_hyper_parameters_and_configs_are_refused() {
    let mut m = model();
    let e = m
        .train_step(
            &data(3, vec![0, 1]),
            &StepOptions {
                loss: Loss::Ce,
                clip: None,
            },
            &mut Optimizer::sgd(f32::NAN),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Argument(_)), "{e}");
    assert!(Model::new(ModelConfig::new(Cell::Lstm, 3, 0, 2), &Init::default()).is_err());
    assert!(Model::new(
        ModelConfig::new(Cell::Lstm, 3, 4, 2).layers(0),
        &Init::default()
    )
    .is_err());
    assert!(m.evaluate(&data(3, vec![0, 1]), Loss::Ce, 0).is_err());
}

#[test]
fn a_diverging_step_keeps_the_weights() {
    let mut m = model();
    let before = m.params().to_vec();
    let d = Dataset::new(
        Inputs::features(vec![1e30; 2 * 5 * 3], 2, 5, 3).unwrap(),
        Some(Targets::Values {
            data: vec![3e38; 4],
            shape: vec![2, 2],
        }),
        None,
    );
    let e = m
        .train_step(
            &d,
            &StepOptions {
                loss: Loss::Mse,
                clip: None,
            },
            &mut Optimizer::sgd(0.1),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Diverged { .. }), "{e}");
    assert_eq!(m.params(), &before[..]);
}

#[test]
fn sizes_whose_products_overflow_are_config_errors_not_panics() {
    // Counting 4 * H * (I + H) parameters overflows usize for H = 2^32; this
    // panicked ("attempt to multiply with overflow") before the check.
    for (hidden, layers, vocab) in [
        (1usize << 32, 1usize, None),
        (100_000_000, 1, None),
        (64, usize::MAX, None),
        (4, 1, Some(usize::MAX)),
    ] {
        let mut cfg = ModelConfig::new(Cell::Lstm, 3, hidden, 2).layers(layers);
        if let Some(v) = vocab {
            cfg = cfg.embedding(v);
        }
        let e = Model::new(cfg, &Init::seed(1)).unwrap_err();
        assert!(
            matches!(e, Error::Config(_)) && e.to_string().contains("use smaller sizes"),
            "{e}"
        );
    }
    // The count agrees with the layout wherever it fits.
    let cfg = ModelConfig::new(Cell::Gru, 3, 5, 2)
        .layers(3)
        .bidirectional(true)
        .embedding(7);
    assert_eq!(
        cfg.checked_num_params(),
        Some(Model::new(cfg, &Init::seed(1)).unwrap().num_params())
    );
    // One-hot text windows whose value count overflows.
    let ids: Vec<i64> = (0..64).map(|i| i % 2).collect();
    let e = recurrent::io::text::sequences(
        &ids,
        usize::MAX / 2,
        8,
        1,
        recurrent::io::text::Encoding::OneHot,
    )
    .unwrap_err();
    assert!(e.to_string().contains("too many values"), "{e}");
}

#[test]
fn a_checkpoint_folder_that_does_not_exist_is_refused_before_training() {
    use recurrent::train::{CheckpointConfig, FitConfig, Trainer};
    let mut m = model();
    let cfg = FitConfig {
        epochs: 1,
        progress: false,
        checkpoint: Some(CheckpointConfig {
            path: "/nonexistent-folder/ckpt.safetensors".into(),
            every: 1,
            best_only: false,
        }),
        ..FitConfig::default()
    };
    let before = m.params().to_vec();
    let e = Trainer::new(cfg)
        .fit(&mut m, &mut Optimizer::sgd(0.1), &data(3, vec![0, 1]), None)
        .unwrap_err();
    assert!(
        matches!(e, Error::Argument(_)) && e.to_string().contains("folder does not exist"),
        "{e}"
    );
    assert_eq!(m.params(), &before[..], "no training happened");
}

#[test]
fn bench_sizes_too_large_or_empty_are_refused_before_allocating() {
    use recurrent::bench::{run_cpu, Size};
    // 1e8 x 1000 x 4*4096 values: this aborted the process ("memory allocation failed") before.
    let huge = Size {
        cell: Cell::Lstm,
        input: 28,
        hidden: 4096,
        batch: 100_000_000,
        steps: 1000,
        layers: 1,
        recurrent_dropout: 0.0,
    };
    let e = run_cpu(&huge, 1).unwrap_err();
    assert!(
        matches!(e, Error::Argument(_)) && e.to_string().contains("smaller size"),
        "{e}"
    );
    let overflow = Size {
        hidden: usize::MAX / 2,
        batch: 3,
        ..huge
    };
    assert!(run_cpu(&overflow, 1).is_err());
    for (batch, steps) in [(0, 5), (5, 0)] {
        let e = run_cpu(
            &Size {
                cell: Cell::Gru,
                input: 3,
                hidden: 4,
                batch,
                steps,
                layers: 1,
                recurrent_dropout: 0.0,
            },
            1,
        )
        .unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
    }
    assert!(recurrent::bench::recurrent_flops(&Size {
        hidden: usize::MAX,
        batch: usize::MAX,
        ..huge
    })
    .is_finite());
}

#[test]
fn optimizer_state_that_does_not_fit_its_optimizer_is_refused() {
    use recurrent::io::optim_state::{from_bytes, to_bytes, TrainState};
    let state = |opt: Optimizer| TrainState {
        optimizer: opt,
        moments_saved: true,
        epoch: 1,
        rng_state: 1,
        monitor: Default::default(),
    };
    // Adam with m but no v: indexing v in the update panicked before.
    let mut adam = Optimizer::adam(1e-3);
    adam.step = 2;
    adam.m = vec![0.1; 8];
    let b = to_bytes(&state(adam.clone()), b"model").unwrap();
    let e = from_bytes(&b, "s", b"model", 8).unwrap_err();
    assert!(e.to_string().contains("do not fit"), "{e}");
    // The update itself no longer indexes past `v` when only `m` fits.
    let mut params = vec![0.5f32; 8];
    adam.update(&mut params, &[0.1; 8]);
    assert!(params.iter().all(|p| p.is_finite() && *p != 0.5));
    // Momentum SGD that has stepped but lost its buffer; a step count Adam cannot take.
    let mut sgd = Optimizer::new(recurrent::OptimizerKind::Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
        nesterov: false,
    });
    sgd.step = 3;
    assert!(from_bytes(&to_bytes(&state(sgd), b"model").unwrap(), "s", b"model", 8).is_err());
    let mut adam = Optimizer::adam(1e-3);
    adam.step = u64::MAX;
    adam.m = vec![0.1; 8];
    adam.v = vec![0.1; 8];
    let e = from_bytes(&to_bytes(&state(adam), b"model").unwrap(), "s", b"model", 8).unwrap_err();
    assert!(e.to_string().contains("2^31"), "{e}");
}

/// Initial states that do not fit the model, on both paths, in memory and
/// in files: each a clear error naming what is wrong.
#[test]
fn bad_initial_states_are_refused() {
    let lstm = model(); // LSTM, H=4, one layer
    let gru = Model::new(ModelConfig::new(Cell::Gru, 3, 4, 2), &Init::seed(1)).unwrap();
    let s = |shape: Vec<usize>, v: f32| {
        recurrent::Tensor::new(shape.clone(), vec![v; shape.iter().product()])
    };
    let d = data(3, vec![0, 1]); // N = 2
    let msg = |m: &Model, d: Dataset| m.forward(&d).unwrap_err().to_string();
    let e = msg(
        &lstm,
        d.clone()
            .with_states(s(vec![1, 3, 4], 0.0), Some(s(vec![1, 3, 4], 0.0))),
    );
    assert!(e.contains("h0") && e.contains("[1, 2, 4]"), "{e}");
    let e = msg(
        &gru,
        d.clone()
            .with_states(s(vec![1, 2, 4], 0.0), Some(s(vec![1, 2, 4], 0.0))),
    );
    assert!(e.contains("c0") && e.contains("only LSTM"), "{e}");
    let e = msg(&lstm, d.clone().with_states(s(vec![1, 2, 4], 0.0), None));
    assert!(e.contains("without c0"), "{e}");
    let e = msg(
        &gru,
        d.clone().with_states(s(vec![1, 2, 4], f32::INFINITY), None),
    );
    assert!(e.contains("h0"), "{e}");
    let e = gru
        .forward_with_states(
            &d.clone().with_states(s(vec![1, 2, 4], 0.0), None),
            &recurrent::States {
                h: Some(vec![0.0; 8]),
                c: None,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("twice"), "{e}");
    if let Some(ctx) = gpu("bad_initial_states_are_refused") {
        let mut g = recurrent::gpu::GpuModel::new(ctx.clone(), &lstm).unwrap();
        let e = g
            .forward(&d.clone().with_states(s(vec![1, 2, 4], 0.0), None))
            .unwrap_err()
            .to_string();
        assert!(e.contains("without c0"), "gpu: {e}");
    }
    // In files: dtype, rank, N, and c0 without h0.
    let x = vec![0.5f32; 2 * 5 * 3];
    let file = |extra: Vec<(String, Vec<usize>, st::Write_)>| {
        let mut t = vec![("x".to_string(), vec![2, 5, 3], st::Write_::F32(&x))];
        t.extend(extra);
        st::serialize(&t, HashMap::new()).unwrap()
    };
    let load = |bytes: Vec<u8>| {
        dataset::from_file(st::parse(&bytes, "d.safetensors").unwrap(), "d.safetensors")
            .unwrap_err()
            .to_string()
    };
    let ints = vec![0i64; 8];
    let z8 = vec![0.0f32; 8];
    let z12 = vec![0.0f32; 12];
    let e = load(file(vec![(
        "h0".into(),
        vec![1, 2, 4],
        st::Write_::I64(&ints),
    )]));
    assert!(e.contains("h0") && e.contains("f32"), "{e}");
    let e = load(file(vec![("h0".into(), vec![2, 4], st::Write_::F32(&z8))]));
    assert!(e.contains("h0") && e.contains("[2, 4]"), "{e}");
    let e = load(file(vec![(
        "h0".into(),
        vec![1, 3, 4],
        st::Write_::F32(&z12),
    )]));
    assert!(e.contains("N = 2"), "{e}");
    let e = load(file(vec![(
        "c0".into(),
        vec![1, 2, 4],
        st::Write_::F32(&z8),
    )]));
    assert!(e.contains("c0") && e.contains("without"), "{e}");
}

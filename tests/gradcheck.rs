//! Finite-difference gradient checks of the CPU path's backpropagation through
//! time: every cell, bidirectional, 2 layers, lengths, both outputs, both losses,
//! the embedding, and the gradients of the initial states.

mod common;
use common::*;
use recurrent::rng::Rng;
use recurrent::{
    Cell, Dataset, Init, Inputs, Loss, Model, ModelConfig, Nonlinearity, OutputMode, States,
    Targets,
};

struct Spec {
    cell: Cell,
    act: Nonlinearity,
    layers: usize,
    bidir: bool,
    output: OutputMode,
    loss: Loss,
    lengths: bool,
    embed: bool,
}

fn build(s: &Spec, seed: u64) -> (Model, Dataset) {
    let (n, t, i, h, o) = (3, 5, 4, 3, 3);
    let mut cfg = ModelConfig::new(s.cell, i, h, o)
        .layers(s.layers)
        .bidirectional(s.bidir)
        .output(s.output)
        .nonlinearity(s.act);
    if s.embed {
        cfg = cfg.embedding(7);
    }
    let mut init = Init::seed(seed);
    init.forget_bias_one = true;
    let model = Model::new(cfg, &init).unwrap();
    let mut rng = Rng::new(seed + 100);
    let x = if s.embed {
        Inputs::tokens((0..n * t).map(|_| rng.below(7) as i64).collect(), n, t).unwrap()
    } else {
        Inputs::features(
            (0..n * t * i).map(|_| rng.normal() as f32).collect(),
            n,
            t,
            i,
        )
        .unwrap()
    };
    let lengths = s.lengths.then(|| vec![t, 2, 4]);
    let rows = if s.output == OutputMode::Last {
        n
    } else {
        n * t
    };
    let y = match s.loss {
        Loss::Ce => {
            let shape = if s.output == OutputMode::Last {
                vec![n]
            } else {
                vec![n, t]
            };
            let mut c: Vec<i64> = (0..rows).map(|_| rng.below(o) as i64).collect();
            if rows > 3 {
                c[1] = -100; // an ignored position
            }
            Targets::Classes { data: c, shape }
        }
        Loss::Mse => {
            let shape = if s.output == OutputMode::Last {
                vec![n, o]
            } else {
                vec![n, t, o]
            };
            Targets::Values {
                data: (0..rows * o).map(|_| rng.normal() as f32).collect(),
                shape,
            }
        }
    };
    (model, Dataset::new(x, Some(y), lengths))
}

/// Central differences in f64 around each of a sample of parameters.
fn check(s: &Spec, name: &str) {
    let (model, data) = build(s, 11);
    let (_, grads) = model.loss_and_gradients(&data, s.loss).unwrap();
    // ReLU has kinks: a smaller step makes crossing one unlikely (rounding error stays ~5e-5).
    let eps = if s.act == Nonlinearity::Relu {
        1e-3f32
    } else {
        1e-2
    };
    let mut rng = Rng::new(5);
    let mut num = Vec::new();
    let mut ana = Vec::new();
    for e in &model.layout().entries {
        // Up to 12 entries of every tensor, always including the first and the last.
        let len = e.len();
        let mut picks: Vec<usize> = (0..12.min(len)).map(|_| rng.below(len)).collect();
        picks.extend([0, len - 1]);
        for k in picks {
            let idx = e.offset + k;
            let mut plus = model.clone();
            plus.params_mut()[idx] += eps;
            let mut minus = model.clone();
            minus.params_mut()[idx] -= eps;
            let lp = plus.loss_and_gradients(&data, s.loss).unwrap().0 as f64;
            let lm = minus.loss_and_gradients(&data, s.loss).unwrap().0 as f64;
            num.push(((lp - lm) / (2.0 * eps as f64)) as f32);
            ana.push(grads[idx]);
        }
    }
    assert!(
        ana.iter().any(|g| g.abs() > 1e-3),
        "{name}: gradients are all near zero, the check would prove nothing"
    );
    assert_close(&format!("{name} gradients"), &ana, &num, GRADCHECK);
}

fn spec(cell: Cell) -> Spec {
    Spec {
        cell,
        act: Nonlinearity::Tanh,
        layers: 1,
        bidir: false,
        output: OutputMode::Last,
        loss: Loss::Ce,
        lengths: false,
        embed: false,
    }
}

#[test]
fn lstm_gradients_match_finite_differences() {
    check(&spec(Cell::Lstm), "lstm last ce");
    check(
        &Spec {
            output: OutputMode::Sequence,
            loss: Loss::Mse,
            ..spec(Cell::Lstm)
        },
        "lstm seq mse",
    );
}

#[test]
fn gru_gradients_match_finite_differences() {
    check(&spec(Cell::Gru), "gru last ce");
    check(
        &Spec {
            output: OutputMode::Sequence,
            ..spec(Cell::Gru)
        },
        "gru seq ce",
    );
}

#[test]
fn rnn_gradients_match_finite_differences() {
    check(
        &Spec {
            loss: Loss::Mse,
            ..spec(Cell::Rnn)
        },
        "rnn tanh last mse",
    );
    check(
        &Spec {
            act: Nonlinearity::Relu,
            output: OutputMode::Sequence,
            ..spec(Cell::Rnn)
        },
        "rnn relu seq ce",
    );
}

#[test]
fn bidirectional_two_layer_gradients_match_finite_differences() {
    for cell in [Cell::Lstm, Cell::Gru, Cell::Rnn] {
        check(
            &Spec {
                layers: 2,
                bidir: true,
                ..spec(cell)
            },
            &format!("{cell:?} 2-layer bidir last"),
        );
        check(
            &Spec {
                layers: 2,
                bidir: true,
                output: OutputMode::Sequence,
                loss: Loss::Mse,
                ..spec(cell)
            },
            &format!("{cell:?} 2-layer bidir seq mse"),
        );
    }
}

#[test]
fn lengths_gradients_match_finite_differences() {
    for cell in [Cell::Lstm, Cell::Gru, Cell::Rnn] {
        check(
            &Spec {
                bidir: true,
                lengths: true,
                ..spec(cell)
            },
            &format!("{cell:?} bidir lengths last"),
        );
        check(
            &Spec {
                layers: 2,
                bidir: true,
                lengths: true,
                output: OutputMode::Sequence,
                ..spec(cell)
            },
            &format!("{cell:?} lengths seq ce"),
        );
        check(
            &Spec {
                lengths: true,
                output: OutputMode::Sequence,
                loss: Loss::Mse,
                ..spec(cell)
            },
            &format!("{cell:?} lengths seq mse"),
        );
    }
}

#[test]
fn embedding_gradients_match_finite_differences() {
    check(
        &Spec {
            embed: true,
            lengths: true,
            ..spec(Cell::Lstm)
        },
        "embed lstm lengths",
    );
}

#[test]
fn initial_state_gradients_match_finite_differences() {
    for cell in [Cell::Lstm, Cell::Gru] {
        let s = Spec {
            bidir: true,
            layers: 2,
            output: OutputMode::Sequence,
            ..spec(cell)
        };
        let (model, data) = build(&s, 3);
        let cfg = model.config();
        let len = cfg.layers * cfg.directions() * data.len() * cfg.hidden;
        let mut rng = Rng::new(9);
        let h0: Vec<f32> = (0..len).map(|_| rng.normal() as f32 * 0.5).collect();
        let c0: Option<Vec<f32>> =
            (cell == Cell::Lstm).then(|| (0..len).map(|_| rng.normal() as f32 * 0.5).collect());
        let states = States {
            h: Some(h0.clone()),
            c: c0.clone(),
        };
        let (_, _, ds) = model.gradients_with_states(&data, s.loss, &states).unwrap();
        let loss_at = |h: Vec<f32>, c: Option<Vec<f32>>| {
            model
                .gradients_with_states(&data, s.loss, &States { h: Some(h), c })
                .unwrap()
                .0 as f64
        };
        let eps = 1e-2f32;
        let (mut num, mut ana) = (Vec::new(), Vec::new());
        for k in (0..len).step_by(3) {
            let (mut p, mut m) = (h0.clone(), h0.clone());
            p[k] += eps;
            m[k] -= eps;
            num.push(
                ((loss_at(p, c0.clone()) - loss_at(m, c0.clone())) / (2.0 * eps as f64)) as f32,
            );
            ana.push(ds.h.as_ref().unwrap()[k]);
            if let Some(c0) = &c0 {
                let (mut p, mut m) = (c0.clone(), c0.clone());
                p[k] += eps;
                m[k] -= eps;
                num.push(
                    ((loss_at(h0.clone(), Some(p)) - loss_at(h0.clone(), Some(m)))
                        / (2.0 * eps as f64)) as f32,
                );
                ana.push(ds.c.as_ref().unwrap()[k]);
            }
        }
        assert_close(&format!("{cell:?} d(h0, c0)"), &ana, &num, GRADCHECK);
    }
}

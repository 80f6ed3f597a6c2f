//! One recurrent layer as ONNX `Scan` loops, one per direction, over a body
//! that computes the cell in plain operators (MatMul, Add, Sigmoid, Tanh,
//! Relu, Mul, Where), with PyTorch's weights and formulas as they are. Lengths
//! are masks: at a step past a sequence's length the state is carried
//! unchanged and the output is zero, which is exactly PyTorch's packed
//! semantics (the reverse direction keeps its initial state until it reaches
//! the sequence's last step). For runtimes whose recurrent operators lack
//! what a model needs: tract refuses a non-constant `sequence_lens` and reads
//! no `activations` (a ReLU RNN would run as tanh).
//!
//! The input projection `X·W_ihᵀ + b` is one MatMul over all steps, outside
//! the loop, as on our own two paths.

use super::build::{transpose, Build, LayerOut};
use super::graph::{attr, Dim, Graph};
use super::proto::DataType;
use crate::model::config::{Cell, Nonlinearity};

/// Layer `k` on time-major `x [T, N, I]`.
pub(super) fn layer(b: &mut Build, x: &str, k: usize) -> LayerOut {
    let cfg = b.model.config().clone();
    let (cell, hidden, dirs) = (cfg.cell, cfg.hidden, cfg.directions());
    let gh = cell.gates() * hidden;
    let input = cfg.layer_input(k);
    let (mut ys, mut hs, mut cs) = (Vec::new(), Vec::new(), Vec::new());
    for d in 0..dirs {
        let s = b.model.layout().layers[k * dirs + d].clone();
        let tag = format!("l{k}{}", if d == 1 { "_reverse" } else { "" });
        // Gx = X·W_ihᵀ + b, all steps at once; the GRU keeps b_hn apart (it
        // sits inside r * (W_hn h + b_hn)), so only its b_ih goes here.
        let w_ih = transpose(b.weights(&s.w_ih), gh, input);
        let w_ih = b.g.f32_init(&format!("{tag}.W_ih_t"), &[input, gh], &w_ih);
        let bias: Vec<f32> = match cell {
            Cell::Gru => b.weights(&s.b_ih).to_vec(),
            _ => b
                .weights(&s.b_ih)
                .iter()
                .zip(b.weights(&s.b_hh))
                .map(|(a, c)| a + c)
                .collect(),
        };
        let bias = b.g.f32_init(&format!("{tag}.b"), &[gh], &bias);
        let gx = b.g.op("MatMul", &[x, &w_ih], vec![]);
        let gx = b.g.op("Add", &[&gx, &bias], vec![]);
        let w_hh = transpose(b.weights(&s.w_hh), gh, hidden);
        let w_hh = b.g.f32_init(&format!("{tag}.W_hh_t"), &[hidden, gh], &w_hh);
        let b_hh = (cell == Cell::Gru).then(|| {
            let v = b.weights(&s.b_hh).to_vec();
            b.g.f32_init(&format!("{tag}.b_hh"), &[gh], &v)
        });

        let (h0, c0) = (b.h0.clone(), b.c0.clone());
        let h_init = initial_state(b, &h0, k * dirs + d, hidden);
        let c_init = (cell == Cell::Lstm).then(|| initial_state(b, &c0, k * dirs + d, hidden));
        let weights = CellWeights { w_hh, b_hh };
        let body = body(
            b,
            &format!("{tag}/"),
            cell,
            cfg.nonlinearity,
            hidden,
            &weights,
        );

        let mut inputs: Vec<&str> = vec![&h_init];
        inputs.extend(c_init.as_deref());
        inputs.push(&gx);
        let mask = b.mask.clone();
        inputs.extend(mask.as_deref());
        let scanned = 1 + mask.is_some() as usize;
        let mut attrs = vec![
            attr::graph("body", body),
            attr::int("num_scan_inputs", scanned as i64),
        ];
        if d == 1 {
            attrs.push(attr::ints("scan_input_directions", &vec![1; scanned]));
            attrs.push(attr::ints("scan_output_directions", &[1]));
        }
        let n_out = if cell == Cell::Lstm { 3 } else { 2 };
        let outs = b.g.op_n("Scan", &inputs, n_out, attrs);
        let axis0 = b.g.ints(&[0]);
        hs.push(b.g.op("Unsqueeze", &[&outs[0], &axis0], vec![]));
        if cell == Cell::Lstm {
            cs.push(b.g.op("Unsqueeze", &[&outs[1], &axis0], vec![]));
        }
        ys.push(outs[n_out - 1].clone());
    }
    let concat = |b: &mut Build, parts: &[String], axis: i64| {
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        b.g.op("Concat", &refs, vec![attr::int("axis", axis)])
    };
    let y = concat(b, &ys, 2);
    let h_n = concat(b, &hs, 0);
    let c_n = (cell == Cell::Lstm).then(|| concat(b, &cs, 0));
    LayerOut { y, h_n, c_n }
}

/// `[N, H]`: row `index` of the `h0`/`c0` input, or zeros without states.
fn initial_state(b: &mut Build, states: &Option<String>, index: usize, hidden: usize) -> String {
    match states {
        Some(s) => {
            let i = b.g.int(index as i64);
            b.g.op("Gather", &[s, &i], vec![attr::int("axis", 0)])
        }
        None => {
            let h = b.g.ints(&[hidden as i64]);
            let batch = b.batch();
            let shape = b.g.op("Concat", &[&batch, &h], vec![attr::int("axis", 0)]);
            b.g.op(
                "ConstantOfShape",
                &[&shape],
                vec![attr::f32_tensor("value", 0.0)],
            )
        }
    }
}

/// Outer-scope values the body reads.
struct CellWeights {
    /// `W_hhᵀ [H, G*H]`
    w_hh: String,
    /// GRU only: `b_hh [3H]`
    b_hh: Option<String>,
}

/// The Scan body: state(s) and one step's `gx [N, G*H]` (and mask `[N, 1]`)
/// in, the new state(s) and the step's output out.
fn body(
    b: &mut Build,
    prefix: &str,
    cell: Cell,
    nonlinearity: Nonlinearity,
    hidden: usize,
    w: &CellWeights,
) -> super::proto::GraphProto {
    let masked = b.mask.is_some();
    let gh = cell.gates() * hidden;
    let mut g = Graph::new(prefix);
    let state = [Dim::Unknown, Dim::Fixed(hidden)];
    let h_prev = g.fresh("h_prev");
    g.input(&h_prev, DataType::Float, &state);
    let c_prev = (cell == Cell::Lstm).then(|| {
        let c = g.fresh("c_prev");
        g.input(&c, DataType::Float, &state);
        c
    });
    let gx = g.fresh("gx");
    g.input(&gx, DataType::Float, &[Dim::Unknown, Dim::Fixed(gh)]);
    let m = masked.then(|| {
        let m = g.fresh("fed");
        g.input(&m, DataType::Bool, &[Dim::Unknown, Dim::Fixed(1)]);
        m
    });
    // Constants live in the outer graph; the body reads them from there.
    let split = (cell != Cell::Rnn).then(|| b.g.ints(&vec![hidden as i64; cell.gates()]));
    let split = split.as_deref().unwrap_or_default();
    let axis1 = vec![attr::int("axis", 1)];

    let hh = g.op("MatMul", &[&h_prev, &w.w_hh], vec![]);
    let (h, c) = match cell {
        Cell::Lstm => {
            let gates = g.op("Add", &[&gx, &hh], vec![]);
            let p = g.op_n("Split", &[&gates, split], 4, axis1);
            let i = g.op("Sigmoid", &[&p[0]], vec![]);
            let f = g.op("Sigmoid", &[&p[1]], vec![]);
            let gg = g.op("Tanh", &[&p[2]], vec![]);
            let o = g.op("Sigmoid", &[&p[3]], vec![]);
            let fc = g.op("Mul", &[&f, c_prev.as_deref().expect("LSTM state")], vec![]);
            let ig = g.op("Mul", &[&i, &gg], vec![]);
            let c = g.op("Add", &[&fc, &ig], vec![]);
            let tc = g.op("Tanh", &[&c], vec![]);
            (g.op("Mul", &[&o, &tc], vec![]), Some(c))
        }
        Cell::Gru => {
            let hh = g.op("Add", &[&hh, w.b_hh.as_deref().expect("GRU b_hh")], vec![]);
            let xs = g.op_n("Split", &[&gx, split], 3, axis1.clone());
            let hs = g.op_n("Split", &[&hh, split], 3, axis1);
            let r = g.op("Add", &[&xs[0], &hs[0]], vec![]);
            let r = g.op("Sigmoid", &[&r], vec![]);
            let z = g.op("Add", &[&xs[1], &hs[1]], vec![]);
            let z = g.op("Sigmoid", &[&z], vec![]);
            let rn = g.op("Mul", &[&r, &hs[2]], vec![]);
            let n = g.op("Add", &[&xs[2], &rn], vec![]);
            let n = g.op("Tanh", &[&n], vec![]);
            // h' = (1 - z) * n + z * h, as PyTorch writes it.
            let one = b.g.float(1.0);
            let keep = g.op("Sub", &[&one, &z], vec![]);
            let a = g.op("Mul", &[&keep, &n], vec![]);
            let zh = g.op("Mul", &[&z, &h_prev], vec![]);
            (g.op("Add", &[&a, &zh], vec![]), None)
        }
        Cell::Rnn => {
            let pre = g.op("Add", &[&gx, &hh], vec![]);
            let act = match nonlinearity {
                Nonlinearity::Tanh => "Tanh",
                Nonlinearity::Relu => "Relu",
            };
            (g.op(act, &[&pre], vec![]), None)
        }
    };

    let h_out = g.fresh("h");
    let y_out = g.fresh("y");
    let c_out = c.as_ref().map(|_| g.fresh("c"));
    match &m {
        Some(m) => {
            g.op_to("Where", &[m, &h, &h_prev], &[&h_out], vec![]);
            if let (Some(c), Some(c_prev), Some(c_out)) = (&c, &c_prev, &c_out) {
                g.op_to("Where", &[m, c, c_prev], &[c_out], vec![]);
            }
            let zero = b.g.float(0.0);
            g.op_to("Where", &[m, &h, &zero], &[&y_out], vec![]);
        }
        None => {
            g.op_to("Identity", &[&h], &[&h_out], vec![]);
            if let (Some(c), Some(c_out)) = (&c, &c_out) {
                g.op_to("Identity", &[c], &[c_out], vec![]);
            }
            g.op_to("Identity", &[&h], &[&y_out], vec![]);
        }
    }
    g.output(&h_out, DataType::Float, &state);
    if let Some(c_out) = &c_out {
        g.output(c_out, DataType::Float, &state);
    }
    g.output(&y_out, DataType::Float, &state);
    g.into_proto(&format!("{prefix}cell"), "one step of the cell")
}

//! One recurrent layer as ONNX's own `LSTM`, `GRU` or `RNN` operator (both
//! directions in one node), with the weights converted from PyTorch's layout:
//! ONNX orders the LSTM's gates `i o f c` where PyTorch has `i f g o`, and the
//! GRU's `z r h` where PyTorch has `r z n` (with `linear_before_reset = 1`,
//! ONNX computes `n` as PyTorch does: `r * (W_hn h + b_hn)`). Lengths become
//! the operator's `sequence_lens`.

use super::build::{Build, LayerOut};
use super::graph::attr;
use crate::model::config::{Cell, Nonlinearity};

/// For each ONNX gate block, the PyTorch block it comes from.
fn onnx_gate_order(cell: Cell) -> &'static [usize] {
    match cell {
        Cell::Lstm => &[0, 3, 1, 2], // i, o, f, c  <-  i, f, g, o
        Cell::Gru => &[1, 0, 2],     // z, r, h     <-  r, z, n
        Cell::Rnn => &[0],
    }
}

/// `w`'s gate blocks (each `hidden` rows of `cols`) in ONNX's order.
fn reorder(w: &[f32], cell: Cell, hidden: usize, cols: usize) -> Vec<f32> {
    let block = hidden * cols;
    onnx_gate_order(cell)
        .iter()
        .flat_map(|&g| w[g * block..(g + 1) * block].iter().copied())
        .collect()
}

/// Layer `k` on time-major `x [T, N, I]`.
pub(super) fn layer(b: &mut Build, x: &str, k: usize) -> LayerOut {
    let cfg = b.model.config().clone();
    let (cell, hidden, dirs) = (cfg.cell, cfg.hidden, cfg.directions());
    let gh = cell.gates() * hidden;
    let input = cfg.layer_input(k);
    let (mut w, mut r, mut bias) = (Vec::new(), Vec::new(), Vec::new());
    for d in 0..dirs {
        let s = b.model.layout().layers[k * dirs + d].clone();
        w.extend(reorder(b.weights(&s.w_ih), cell, hidden, input));
        r.extend(reorder(b.weights(&s.w_hh), cell, hidden, hidden));
        bias.extend(reorder(b.weights(&s.b_ih), cell, hidden, 1));
        bias.extend(reorder(b.weights(&s.b_hh), cell, hidden, 1));
    }
    let w = b.g.f32_init(&format!("l{k}.W"), &[dirs, gh, input], &w);
    let r = b.g.f32_init(&format!("l{k}.R"), &[dirs, gh, hidden], &r);
    let bias = b.g.f32_init(&format!("l{k}.B"), &[dirs, 2 * gh], &bias);

    // ONNX takes sequence_lens as int32.
    let lens = match b.lengths.clone() {
        Some(l) => b.g.op("Cast", &[&l], vec![attr::int("to", 6)]),
        None => String::new(),
    };
    let slice_state = |b: &mut Build, s: &Option<String>| match s {
        Some(s) => {
            let start = b.g.ints(&[(k * dirs) as i64]);
            let end = b.g.ints(&[((k + 1) * dirs) as i64]);
            let axis0 = b.g.ints(&[0]);
            b.g.op("Slice", &[s, &start, &end, &axis0], vec![])
        }
        None => String::new(),
    };
    let (h0, c0) = (b.h0.clone(), b.c0.clone());
    let h0 = slice_state(b, &h0);
    let c0 = slice_state(b, &c0);

    let mut attrs = vec![
        attr::int("hidden_size", hidden as i64),
        attr::string(
            "direction",
            if dirs == 2 {
                "bidirectional"
            } else {
                "forward"
            },
        ),
    ];
    let op = match cell {
        Cell::Lstm => "LSTM",
        Cell::Gru => {
            attrs.push(attr::int("linear_before_reset", 1));
            "GRU"
        }
        Cell::Rnn => {
            let act = match cfg.nonlinearity {
                Nonlinearity::Tanh => "Tanh",
                Nonlinearity::Relu => "Relu",
            };
            attrs.push(attr::strings("activations", &vec![act; dirs]));
            "RNN"
        }
    };
    let mut inputs = vec![x, &w, &r, &bias, &lens, &h0];
    if cell == Cell::Lstm {
        inputs.push(&c0);
    }
    // Trailing omitted inputs are left out rather than named "".
    while inputs.last().is_some_and(|s| s.is_empty()) {
        inputs.pop();
    }
    let n_out = if cell == Cell::Lstm { 3 } else { 2 };
    let outs = b.g.op_n(op, &inputs, n_out, attrs);
    // Y [T, D, N, H] -> [T, N, D, H] -> [T, N, D*H].
    let y = b.g.op(
        "Transpose",
        &[&outs[0]],
        vec![attr::ints("perm", &[0, 2, 1, 3])],
    );
    let shape = b.g.ints(&[0, 0, -1]);
    let y = b.g.op("Reshape", &[&y, &shape], vec![]);
    LayerOut {
        y,
        h_n: outs[1].clone(),
        c_n: outs.get(2).cloned(),
    }
}

//! What the layer writers (`operators.rs`, `scan.rs`) share with the model's
//! layout (`export.rs`): the graph under construction, the values every layer
//! may read, and what a layer leaves for the next.

use super::graph::{attr, Graph};
use crate::Model;

/// What one recurrent layer leaves for the next (all names of graph values).
pub(super) struct LayerOut {
    /// Time-major `[T, N, D*H]`: both directions side by side, as nn.LSTM's output.
    pub y: String,
    /// `[D, N, H]`, forward then reverse (nn.LSTM's h_n for this layer).
    pub h_n: String,
    /// `[D, N, H]`, LSTM only.
    pub c_n: Option<String>,
}

/// The graph under construction and the values every layer may use.
pub(super) struct Build<'a> {
    pub g: Graph,
    pub model: &'a Model,
    /// `lengths` i64 `[N]`, with `--with-lengths`.
    pub lengths: Option<String>,
    /// bool `[T, N, 1]`: step t of sequence n is fed (t < lengths[n]); with lengths only.
    pub mask: Option<String>,
    /// `h0` / `c0` f32 `[L*D, N, H]`, with `--with-states`.
    pub h0: Option<String>,
    pub c0: Option<String>,
    /// i64 `[3]`: the time-major input's shape `[T, N, I]`.
    pub shape: String,
    /// i64 `[1]`: N, once asked for; read it through [`Build::batch`].
    pub batch: Option<String>,
}

impl Build<'_> {
    /// i64 `[1]`: N, read from the input's shape (made at the first use).
    pub fn batch(&mut self) -> String {
        if let Some(b) = &self.batch {
            return b.clone();
        }
        let one = self.g.ints(&[1]);
        let b = self.g.op(
            "Gather",
            &[&self.shape.clone(), &one],
            vec![attr::int("axis", 0)],
        );
        self.batch = Some(b.clone());
        b
    }

    /// `model.params()[range]`.
    pub fn weights(&self, range: &std::ops::Range<usize>) -> &[f32] {
        &self.model.params()[range.clone()]
    }
}

/// `w [rows, cols]` transposed to `[cols, rows]`.
pub(super) fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

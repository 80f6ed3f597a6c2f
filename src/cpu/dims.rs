//! The sizes and options of one layer-direction ([`Dims`]) and which steps
//! of a batch row are part of its sequence ([`valid`]): what the layer, its
//! recurrence and the stack all index by.

use super::cell::{GRU_SAVED, LSTM_SAVED};
use crate::model::config::{Cell, Nonlinearity};

/// Sizes and options of one layer-direction.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub cell: Cell,
    pub act: Nonlinearity,
    /// Steps.
    pub t: usize,
    /// Batch rows.
    pub b: usize,
    /// Input features.
    pub i: usize,
    /// Hidden units.
    pub h: usize,
    pub reverse: bool,
}

impl Dims {
    pub fn gh(&self) -> usize {
        self.cell.gates() * self.h
    }
    /// Values saved per row and step for backward.
    pub fn saved(&self) -> usize {
        match self.cell {
            Cell::Lstm => LSTM_SAVED * self.h,
            Cell::Gru => GRU_SAVED * self.h,
            Cell::Rnn => 0,
        }
    }
    /// State slot read by step `t`.
    pub fn prev_slot(&self, t: usize) -> usize {
        if self.reverse {
            t + 1
        } else {
            t
        }
    }
    /// State slot written by step `t`.
    pub fn out_slot(&self, t: usize) -> usize {
        if self.reverse {
            t
        } else {
            t + 1
        }
    }
    /// Slot of the initial state.
    pub fn first_slot(&self) -> usize {
        if self.reverse {
            self.t
        } else {
            0
        }
    }
    /// Slot of the final state (`h_n`).
    pub fn last_slot(&self) -> usize {
        if self.reverse {
            0
        } else {
            self.t
        }
    }
    /// Steps in processing order.
    pub fn order(&self) -> Box<dyn Iterator<Item = usize>> {
        if self.reverse {
            Box::new((0..self.t).rev())
        } else {
            Box::new(0..self.t)
        }
    }
}

/// Is step `t` of row `b` part of its sequence?
#[inline]
pub fn valid(lengths: Option<&[usize]>, b: usize, t: usize) -> bool {
    lengths.is_none_or(|l| t < l[b])
}

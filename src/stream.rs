//! Streaming on the CPU path: a batch of streams fed chunks of any length
//! (one step included), the states kept between calls, so that chunked
//! output equals whole-sequence output (keyword spotting, voice activity,
//! sensors, denoisers, sampling from a language model). The GPU path's twin
//! is [`crate::gpu::GpuStream`], whose states stay on the device.
//!
//! ```
//! use recurrent::{Cell, Init, Inputs, Model, ModelConfig, OutputMode, Stream};
//! let model = Model::new(
//!     ModelConfig::new(Cell::Gru, 3, 8, 2).output(OutputMode::Sequence),
//!     &Init::seed(1),
//! )?;
//! let mut stream = Stream::new(&model)?;
//! // Two streams, one step of 3 features each per call.
//! for t in 0..4 {
//!     let x = Inputs::features(vec![0.1 * t as f32; 2 * 3], 2, 1, 3)?;
//!     let y = stream.step(x)?; // [2, 1, 2]
//!     assert_eq!(y.shape, vec![2, 1, 2]);
//! }
//! stream.reset_stream(1)?; // stream 1 starts again from zero states
//! # Ok::<(), recurrent::Error>(())
//! ```

use crate::cpu::States;
use crate::data::{Dataset, Inputs};
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::Model;
use crate::tensor::Tensor;

/// A batch of streams through a [`Model`] on the CPU.
pub struct Stream<'m> {
    model: &'m Model,
    /// The streams' states `[L, B, H]` (LSTM: and cell states), once fed.
    states: Option<(usize, States)>,
}

/// Streaming needs every step's output before the next input: a
/// bidirectional model's reverse direction reads the future.
pub(crate) fn check_streamable(cfg: &ModelConfig) -> Result<()> {
    if cfg.bidirectional {
        return Err(Error::Argument(
            "a bidirectional model cannot stream: its reverse direction needs the whole sequence before the first output; run it on whole sequences (forward), or stream a unidirectional model".into(),
        ));
    }
    Ok(())
}

/// Checks a chunk's batch size against the streams'.
pub(crate) fn check_batch(streams: Option<usize>, chunk: &Inputs) -> Result<()> {
    match streams {
        Some(b) if b != chunk.n() => Err(Error::Argument(format!(
            "this stream holds the states of {b} streams, and the chunk has {} rows: feed {b} rows a call, or reset() to start new streams",
            chunk.n()
        ))),
        _ => Ok(()),
    }
}

/// Zeroes stream `i` of states `[L, B, H]`.
pub(crate) fn zero_stream(s: &mut [f32], b: usize, h: usize, i: usize) {
    for layer in s.chunks_exact_mut(b * h) {
        layer[i * h..(i + 1) * h].fill(0.0);
    }
}

impl<'m> Stream<'m> {
    /// Streams through `model` (unidirectional), starting from zero states;
    /// the number of streams is the first chunk's batch size.
    pub fn new(model: &'m Model) -> Result<Stream<'m>> {
        check_streamable(model.config())?;
        Ok(Stream {
            model,
            states: None,
        })
    }

    /// Feeds the next chunk of every stream, `[B, T_c, F]` features (or
    /// token ids `[B, T_c]`), and returns its output: `[B, T_c, out]`
    /// (output `sequence`), or `[B, out]`, the head on the states after the
    /// chunk (output `last`). The states move on by `T_c` steps.
    pub fn step(&mut self, chunk: Inputs) -> Result<Tensor> {
        check_batch(self.streams(), &chunk)?;
        let b = chunk.n();
        let data = Dataset::new(chunk, None, None);
        let init = self.states.take().map_or_else(States::default, |(_, s)| s);
        match self.model.forward_with_states(&data, &init) {
            Ok((out, next)) => {
                self.states = Some((b, next));
                Ok(out)
            }
            Err(e) => {
                // Nothing moved: the streams keep their states.
                if init.h.is_some() {
                    self.states = Some((b, init));
                }
                Err(e)
            }
        }
    }

    /// Number of streams (the first chunk's batch size), once fed.
    pub fn streams(&self) -> Option<usize> {
        self.states.as_ref().map(|s| s.0)
    }

    /// The streams' current states, `[L, B, H]` as `nn.LSTM`'s `h_n` (`c_n`).
    pub fn states(&self) -> Option<&States> {
        self.states.as_ref().map(|s| &s.1)
    }

    /// Forgets every stream: the next chunk starts from zero states and may
    /// have any number of rows.
    pub fn reset(&mut self) {
        self.states = None;
    }

    /// Stream `i` starts again from zero states; the others go on.
    pub fn reset_stream(&mut self, i: usize) -> Result<()> {
        let h = self.model.config().hidden;
        let Some((b, s)) = &mut self.states else {
            return Ok(()); // not fed yet: every stream is at zero
        };
        if i >= *b {
            return Err(Error::Argument(format!(
                "reset_stream({i}): there are {b} streams (0..{b})"
            )));
        }
        for v in [&mut s.h, &mut s.c].into_iter().flatten() {
            zero_stream(v, *b, h, i);
        }
        Ok(())
    }
}

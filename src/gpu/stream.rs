//! [`GpuStream`]: streaming on the GPU path, as [`crate::Stream`] on the
//! CPU: a batch of streams fed chunks of any length, the states kept on the
//! device between calls. Each call is one submission: the streams' states
//! are copied into the first state slots of the chunk's plan, the forward
//! runs, the final states are copied back into the stream's buffer; only the
//! output comes to the host.

use super::model::GpuModel;
use super::plan::Plan;
use super::workspace::Slot;
use crate::data::{Dataset, Inputs};
use crate::error::{Error, Result};
use crate::model::config::Cell;
use crate::stream::{check_batch, check_streamable};
use crate::tensor::Tensor;

/// A batch of streams through a [`GpuModel`]; the states live on its device.
pub struct GpuStream<'m> {
    model: &'m mut GpuModel,
    /// Number of streams and their states `[L, B, H]`, then (LSTM) the cell
    /// states `[L, B, H]`, once fed.
    states: Option<(usize, wgpu::Buffer)>,
}

impl<'m> GpuStream<'m> {
    /// Streams through `model` (unidirectional), starting from zero states;
    /// the number of streams is the first chunk's batch size.
    pub fn new(model: &'m mut GpuModel) -> Result<GpuStream<'m>> {
        check_streamable(model.config())?;
        Ok(GpuStream {
            model,
            states: None,
        })
    }

    /// Number of streams (the first chunk's batch size), once fed.
    pub fn streams(&self) -> Option<usize> {
        self.states.as_ref().map(|s| s.0)
    }

    /// Feeds the next chunk of every stream (`[B, T_c, F]`, or token ids
    /// `[B, T_c]`) and returns its output, as [`crate::Stream::step`].
    pub fn step(&mut self, chunk: Inputs) -> Result<Tensor> {
        check_batch(self.streams(), &chunk)?;
        let (b, t) = (chunk.n(), chunk.steps());
        let cfg = self.model.config().clone();
        let (h, layers) = (cfg.hidden, cfg.layers);
        let lstm = cfg.cell == Cell::Lstm;
        let bh = (b * h) as u64 * 4;
        let kinds = if lstm { 2 } else { 1 };
        let data = Dataset::new(chunk, None, None);
        let key = self.model.upload_batch(&data, None)?;
        let ctx = self.model.ctx.clone();
        let fresh = self.states.is_none();
        let (_, buf) = self.states.get_or_insert_with(|| {
            let buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("stream.states"),
                size: kinds * layers as u64 * bh,
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (b, buf)
        });
        // The first or last state slot of layer k's h (kind 0) or c (kind 1)
        // in the plan's work (one direction: streams are unidirectional).
        let at = |plan: &Plan, k: usize, kind: u64, slot: Slot| -> u64 {
            let lw = &plan.ws.layers[k];
            let region = if kind == 0 { lw.hs } else { lw.cs };
            region.state_slot(0, 1, slot, t, b * h) as u64 * 4
        };
        let before = (!fresh).then(|| {
            let plan = &self.model.plans[&key];
            let mut enc = ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("stream.states_in"),
                });
            for kind in 0..kinds {
                for k in 0..layers {
                    let src = (kind * layers as u64 + k as u64) * bh;
                    enc.copy_buffer_to_buffer(
                        buf,
                        src,
                        &plan.work,
                        at(plan, k, kind, Slot::First),
                        bh,
                    );
                }
            }
            enc.finish()
        });
        let buf: &wgpu::Buffer = buf;
        let out = self.model.forward_uploaded(key, before, |plan, enc| {
            for kind in 0..kinds {
                for k in 0..layers {
                    let dst = (kind * layers as u64 + k as u64) * bh;
                    enc.copy_buffer_to_buffer(
                        &plan.work,
                        at(plan, k, kind, Slot::Last),
                        buf,
                        dst,
                        bh,
                    );
                }
            }
        });
        // The plan's first slots now hold states: the next batch without
        // states zeroes them.
        self.model.states_written.insert(key);
        if out.is_err() && fresh {
            self.states = None;
        }
        out
    }

    /// The streams' current states (blocking read), `[L, B, H]` as
    /// `nn.LSTM`'s `h_n` (`c_n`).
    pub fn states(&self) -> Result<Option<crate::States>> {
        let Some((_, buf)) = &self.states else {
            return Ok(None);
        };
        let bytes = self.model.ctx.read_bytes(buf, buf.size())?;
        let v: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        let lstm = self.model.config().cell == Cell::Lstm;
        let half = if lstm { v.len() / 2 } else { v.len() };
        Ok(Some(crate::States {
            h: Some(v[..half].to_vec()),
            c: lstm.then(|| v[half..].to_vec()),
        }))
    }

    /// Forgets every stream: the next chunk starts from zero states and may
    /// have any number of rows.
    pub fn reset(&mut self) {
        self.states = None;
    }

    /// Stream `i` starts again from zero states; the others go on.
    pub fn reset_stream(&mut self, i: usize) -> Result<()> {
        let Some((b, buf)) = &self.states else {
            return Ok(());
        };
        let b = *b;
        if i >= b {
            return Err(Error::Argument(format!(
                "reset_stream({i}): there are {b} streams (0..{b})"
            )));
        }
        let h = self.model.config().hidden;
        let zeros = vec![0u8; h * 4];
        let rows = buf.size() / (b * h * 4) as u64;
        for r in 0..rows {
            let at = (r * b as u64 + i as u64) * (h * 4) as u64;
            self.model.ctx.queue.write_buffer(buf, at, &zeros);
        }
        Ok(())
    }
}

impl crate::generate::Steps for GpuStream<'_> {
    fn step(&mut self, chunk: Inputs) -> Result<Tensor> {
        GpuStream::step(self, chunk)
    }
}

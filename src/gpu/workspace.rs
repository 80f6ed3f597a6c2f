//! One place computes where everything of a batch shape lives in the `work`
//! (f32) and `ints` (i32) buffers: activations saved for backward, gradients
//! of activations, head output, loss scalars. Offsets are in elements.
//! Per-direction regions are stored one after the other (`[dirs][...]`).

use crate::model::config::{Cell, ModelConfig, OutputMode};

/// A named region of a buffer, in elements.
#[derive(Clone, Copy, Debug, Default)]
pub struct Region {
    pub off: u32,
    pub len: u32,
}

impl Region {
    /// Start of direction `dir` in a `[dirs][len/dirs]` region.
    pub fn dir(&self, dir: usize, dirs: usize) -> u32 {
        self.off + (self.len / dirs as u32) * dir as u32
    }

    /// Start of the first or last `[B, H]` state slot (`bh` = B·H) of
    /// direction `dir` in a `[dirs][T+1, B, H]` state region (`hs`, `cs`): a
    /// direction starts from slot 0 forward and slot T reverse, and ends in
    /// the other (`cpu::dims::Dims::prev_slot` of its first step, `last_slot`).
    pub fn state_slot(&self, dir: usize, dirs: usize, slot: Slot, t: usize, bh: usize) -> u32 {
        let reverse = dir == 1;
        let index = match (slot, reverse) {
            (Slot::First, false) | (Slot::Last, true) => 0,
            (Slot::First, true) | (Slot::Last, false) => t,
        };
        self.dir(dir, dirs) + (index * bh) as u32
    }
}

/// Which state slot of a layer-direction: the one it starts from, or the one it ends in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    First,
    Last,
}

/// Regions of one recurrent layer (both directions).
#[derive(Clone, Debug, Default)]
pub struct LayerWork {
    /// `[dirs][T, B, G*H]` input projection X·W_ihᵀ + b_ih.
    pub gx: Region,
    /// `[dirs][T+1, B, H]` hidden-state slots (see cpu/layer.rs).
    pub hs: Region,
    /// `[dirs][T+1, B, H]` cell-state slots (LSTM; else empty).
    pub cs: Region,
    /// `[dirs][T, B, 4*H]` activations saved for backward (LSTM, GRU; else empty).
    pub sv: Region,
    /// `[T, B, dirs*H]` layer output (the next layer's input), 0 at masked steps.
    pub y: Region,
    /// `[dirs][T, B, G*H]` gate gradients (of gx).
    pub dg: Region,
    /// `[dirs][T, B, G*H]` gate gradients of gh (GRU only; else empty).
    pub dgh: Region,
    /// `[T, B, I_k]` gradient of this layer's input (layers > 0, below an
    /// embedding, or asked for: [`super::GpuModel::set_input_gradient`]).
    pub dx: Region,
    /// `[B, dirs*H]` gradient of h carried between backward steps (in the zeroed block).
    pub carry: Region,
    /// `[dirs][B, H]` gradient of c carried between backward steps (LSTM; in the zeroed block).
    pub dc: Region,
}

/// Every region of one batch shape.
#[derive(Clone, Debug, Default)]
pub struct Workspace {
    pub b: usize,
    pub t: usize,
    /// Rows of the head output: B (last) or T*B (sequence, time-major).
    pub rows: usize,
    /// `[T, B, I]` layer-0 input, time-major (uploaded, or gathered from the embedding).
    pub x0: Region,
    pub layers: Vec<LayerWork>,
    /// `[T, B, D]` gradient of the top layer's output (output `sequence`).
    pub dy_top: Region,
    /// `[B, D]` the head's input under output dropout (`last`; else empty):
    /// the final states with their mask (without dropout the head reads the
    /// state slots).
    pub feat: Region,
    /// `[dirs][T, B, H]` under recurrent dropout (else empty): a layer's
    /// previous states with their masks, which `dW_hh` multiplies (the layers
    /// take turns: backward writes and reads it for one layer at a time).
    pub hs_masked: Region,
    /// `[rows, O]` head output, time-major rows.
    pub out: Region,
    /// `[rows, O]` gradient of the loss w.r.t. the output.
    pub dout: Region,
    /// `[rows, O]` mse targets, time-major rows.
    pub values: Region,
    /// `[4]` loss, counted positions, gradient norm, clip coefficient.
    pub scalars: Region,
    /// `[norm_groups]` partial sums of the gradient norm.
    pub partials: Region,
    /// `[SPLIT_PARTIALS]` partial products of split-K GEMMs.
    pub split: Region,
    /// Carries that must start at zero every backward (one clear).
    pub zeroed: Region,
    /// Total f32 elements of `work`.
    pub work_len: usize,
    /// ints: `[B]` lengths.
    pub lengths: Region,
    /// ints: `[B, T]` token ids (batch-first, as given).
    pub ids: Region,
    /// ints: the positions of each token for the embedding's backward
    /// (`tokens.rs`): `[V + 1]` starts into `embed_rows`, and `[B·T]` rows
    /// `t·B + b` of `dx`, by token, each token's in (b, t) order (models with
    /// an embedding; else empty).
    pub embed_offsets: Region,
    pub embed_rows: Region,
    /// ints: `[rows]` class targets, time-major rows.
    pub classes: Region,
    /// ints: `[2]` the training step's dropout key and on flag (models with dropout; else empty).
    pub dropout: Region,
    /// Total i32 elements of `ints`.
    pub ints_len: usize,
}

/// Regions taken one after the other (elements), each 16-byte aligned; the
/// field is the next free offset.
pub(crate) struct Alloc(pub usize);

impl Alloc {
    /// Taking regions after the first `len` elements (rounded up to the alignment).
    pub fn after(len: usize) -> Alloc {
        Alloc(len.div_ceil(4) * 4)
    }

    pub fn take(&mut self, len: usize) -> Region {
        // Keep every region 16-byte aligned (4 elements): clear_buffer and
        // copies need 4-byte alignment, vector loads like more.
        let off = self.0;
        self.0 += len.div_ceil(4) * 4;
        Region {
            off: off as u32,
            len: len as u32,
        }
    }
}

impl Workspace {
    /// With `input_grad`, layer 0 gets its `dx` too (features, no embedding:
    /// the gradient of the model's input).
    pub fn new(
        cfg: &ModelConfig,
        b: usize,
        t: usize,
        norm_groups: usize,
        input_grad: bool,
    ) -> Workspace {
        let (h, dirs, d) = (cfg.hidden, cfg.directions(), cfg.top_width());
        let gh = cfg.cell.gates() * h;
        let rows = match cfg.output {
            OutputMode::Last => b,
            OutputMode::Sequence => t * b,
        };
        let o = cfg.out_features;
        let mut a = Alloc(0);
        let x0 = a.take(t * b * cfg.input);
        let mut layers = Vec::new();
        for k in 0..cfg.layers {
            let lstm = cfg.cell == Cell::Lstm;
            let saved = if cfg.cell == Cell::Rnn { 0 } else { 4 * h };
            let need_dx = k > 0 || cfg.vocab.is_some() || input_grad;
            layers.push(LayerWork {
                gx: a.take(dirs * t * b * gh),
                hs: a.take(dirs * (t + 1) * b * h),
                cs: a.take(if lstm { dirs * (t + 1) * b * h } else { 0 }),
                sv: a.take(dirs * t * b * saved),
                y: a.take(t * b * d),
                dg: a.take(dirs * t * b * gh),
                dgh: a.take(if cfg.cell == Cell::Gru {
                    dirs * t * b * gh
                } else {
                    0
                }),
                dx: a.take(if need_dx {
                    t * b * cfg.layer_input(k)
                } else {
                    0
                }),
                ..Default::default()
            });
        }
        let dy_top = a.take(if cfg.output == OutputMode::Sequence {
            t * b * d
        } else {
            0
        });
        let drops = !cfg.dropout.is_off();
        let feat = a.take(
            if cfg.output == OutputMode::Last && cfg.dropout.output > 0.0 {
                b * d
            } else {
                0
            },
        );
        let hs_masked = a.take(if cfg.dropout.recurrent > 0.0 {
            dirs * t * b * h
        } else {
            0
        });
        let out = a.take(rows * o);
        let dout = a.take(rows * o);
        let values = a.take(rows * o);
        let scalars = a.take(4);
        let partials = a.take(norm_groups);
        let split = a.take(super::gemm_config::SPLIT_PARTIALS);
        let zero_start = a.0;
        for l in &mut layers {
            l.carry = a.take(b * d);
            l.dc = a.take(if cfg.cell == Cell::Lstm {
                dirs * b * h
            } else {
                0
            });
        }
        let zeroed = Region {
            off: zero_start as u32,
            len: (a.0 - zero_start) as u32,
        };
        let work_len = a.0.max(4);
        let mut i = Alloc(0);
        let lengths = i.take(b);
        let ids = i.take(if cfg.vocab.is_some() { b * t } else { 0 });
        let embed_offsets = i.take(cfg.vocab.map_or(0, |v| v + 1));
        let embed_rows = i.take(if cfg.vocab.is_some() { b * t } else { 0 });
        let classes = i.take(rows);
        let dropout = i.take(if drops { 2 } else { 0 });
        Workspace {
            b,
            t,
            rows,
            x0,
            layers,
            dy_top,
            feat,
            hs_masked,
            out,
            dout,
            values,
            scalars,
            partials,
            split,
            zeroed,
            work_len,
            lengths,
            ids,
            embed_offsets,
            embed_rows,
            classes,
            dropout,
            ints_len: i.0.max(4),
        }
    }

    /// The same workspace `work` elements into `work` and `ints` into
    /// `ints` (both multiples of 4): one of several sharing their buffers
    /// (sequence to sequence's encoder and decoder). `work_len` and
    /// `ints_len` then count to its end.
    pub fn shifted(mut self, work: usize, ints: usize) -> Workspace {
        debug_assert!(work % 4 == 0 && ints % 4 == 0);
        let (w, i) = (work as u32, ints as u32);
        for l in &mut self.layers {
            for r in [
                &mut l.gx,
                &mut l.hs,
                &mut l.cs,
                &mut l.sv,
                &mut l.y,
                &mut l.dg,
                &mut l.dgh,
                &mut l.dx,
                &mut l.carry,
                &mut l.dc,
            ] {
                r.off += w;
            }
        }
        for r in [
            &mut self.x0,
            &mut self.dy_top,
            &mut self.feat,
            &mut self.hs_masked,
            &mut self.out,
            &mut self.dout,
            &mut self.values,
            &mut self.scalars,
            &mut self.partials,
            &mut self.split,
            &mut self.zeroed,
        ] {
            r.off += w;
        }
        for r in [
            &mut self.lengths,
            &mut self.ids,
            &mut self.embed_offsets,
            &mut self.embed_rows,
            &mut self.classes,
            &mut self.dropout,
        ] {
            r.off += i;
        }
        self.work_len += work;
        self.ints_len += ints;
        self
    }
}

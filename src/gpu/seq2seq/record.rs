//! Recording a sequence-to-sequence step into one [`Program`], in the order
//! and under the names of the CPU path (`seq2seq/model.rs`,
//! `seq2seq/attention.rs`), so the two read side by side:
//!
//! | CPU path | here |
//! | --- | --- |
//! | `Seq2Seq::encode` (embedding, encoder stack) | the encoder's [`Recorder::forward_stack`] |
//! | `bridge` | [`bridge`] (`copy_block`) |
//! | `decode_steps` | the decoder's [`Recorder::forward_stack`] |
//! | `read_out` (`attention::forward`, the head) | [`read_out`] |
//! | `loss_and_grad` | `loss_ce` (`head.wgsl`) |
//! | the head's gradients, `attention::backward` | [`read_out_backward`] |
//! | the decoder's `RecurrentStack::backward` | the decoder's [`Recorder::backward_stack`] |
//! | `unbridge` | [`unbridge`] |
//! | the encoder's backward, the embeddings' scatter | the encoder's [`Recorder::backward_stack`] |
//! | `Optimizer::update`, `clip_grad_norm` | `grad_norm`, `optimizer_step` |
//!
//! Decoding ([`decode`]) records the encoder, the bridge and the keys once, then one
//! decoder step (`embed_tokens`, the stack over one step, [`read_out`]), an
//! `argmax` per output column and the copies that carry the states to the
//! next step: `GpuSeq2Seq::greedy` encodes the step `K` times in one pass.

use super::stacks::{Stack, Stacks};
use super::work::Work;
use crate::error::Result;
use crate::gpu::args::{AttnArgs, Gemm, HeadArgs, Matrix, OptArgs};
use crate::gpu::program::{Program, Resolved};
use crate::gpu::record::{Recorder, StepModel};
use crate::gpu::registry::Kernel;
use crate::gpu::workspace::{Slot, Workspace};
use crate::model::config::Cell;
use std::ops::Range;

/// Dispatch index ranges of a recorded training step.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phases {
    /// `0..forward`: encoder, bridge, decoder, attention, head.
    pub forward: usize,
    /// `forward..backward`: the cross-entropy and its gradient, the head, attention, decoder, unbridge, encoder.
    pub backward: usize,
    /// `backward..optim`: gradient norm, clip and optimizer.
    pub optim: usize,
}

/// A recorded training step.
pub struct Recording {
    pub program: Program,
    pub phases: Phases,
    pub norm_slot: u32,
    pub opt_slot: u32,
}

/// A recorded decoding: `prologue` (the encoder, the bridge), `step` (one
/// decoder step to its logits), the `argmax` of output column `i` at
/// `argmax + i`, then `carry` (the final states into the first slots) or,
/// for beam search, `gather` (the same, each row's from row `parents[r]`).
#[derive(Clone, Debug)]
pub struct Decoding {
    pub prologue: Range<usize>,
    pub step: Range<usize>,
    pub argmax: usize,
    pub carry: Range<usize>,
    pub gather: Range<usize>,
}

fn model<'a>(s: &'a Stack, state_grad: bool) -> StepModel<'a> {
    StepModel {
        config: &s.config,
        layout: &s.layout,
        whh: &s.whh,
        state_grad,
    }
}

/// The training step over `w`.
pub fn train(st: &Stacks, w: &Work, resolved: Resolved) -> Result<Recording> {
    let enc = model(&st.enc, false);
    let dec = model(&st.dec, true);
    let mut r = Recorder::on(&enc, &w.enc, Program::new(resolved));
    r.forward_stack()?;
    let mut pg = r.finish();
    bridge(&mut pg, st, &w.enc, &w.dec)?;
    let mut r = Recorder::on(&dec, &w.dec, pg);
    r.forward_stack()?;
    let mut pg = r.finish();
    if st.attends {
        let k = keys(&mut pg, st, w)?;
        read_out(&mut pg, st, w, k)?;
    } else {
        read_out(&mut pg, st, w, 0)?;
    }
    let forward = pg.dispatches.len();
    let (tb, wv) = ((w.t * w.b) as u32, st.tgt_vocab as u32);
    pg.loss(
        Kernel::LossCe,
        HeadArgs {
            rows: tb,
            o: wv,
            b: w.b as u32,
            seq: 1,
            has_len: 0,
            len_off: 0,
            out_off: w.logits.off,
            dout_off: w.dlogits.off,
            target_off: w.targets.off,
            scalars_off: w.scalars.off,
        },
        "seq2seq.loss",
    )?;
    read_out_backward(&mut pg, st, w)?;
    let mut r = Recorder::on(&dec, &w.dec, pg);
    r.backward_stack()?;
    let mut pg = r.finish();
    unbridge(&mut pg, st, &w.enc, &w.dec)?;
    let mut r = Recorder::on(&enc, &w.enc, pg);
    r.backward_stack()?;
    let mut pg = r.finish();
    let backward = pg.dispatches.len();
    let a = OptArgs {
        n: st.total as u32,
        scalars_off: w.scalars.off,
        partials_off: w.partials.off,
        partials: pg.tunables().norm_groups,
        ..Default::default()
    };
    let norm_slot = pg.grad_norm(a, "optim.grad_norm")?;
    let opt_slot = pg.optimizer(a, "optim.step")?;
    let optim = pg.dispatches.len();
    Ok(Recording {
        program: pg,
        phases: Phases {
            forward,
            backward,
            optim,
        },
        norm_slot,
        opt_slot,
    })
}

/// Greedy decoding of `k` tokens over `w` (made with `decode = Some(k)`).
pub fn decode(st: &Stacks, w: &Work, k: usize, resolved: Resolved) -> Result<(Program, Decoding)> {
    let enc = model(&st.enc, false);
    let step = model(&st.step, false);
    let mut r = Recorder::on(&enc, &w.enc, Program::new(resolved));
    r.forward_stack()?;
    let mut pg = r.finish();
    bridge(&mut pg, st, &w.enc, &w.dec)?;
    let keys_at = if st.attends { keys(&mut pg, st, w)? } else { 0 };
    let prologue = 0..pg.dispatches.len();
    let (b, e) = (w.b as u32, st.embed as u32);
    let embed = st.tgt_embed as u32;
    pg.attention(
        Kernel::EmbedTokens,
        AttnArgs {
            table_off: embed,
            ..AttnArgs::block(b, e, (w.tokens.off, 1), (w.dec.x0.off, e))
        },
        "seq2seq.decode.embed",
    )?;
    let mut r = Recorder::on(&step, &w.dec, pg);
    r.forward_stack()?;
    let mut pg = r.finish();
    read_out(&mut pg, st, w, keys_at)?;
    let step_range = prologue.end..pg.dispatches.len();
    let wv = st.tgt_vocab as u32;
    let argmax = pg.dispatches.len();
    for i in 0..k as u32 {
        pg.attention(
            Kernel::Argmax,
            AttnArgs {
                out_off: w.generated.off + i,
                out_ld: k as u32,
                ..AttnArgs::block(b, wv, (w.logits.off, wv), (w.tokens.off, 1))
            },
            "seq2seq.decode.argmax",
        )?;
    }
    // The states one step left (slot 1) are the next step's first (slot 0):
    // row for row (greedy), or each row's from its parent (beam search).
    let (hd, lstm) = (st.hd as u32, st.cell == Cell::Lstm);
    let bh = (w.b * st.hd) as u32;
    let mut states = Vec::new();
    for lw in &w.dec.layers {
        states.push(lw.hs);
        if lstm {
            states.push(lw.cs);
        }
    }
    let carry_from = pg.dispatches.len();
    for r in &states {
        pg.attention(
            Kernel::CopyBlock,
            AttnArgs::block(b, hd, (r.off + bh, hd), (r.off, hd)),
            "seq2seq.decode.carry",
        )?;
    }
    let carry = carry_from..pg.dispatches.len();
    for r in &states {
        pg.attention(
            Kernel::GatherRows,
            AttnArgs {
                idx_off: w.parents.off,
                ..AttnArgs::block(b, hd, (r.off + bh, hd), (r.off, hd))
            },
            "seq2seq.decode.gather",
        )?;
    }
    let gather = carry.end..pg.dispatches.len();
    Ok((
        pg,
        Decoding {
            prologue,
            step: step_range,
            argmax,
            carry,
            gather,
        },
    ))
}

/// The encoder's final states into the decoder's first state slots, each
/// layer's directions side by side (`Seq2Seq::bridge`).
fn bridge(pg: &mut Program, st: &Stacks, enc: &Workspace, dec: &Workspace) -> Result<()> {
    let (nd, h, hd) = (st.dirs, st.hidden, st.hd);
    let (b, s, t) = (enc.b, enc.t, dec.t);
    let lstm = st.cell == Cell::Lstm;
    for (el, dl) in enc.layers.iter().zip(&dec.layers) {
        let mut pairs = vec![(el.hs, dl.hs)];
        if lstm {
            pairs.push((el.cs, dl.cs));
        }
        for (from, to) in pairs {
            let to = to.state_slot(0, 1, Slot::First, t, b * hd);
            for dir in 0..nd {
                let from = from.state_slot(dir, nd, Slot::Last, s, b * h);
                pg.attention(
                    Kernel::CopyBlock,
                    AttnArgs::block(
                        b as u32,
                        h as u32,
                        (from, h as u32),
                        (to + (dir * h) as u32, hd as u32),
                    ),
                    "seq2seq.bridge",
                )?;
            }
        }
    }
    Ok(())
}

/// The decoder's initial states' gradients (its carries after backward)
/// into the encoder's final states' (its carries before backward): the
/// bridge's gradient (`Seq2Seq::unbridge`). Both carries are `[B, D·H]`
/// with the directions side by side; the cell's are `[D][B, H]` in the encoder.
fn unbridge(pg: &mut Program, st: &Stacks, enc: &Workspace, dec: &Workspace) -> Result<()> {
    let (nd, h, hd) = (st.dirs, st.hidden as u32, st.hd as u32);
    let b = enc.b as u32;
    let lstm = st.cell == Cell::Lstm;
    for (el, dl) in enc.layers.iter().zip(&dec.layers) {
        pg.attention(
            Kernel::CopyBlock,
            AttnArgs::block(b, hd, (dl.carry.off, hd), (el.carry.off, hd)),
            "seq2seq.unbridge",
        )?;
        if lstm {
            for dir in 0..nd {
                pg.attention(
                    Kernel::CopyBlock,
                    AttnArgs::block(
                        b,
                        h,
                        (dl.dc.off + dir as u32 * h, hd),
                        (el.dc.dir(dir, nd), h),
                    ),
                    "seq2seq.unbridge",
                )?;
            }
        }
    }
    Ok(())
}

/// Where the decoder's top output and the memory (the encoder's top output)
/// are: both time-major `[steps, B, Hd]`.
fn tops(w: &Work) -> (u32, u32) {
    let dec = w.dec.layers.last().expect("a layer").y.off;
    let mem = w.enc.layers.last().expect("a layer").y.off;
    (dec, mem)
}

/// Row `b` of a time-major `[steps, B, Hd]` block at `off` as a batch entry
/// of a z-batched GEMM: `steps` rows `B·Hd` apart, the next entry `Hd` on.
fn per_row(off: u32, b: u32, hd: u32) -> Matrix {
    Matrix::work(off, b * hd).z(hd)
}

/// The attention's keys, once per source: `m·W_aᵀ` into `keys` (general),
/// or the memory itself (dot); returns where they are.
fn keys(pg: &mut Program, st: &Stacks, w: &Work) -> Result<u32> {
    let (b, s, hd) = (w.b as u32, w.s as u32, st.hd as u32);
    let (_, mem) = tops(w);
    match st.wa {
        Some(wa) => {
            let g = Gemm::new(s * b, hd, hd)
                .a(Matrix::work(mem, hd))
                .b_t(Matrix::params(wa, hd))
                .c(Matrix::work(w.keys.off, hd));
            pg.gemm(&g, "seq2seq.attn.keys")?;
            Ok(w.keys.off)
        }
        None => Ok(mem),
    }
}

/// Attention (as `attention::forward`) over the keys at `keys` and the head:
/// the logits `[T·B, W]`.
fn read_out(pg: &mut Program, st: &Stacks, w: &Work, keys: u32) -> Result<()> {
    let (b, s, t) = (w.b as u32, w.s as u32, w.t as u32);
    let (hd, wv, tb) = (st.hd as u32, st.tgt_vocab as u32, t * b);
    let (dec_y, mem) = tops(w);
    let head_in = if st.attends {
        // scores[b] = d[b]·keys[b]ᵀ  [T, S]
        let g = Gemm::new(t, s, hd)
            .a(per_row(dec_y, b, hd))
            .b_t(per_row(keys, b, hd))
            .c(Matrix::work(w.a.off, s).z(t * s))
            .batch(b);
        pg.gemm(&g, "seq2seq.attn.scores")?;
        pg.attention(
            Kernel::AttnSoftmax,
            AttnArgs {
                len_off: w.enc.lengths.off,
                len_div: t,
                ..AttnArgs::block(b * t, s, (w.a.off, s), (w.a.off, s))
            },
            "seq2seq.attn.softmax",
        )?;
        // context[b] = a[b]·m[b]  [T, Hd]
        let g = Gemm::new(t, hd, s)
            .a(Matrix::work(w.a.off, s).z(t * s))
            .b(per_row(mem, b, hd))
            .c(per_row(w.ctx.off, b, hd))
            .batch(b);
        pg.gemm(&g, "seq2seq.attn.context")?;
        // o = tanh(c·W_c[:, :Hd]ᵀ + d·W_c[:, Hd:]ᵀ + b_c)
        let (wc, bc) = (st.wc.expect("attending"), st.bc.expect("attending"));
        let g = Gemm::new(tb, hd, hd)
            .a(Matrix::work(w.ctx.off, hd))
            .b_t(Matrix::params(wc, 2 * hd))
            .c(Matrix::work(w.o.off, hd))
            .bias(Matrix::params(bc, 0), true);
        pg.gemm(&g, "seq2seq.combine")?;
        let g = Gemm::new(tb, hd, hd)
            .accumulate(true)
            .a(Matrix::work(dec_y, hd))
            .b_t(Matrix::params(wc + hd, 2 * hd))
            .c(Matrix::work(w.o.off, hd));
        pg.gemm(&g, "seq2seq.combine")?;
        pg.attention(
            Kernel::TanhForward,
            AttnArgs::block(tb, hd, (w.o.off, hd), (w.o.off, hd)),
            "seq2seq.combine.tanh",
        )?;
        w.o.off
    } else {
        dec_y
    };
    let g = Gemm::new(tb, wv, hd)
        .a(Matrix::work(head_in, hd))
        .b_t(Matrix::params(st.hw, hd))
        .c(Matrix::work(w.logits.off, wv))
        .bias(Matrix::params(st.hb, 0), true);
    pg.gemm(&g, "seq2seq.head")
}

/// From the logits' gradient: the head's, the attention's and the combine's
/// weight gradients (accumulated), the decoder output's gradient into the
/// decoder's `dy_top` and the memory's into the encoder's (as
/// `Seq2Seq::loss_and_gradients` and `attention::backward`). Without
/// attention the memory gets none: `GpuSeq2Seq` clears the encoder's `dy_top`.
fn read_out_backward(pg: &mut Program, st: &Stacks, w: &Work) -> Result<()> {
    let (b, s, t) = (w.b as u32, w.s as u32, w.t as u32);
    let (hd, wv, tb) = (st.hd as u32, st.tgt_vocab as u32, t * b);
    let (dec_y, mem) = tops(w);
    let (ddec, dmem) = (w.dec.dy_top.off, w.enc.dy_top.off);
    let dl = Matrix::work(w.dlogits.off, wv);
    let head_in = if st.attends { w.o.off } else { dec_y };
    let g = Gemm::new(wv, hd, tb)
        .accumulate(true)
        .a_t(dl)
        .b(Matrix::work(head_in, hd))
        .c(Matrix::grads(st.hw, hd));
    pg.gemm(&g, "seq2seq.head.backward.weight")?;
    pg.column_sums(
        &Gemm::new(tb, wv, 0).a(dl).c(Matrix::grads(st.hb, 0)),
        "seq2seq.head.backward.bias",
    )?;
    let d_head_in = if st.attends { w.d_o.off } else { ddec };
    let g = Gemm::new(tb, hd, wv)
        .a(dl)
        .b(Matrix::params(st.hw, hd))
        .c(Matrix::work(d_head_in, hd));
    pg.gemm(&g, "seq2seq.head.backward.input")?;
    if !st.attends {
        return Ok(());
    }
    let (wc, bc) = (st.wc.expect("attending"), st.bc.expect("attending"));
    // dz = d_o·(1 - o²), in place.
    pg.attention(
        Kernel::TanhBackward,
        AttnArgs::block(tb, hd, (w.o.off, hd), (w.d_o.off, hd)),
        "seq2seq.combine.backward.tanh",
    )?;
    let dz = Matrix::work(w.d_o.off, hd);
    for (half, x) in [(0, w.ctx.off), (hd, dec_y)] {
        let g = Gemm::new(hd, hd, tb)
            .accumulate(true)
            .a_t(dz)
            .b(Matrix::work(x, hd))
            .c(Matrix::grads(wc + half, 2 * hd));
        pg.gemm(&g, "seq2seq.combine.backward.weight")?;
    }
    pg.column_sums(
        &Gemm::new(tb, hd, 0).a(dz).c(Matrix::grads(bc, 0)),
        "seq2seq.combine.backward.bias",
    )?;
    for (half, out) in [(0, w.dctx.off), (hd, ddec)] {
        let g = Gemm::new(tb, hd, hd)
            .a(dz)
            .b(Matrix::params(wc + half, 2 * hd))
            .c(Matrix::work(out, hd));
        pg.gemm(&g, "seq2seq.combine.backward.input")?;
    }
    // Through the context: da[b] = dc[b]·m[b]ᵀ, dm[b] = a[b]ᵀ·dc[b].
    let g = Gemm::new(t, s, hd)
        .a(per_row(w.dctx.off, b, hd))
        .b_t(per_row(mem, b, hd))
        .c(Matrix::work(w.da.off, s).z(t * s))
        .batch(b);
    pg.gemm(&g, "seq2seq.attn.backward.weights")?;
    let g = Gemm::new(s, hd, t)
        .a_t(Matrix::work(w.a.off, s).z(t * s))
        .b(per_row(w.dctx.off, b, hd))
        .c(per_row(dmem, b, hd))
        .batch(b);
    pg.gemm(&g, "seq2seq.attn.backward.memory")?;
    // The softmax: de = a·(da - Σ a·da), in place.
    pg.attention(
        Kernel::AttnSoftmaxBackward,
        AttnArgs::block(b * t, s, (w.a.off, s), (w.da.off, s)),
        "seq2seq.attn.backward.softmax",
    )?;
    // The scores: dd[b] += de[b]·keys[b], dkeys[b] = de[b]ᵀ·d[b].
    let de = Matrix::work(w.da.off, s).z(t * s);
    let keys = if st.wa.is_some() { w.keys.off } else { mem };
    let g = Gemm::new(t, hd, s)
        .accumulate(true)
        .a(de)
        .b(per_row(keys, b, hd))
        .c(per_row(ddec, b, hd))
        .batch(b);
    pg.gemm(&g, "seq2seq.attn.backward.decoder")?;
    let (dkeys, acc) = match st.wa {
        Some(_) => (w.dkeys.off, false),
        None => (dmem, true),
    };
    let g = Gemm::new(s, hd, t)
        .accumulate(acc)
        .a_t(de)
        .b(per_row(dec_y, b, hd))
        .c(per_row(dkeys, b, hd))
        .batch(b);
    pg.gemm(&g, "seq2seq.attn.backward.keys")?;
    // general: keys = m·W_aᵀ, so dm += dkeys·W_a, dW_a += dkeysᵀ·m.
    if let Some(wa) = st.wa {
        let g = Gemm::new(s * b, hd, hd)
            .accumulate(true)
            .a(Matrix::work(w.dkeys.off, hd))
            .b(Matrix::params(wa, hd))
            .c(Matrix::work(dmem, hd));
        pg.gemm(&g, "seq2seq.attn.backward.keys_input")?;
        let g = Gemm::new(hd, hd, s * b)
            .accumulate(true)
            .a_t(Matrix::work(w.dkeys.off, hd))
            .b(Matrix::work(mem, hd))
            .c(Matrix::grads(wa, hd));
        pg.gemm(&g, "seq2seq.attn.backward.keys_weight")?;
    }
    Ok(())
}

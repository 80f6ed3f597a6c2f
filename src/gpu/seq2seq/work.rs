//! Where everything of one sequence-to-sequence batch shape lives in `work`
//! and `ints`: the encoder's stack workspace, the decoder's after it (each a
//! [`Workspace`] of its own, shifted), then the attention's and the head's
//! regions. Rows of the attention's blocks are time-major (`p = t·B + b`),
//! as the stacks' outputs; the weights `a` are `[B, T, S]`.

use super::stacks::Stacks;
use crate::error::{Error, Result};
use crate::gpu::workspace::{Alloc, Region, Workspace};

/// The regions of one shape: `b` rows, `s` source steps, `t` target steps
/// (1 for decoding, which also holds `k` decoded tokens a row).
#[derive(Clone, Debug)]
pub struct Work {
    pub b: usize,
    pub s: usize,
    pub t: usize,
    pub enc: Workspace,
    pub dec: Workspace,
    /// `[S·B, Hd]` keys `m·W_aᵀ` (general; else empty) and their gradient.
    pub keys: Region,
    pub dkeys: Region,
    /// `[B, T, S]` the scores, then (in place) the attention weights; their gradient.
    pub a: Region,
    pub da: Region,
    /// `[T·B, Hd]` context, its gradient.
    pub ctx: Region,
    pub dctx: Region,
    /// `[T·B, Hd]` `tanh(combine([c; d]))`, the head's input (attending), its gradient.
    pub o: Region,
    pub d_o: Region,
    /// `[T·B, W]` logits, their gradient.
    pub logits: Region,
    pub dlogits: Region,
    /// `[4]` loss, counted positions, gradient norm, clip coefficient.
    pub scalars: Region,
    /// `[norm_groups]` partial sums of the gradient norm.
    pub partials: Region,
    /// Decoding: `[B]` each row's current token, `[B, K]` the decoded ones,
    /// `[B]` the row each row's state comes from (beam search), as f32 values.
    pub tokens: Region,
    pub generated: Region,
    pub parents: Region,
    pub work_len: usize,
    /// ints: `[T·B]` the targets, time-major (-100: not counted).
    pub targets: Region,
    pub ints_len: usize,
}

impl Work {
    /// Training (and teacher-forced forwards) with `decode` `None`: the
    /// decoder over `t` steps, embedding its inputs itself; decoding with
    /// `decode` `Some(k)`: the decoder one step at a time (`t` = 1), fed by
    /// `embed_tokens`, `k` tokens a row kept on the device (greedy; beam
    /// search reads each step's logits: 0).
    pub fn new(
        st: &Stacks,
        b: usize,
        s: usize,
        t: usize,
        norm_groups: usize,
        decode: Option<usize>,
    ) -> Result<Work> {
        let too_big = || {
            Error::Gpu(format!(
                "the seq2seq workspace for batch {b} x {s} -> {t} steps has more elements than 32-bit offsets address. HINT: lower the batch size"
            ))
        };
        let enc = Workspace::new(&st.enc.config, b, s, norm_groups, false);
        let dec_cfg = match decode {
            None => &st.dec.config,
            Some(_) => &st.step.config,
        };
        let (ew, ei) = (Alloc::after(enc.work_len).0, Alloc::after(enc.ints_len).0);
        let dec = Workspace::new(dec_cfg, b, t, norm_groups, false);
        // Every offset must stay below 2^32 (the shifts add them as u32): a
        // bound on the whole, counted in usize first.
        let (hd, w) = (st.hd, st.tgt_vocab);
        let rest = 2 * s * b * hd
            + 6 * t * b * (hd + s)
            + 2 * t * b * w
            + norm_groups
            + 64
            + decode.map_or(0, |k| 2 * b + b * k);
        if ew + dec.work_len + rest >= u32::MAX as usize
            || ei + dec.ints_len + t * b >= u32::MAX as usize
        {
            return Err(too_big());
        }
        let dec = dec.shifted(ew, ei);
        let mut a = Alloc::after(dec.work_len);
        let attends = st.attends;
        let general = st.general;
        let tb = t * b;
        let keys = a.take(if general { s * b * hd } else { 0 });
        let dkeys = a.take(if general && decode.is_none() {
            s * b * hd
        } else {
            0
        });
        let (att, ctx, o) = if attends {
            (b * t * s, tb * hd, tb * hd)
        } else {
            (0, 0, 0)
        };
        let train = decode.is_none();
        let back = |n: usize| if train { n } else { 0 };
        let a_r = a.take(att);
        let da = a.take(back(att));
        let ctx_r = a.take(ctx);
        let dctx = a.take(back(ctx));
        let o_r = a.take(o);
        let d_o = a.take(back(o));
        let logits = a.take(tb * w);
        let dlogits = a.take(back(tb * w));
        let scalars = a.take(4);
        let partials = a.take(norm_groups);
        let tokens = a.take(if decode.is_some() { b } else { 0 });
        let generated = a.take(decode.map_or(0, |k| b * k));
        let parents = a.take(if decode.is_some() { b } else { 0 });
        let mut i = Alloc::after(dec.ints_len);
        let targets = i.take(tb);
        Ok(Work {
            b,
            s,
            t,
            enc,
            dec,
            keys,
            dkeys,
            a: a_r,
            da,
            ctx: ctx_r,
            dctx,
            o: o_r,
            d_o,
            logits,
            dlogits,
            scalars,
            partials,
            tokens,
            generated,
            parents,
            work_len: a.0.max(4),
            targets,
            ints_len: i.0.max(4),
        })
    }
}

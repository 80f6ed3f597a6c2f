//! [`GpuSeq2Seq`]: a sequence-to-sequence model on the GPU, as
//! [`crate::seq2seq::Seq2Seq`] on the CPU path — the teacher-forced
//! forward, the loss and every gradient, training steps, evaluation and
//! greedy decoding.
//!
//! ## Design
//! - One flat `params [P]` / `grads [P]` / optimizer state in the
//!   [`Seq2SeqLayout`] order ([`Weights::flat`]): checkpoints are one copy
//!   and the optimizer one dispatch, as for the plain models.
//! - The encoder and the decoder are the recurrent stack op's recording
//!   (`record::Recorder`, the same kernels as every model) over a
//!   [`Layout`] shifted to each stack's place in the flat parameters, each
//!   on a [`super::workspace::Workspace`] of its own inside one `work`
//!   buffer (`work.rs`).
//! - Between and after them (`record.rs`): the bridge as block copies, the
//!   attention as batched GEMMs around a masked softmax kernel
//!   (`attention.wgsl`), the combine as two accumulating GEMMs and a tanh,
//!   the head and `loss_ce`; backward the same in reverse, the bridge's
//!   gradient through the decoder's initial-state gradients.
//! - A training step is one recording per batch shape `(B, S, T)`, replayed
//!   in one submission: forward, loss, backward, norm and optimizer, which
//!   skips a step whose loss or gradient norm is not finite (the weights
//!   stay as they were, as on the CPU path); the loss is read back.
//! - Greedy decoding is one submission: the encoder and the keys once,
//!   then the decoder's one-step recording `K` times, the arg-max of each
//!   step feeding the next on the device; the tokens are read back at the
//!   end (all `K` steps run: rows that ended are zeroed on the host).
//! - Beam search runs the host's search (`decode::search`, the CPU path's
//!   too) over `width` hypothesis slots a row: each step's logits are read
//!   back, and the states gathered by parent on the device (`gather_rows`).
//! - Forwards and decodings of more than 512 rows run in parts; at most 8
//!   batch shapes keep their plans (a ninth starts the cache over).

mod record;
mod stacks;
mod work;

use super::args::OptArgs;
use super::context::GpuContext;
use super::encode::{Binds, Compiled};
use super::gemm_config::GemmDecisions;
use super::plan::workspace_buffers;
use super::program::Resolved;
use super::registry::SLOT_BYTES;
use super::tokens::write_tokens;
use super::weights::Weights;
use crate::cpu;
use crate::error::{Error, Result};
use crate::optim::Optimizer;
use crate::seq2seq::decode::{self, Beam, BeamStep, Decoded};
use crate::seq2seq::model::evaluate_with;
use crate::seq2seq::{Backend, Evaluation, Seq2Seq, Seq2SeqConfig, Seq2SeqData, Source};
use crate::tensor::Tensor;
use stacks::Stacks;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use work::Work;

/// What a plan's recording is.
enum Kind {
    /// The phases, the norm's and the optimizer's slots.
    Train(record::Phases, u32, u32),
    Decode(record::Decoding),
}

/// What a plan runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Mode {
    Train,
    /// Greedy decoding of this many tokens.
    Greedy(usize),
    /// Beam search (each step's logits read back).
    Beam,
}

/// Everything for one batch shape: the regions, the buffers, the recording.
struct Plan {
    w: Work,
    work: wgpu::Buffer,
    ints: wgpu::Buffer,
    uniforms: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    step: Compiled,
    kind: Kind,
}

/// Plans kept at most (each a workspace on the device and its recording).
const MAX_PLANS: usize = 8;

/// Rows of one teacher-forced forward or decoding at most: a larger input
/// runs in parts of this many (beam search: hypotheses, `rows·width`).
const CHUNK_ROWS: usize = 512;

/// A plan's key: rows, source steps, target steps, what it runs.
type Key = (usize, usize, usize, Mode);

/// A sequence-to-sequence model on the GPU.
pub struct GpuSeq2Seq {
    ctx: Arc<GpuContext>,
    model: Seq2Seq,
    stacks: Stacks,
    weights: Weights,
    plans: HashMap<Key, Plan>,
}

impl GpuSeq2Seq {
    /// Uploads `model`'s parameters to the GPU of `ctx`.
    pub fn new(ctx: Arc<GpuContext>, model: &Seq2Seq) -> Result<GpuSeq2Seq> {
        // Decoding keeps token ids on the device as f32 values: exact below 2^24.
        if model.config().tgt_vocab > 1 << 24 {
            return Err(Error::Argument(format!(
                "a target vocabulary of {} tokens: the GPU path decodes vocabularies of at most 2^24",
                model.config().tgt_vocab
            )));
        }
        let stacks = Stacks::new(model.config(), model.layout());
        let weights = Weights::flat(&ctx, model.layout().total, model.params())?;
        Ok(GpuSeq2Seq {
            ctx,
            model: model.clone(),
            stacks,
            weights,
            plans: HashMap::new(),
        })
    }

    pub fn config(&self) -> &Seq2SeqConfig {
        self.model.config()
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }

    /// The model with the device's parameters (waits for queued steps).
    pub fn download(&self) -> Result<Seq2Seq> {
        let p = self.read(&self.weights.params, 0, self.stacks.total)?;
        Seq2Seq::from_params(self.model.config().clone(), p)
    }

    /// Replaces the parameters with `model`'s (the same configuration).
    pub fn upload(&mut self, model: &Seq2Seq) -> Result<()> {
        if model.config() != self.model.config() {
            return Err(Error::Argument(
                "upload: the model's configuration differs from the GPU model's".into(),
            ));
        }
        self.ctx.queue.write_buffer(
            &self.weights.params,
            0,
            bytemuck::cast_slice(model.params()),
        );
        Ok(())
    }

    /// Copies the device's optimizer moments into `opt` (as the CPU path
    /// keeps them), e.g. to continue on the CPU path.
    pub fn download_moments(&self, opt: &mut Optimizer) -> Result<()> {
        let s = self.read(&self.weights.state, 0, 2 * self.stacks.total)?;
        super::optim_state::unpack_moments(opt, &s, self.stacks.total)
    }

    /// Writes `opt`'s moments to the device, to continue a fit at `opt.step`
    /// (a fresh optimizer needs none: its first step starts from zeros).
    pub fn upload_moments(&mut self, opt: &Optimizer) -> Result<()> {
        let s = super::optim_state::pack_moments(opt, self.stacks.total)?;
        self.ctx
            .queue
            .write_buffer(&self.weights.state, 0, bytemuck::cast_slice(&s));
        Ok(())
    }

    fn read(&self, buf: &wgpu::Buffer, off: usize, len: usize) -> Result<Vec<f32>> {
        let bytes = self
            .ctx
            .read_bytes_at(buf, (off * 4) as u64, (len * 4) as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    // ---------------------------------------------------------------- plans

    /// The plan of `key`, recorded on first use.
    fn plan(&mut self, key: Key) -> Result<&Plan> {
        if !self.plans.contains_key(&key) {
            // Each shape holds its buffers: many shapes (texts of every
            // length, say) start over rather than grow without bound.
            if self.plans.len() >= MAX_PLANS {
                self.plans.clear();
            }
            let plan = self.build(key)?;
            self.plans.insert(key, plan);
        }
        Ok(&self.plans[&key])
    }

    fn build(&self, (b, s, t, mode): Key) -> Result<Plan> {
        let ctx = &self.ctx;
        let decode = match mode {
            Mode::Train => None,
            Mode::Greedy(k) => Some(k),
            Mode::Beam => Some(0),
        };
        let w = Work::new(
            &self.stacks,
            b,
            s,
            t,
            ctx.tunables.norm_groups as usize,
            decode,
        )?;
        let what = format!("the seq2seq workspace for batch {b} x {s} -> {t} steps");
        let (work, ints) = workspace_buffers(ctx, &what, w.work_len, w.ints_len)?;
        let record = |gemms: GemmDecisions| -> Result<(super::program::Program, Kind)> {
            // A persistent grid tile runs per step here (its sync buffer is
            // the plain models' plans'; the same bits).
            let tunables = ctx
                .tunables
                .with_step_tile(ctx.tunables.step.without_grid());
            let resolved = Resolved {
                gemms,
                ..Resolved::fixed(tunables, &ctx.limits)
            };
            Ok(match decode {
                None => {
                    let r = record::train(&self.stacks, &w, resolved)?;
                    (r.program, Kind::Train(r.phases, r.norm_slot, r.opt_slot))
                }
                Some(k) => {
                    let (pg, d) = record::decode(&self.stacks, &w, k, resolved)?;
                    (pg, Kind::Decode(d))
                }
            })
        };
        // As the plain models' plans: the GEMM shapes of a first recording
        // go to the context's tuner when tuning is on.
        let gemms = if ctx.autotune() {
            let (pg, _) = record(Default::default())?;
            ctx.gemm_decisions(pg.gemms.iter().map(|g| g.shape))?
        } else {
            Default::default()
        };
        let (program, kind) = record(gemms)?;
        let step = Compiled::all(ctx, program)?;
        let bufs = self.weights.bindings(&work, &ints, false).expect("f32");
        let (uniforms, bind_group) = ctx.bind_program("seq2seq", &step.program.uniforms, bufs);
        Ok(Plan {
            w,
            work,
            ints,
            uniforms,
            bind_group,
            step,
            kind,
        })
    }

    /// Writes a batch's source (ids, lengths), the decoder's inputs and
    /// lengths, and the targets into the plan of `key`.
    fn upload_batch(&mut self, key: Key, src: &Source, tgt: Option<&Seq2SeqData>) -> Result<()> {
        self.plan(key)?;
        let plan = &self.plans[&key];
        let (q, w) = (&self.ctx.queue, &plan.w);
        let ints = |r: super::workspace::Region, v: &[i32]| {
            q.write_buffer(&plan.ints, r.off as u64 * 4, bytemuck::cast_slice(v));
        };
        let (n, s) = (src.n, src.s);
        // Ids past a row's length are never read by the stack; they need
        // not be in the vocabulary, so the gather reads row 0 there.
        let mut ids = vec![0i32; n * s];
        for b in 0..n {
            for j in 0..src.lengths[b] {
                ids[b * s + j] = src.ids[b * s + j] as i32;
            }
        }
        let vocabs = (self.model.config().src_vocab, self.stacks.tgt_vocab);
        write_tokens(q, &plan.ints, &w.enc, &ids, vocabs.0, true);
        let lens: Vec<i32> = src.lengths.iter().map(|&l| l as i32).collect();
        ints(w.enc.lengths, &lens);
        ints(w.dec.lengths, &vec![w.t as i32; n]);
        if let Some(d) = tgt {
            let t = d.t;
            let tin: Vec<i32> = d.tgt_in.iter().map(|&v| v as i32).collect();
            write_tokens(q, &plan.ints, &w.dec, &tin, vocabs.1, true);
            let mut y = vec![0i32; t * n];
            for b in 0..n {
                for ti in 0..t {
                    y[ti * n + b] = d.tgt_out[b * t + ti] as i32;
                }
            }
            ints(w.targets, &y);
        }
        Ok(())
    }

    /// The clears and the dispatches of `ranges`, in one pass of a new encoder.
    /// (`backward`: the gradients and the carries zeroed first; `fresh`:
    /// the optimizer's moments.)
    fn encode(
        &self,
        key: Key,
        ranges: &[Range<usize>],
        backward: bool,
        fresh: bool,
    ) -> Result<wgpu::CommandEncoder> {
        let plan = &self.plans[&key];
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("seq2seq"),
            });
        if fresh {
            enc.clear_buffer(&self.weights.state, 0, None);
        }
        if backward {
            enc.clear_buffer(&self.weights.grads, 0, None);
            let w = &plan.w;
            let mut zero = vec![w.enc.zeroed, w.dec.zeroed];
            if !self.stacks.attends {
                // Nothing reads the memory: its gradient is zero.
                zero.push(w.enc.dy_top);
            }
            for z in zero.into_iter().filter(|z| z.len > 0) {
                enc.clear_buffer(
                    &plan.work,
                    z.off as u64 * 4,
                    Some(z.len.div_ceil(4) as u64 * 16),
                );
            }
        }
        plan.step.encode(
            &mut enc,
            Binds::main(&plan.bind_group),
            ranges,
            1,
            "seq2seq",
            None,
        )?;
        Ok(enc)
    }

    fn train_key(&self, data: &Seq2SeqData) -> Result<Key> {
        data.check(self.model.config())?;
        if data.n() == 0 {
            return Err(Error::Empty("a seq2seq batch of 0 pairs".into()));
        }
        Ok((data.n(), data.src.s, data.t, Mode::Train))
    }

    fn phases(&self, key: Key) -> (record::Phases, u32, u32) {
        match self.plans[&key].kind {
            Kind::Train(p, n, o) => (p, n, o),
            Kind::Decode(_) => unreachable!("a training plan"),
        }
    }

    // ---------------------------------------------------------------- running

    /// Teacher-forced logits `[N, T, tgt_vocab]`, as [`Seq2Seq::forward`]
    /// (in parts of at most 512 rows).
    pub fn forward(&mut self, data: &Seq2SeqData) -> Result<Tensor> {
        data.check(self.model.config())?;
        if data.n() <= CHUNK_ROWS {
            return self.forward_batch(data);
        }
        let mut out = Vec::new();
        for rows in parts(data.n(), CHUNK_ROWS) {
            out.extend(self.forward_batch(&data.gather(&rows))?.data);
        }
        Ok(Tensor::new(
            vec![data.n(), data.t, self.stacks.tgt_vocab],
            out,
        ))
    }

    fn forward_batch(&mut self, data: &Seq2SeqData) -> Result<Tensor> {
        let key = self.train_key(data)?;
        self.upload_batch(key, &data.src, Some(data))?;
        let (ph, _, _) = self.phases(key);
        let enc = self.encode(key, &[0..ph.forward], false, false)?;
        self.ctx.queue.submit([enc.finish()]);
        let plan = &self.plans[&key];
        let v = self.read(
            &plan.work,
            plan.w.logits.off as usize,
            plan.w.logits.len as usize,
        )?;
        let (n, t, wv) = (data.n(), data.t, self.stacks.tgt_vocab);
        Ok(Tensor::new(vec![n, t, wv], cpu::transpose_bt(&v, t, n, wv)))
    }

    /// The forward, the loss and the backward of `data` in one submission
    /// (after it, the gradients are in `grads`); returns the loss.
    fn backward(&mut self, data: &Seq2SeqData) -> Result<(Key, f32)> {
        let key = self.train_key(data)?;
        self.upload_batch(key, &data.src, Some(data))?;
        let (ph, _, _) = self.phases(key);
        let enc = self.encode(key, &[0..ph.backward], true, false)?;
        self.ctx.queue.submit([enc.finish()]);
        let plan = &self.plans[&key];
        let loss = self.read(&plan.work, plan.w.scalars.off as usize, 1)?[0];
        Ok((key, loss))
    }

    /// The mean cross-entropy and every parameter's gradient (in
    /// [`Seq2SeqLayout`] order), as [`Seq2Seq::loss_and_gradients`].
    ///
    /// [`Seq2SeqLayout`]: crate::seq2seq::Seq2SeqLayout
    pub fn loss_and_gradients(&mut self, data: &Seq2SeqData) -> Result<(f32, Vec<f32>)> {
        let (_, loss) = self.backward(data)?;
        let g = self.read(&self.weights.grads, 0, self.stacks.total)?;
        Ok((loss, g))
    }

    /// One optimizer step on `data` (clipping the gradient norm to `clip`
    /// if given), as [`Seq2Seq::train_step`]: returns the batch's loss; a
    /// step whose loss or gradient norm is not finite is refused and leaves
    /// the weights as they were. The optimizer's
    /// moments live on the device: a fresh `opt` starts them at zero;
    /// continuing one from elsewhere needs [`GpuSeq2Seq::upload_moments`].
    pub fn train_step(
        &mut self,
        data: &Seq2SeqData,
        opt: &mut Optimizer,
        clip: Option<f32>,
    ) -> Result<f32> {
        opt.validate()?;
        if let Some(c) = clip {
            if !(c > 0.0 && c.is_finite()) {
                return Err(Error::Argument(format!(
                    "clip {c} must be a positive number"
                )));
            }
        }
        let key = self.train_key(data)?;
        self.upload_batch(key, &data.src, Some(data))?;
        opt.step += 1;
        let (ph, norm_slot, opt_slot) = self.phases(key);
        let plan = self.plans.get_mut(&key).expect("built");
        let a = OptArgs {
            n: self.stacks.total as u32,
            scalars_off: plan.w.scalars.off,
            partials_off: plan.w.partials.off,
            partials: self.ctx.tunables.norm_groups,
            ..Default::default()
        }
        .for_step(clip, opt);
        let program = &mut plan.step.program;
        program.set_slot(norm_slot, &a);
        program.set_slot(opt_slot, &a);
        for slot in [norm_slot, opt_slot] {
            let at = slot as u64 * SLOT_BYTES;
            self.ctx
                .queue
                .write_buffer(&plan.uniforms, at, program.slot_bytes(slot));
        }
        // One submission: forward, loss, backward, norm, optimizer (which
        // skips a step whose loss or gradient norm is not finite: the
        // weights and moments stay as they were). A fresh optimizer's
        // moments start at zero, as on the CPU.
        let fresh = opt.step == 1;
        let enc = self.encode(key, &[0..ph.optim], true, fresh)?;
        self.ctx.queue.submit([enc.finish()]);
        let plan = &self.plans[&key];
        // [loss, count, gradient norm, clip coefficient]
        let sc = self.read(&plan.work, plan.w.scalars.off as usize, 3)?;
        let (loss, norm) = (sc[0], sc[2]);
        if !loss.is_finite() || !norm.is_finite() {
            // The optimizer skipped it: the count goes back too.
            opt.step -= 1;
            return Err(Error::Diverged {
                step: opt.step as usize + 1,
                loss: if loss.is_finite() { norm } else { loss },
            });
        }
        Ok(loss)
    }

    /// Loss and token accuracy over `data` in batches of `batch`, as
    /// [`Seq2Seq::evaluate`] (the logits from the GPU, the sums on the host).
    pub fn evaluate(&mut self, data: &Seq2SeqData, batch: usize) -> Result<Evaluation> {
        let w = self.stacks.tgt_vocab;
        evaluate_with(data, batch, w, |b| Ok(self.forward(b)?.data))
    }

    /// Greedy decoding of `src`, `max_len` tokens from `bos`, on the device,
    /// as [`crate::seq2seq::decode::greedy`]: each row's picks up to and
    /// including its `eos`, then 0.
    pub fn greedy(&mut self, src: &Source, max_len: usize) -> Result<Decoded> {
        if max_len == 0 {
            return Err(Error::Argument("--max-len must be at least 1".into()));
        }
        let cfg = self.model.config().clone();
        src.check(&cfg)?;
        if src.n <= CHUNK_ROWS {
            return self.greedy_batch(src, max_len);
        }
        let mut tokens = Vec::new();
        for rows in parts(src.n, CHUNK_ROWS) {
            tokens.extend(self.greedy_batch(&src.gather(&rows), max_len)?.tokens);
        }
        Ok(Decoded {
            n: src.n,
            max_len,
            tokens,
        })
    }

    fn greedy_batch(&mut self, src: &Source, max_len: usize) -> Result<Decoded> {
        let cfg = self.model.config().clone();
        let key = (src.n, src.s, 1, Mode::Greedy(max_len));
        self.upload_batch(key, src, None)?;
        let plan = &self.plans[&key];
        let d = self.decoding(key).clone();
        let (prologue, step, argmax, carry) = (d.prologue, d.step, d.argmax, d.carry);
        let mut ranges = vec![prologue];
        for i in 0..max_len {
            ranges.extend([step.clone(), argmax + i..argmax + i + 1, carry.clone()]);
        }
        self.ctx.queue.write_buffer(
            &plan.work,
            plan.w.tokens.off as u64 * 4,
            bytemuck::cast_slice(&vec![cfg.bos as f32; src.n]),
        );
        let enc = self.encode(key, &ranges, false, false)?;
        self.ctx.queue.submit([enc.finish()]);
        let plan = &self.plans[&key];
        let got = self.read(
            &plan.work,
            plan.w.generated.off as usize,
            plan.w.generated.len as usize,
        )?;
        let mut tokens: Vec<i64> = got.iter().map(|&v| v as i64).collect();
        for row in tokens.chunks_exact_mut(max_len) {
            if let Some(end) = row.iter().position(|&v| v == cfg.eos as i64) {
                row[end + 1..].iter_mut().for_each(|v| *v = 0);
            }
        }
        Ok(Decoded {
            n: src.n,
            max_len,
            tokens,
        })
    }

    fn decoding(&self, key: Key) -> &record::Decoding {
        match &self.plans[&key].kind {
            Kind::Decode(d) => d,
            Kind::Train(..) => unreachable!("a decoding plan"),
        }
    }

    /// Beam search over `src` on the device, as [`crate::seq2seq::decode::beam`]
    /// (the same search on the host, `decode::search`): the encoder once
    /// over `width` copies of each source row, then each step the decoder
    /// over `n·width` hypothesis slots (row `i`'s live hypotheses in slots
    /// `i·width..`), its logits read back, the next tokens and each slot's
    /// parent written, the states gathered by parent on the device.
    pub fn beam(&mut self, src: &Source, max_len: usize, beam: Beam) -> Result<Decoded> {
        decode::check_beam(max_len, beam)?;
        let cfg = self.model.config().clone();
        src.check(&cfg)?;
        let per = (CHUNK_ROWS / beam.width).max(1);
        if src.n <= per {
            return self.beam_batch(src, max_len, beam);
        }
        let mut tokens = Vec::new();
        for rows in parts(src.n, per) {
            tokens.extend(self.beam_batch(&src.gather(&rows), max_len, beam)?.tokens);
        }
        Ok(Decoded {
            n: src.n,
            max_len,
            tokens,
        })
    }

    fn beam_batch(&mut self, src: &Source, max_len: usize, beam: Beam) -> Result<Decoded> {
        let cfg = self.model.config().clone();
        let k = beam.width;
        let copies: Vec<usize> = (0..src.n * k).map(|r| r / k).collect();
        let slots = src.gather(&copies);
        let key = (slots.n, src.s, 1, Mode::Beam);
        self.upload_batch(key, &slots, None)?;
        let mut step = BeamSlots {
            gpu: self,
            key,
            width: k,
            slots: Vec::new(),
        };
        decode::search(&cfg, src.n, max_len, beam, &mut step)
    }
}

/// `0..n` in consecutive parts of at most `per`.
fn parts(n: usize, per: usize) -> Vec<Vec<usize>> {
    (0..n)
        .step_by(per)
        .map(|s| (s..(s + per).min(n)).collect())
        .collect()
}

/// [`GpuSeq2Seq::beam`]'s [`BeamStep`]: where each live hypothesis sits.
struct BeamSlots<'a> {
    gpu: &'a mut GpuSeq2Seq,
    key: Key,
    width: usize,
    /// The slot of each live hypothesis of the step before.
    slots: Vec<usize>,
}

impl BeamStep for BeamSlots<'_> {
    fn step(
        &mut self,
        rows: &[usize],
        prev: &[i64],
        parents: Option<&[usize]>,
    ) -> Result<Vec<f32>> {
        let g = &*self.gpu;
        let plan = &g.plans[&self.key];
        let d = g.decoding(self.key).clone();
        let b = plan.w.b;
        // Hypothesis i is the j-th live one of its row: slot row·width + j.
        let mut slots = Vec::with_capacity(rows.len());
        for (i, &r) in rows.iter().enumerate() {
            let j = if i > 0 && rows[i - 1] == r {
                slots[i - 1] - r * self.width + 1
            } else {
                0
            };
            slots.push(r * self.width + j);
        }
        let mut tokens = vec![0f32; b];
        for (&s, &p) in slots.iter().zip(prev) {
            tokens[s] = p as f32;
        }
        let q = &g.ctx.queue;
        q.write_buffer(
            &plan.work,
            plan.w.tokens.off as u64 * 4,
            bytemuck::cast_slice(&tokens),
        );
        let ranges = match parents {
            None => vec![d.prologue, d.step],
            Some(p) => {
                // Slots nobody continues keep their own (unused) state.
                let mut from: Vec<f32> = (0..b).map(|s| s as f32).collect();
                for (&s, &parent) in slots.iter().zip(p) {
                    from[s] = self.slots[parent] as f32;
                }
                q.write_buffer(
                    &plan.work,
                    plan.w.parents.off as u64 * 4,
                    bytemuck::cast_slice(&from),
                );
                vec![d.gather, d.step]
            }
        };
        let enc = g.encode(self.key, &ranges, false, false)?;
        q.submit([enc.finish()]);
        let wv = g.stacks.tgt_vocab;
        let all = g.read(&plan.work, plan.w.logits.off as usize, b * wv)?;
        self.slots = slots;
        Ok(self
            .slots
            .iter()
            .flat_map(|&s| all[s * wv..(s + 1) * wv].iter().copied())
            .collect())
    }
}

impl Backend for GpuSeq2Seq {
    fn config(&self) -> &Seq2SeqConfig {
        GpuSeq2Seq::config(self)
    }
    fn forward(&mut self, data: &Seq2SeqData) -> Result<Tensor> {
        GpuSeq2Seq::forward(self, data)
    }
    fn train_step(
        &mut self,
        data: &Seq2SeqData,
        opt: &mut Optimizer,
        clip: Option<f32>,
    ) -> Result<f32> {
        GpuSeq2Seq::train_step(self, data, opt, clip)
    }
    fn evaluate(&mut self, data: &Seq2SeqData, batch: usize) -> Result<Evaluation> {
        GpuSeq2Seq::evaluate(self, data, batch)
    }
    fn greedy(&mut self, src: &Source, max_len: usize) -> Result<Decoded> {
        GpuSeq2Seq::greedy(self, src, max_len)
    }
    fn beam(&mut self, src: &Source, max_len: usize, beam: Beam) -> Result<Decoded> {
        GpuSeq2Seq::beam(self, src, max_len, beam)
    }
    fn to_model(&self) -> Result<Seq2Seq> {
        self.download()
    }
    fn device(&self) -> &'static str {
        "gpu"
    }
}

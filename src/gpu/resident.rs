//! A training set kept on the device: uploaded once
//! ([`GpuModel::keep_dataset`]), then each step's batch is gathered there by
//! its rows' indices (`data.wgsl`) into the plan's workspace, in the layouts
//! `GpuModel::upload_batch` writes from the host — so a step on rows of a
//! kept set computes exactly what a step on the host-gathered batch does,
//! without the host gathering, transposing and uploading the batch. Only the
//! rows' indices travel per step.
//!
//! The set is two buffers: f32 (features `[N, T, F]`, mse targets) and i32
//! (token ids `[N, T]`, lengths `[N]`, class targets `[N]` or `[N, T]`), with
//! each part's offset here. Each plan shape gets a small gather program of its
//! own (one dispatch per part) with a bind group of `data.wgsl`'s layout.

use super::args::GatherArgs;
use super::context::GpuContext;
use super::encode::{Binds, Compiled};
use super::plan::Plan;
use super::program::{Program, Resolved};
use super::registry::{Kernel, SLOT_BYTES};
use crate::data::{Dataset, Inputs, Targets};
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::Loss;
use std::collections::HashMap;

/// The kept set and the gather program of each plan shape.
pub(crate) struct Resident {
    n: usize,
    /// Steps of every sequence in the set (a batch may be cut shorter).
    t: usize,
    loss: Loss,
    /// Lengths on the host too: a batch cut to its longest needs its `T`
    /// first; token ids too: the embedding's backward needs each batch's
    /// index of them (`tokens.rs`).
    lengths: Option<Vec<usize>>,
    ids_host: Option<Vec<i32>>,
    f32s: wgpu::Buffer,
    i32s: wgpu::Buffer,
    /// `[N]` u32: the current batch's rows (a batch has at most N: `batch_steps`).
    rows: wgpu::Buffer,
    /// Element offsets of each part, if the set has it: features (and F),
    /// token ids, lengths, class targets, mse targets (and O).
    x: Option<(u32, usize)>,
    ids: Option<u32>,
    lens: Option<u32>,
    classes: Option<u32>,
    values: Option<(u32, usize)>,
    gathers: HashMap<(usize, usize), Gatherer>,
}

/// One plan shape's gather program, its uniforms and bind group (over
/// the plan's `work`, kept to tell a rebuilt plan's buffers apart).
struct Gatherer {
    work: wgpu::Buffer,
    program: Compiled,
    _uniforms: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

/// Appends `v` to `buf` (16-byte aligned), returning its element offset.
fn push<T: Copy>(buf: &mut Vec<T>, v: &[T], zero: T) -> u32 {
    let off = buf.len();
    buf.extend_from_slice(v);
    buf.resize(buf.len().div_ceil(4) * 4, zero);
    off as u32
}

impl Resident {
    /// The set `data` (inputs, lengths, the targets of `loss`, for a model
    /// of `cfg`) on the device of `ctx`: checked as a training batch is,
    /// uploaded once.
    pub fn new(
        ctx: &GpuContext,
        cfg: &ModelConfig,
        data: &Dataset,
        loss: Loss,
    ) -> Result<Resident> {
        if data.states.is_some() {
            return Err(Error::Argument(
                "keep_dataset: a set with initial states is not kept on the device; train it batch by batch".into(),
            ));
        }
        data.check_inputs(cfg)?;
        let y = data.check_targets(cfg, loss)?;
        let (n, t) = (data.len(), data.steps());
        if n == 0 {
            return Err(Error::Empty("keep_dataset: a set of 0 sequences".into()));
        }
        let (mut f, mut i) = (Vec::<f32>::new(), Vec::<i32>::new());
        let (mut x, mut ids, mut ids_host) = (None, None, None);
        match &data.x {
            Inputs::Features { data: v, f: w, .. } => x = Some((push(&mut f, v, 0.0), *w)),
            Inputs::Tokens { ids: v, .. } => {
                let v: Vec<i32> = v.iter().map(|&v| v as i32).collect();
                ids = Some(push(&mut i, &v, 0));
                ids_host = Some(v);
            }
        }
        let lens = data.lengths.as_ref().map(|l| {
            let v: Vec<i32> = l.iter().map(|&v| v as i32).collect();
            push(&mut i, &v, 0)
        });
        let (mut classes, mut values) = (None, None);
        match y {
            Targets::Classes { data: c, .. } => {
                let c: Vec<i32> = c.iter().map(|&v| v as i32).collect();
                classes = Some(push(&mut i, &c, 0));
            }
            Targets::Values { data: v, .. } => {
                values = Some((push(&mut f, v, 0.0), cfg.out_features));
            }
        }
        for (what, len) in [
            ("the kept training set's f32 data", f.len()),
            ("its i32 data", i.len()),
        ] {
            ctx.check_storage(what, (len.max(4) * 4) as u64)?;
            if len >= u32::MAX as usize {
                return Err(Error::Gpu(format!(
                    "{what} has {len} elements, more than 32-bit offsets address"
                )));
            }
        }
        let mk = |label: &str, bytes: usize| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.max(16) as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        };
        let f32s = mk("resident.f32", f.len() * 4);
        let i32s = mk("resident.i32", i.len() * 4);
        let rows = mk("resident.rows", n * 4);
        ctx.queue.write_buffer(&f32s, 0, bytemuck::cast_slice(&f));
        ctx.queue.write_buffer(&i32s, 0, bytemuck::cast_slice(&i));
        Ok(Resident {
            n,
            t,
            loss,
            lengths: data.lengths.clone(),
            ids_host,
            f32s,
            i32s,
            rows,
            x,
            ids,
            lens,
            classes,
            values,
            gathers: HashMap::new(),
        })
    }

    /// Drops the gather programs (the plans they bind were dropped).
    pub fn clear_gathers(&mut self) {
        self.gathers.clear();
    }

    /// Sequences in the set.
    pub fn len(&self) -> usize {
        self.n
    }

    /// The token ids `[rows.len(), t]` of `rows`, cut to `t` steps (a set of
    /// token ids; else `None`).
    pub fn batch_ids(&self, rows: &[usize], t: usize) -> Option<Vec<i32>> {
        let ids = self.ids_host.as_ref()?;
        Some(
            rows.iter()
                .flat_map(|&r| ids[r * self.t..r * self.t + t].iter().copied())
                .collect(),
        )
    }

    /// Checks a step on `rows` with `loss`; returns the batch's steps (its
    /// longest sequence with `trim` and lengths, else the set's).
    pub fn batch_steps(&self, rows: &[usize], trim: bool, loss: Loss) -> Result<usize> {
        if loss != self.loss {
            return Err(Error::Argument(format!(
                "train_step_rows: the set was kept with the {} loss's targets, not {}'s",
                self.loss.name(),
                loss.name()
            )));
        }
        if rows.is_empty() {
            return Err(Error::Empty("train_step_rows: a batch of 0 rows".into()));
        }
        if rows.len() > self.n {
            return Err(Error::Argument(format!(
                "train_step_rows: a batch of {} rows from a kept set of {}: at most as many as the set has",
                rows.len(),
                self.n
            )));
        }
        if let Some(&bad) = rows.iter().find(|&&i| i >= self.n) {
            return Err(Error::Argument(format!(
                "train_step_rows: row {bad} of a kept set of {}",
                self.n
            )));
        }
        Ok(match (&self.lengths, trim) {
            (Some(l), true) => rows
                .iter()
                .map(|&i| l[i])
                .max()
                .unwrap_or(self.t)
                .min(self.t),
            _ => self.t,
        })
    }

    /// The commands that gather `rows` into `plan` (of shape `key`; its
    /// program built on first use; `seq`: the model's output is `sequence`);
    /// the rows are written into the rows buffer.
    pub fn gather_commands(
        &mut self,
        ctx: &GpuContext,
        seq: bool,
        key: (usize, usize),
        plan: &Plan,
        rows: &[usize],
    ) -> Result<wgpu::CommandBuffer> {
        let r = self;
        // A plan rebuilt since (new settings) has new buffers: gather anew.
        if r.gathers.get(&key).is_some_and(|g| g.work != plan.work) {
            r.gathers.remove(&key);
        }
        if !r.gathers.contains_key(&key) {
            let (b, t) = (key.0 as u32, key.1 as u32);
            let ws = &plan.ws;
            let base = GatherArgs {
                b,
                t,
                t_full: r.t as u32,
                ..Default::default()
            };
            let mut pg = Program::new(Resolved::fixed(ctx.tunables, &ctx.limits));
            let time_major = |width: usize, src: u32, dst: u32| GatherArgs {
                width: width as u32,
                src_off: src,
                dst_off: dst,
                order: 0,
                ..base
            };
            let per_row = |width: usize, src: u32, dst: u32| GatherArgs {
                order: 2,
                ..time_major(width, src, dst)
            };
            if let Some((off, f)) = r.x {
                pg.gather(
                    Kernel::GatherF32,
                    time_major(f, off, ws.x0.off),
                    "resident.x",
                )?;
            }
            if let Some(off) = r.ids {
                let a = GatherArgs {
                    order: 1,
                    ..time_major(1, off, ws.ids.off)
                };
                pg.gather(Kernel::GatherI32, a, "resident.ids")?;
            }
            let lengths = match r.lens {
                Some(off) => per_row(1, off, ws.lengths.off),
                None => GatherArgs {
                    fill: 1,
                    value: t as i32,
                    ..per_row(1, 0, ws.lengths.off)
                },
            };
            pg.gather(Kernel::GatherI32, lengths, "resident.lengths")?;
            if let Some(off) = r.classes {
                let a = if seq {
                    time_major(1, off, ws.classes.off)
                } else {
                    per_row(1, off, ws.classes.off)
                };
                pg.gather(Kernel::GatherI32, a, "resident.classes")?;
            }
            if let Some((off, o)) = r.values {
                let a = if seq {
                    time_major(o, off, ws.values.off)
                } else {
                    per_row(o, off, ws.values.off)
                };
                pg.gather(Kernel::GatherF32, a, "resident.values")?;
            }
            let program = Compiled::all(ctx, pg)?;
            let uniforms = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("resident.uniforms"),
                size: program.program.uniforms.len().max(SLOT_BYTES as usize) as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            ctx.queue
                .write_buffer(&uniforms, 0, &program.program.uniforms);
            fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
                wgpu::BindGroupEntry {
                    binding,
                    resource: buffer.as_entire_binding(),
                }
            }
            let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("resident"),
                layout: &ctx.registry.data_layout,
                entries: &[
                    entry(0, &r.f32s),
                    entry(1, &r.i32s),
                    entry(2, &plan.work),
                    entry(3, &plan.ints),
                    entry(4, &r.rows),
                    wgpu::BindGroupEntry {
                        binding: 5,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &uniforms,
                            offset: 0,
                            size: std::num::NonZeroU64::new(SLOT_BYTES),
                        }),
                    },
                ],
            });
            r.gathers.insert(
                key,
                Gatherer {
                    work: plan.work.clone(),
                    program,
                    _uniforms: uniforms,
                    bind_group,
                },
            );
        }
        let g = &r.gathers[&key];
        let idx: Vec<u32> = rows.iter().map(|&i| i as u32).collect();
        ctx.queue
            .write_buffer(&r.rows, 0, bytemuck::cast_slice(&idx));
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("resident.gather"),
            });
        let n = g.program.len();
        g.program.encode(
            &mut enc,
            Binds::main(&g.bind_group),
            &[0..n],
            1,
            "resident.gather",
            None,
        )?;
        Ok(enc.finish())
    }
}

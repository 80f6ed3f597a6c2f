//! Running a recorded [`Program`]: [`Compiled`] holds its pipelines, fetched
//! from the registry once when the program is compiled (not per dispatch per
//! step), and [`Compiled::encode`] is the one loop that writes dispatches
//! into compute passes — one pass for a range, or one timestamped pass per
//! dispatch for profiles and timings.

use super::device::GpuDevice;
use super::gemm_spec::GemmSpec;
use super::program::{Dispatch, Program};
use super::registry::{Shader, Variant, SLOT_BYTES};
use crate::error::{Error, Result};
use std::ops::Range;

/// The bind groups a program's dispatches run with: `main` (`[params, grads,
/// work, ints, state]` and the uniforms), and for the dispatches marked
/// [`Dispatch::f16`] the same with the f16 copy of W_hh at binding 4.
#[derive(Clone, Copy)]
pub struct Binds<'a> {
    pub main: &'a wgpu::BindGroup,
    pub f16: Option<&'a wgpu::BindGroup>,
    /// For the dispatches marked [`Dispatch::sync`]: the sync buffer at binding 4.
    pub sync: Option<&'a wgpu::BindGroup>,
}

impl<'a> Binds<'a> {
    /// Only `main` (a program without f16 dispatches).
    pub fn main(main: &'a wgpu::BindGroup) -> Binds<'a> {
        Binds {
            main,
            f16: None,
            sync: None,
        }
    }

    fn of(&self, d: &Dispatch) -> Result<&'a wgpu::BindGroup> {
        if d.sync {
            return self.sync.ok_or_else(|| {
                Error::Gpu(format!(
                    "{}: runs across a grid of workgroups (a persistent step tile with persist=P), but no bind group holds a sync buffer: this program runs the tile with persist (one workgroup a direction) only",
                    d.label
                ))
            });
        }
        if !d.f16 {
            return Ok(self.main);
        }
        self.f16.ok_or_else(|| {
            Error::Gpu(format!(
                "{}: reads the f16 copy of W_hh, but no bind group holds it",
                d.label
            ))
        })
    }
}

/// Where a pass writes its timestamps: a query set and the index of the
/// first of its two queries.
pub type Timestamps<'a> = Option<(&'a wgpu::QuerySet, u32)>;

/// A program and the pipeline of each of its dispatches (or why it failed to build).
pub struct Compiled {
    pub program: Program,
    pipelines: Vec<std::result::Result<wgpu::ComputePipeline, String>>,
}

impl Compiled {
    /// Builds (or takes from the registry's cache) every dispatch's pipeline.
    /// A pipeline that fails to build is kept as its error: [`Compiled::check`]
    /// reports it, and encoding a range that holds it fails.
    pub fn new(gpu: &GpuDevice, program: Program) -> Compiled {
        let pipelines = program
            .dispatches
            .iter()
            .map(|d| {
                // A GEMM's operands, from its arguments, for its specialised module.
                let variant = if d.kernel.shader() == Shader::Gemm {
                    Variant::Gemm(GemmSpec::of_slot(program.slot_bytes(d.slot)))
                } else if d.sync {
                    Variant::Grid
                } else {
                    Variant::Plain
                };
                gpu.registry
                    .pipeline(&gpu.device, d.kernel, &d.constants, variant)
                    .map_err(|e| e.to_string())
            })
            .collect();
        Compiled { program, pipelines }
    }

    /// [`Compiled::new`], failing if any pipeline failed to build.
    pub fn all(gpu: &GpuDevice, program: Program) -> Result<Compiled> {
        let c = Compiled::new(gpu, program);
        c.check(0..c.len())?;
        Ok(c)
    }

    /// Number of dispatches.
    pub fn len(&self) -> usize {
        self.program.dispatches.len()
    }

    /// The first build failure among the dispatches `range`, if any.
    pub fn check(&self, range: Range<usize>) -> Result<()> {
        match self.pipelines[range].iter().find_map(|p| p.as_ref().err()) {
            Some(e) => Err(Error::Gpu(e.clone())),
            None => Ok(()),
        }
    }

    /// Writes the dispatches of every range in `ranges`, `repeat` times over,
    /// into one compute pass labelled `label` (with timestamps before and
    /// after it when given).
    pub fn encode(
        &self,
        enc: &mut wgpu::CommandEncoder,
        binds: Binds<'_>,
        ranges: &[Range<usize>],
        repeat: u64,
        label: &str,
        timestamps: Timestamps<'_>,
    ) -> Result<()> {
        let mut work = Vec::new();
        for r in ranges {
            self.check(r.clone())?;
            for i in r.clone() {
                let d = &self.program.dispatches[i];
                let p = self.pipelines[i].as_ref().expect("checked");
                work.push((d, p, binds.of(d)?));
            }
        }
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes: timestamps.map(|(qs, q)| wgpu::ComputePassTimestampWrites {
                query_set: qs,
                beginning_of_pass_write_index: Some(q),
                end_of_pass_write_index: Some(q + 1),
            }),
        });
        for _ in 0..repeat {
            for (d, p, bg) in &work {
                pass.set_pipeline(p);
                pass.set_bind_group(0, *bg, &[(d.slot as u64 * SLOT_BYTES) as u32]);
                pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
            }
        }
        Ok(())
    }

    /// Writes each dispatch of `range` in its own pass between two GPU
    /// timestamps (queries `first + 2i` and `first + 2i + 1` of `queries`).
    pub fn encode_timed(
        &self,
        enc: &mut wgpu::CommandEncoder,
        binds: Binds<'_>,
        range: Range<usize>,
        queries: &wgpu::QuerySet,
        first: u32,
    ) -> Result<()> {
        for (n, i) in range.enumerate() {
            let label = self.program.dispatches[i].label.clone();
            let q = first + 2 * n as u32;
            self.encode(enc, binds, &[i..i + 1], 1, &label, Some((queries, q)))?;
        }
        Ok(())
    }
}

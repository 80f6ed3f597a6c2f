//! [`StepTile`]: the tile of the per-step kernels (`lstm.wgsl`, `gru.wgsl`,
//! `rnn.wgsl`, built on `step_common.wgsl`), its text form
//! (`RECURRENT_STEP_TILE`), its checks against an adapter's limits, and the
//! WGSL override constants it becomes ([`step_constants`]).
//!
//! ## One tile, two vocabularies
//! WGSL override names are short; Rust's field names say what they are.
//!
//! | Rust ([`StepTile`]) | WGSL (`step_common.wgsl`) | text form |
//! | --- | --- | --- |
//! | `units` | `TJ` (workgroup x) | 1st value |
//! | `rows` | `TB` (workgroup y) | 2nd value |
//! | `chunk` | `KC` | 3rd value |
//! | `rows_per_invocation` | `RB` | 4th value |
//! | `splits` | `SK` (workgroup z) | 5th value |
//! | `direct` | `DIRECT` | the word `direct` |
//! | `back_units` | `UB` | `ub=N` |
//! | `persistent` | `PERSIST` | the word `persist` |
//! | `grid` | `GRID` (workgroups a direction) | `persist=P` |
//! | (the f16 copy of W_hh) | `WHH16` | — |
//! | [`StepTile::MAX_ROWS_PER_INVOCATION`] | `RB_MAX` | — |
//! | [`StepTile::MAX_BACK_UNITS`] | `UB_MAX` | — |

use crate::error::{Error, Result};

/// The tile of the per-step kernels (`lstm.wgsl`, `gru.wgsl`, `rnn.wgsl`): a
/// workgroup of `units` x `rows` invocations (`TJ` x `TB`) owns `units`
/// hidden units (all their gates) for `rows * rows_per_invocation` batch
/// rows, each invocation one unit for `rows_per_invocation` rows (`RB`),
/// staging `chunk` inputs (or gate rows) per round trip (`KC`), the loop over
/// K split over `splits` slices of the workgroup (`SK`). Every tile with one
/// slice sums each row in the same order, so `rows_per_invocation`, `units`,
/// `rows` and `chunk` do not change the results' bits; `splits` > 1 adds the
/// slices' partial sums (in a fixed order), which changes them by rounding.
/// A direct tile ([`StepTile::direct`]) stages nothing; `back_units` widens
/// the backward's workgroups. Set with
/// `RECURRENT_STEP_TILE=units,rows,chunk[,rb[,sk[,direct]]][,ub=N][,persist[=P]]` or per
/// model with [`GpuModel::set_step_tile`](super::GpuModel::set_step_tile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StepTile {
    pub units: u32,
    pub rows: u32,
    pub chunk: u32,
    pub rows_per_invocation: u32,
    /// Slices of the workgroup that split the loop over K (inputs forward,
    /// gate rows backward): a workgroup of units x rows x splits invocations,
    /// slice s staging and multiplying every splits-th chunk from s, slice 0
    /// adding the partial sums in slice order and running the epilogue. For
    /// grids too small to fill the GPU (small batches). 1: no split.
    pub splits: u32,
    /// The products read W_hh and the states straight from memory (`DIRECT`
    /// in step_common.wgsl): no chunks staged in workgroup memory, no barrier
    /// in the loop over K, the slices interleaving K (slice s takes every
    /// `splits`-th input from s) and a tree adding their sums; `chunk` then
    /// only sizes the workgroup array the tree uses (rows·rb <= chunk + 1).
    /// `splits` must be a power of two. For small batches.
    pub direct: bool,
    /// Backward only: hidden units per invocation (`UB`, 1 to 4): a backward
    /// workgroup owns `units * back_units` units, and each gate gradient
    /// read from workgroup memory serves that many (the forward gets that
    /// reuse from its gates). Only with one slice of K, not direct. Every
    /// value gives the same bits.
    pub back_units: u32,
    /// One workgroup per direction runs every step of the sequence in one
    /// dispatch (`PERSIST` in step_common.wgsl): a loop over the steps inside
    /// the kernel and, within a step, over this tile's tiles, with a storage
    /// barrier between steps. One dispatch per layer and pass instead of one
    /// per step, for sizes where launching a step costs more than computing
    /// it (small H). Computes exactly what the same tile computes per step:
    /// the same bits.
    pub persistent: bool,
    /// Persistent only: workgroups per direction (`GRID`; text `persist=P`),
    /// cuDNN's persistent algorithm across the GPU (Diamos et al. 2016):
    /// workgroup p takes the unit tiles p, p + P, ... of every row tile,
    /// and the P workgroups meet at a barrier across the grid between steps
    /// (an atomic counter in the plan's sync buffer, `gpu/grid.rs`). Every
    /// tile is computed as the per-step dispatch computes it: the same bits.
    /// The P workgroups must run at once: a plan probes that they do, and a
    /// barrier that waits too long sets an error flag (the step is then
    /// skipped and the model falls back to one workgroup a direction).
    /// With P = ⌈H / units⌉ (one unit tile a workgroup) the forward keeps
    /// its W_hh rows in workgroup memory across the sequence where they fit.
    /// Not with the f16 copy of W_hh (both need binding 4). For
    /// [`super::GpuModel`]'s plans (training, evaluation, streaming); the
    /// stack op and seq2seq run such a tile per step. 1: one workgroup a
    /// direction.
    pub grid: u32,
}

impl StepTile {
    /// The tile `units,rows,chunk,rb` with one slice of K.
    pub fn new(units: u32, rows: u32, chunk: u32, rows_per_invocation: u32) -> StepTile {
        StepTile {
            units,
            rows,
            chunk,
            rows_per_invocation,
            splits: 1,
            direct: false,
            back_units: 1,
            persistent: false,
            grid: 1,
        }
    }

    /// This tile, run persistently (see [`StepTile::persistent`]).
    pub fn persist(self) -> StepTile {
        StepTile {
            persistent: true,
            ..self
        }
    }

    /// This tile, run persistently by `groups` workgroups a direction (see
    /// [`StepTile::grid`]).
    pub fn persist_on(self, groups: u32) -> StepTile {
        StepTile {
            persistent: true,
            grid: groups,
            ..self
        }
    }

    /// This tile without its grid: a grid tile runs per step instead (the
    /// same bits); any other is itself.
    pub fn without_grid(self) -> StepTile {
        if !self.on_grid() {
            return self;
        }
        StepTile {
            persistent: false,
            grid: 1,
            ..self
        }
    }

    /// Runs persistently across more than one workgroup a direction (needs
    /// the sync buffer at binding 4).
    pub fn on_grid(&self) -> bool {
        self.persistent && self.grid > 1
    }

    /// Largest [`StepTile::back_units`] (`UB_MAX` in step_common.wgsl).
    pub const MAX_BACK_UNITS: u32 = 4;

    /// This tile with `back_units` units per invocation backward.
    pub fn with_back_units(self, back_units: u32) -> StepTile {
        StepTile { back_units, ..self }
    }

    /// Hidden units one workgroup covers: `units` forward, times
    /// `back_units` backward.
    pub fn units_of(&self, backward: bool) -> u32 {
        if backward {
            self.units * self.back_units
        } else {
            self.units
        }
    }

    /// The tile `units,rows,chunk,rb,splits,direct` (see [`StepTile::direct`]).
    pub fn direct(
        units: u32,
        rows: u32,
        chunk: u32,
        rows_per_invocation: u32,
        splits: u32,
    ) -> StepTile {
        StepTile {
            splits,
            direct: true,
            ..StepTile::new(units, rows, chunk, rows_per_invocation)
        }
    }

    /// Largest `rows_per_invocation` (`RB_MAX` in step_common.wgsl: the size
    /// of the per-invocation accumulator arrays).
    pub const MAX_ROWS_PER_INVOCATION: u32 = 8;

    /// Bytes of workgroup memory the step kernels declare for this tile:
    /// `sh_w` (4*TJ*(KC+1) floats) and `sh_h` (TB*RB*KC floats), per slice.
    pub fn workgroup_bytes(&self) -> u64 {
        let (tj, tb, kc, rb) = (
            self.units as u64,
            self.rows as u64,
            self.chunk as u64,
            self.rows_per_invocation as u64,
        );
        4 * (4 * tj * (kc + 1) + tb * rb * kc) * self.splits as u64
    }

    /// Batch rows one workgroup covers (`TB * RB`).
    pub fn batch_rows(&self) -> u32 {
        self.rows * self.rows_per_invocation
    }

    /// Is this tile valid on an adapter with `limits`? Every value at least
    /// 1, `rows_per_invocation` at most [`StepTile::MAX_ROWS_PER_INVOCATION`],
    /// `units` x `rows` invocations within the workgroup size limits, and
    /// [`StepTile::workgroup_bytes`] within the workgroup storage limit.
    pub fn check(&self, limits: &wgpu::Limits) -> Result<()> {
        match self.problem(limits) {
            Some(why) => Err(Error::Argument(format!("step tile {self}: {why}"))),
            None => Ok(()),
        }
    }

    /// What makes this tile invalid on `limits`, if anything.
    fn problem(&self, limits: &wgpu::Limits) -> Option<String> {
        if self.units == 0
            || self.rows == 0
            || self.chunk == 0
            || self.rows_per_invocation == 0
            || self.splits == 0
            || self.grid == 0
        {
            return Some("every value must be at least 1".into());
        }
        if self.grid > 1 && !self.persistent {
            return Some("workgroups a direction (persist=P) only for a persistent tile".into());
        }
        if self.grid > limits.max_compute_workgroups_per_dimension {
            return Some(format!(
                "persist={}: the adapter runs at most {} workgroups along x",
                self.grid, limits.max_compute_workgroups_per_dimension
            ));
        }
        if self.back_units == 0 || self.back_units > Self::MAX_BACK_UNITS {
            return Some(format!(
                "1 to {} units per invocation backward (ub)",
                Self::MAX_BACK_UNITS
            ));
        }
        if self.back_units > 1 && (self.splits > 1 || self.direct) {
            return Some("ub > 1 only with one slice of K and not direct".into());
        }
        if self.direct {
            if !self.splits.is_power_of_two() {
                return Some(format!(
                    "a direct tile's slices must be a power of two, not {}",
                    self.splits
                ));
            }
            // The tree holds every slice's sums in sh_w.
            if self.rows as u64 * self.rows_per_invocation as u64 > self.chunk as u64 + 1 {
                return Some(format!(
                    "a direct tile needs rows*rb at most chunk+1 = {}",
                    self.chunk as u64 + 1
                ));
            }
        }
        // Slice 0 adds the others' partial sums through sh_w, one slice at a time.
        if !self.direct
            && self.splits > 1
            && self.rows as u64 * self.rows_per_invocation as u64
                > (self.chunk as u64 + 1) * self.splits as u64
        {
            return Some(format!(
                "with {} slices of K, rows*rb must be at most (chunk+1)*slices = {}",
                self.splits,
                (self.chunk as u64 + 1) * self.splits as u64
            ));
        }
        if self.rows_per_invocation > Self::MAX_ROWS_PER_INVOCATION {
            return Some(format!(
                "at most {} rows per invocation",
                Self::MAX_ROWS_PER_INVOCATION
            ));
        }
        let inv = self.units as u64 * self.rows as u64 * self.splits as u64;
        if inv > limits.max_compute_invocations_per_workgroup as u64
            || self.units > limits.max_compute_workgroup_size_x
            || self.rows > limits.max_compute_workgroup_size_y
            || self.splits > limits.max_compute_workgroup_size_z
        {
            return Some(format!(
                "{} x {} x {} invocations per workgroup; the adapter allows {} in all, at most {} x {} x {}",
                self.units,
                self.rows,
                self.splits,
                limits.max_compute_invocations_per_workgroup,
                limits.max_compute_workgroup_size_x,
                limits.max_compute_workgroup_size_y,
                limits.max_compute_workgroup_size_z
            ));
        }
        if self.workgroup_bytes() > limits.max_compute_workgroup_storage_size as u64 {
            return Some(format!(
                "needs {} bytes of workgroup memory (4*(4*units*(chunk+1) + rows*rb*chunk)*slices); the adapter allows {}",
                self.workgroup_bytes(),
                limits.max_compute_workgroup_storage_size
            ));
        }
        None
    }

    /// Parses the text form (see [`StepTile`]'s `FromStr`) and checks it
    /// against `limits` ([`StepTile::check`]), as `RECURRENT_STEP_TILE` is read.
    pub fn parse(v: &str, limits: &wgpu::Limits) -> Result<StepTile> {
        let tile: StepTile = v.parse()?;
        match tile.problem(limits) {
            Some(why) => Err(Error::Argument(format!(
                "step tile '{v}' (units,rows,chunk,rb = {tile}): {why}"
            ))),
            None => Ok(tile),
        }
    }
}

impl std::str::FromStr for StepTile {
    type Err = Error;

    /// `units,rows,chunk[,rb[,sk[,direct]]][,ub=N][,persist[=P]]` (`rb`, rows per
    /// invocation, and `sk`, slices of K, default to 1; the word `direct`:
    /// [`StepTile::direct`]; `ub=N`: [`StepTile::back_units`], default 1;
    /// the word `persist`: [`StepTile::persistent`]; `persist=P`: across P
    /// workgroups a direction, [`StepTile::grid`]). The syntax only: the
    /// adapter's limits are [`StepTile::check`]'s.
    fn from_str(v: &str) -> Result<StepTile> {
        let mut fields: Vec<&str> = v.split(',').map(str::trim).collect();
        let mut grid = 1;
        let persistent = match fields.last().and_then(|f| f.strip_prefix("persist")) {
            Some("") => true,
            Some(n) => {
                let n = n.strip_prefix('=').unwrap_or(n);
                grid = n.parse().map_err(|_| {
                    Error::Argument(format!(
                        "step tile '{v}': persist={n} is not an unsigned integer (workgroups a direction)"
                    ))
                })?;
                true
            }
            None => false,
        };
        if persistent {
            fields.pop();
        }
        let mut back_units = 1;
        if let Some(n) = fields.last().and_then(|f| f.strip_prefix("ub=")) {
            back_units = n.parse().map_err(|_| {
                Error::Argument(format!(
                    "step tile '{v}': ub={n} is not an unsigned integer"
                ))
            })?;
            fields.pop();
        }
        let direct = fields.last() == Some(&"direct");
        if direct {
            fields.pop();
        }
        let p: Vec<Option<u32>> = fields.iter().map(|x| x.parse().ok()).collect();
        let tile = match p[..] {
            [Some(units), Some(rows), Some(chunk), Some(rb), Some(sk)] if direct => {
                StepTile::direct(units, rows, chunk, rb, sk)
            }
            _ if direct => {
                return Err(Error::Argument(format!(
                    "step tile '{v}': expected units,rows,chunk,rb,sk,direct (e.g. 32,1,7,8,8,direct), unsigned integers"
                )))
            }
            [Some(units), Some(rows), Some(chunk)] => StepTile::new(units, rows, chunk, 1),
            [Some(units), Some(rows), Some(chunk), Some(rb)] => {
                StepTile::new(units, rows, chunk, rb)
            }
            [Some(units), Some(rows), Some(chunk), Some(rb), Some(sk)] => StepTile {
                splits: sk,
                ..StepTile::new(units, rows, chunk, rb)
            },
            _ => {
                return Err(Error::Argument(format!(
                    "step tile '{v}': expected units,rows,chunk[,rb[,sk[,direct]]] (e.g. 16,4,32 or 16,4,32,4 or 8,4,16,1,4 or 32,1,7,8,8,direct), unsigned integers"
                )))
            }
        };
        let tile = StepTile {
            persistent,
            grid,
            ..tile.with_back_units(back_units)
        };
        Ok(tile)
    }
}

impl std::fmt::Display for StepTile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{},{},{},{}",
            self.units, self.rows, self.chunk, self.rows_per_invocation
        )?;
        if self.splits != 1 || self.direct {
            write!(f, ",{}", self.splits)?;
        }
        if self.direct {
            write!(f, ",direct")?;
        }
        if self.back_units != 1 {
            write!(f, ",ub={}", self.back_units)?;
        }
        if self.persistent {
            write!(f, ",persist")?;
            if self.grid != 1 {
                write!(f, "={}", self.grid)?;
            }
        }
        Ok(())
    }
}

/// The override constants of a step kernel (`lstm.wgsl`, `gru.wgsl`,
/// `rnn.wgsl`) with tile `tile`, as the runtime passes them: `TJ`, `TB`,
/// `KC`, then `RB` and `SK` only when they are not 1, `DIRECT = 1` only for a
/// direct tile, and `WHH16 = 1` only for the
/// variant reading the f16 copy of W_hh (absent otherwise, so the default
/// pipelines are those of a build without these options).
pub fn step_constants(tile: StepTile, f16: bool) -> Vec<(&'static str, f64)> {
    let mut c = vec![
        ("TJ", tile.units as f64),
        ("TB", tile.rows as f64),
        ("KC", tile.chunk as f64),
    ];
    if tile.rows_per_invocation != 1 {
        c.push(("RB", tile.rows_per_invocation as f64));
    }
    if tile.splits != 1 {
        c.push(("SK", tile.splits as f64));
    }
    if tile.direct {
        c.push(("DIRECT", 1.0));
    }
    if tile.back_units != 1 {
        c.push(("UB", tile.back_units as f64));
    }
    if tile.persistent {
        c.push(("PERSIST", 1.0));
    }
    if tile.on_grid() {
        c.push(("GRID", tile.grid as f64));
    }
    if f16 {
        c.push(("WHH16", 1.0));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(v: &str, limits: &wgpu::Limits) -> String {
        StepTile::parse(v, limits).unwrap_err().to_string()
    }

    #[test]
    fn step_tiles_parse_with_an_optional_rows_per_invocation() {
        let l = wgpu::Limits::default(); // 256 invocations, 16 KiB workgroup memory
        let t = StepTile::parse("16,4,32", &l).unwrap();
        assert_eq!(t.rows_per_invocation, 1);
        assert_eq!((t.units, t.rows, t.chunk), (16, 4, 32));
        let t = StepTile::parse(" 16, 4 ,32,4", &l).unwrap();
        assert_eq!(t.rows_per_invocation, 4);
        assert_eq!(t.batch_rows(), 16);
        assert_eq!(t.to_string(), "16,4,32,4");
        // 16,16,32: 4*(4*16*33 + 16*32) = 10,496 bytes; rb 4 adds 3*16*32*4.
        assert_eq!(
            StepTile::parse("16,16,32", &l).unwrap().workgroup_bytes(),
            10_496
        );
        // 16,16,32,4: 16,640 bytes, over WebGPU's default 16 KiB (NVIDIA allows 48 KiB).
        let t4 = StepTile {
            rows_per_invocation: 4,
            ..StepTile::parse("16,16,32", &l).unwrap()
        };
        assert_eq!(t4.workgroup_bytes(), 10_496 + 3 * 16 * 32 * 4);
        assert!(err("16,16,32,4", &l).contains("needs 16640 bytes of workgroup memory"));
        for bad in [
            "",
            "16,4",
            "16,4,32,4,1,1",
            "16,x,32",
            "16,4,-32",
            "16,4,32,",
        ] {
            assert!(
                err(bad, &l).contains("expected units,rows,chunk[,rb[,sk[,direct]]]"),
                "{bad}"
            );
        }
        // Slices of K: the workgroup and its memory grow with them.
        let s4 = StepTile::parse("8,4,16,1,4", &l).unwrap();
        assert_eq!(s4.splits, 4);
        assert_eq!(s4.to_string(), "8,4,16,1,4");
        assert_eq!(s4.workgroup_bytes(), 4 * (4 * 8 * 17 + 4 * 16) * 4);
        assert_eq!(
            StepTile::parse("16,4,32,1,1", &l).unwrap().to_string(),
            "16,4,32,1"
        );
        assert!(err("16,16,32,1,2", &l).contains("invocations per workgroup"));
        assert!(err("16,4,32,1,0", &l).contains("at least 1"));
        assert!(err("8,8,4,8,2", &l).contains("rows*rb must be at most (chunk+1)*slices"));
        // Direct tiles: the word last, slices a power of two, rows*rb <= chunk + 1.
        let d = StepTile::parse("16,1,7,8,4,direct", &l).unwrap();
        assert_eq!(d, StepTile::direct(16, 1, 7, 8, 4));
        assert_eq!(d.to_string(), "16,1,7,8,4,direct");
        assert_eq!(
            StepTile::direct(16, 1, 7, 8, 1).to_string(),
            "16,1,7,8,1,direct"
        );
        assert!(err("16,1,7,8,3,direct", &l).contains("power of two"));
        assert!(err("16,2,7,8,4,direct", &l).contains("rows*rb at most chunk+1"));
        assert!(err("16,1,7,8,direct", &l).contains("expected units,rows,chunk,rb,sk,direct"));
        // Units per invocation backward: a suffix, 1 to 4, one slice of K, not direct.
        let u = StepTile::parse("16,16,32,2,ub=4", &l).unwrap();
        assert_eq!(u, StepTile::new(16, 16, 32, 2).with_back_units(4));
        assert_eq!(u.to_string(), "16,16,32,2,ub=4");
        assert_eq!(u.units_of(true), 64);
        assert_eq!(u.units_of(false), 16);
        assert!(err("16,16,32,1,ub=5", &l).contains("1 to 4 units per invocation backward"));
        assert!(err("16,4,32,1,2,ub=2", &l).contains("ub > 1 only with one slice of K"));
        // Persistent: the word last of all; printed back the same way.
        for v in [
            "16,4,32,1,persist",
            "16,16,32,2,ub=2,persist",
            "16,1,7,8,4,direct,persist",
        ] {
            let p = StepTile::parse(v, &l).unwrap();
            assert!(p.persistent, "{v}");
            assert_eq!(p.to_string(), v);
            assert_eq!(
                StepTile {
                    persistent: false,
                    ..p
                }
                .persist(),
                p
            );
        }
        assert!(!StepTile::parse("16,4,32,1", &l).unwrap().persistent);
        // Across a grid: persist=P, P workgroups a direction.
        let g = StepTile::parse("16,4,32,1,persist=8", &l).unwrap();
        assert_eq!(g, StepTile::new(16, 4, 32, 1).persist_on(8));
        assert!(g.on_grid() && !StepTile::new(16, 4, 32, 1).persist().on_grid());
        assert_eq!(g.to_string(), "16,4,32,1,persist=8");
        assert_eq!(
            StepTile::new(16, 4, 32, 1).persist_on(1).to_string(),
            "16,4,32,1,persist"
        );
        assert_eq!(
            step_constants(g, false),
            [
                ("TJ", 16.0),
                ("TB", 4.0),
                ("KC", 32.0),
                ("PERSIST", 1.0),
                ("GRID", 8.0)
            ]
        );
        assert!(err("16,4,32,1,persist=x", &l).contains("persist=x is not an unsigned integer"));
        assert!(err("16,4,32,1,persist=0", &l).contains("at least 1"));
        assert!(err("16,4,32,persist,1", &l).contains("expected units,rows,chunk"));
        assert!(err("16,4,32,ub=x", &l).contains("ub=x is not an unsigned integer"));
        // 32 units x 8 slices: 34,560 bytes, over 16 KiB.
        assert!(err("32,1,7,8,8,direct", &l).contains("bytes of workgroup memory"));
        assert!(err("32,1,7,8,8,fast", &l).contains("expected units,rows,chunk[,rb[,sk[,direct]]]"));
        assert!(err("16,4,32,0", &l).contains("at least 1"));
        assert!(err("0,4,32", &l).contains("at least 1"));
        assert!(err("16,4,32,9", &l).contains("at most 8 rows per invocation"));
        assert!(err("32,16,32", &l).contains("invocations per workgroup"));
        // 16,16,32,8: 4*(2112 + 4096) = 24,832 bytes > 16,384.
        assert!(err("16,16,32,8", &l).contains("bytes of workgroup memory"));
        assert!(StepTile::parse("16,4,32,8", &l).is_ok());
    }

    #[test]
    fn step_constants_name_rb_only_when_blocked() {
        let t = StepTile {
            units: 16,
            rows: 4,
            chunk: 32,
            rows_per_invocation: 1,
            splits: 1,
            direct: false,
            back_units: 1,
            persistent: false,
            grid: 1,
        };
        let names = |c: Vec<(&'static str, f64)>| c.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(names(step_constants(t, false)), ["TJ", "TB", "KC"]);
        let t4 = StepTile {
            rows_per_invocation: 4,
            ..t
        };
        assert_eq!(
            step_constants(t4, true),
            vec![
                ("TJ", 16.0),
                ("TB", 4.0),
                ("KC", 32.0),
                ("RB", 4.0),
                ("WHH16", 1.0)
            ]
        );
        let s2 = StepTile { splits: 2, ..t };
        assert_eq!(names(step_constants(s2, false)), ["TJ", "TB", "KC", "SK"]);
        let d = StepTile::direct(32, 1, 7, 8, 8);
        assert_eq!(
            names(step_constants(d, false)),
            ["TJ", "TB", "KC", "RB", "SK", "DIRECT"]
        );
        assert_eq!(
            names(step_constants(t.with_back_units(2), false)),
            ["TJ", "TB", "KC", "UB"]
        );
        assert_eq!(
            names(step_constants(t.persist(), true)),
            ["TJ", "TB", "KC", "PERSIST", "WHH16"]
        );
    }
}

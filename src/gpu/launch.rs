//! Launchers: one function per kernel family that appends its dispatches to
//! a [`Program`] with typed arguments — the grid, the override constants and
//! the uniform slot worked out here, from what the program was [`Resolved`]
//! with (llm.c's launchers beside their kernels; candle-metal-kernels'
//! `call_*`).
//!
//! | family | shader | launchers |
//! | --- | --- | --- |
//! | GEMM | `gemm.wgsl` | [`Program::gemm`], [`Program::gemm_with`], [`Program::column_sums`] |
//! | cell steps | `lstm.wgsl`, `gru.wgsl`, `rnn.wgsl` | [`Program::step`] |
//! | f16 copy | `whh_f16.wgsl` | [`Program::whh_to_f16`] |
//! | losses | `head.wgsl` | [`Program::loss`] |
//! | optimizer | `optim.wgsl` | [`Program::grad_norm`], [`Program::optimizer`] |
//! | embedding | `embed.wgsl` | [`Program::embed`] |
//! | dropout | `dropout.wgsl` | [`Program::dropout`] |
//! | seq2seq | `attention.wgsl` | [`Program::attention`] |
//! | resident data | `data.wgsl` | [`Program::gather`] |
//!
//! [`Resolved`]: super::program::Resolved

use super::args::{
    AttnArgs, ConvertArgs, DropArgs, EmbedArgs, GatherArgs, Gemm, GemmArgs, HeadArgs, OptArgs,
    StepArgs, BUF_WORK,
};
use super::gemm_config::{
    blocked_gemm_kernel, fixed_config, gemm_constants, GemmChoice, GemmConfig, GemmShape,
};
use super::program::Program;
use super::registry::Kernel;
use super::step_tile::step_constants;
use super::tune::Decision;
use crate::error::{Error, Result};

impl Program {
    // ------------------------------------------------------------ GEMM

    /// `C = beta*C + op(A)·op(B) (+ bias)` with the configuration of its
    /// shape the program was resolved with (the fixed choice for a shape
    /// not in it).
    pub fn gemm(&mut self, g: &Gemm, label: &str) -> Result<()> {
        let shape = GemmShape::of(&g.args(), g.batch);
        let (config, us, decision) = match self.resolved.gemms.get(&shape) {
            Some(t) => (t.choice, t.us, t.decision),
            None => (fixed_config(&shape, self.tunables()), None, Decision::Off),
        };
        self.gemm_with(g, label, config)?;
        if let Some(c) = self.gemms.last_mut() {
            c.us = us;
            c.decision = decision;
        }
        Ok(())
    }

    /// [`Program::gemm`] with a given configuration. A `gemm` (RM = 4) or
    /// `gemm_rm` (RM 2 or 8) workgroup owns a (TILE·RM)² block of C; a
    /// `gemm_small` workgroup TILE x TILE outputs, optionally split over K
    /// (partials in the split-K region, then `gemm_split_reduce`; without
    /// that region it does not split).
    pub fn gemm_with(&mut self, g: &Gemm, label: &str, config: GemmConfig) -> Result<()> {
        let a = g.args();
        let batch = g.batch;
        let shape = GemmShape::of(&a, batch);
        self.gemms.push(GemmChoice {
            label: label.to_string(),
            shape,
            config,
            us: None,
            decision: Decision::Off,
        });
        let tile = config.tile();
        let grid = config.grid(&shape);
        let consts = |k: Kernel| gemm_constants(k, tile, config.rm());
        match config {
            GemmConfig::Blocked { rm, .. } => {
                // RM = 4 (the fixed choice among them): the vec4 `gemm`;
                // 2 or 8: the generic `gemm_rm`.
                let k = blocked_gemm_kernel(rm);
                let s = self.slot(&a);
                self.push(k, consts(k), s, grid, label)
            }
            GemmConfig::Wide { .. } => {
                let s = self.slot(&a);
                self.push(Kernel::GemmWide, consts(Kernel::GemmWide), s, grid, label)
            }
            GemmConfig::Small { .. } => {
                let small = [grid[0], grid[1], batch];
                match self.resolved.split_partials {
                    Some(part_off) if config.effective_splits(&shape) > 1 => {
                        let k_chunk = a.k.div_ceil(config.splits()).div_ceil(tile) * tile;
                        let splits = a.k.div_ceil(k_chunk);
                        debug_assert_eq!(splits, config.effective_splits(&shape));
                        let sa = GemmArgs {
                            splits,
                            k_chunk,
                            part_off,
                            ..a
                        };
                        let s = self.slot(&sa);
                        self.push(
                            Kernel::GemmSmall,
                            consts(Kernel::GemmSmall),
                            s,
                            [small[0], small[1], batch * splits],
                            label,
                        )?;
                        let r = Kernel::GemmSplitReduce;
                        self.push(r, consts(r), s, small, label)
                    }
                    _ => {
                        let s = self.slot(&a);
                        self.push(
                            Kernel::GemmSmall,
                            consts(Kernel::GemmSmall),
                            s,
                            small,
                            label,
                        )
                    }
                }
            }
        }
    }

    /// `C[0, j] += Σ_row A[row, j]` (`g.m` rows, `g.n` columns, A in work),
    /// `g.batch` entries along z: bias gradients.
    pub fn column_sums(&mut self, g: &Gemm, label: &str) -> Result<()> {
        debug_assert_eq!(g.a.buf, BUF_WORK);
        let tile = self.tunables().tile;
        let s = self.slot(&g.args());
        let k = Kernel::ColumnSums;
        self.push(
            k,
            gemm_constants(k, tile, 1),
            s,
            [g.n.div_ceil(tile), 1, g.batch],
            label,
        )
    }

    // ------------------------------------------------------------ cell steps

    /// One step of every direction of a layer (`dirs` along z), or with a
    /// persistent tile every step, with the program's step tile.
    pub fn step(&mut self, kernel: Kernel, a: StepArgs, dirs: u32, label: &str) -> Result<()> {
        let tile = self.tunables().step;
        let f16 = self.resolved.whh_f16;
        let grid = tile.on_grid();
        if grid && f16 {
            return Err(Error::Argument(format!(
                "{label}: the step tile {tile} runs across a grid of workgroups, which needs binding 4 for its sync buffer, where the f16 copy of W_hh would go: use one or the other"
            )));
        }
        let a = StepArgs {
            sync_off: if grid { self.sync_slot() } else { 0 },
            ..a
        };
        let s = self.slot(&a);
        // (unit tiles, row tiles, directions): a workgroup owns TJ units
        // (TJ*UB backward) and TB*RB rows; persistent: one workgroup a
        // direction loops over them, and over the steps; a grid's `grid`
        // workgroups a direction, along x with the directions interleaved.
        let groups = if grid {
            [tile.grid * dirs, 1, 1]
        } else if tile.persistent {
            [1, 1, dirs]
        } else {
            [
                a.h.div_ceil(tile.units_of(kernel.is_step_backward())),
                a.b.div_ceil(tile.batch_rows()),
                dirs,
            ]
        };
        // Recurrent dropout (a nonzero threshold: p > 0) runs the RDROP pipelines.
        let mut constants = step_constants(tile, f16);
        if a.rd_threshold > 0 {
            constants.push(("RDROP", 1.0));
        }
        if grid {
            constants.push(("GRID_SPIN", self.tunables().grid_spin as f64));
            // Forward, one unit tile a workgroup: its W_hh rows stay in
            // workgroup memory for the whole sequence, where they fit.
            let keep_stride = a.h.div_ceil(tile.chunk) * tile.chunk + 1;
            let keep_len = 4 * tile.units * keep_stride;
            if !kernel.is_step_backward()
                && a.h.div_ceil(tile.units) == tile.grid
                && !tile.direct
                && tile.splits == 1
                && tile.workgroup_bytes() + 4 * keep_len as u64
                    <= self.resolved.workgroup_bytes as u64
            {
                constants.push(("KEEP", 1.0));
                constants.push(("KH", keep_stride as f64));
                constants.push(("KEEP_LEN", keep_len as f64));
            }
        }
        let from = self.dispatches.len();
        self.push(kernel, constants, s, groups, label)?;
        for d in self.since(from) {
            d.step = Some(tile);
            d.f16 = f16;
            d.sync = grid;
        }
        Ok(())
    }

    // ------------------------------------------------------------ f16 copy

    /// W_hh of one layer (`dirs` directions along z) to its f16 copy.
    pub fn whh_to_f16(&mut self, a: ConvertArgs, dirs: u32, label: &str) -> Result<()> {
        let wg = self.tunables().wg_small;
        let s = self.slot(&a);
        let groups = a
            .len
            .div_ceil(2)
            .div_ceil(wg)
            .min(self.resolved.max_groups)
            .min(65535);
        let from = self.dispatches.len();
        self.push(
            Kernel::WhhToF16,
            vec![("WG", wg as f64)],
            s,
            [groups, 1, dirs],
            label,
        )?;
        for d in self.since(from) {
            d.f16 = true;
        }
        Ok(())
    }

    // ------------------------------------------------------------ losses

    /// Loss and its gradient (one workgroup).
    pub fn loss(&mut self, kernel: Kernel, a: HeadArgs, label: &str) -> Result<()> {
        let wg = self.tunables().wg_reduce;
        let s = self.slot(&a);
        self.push(kernel, vec![("WG", wg as f64)], s, [1, 1, 1], label)
    }

    // ------------------------------------------------------------ optimizer

    /// Gradient norm (two passes) and clip coefficient; returns its uniform slot.
    pub fn grad_norm(&mut self, a: OptArgs, label: &str) -> Result<u32> {
        let t = *self.tunables();
        let wg = vec![("WG", t.wg_reduce as f64)];
        let s = self.slot(&a);
        self.push(
            Kernel::GradNormPartial,
            wg.clone(),
            s,
            [t.norm_groups, 1, 1],
            label,
        )?;
        self.push(Kernel::GradNormFinish, wg, s, [1, 1, 1], label)?;
        Ok(s)
    }

    /// The optimizer step over all parameters; returns its uniform slot.
    pub fn optimizer(&mut self, a: OptArgs, label: &str) -> Result<u32> {
        let wg = self.tunables().wg_reduce;
        let s = self.slot(&a);
        let groups = a.n.div_ceil(wg).min(self.resolved.max_groups).min(4096);
        self.push(
            Kernel::OptimizerStep,
            vec![("WG", wg as f64)],
            s,
            [groups, 1, 1],
            label,
        )?;
        Ok(s)
    }

    // ------------------------------------------------------------ embedding

    /// Embedding gather (forward) or scatter-add (backward).
    pub fn embed(&mut self, kernel: Kernel, a: EmbedArgs, label: &str) -> Result<()> {
        let wg = self.tunables().wg_small;
        let total = match kernel {
            Kernel::EmbedForward => a.t_len * a.b * a.width,
            _ => a.vocab * a.width,
        };
        let s = self.slot(&a);
        let groups = total.div_ceil(wg).min(self.resolved.max_groups).min(65535);
        self.push(kernel, vec![("WG", wg as f64)], s, [groups, 1, 1], label)
    }

    // ------------------------------------------------------------ dropout

    /// A dropout mask on a block of work (see [`DropArgs`]).
    pub fn dropout(&mut self, a: DropArgs, label: &str) -> Result<()> {
        let wg = self.tunables().wg_small;
        let s = self.slot(&a);
        let groups = (a.rows * a.cols)
            .div_ceil(wg)
            .min(self.resolved.max_groups)
            .min(65535);
        self.push(
            Kernel::DropoutApply,
            vec![("WG", wg as f64)],
            s,
            [groups, 1, 1],
            label,
        )
    }

    // ------------------------------------------------------------ seq2seq

    /// One of `attention.wgsl`'s kernels over the block `a` describes: an
    /// invocation per row (softmax, arg-max) or per element (the rest).
    pub fn attention(&mut self, kernel: Kernel, a: AttnArgs, label: &str) -> Result<()> {
        debug_assert_eq!(kernel.shader(), super::registry::Shader::Attention);
        let wg = self.tunables().wg_small;
        let total = match kernel {
            Kernel::AttnSoftmax | Kernel::AttnSoftmaxBackward | Kernel::Argmax => a.rows,
            _ => a.rows * a.cols,
        };
        let s = self.slot(&a);
        let groups = total.div_ceil(wg).min(self.resolved.max_groups).min(65535);
        self.push(kernel, vec![("WG", wg as f64)], s, [groups, 1, 1], label)
    }

    // ------------------------------------------------------------ resident data

    /// A batch's block of a resident training set (see [`GatherArgs`]).
    pub fn gather(&mut self, kernel: Kernel, a: GatherArgs, label: &str) -> Result<()> {
        debug_assert_eq!(kernel.shader(), super::registry::Shader::Data);
        let wg = self.tunables().wg_small;
        let total = match (a.fill, a.order) {
            (1, _) => a.b,
            (_, 2) => a.b * a.width,
            _ => a.t * a.b * a.width,
        };
        let s = self.slot(&a);
        let groups = total.div_ceil(wg).min(self.resolved.max_groups).min(65535);
        self.push(kernel, vec![("WG", wg as f64)], s, [groups, 1, 1], label)
    }
}

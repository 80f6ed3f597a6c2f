//! The arguments of every kernel as they sit in its uniform slot (each
//! struct is the layout of the WGSL `struct` named beside it), and
//! [`Gemm`], the one description of a GEMM's operands the recording uses.

use crate::optim::{AdamStep, Optimizer, OptimizerKind};

/// Buffer ids of GEMM operands (`a_buf`, `b_buf`, `c_buf`, `bias_buf`).
pub const BUF_PARAMS: u32 = 0;
pub const BUF_GRADS: u32 = 1;
pub const BUF_WORK: u32 = 2;

/// Arguments of `gemm` and `column_sums` (layout of `struct Gemm` in gemm.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmArgs {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub beta: f32,
    pub a_buf: u32,
    pub a_off: u32,
    pub lda: u32,
    pub a_t: u32,
    pub b_buf: u32,
    pub b_off: u32,
    pub ldb: u32,
    pub b_t: u32,
    pub c_buf: u32,
    pub c_off: u32,
    pub ldc: u32,
    pub bias_buf: u32,
    pub bias_off: u32,
    pub has_bias: u32,
    pub a_z: u32,
    pub b_z: u32,
    pub c_z: u32,
    pub bias_z: u32,
    pub splits: u32,
    pub k_chunk: u32,
    pub part_off: u32,
}

/// Arguments of the cell step kernels (`struct Step` in step_common.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepArgs {
    pub t_len: u32,
    pub b: u32,
    pub h: u32,
    pub s: u32,
    pub ld: u32,
    pub act: u32,
    pub has_dy: u32,
    pub has_len: u32,
    pub len_off: u32,
    pub y_off: u32,
    pub dy_off: u32,
    pub carry_off: u32,
    /// W_hh per direction: offsets into params, or with the f16 copy
    /// ([`super::program::Program::whh_f16`]) offsets in halves into the copy.
    pub whh: [u32; 2],
    pub bhh: [u32; 2],
    pub gx: [u32; 2],
    pub hs: [u32; 2],
    pub cs: [u32; 2],
    pub sv: [u32; 2],
    pub dg: [u32; 2],
    pub dgh: [u32; 2],
    pub dc: [u32; 2],
    /// Recurrent dropout (read by the `RDROP = 1` pipelines only; zeros
    /// otherwise): ints offset of the step's [key, on], the site code of
    /// direction 0's mask (direction 1's is the next: `Site::Recurrent(k·D + d)`)
    /// and its rate.
    pub rd_key: u32,
    pub rd_site: u32,
    pub rd_threshold: u32,
    pub rd_scale: f32,
    /// A persistent grid's dispatch ([`super::step_tile::StepTile::grid`] >
    /// 1): its words in the plan's sync buffer (`gpu/grid.rs`); 0 otherwise.
    pub sync_off: u32,
}

/// Arguments of the loss kernels (`struct Head` in head.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct HeadArgs {
    pub rows: u32,
    pub o: u32,
    pub b: u32,
    pub seq: u32,
    pub has_len: u32,
    pub len_off: u32,
    pub out_off: u32,
    pub dout_off: u32,
    pub target_off: u32,
    pub scalars_off: u32,
}

/// Arguments of the norm and optimizer kernels (`struct Opt` in optim.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct OptArgs {
    pub n: u32,
    pub kind: u32,
    pub scalars_off: u32,
    pub partials_off: u32,
    pub partials: u32,
    pub has_clip: u32,
    pub max_norm: f32,
    pub lr: f32,
    pub weight_decay: f32,
    pub momentum: f32,
    pub nesterov: u32,
    pub first: u32,
    pub w1: f32,
    pub beta2: f32,
    pub w2: f32,
    pub step_size: f32,
    pub bc2_sqrt: f32,
    pub eps: f32,
}

impl OptArgs {
    /// These arguments with the hyper-parameters of `opt`'s current step
    /// (`opt.step`, counted from 1: Adam's bias corrections, SGD's first
    /// step) and the clip norm, if any.
    pub fn for_step(self, clip: Option<f32>, opt: &Optimizer) -> OptArgs {
        let mut a = OptArgs {
            has_clip: clip.is_some() as u32,
            max_norm: clip.unwrap_or(0.0),
            ..self
        };
        match opt.kind {
            OptimizerKind::Sgd {
                lr,
                momentum,
                weight_decay,
                nesterov,
            } => {
                a.kind = 0;
                a.lr = lr;
                a.momentum = momentum;
                a.weight_decay = weight_decay;
                a.nesterov = nesterov as u32;
                a.first = (opt.step == 1) as u32;
            }
            OptimizerKind::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                let c = AdamStep::at(lr, beta1, beta2, opt.step);
                a.kind = 1;
                a.lr = lr;
                a.weight_decay = weight_decay;
                a.step_size = c.step_size;
                a.bc2_sqrt = c.bc2_sqrt;
                a.w1 = c.w1;
                a.beta2 = beta2;
                a.w2 = c.w2;
                a.eps = eps;
            }
        }
        a
    }
}

/// Arguments of the embedding kernels (`struct Embed` in embed.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct EmbedArgs {
    pub b: u32,
    pub t_len: u32,
    pub width: u32,
    pub vocab: u32,
    pub ids_off: u32,
    pub table_off: u32,
    pub x_off: u32,
    pub dx_off: u32,
    /// ints: each token's positions (`Workspace::embed_offsets`, `embed_rows`).
    pub offsets_off: u32,
    pub rows_off: u32,
}

/// Arguments of `dropout_apply` (`struct Drop` in dropout.wgsl): the block
/// `[rows, cols]` from `src` to `dst` (row strides `*_ld`, elements of work),
/// element (r, c) times the mask of `site` (a `dropout::Site` code) at
/// `mask_base + (r mod mask_rows)·mask_ld + c` (`mask_rows` = `rows` but for
/// a mask that repeats along the rows: recurrent dropout's `[B, H]` over
/// `[T·B, H]`); the step's key and on flag at ints `key_off`. `accumulate`
/// = 1 adds to `dst` instead of writing it (then `dst` must not be `src`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DropArgs {
    pub rows: u32,
    pub cols: u32,
    pub src_off: u32,
    pub src_ld: u32,
    pub dst_off: u32,
    pub dst_ld: u32,
    pub mask_base: u32,
    pub mask_ld: u32,
    pub mask_rows: u32,
    pub site: u32,
    pub threshold: u32,
    pub scale: f32,
    pub key_off: u32,
    pub accumulate: u32,
}

/// Arguments of the kernels of `attention.wgsl` (`struct Attn`): a block
/// `[rows, cols]` of work at `src_off`/`dst_off` (row strides `*_ld`); the
/// softmax's row `r` has length `ints[len_off + r / len_div]`; `argmax` also writes row `r`'s token to
/// `out_off + r·out_ld`; `embed_tokens` reads its table at params `table_off`;
/// `gather_rows` reads row `r`'s source row at work `idx_off + r`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttnArgs {
    pub rows: u32,
    pub cols: u32,
    pub src_off: u32,
    pub src_ld: u32,
    pub dst_off: u32,
    pub dst_ld: u32,
    pub len_off: u32,
    pub len_div: u32,
    pub out_off: u32,
    pub out_ld: u32,
    pub table_off: u32,
    pub idx_off: u32,
}

impl AttnArgs {
    /// The block `[rows, cols]` from `src` to `dst` (row strides `src_ld`, `dst_ld`).
    pub fn block(rows: u32, cols: u32, src: (u32, u32), dst: (u32, u32)) -> AttnArgs {
        AttnArgs {
            rows,
            cols,
            src_off: src.0,
            src_ld: src.1,
            dst_off: dst.0,
            dst_ld: dst.1,
            ..Default::default()
        }
    }
}

/// Arguments of `gather_f32` / `gather_i32` (`struct Gather` in data.wgsl):
/// `b` rows of `t` steps (of the set's `t_full`), `width` values a step, from
/// the set at `src_off` to work or ints at `dst_off`, in `order` 0
/// (time-major), 1 (batch-first) or 2 (one block a row); `fill` = 1 writes
/// `value` for each row instead.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GatherArgs {
    pub b: u32,
    pub t: u32,
    pub t_full: u32,
    pub width: u32,
    pub src_off: u32,
    pub dst_off: u32,
    pub order: u32,
    pub fill: u32,
    pub value: i32,
}

/// Arguments of `whh_to_f16` (`struct Convert` in whh_f16.wgsl): `len`
/// elements of W_hh per direction from params at `src` to the copy at word `dst`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ConvertArgs {
    pub len: u32,
    pub src: [u32; 2],
    pub dst: [u32; 2],
}

/// A matrix (or vector) operand of a GEMM: its buffer, its first element,
/// its leading dimension, and how far its start moves per batch entry
/// (workgroup_id.z; 0 for one entry).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Matrix {
    pub buf: u32,
    pub off: u32,
    pub ld: u32,
    pub z: u32,
}

impl Matrix {
    /// In `params`, from element `off`, rows `ld` apart.
    pub fn params(off: u32, ld: u32) -> Matrix {
        Matrix {
            buf: BUF_PARAMS,
            off,
            ld,
            z: 0,
        }
    }
    /// In `grads`.
    pub fn grads(off: u32, ld: u32) -> Matrix {
        Matrix {
            buf: BUF_GRADS,
            off,
            ld,
            z: 0,
        }
    }
    /// In `work`.
    pub fn work(off: u32, ld: u32) -> Matrix {
        Matrix {
            buf: BUF_WORK,
            off,
            ld,
            z: 0,
        }
    }
    /// The same operand, moving by `z` elements per batch entry.
    pub fn z(self, z: u32) -> Matrix {
        Matrix { z, ..self }
    }
}

/// `C[m×n] = beta·C + op(A)·op(B) (+ bias)` over `batch` entries, with
/// `op(A)` `[m×k]` and `op(B)` `[k×n]`: a GEMM described once, then turned
/// into [`GemmArgs`] (the split-K fields are the launcher's).
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub batch: u32,
    pub beta: f32,
    pub a: Matrix,
    /// `A` is stored `[k×m]`.
    pub a_t: bool,
    pub b: Matrix,
    /// `B` is stored `[n×k]`.
    pub b_t: bool,
    pub c: Matrix,
    /// Where the bias is (its `ld` unused), and whether it is added: a GEMM
    /// may name a bias it does not add (the head's second direction).
    pub bias: Matrix,
    pub add_bias: bool,
}

impl Gemm {
    /// `m x n x k`, one batch entry, `beta` 0, no bias; operands to be set.
    pub fn new(m: u32, n: u32, k: u32) -> Gemm {
        Gemm {
            m,
            n,
            k,
            batch: 1,
            beta: 0.0,
            a: Matrix::default(),
            a_t: false,
            b: Matrix::default(),
            b_t: false,
            c: Matrix::default(),
            bias: Matrix::default(),
            add_bias: false,
        }
    }
    /// `A` stored `[m×k]`.
    pub fn a(self, a: Matrix) -> Gemm {
        Gemm {
            a,
            a_t: false,
            ..self
        }
    }
    /// `A` stored `[k×m]` (transposed).
    pub fn a_t(self, a: Matrix) -> Gemm {
        Gemm {
            a,
            a_t: true,
            ..self
        }
    }
    /// `B` stored `[k×n]`.
    pub fn b(self, b: Matrix) -> Gemm {
        Gemm {
            b,
            b_t: false,
            ..self
        }
    }
    /// `B` stored `[n×k]` (transposed).
    pub fn b_t(self, b: Matrix) -> Gemm {
        Gemm {
            b,
            b_t: true,
            ..self
        }
    }
    pub fn c(self, c: Matrix) -> Gemm {
        Gemm { c, ..self }
    }
    /// `C` is accumulated into (`beta` = 1) when `on`.
    pub fn accumulate(self, on: bool) -> Gemm {
        Gemm {
            beta: if on { 1.0 } else { 0.0 },
            ..self
        }
    }
    /// The bias at `bias`, added when `add`.
    pub fn bias(self, bias: Matrix, add: bool) -> Gemm {
        Gemm {
            bias,
            add_bias: add,
            ..self
        }
    }
    /// Over `batch` entries (workgroup_id.z; each operand moves by its `z`).
    pub fn batch(self, batch: u32) -> Gemm {
        Gemm { batch, ..self }
    }

    /// The kernel arguments (no split over K).
    pub fn args(&self) -> GemmArgs {
        GemmArgs {
            m: self.m,
            n: self.n,
            k: self.k,
            beta: self.beta,
            a_buf: self.a.buf,
            a_off: self.a.off,
            lda: self.a.ld,
            a_t: self.a_t as u32,
            b_buf: self.b.buf,
            b_off: self.b.off,
            ldb: self.b.ld,
            b_t: self.b_t as u32,
            c_buf: self.c.buf,
            c_off: self.c.off,
            ldc: self.c.ld,
            bias_buf: self.bias.buf,
            bias_off: self.bias.off,
            has_bias: self.add_bias as u32,
            a_z: self.a.z,
            b_z: self.b.z,
            c_z: self.c.z,
            bias_z: self.bias.z,
            splits: 0,
            k_chunk: 0,
            part_off: 0,
        }
    }
}

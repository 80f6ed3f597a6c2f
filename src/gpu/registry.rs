//! The kernel registry: every `.wgsl` file is `include_str!`'d once and named
//! by [`Shader`], every entry point is a [`Kernel`], and compiled pipelines
//! are cached by (kernel, override constants) behind one getter,
//! [`Registry::pipeline`].
//!
//! ## Modules from their `requires` lines
//! A shader file that needs others opens with `// requires: a.wgsl b.wgsl`,
//! naming in order every file to put in front of it (what those need
//! included); a file that is only a part for others opens with
//! `// part: ...` (and its own `requires` line, if it needs others). [`Shader::source`]
//! builds each module from that line and nothing else, so concatenating the
//! files it lists (then the file) gives the module naga's CLI or an editor
//! sees: `cat shaders/half.wgsl shaders/mask.wgsl shaders/step_common.wgsl shaders/lstm.wgsl`.
//!
//! ## Bindings
//! Identical in every shader that uses them: `0 params`, `1 grads`, `2 work`
//! (read-write f32 storage), `3 ints` (read-only i32 storage: lengths, token
//! ids, class targets), `4 state` (optimizer moments), `5` the dispatch's
//! uniform slot (a dynamic offset into one uniform buffer). The dispatches
//! that read the opt-in f16 copy of W_hh get a second bind group with the
//! copy at binding 4 instead of the optimizer state, which they never use,
//! and a persistent grid's step dispatches one with its sync buffer there
//! (`grid.rs`); so the kernels need 5 storage bindings on every adapter. `data.wgsl` (a
//! resident training set's batches) has bindings of its own ([`Registry::data_layout`]). Offsets into the
//! buffers travel in the uniform as element indices, never as binding
//! offsets (storage binding offsets must be 256-byte aligned; element
//! offsets need not be).

use super::gemm_spec::GemmSpec;
use super::options::ShaderChecks;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Mutex;

/// One WGSL source file that is a module of its own (the parts it is built
/// from, `half.wgsl`, `mask.wgsl` and `step_common.wgsl`, are [`PARTS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Gemm,
    Lstm,
    Gru,
    Rnn,
    Head,
    Optim,
    Embed,
    /// `whh_f16.wgsl`: the f16 copy of W_hh.
    WhhF16,
    Dropout,
    /// `attention.wgsl`: sequence to sequence's softmax, tanh, copies, arg-max.
    Attention,
    /// `data.wgsl`: batches gathered from a training set kept on the device
    /// (its own bindings: [`Registry::data_layout`]).
    Data,
}

/// Every file under `shaders/` by name.
const FILES: [(&str, &str); 14] = [
    ("half.wgsl", include_str!("../../shaders/half.wgsl")),
    ("mask.wgsl", include_str!("../../shaders/mask.wgsl")),
    (
        "step_common.wgsl",
        include_str!("../../shaders/step_common.wgsl"),
    ),
    ("whh_f16.wgsl", include_str!("../../shaders/whh_f16.wgsl")),
    ("gemm.wgsl", include_str!("../../shaders/gemm.wgsl")),
    ("lstm.wgsl", include_str!("../../shaders/lstm.wgsl")),
    ("gru.wgsl", include_str!("../../shaders/gru.wgsl")),
    ("rnn.wgsl", include_str!("../../shaders/rnn.wgsl")),
    ("head.wgsl", include_str!("../../shaders/head.wgsl")),
    ("optim.wgsl", include_str!("../../shaders/optim.wgsl")),
    ("embed.wgsl", include_str!("../../shaders/embed.wgsl")),
    ("dropout.wgsl", include_str!("../../shaders/dropout.wgsl")),
    (
        "attention.wgsl",
        include_str!("../../shaders/attention.wgsl"),
    ),
    ("data.wgsl", include_str!("../../shaders/data.wgsl")),
];

/// The files that are parts of other modules (`// part:`), not modules.
pub const PARTS: [&str; 3] = ["half.wgsl", "mask.wgsl", "step_common.wgsl"];

/// The text of shader file `name`.
pub fn file(name: &str) -> Option<&'static str> {
    FILES.iter().find(|f| f.0 == name).map(|f| f.1)
}

/// The files a shader file's `// requires:` line lists (that line is among
/// the comment lines the file opens with; empty without one).
pub fn requires(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|l| l.starts_with("//"))
        .find_map(|l| l.strip_prefix("// requires:"))
        .map(|r| r.split_whitespace().collect())
        .unwrap_or_default()
}

impl Shader {
    pub const ALL: [Shader; 11] = [
        Shader::Gemm,
        Shader::Lstm,
        Shader::Gru,
        Shader::Rnn,
        Shader::Head,
        Shader::Optim,
        Shader::Embed,
        Shader::WhhF16,
        Shader::Dropout,
        Shader::Attention,
        Shader::Data,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shader::Gemm => "gemm.wgsl",
            Shader::Lstm => "lstm.wgsl",
            Shader::Gru => "gru.wgsl",
            Shader::Rnn => "rnn.wgsl",
            Shader::Head => "head.wgsl",
            Shader::Optim => "optim.wgsl",
            Shader::Embed => "embed.wgsl",
            Shader::WhhF16 => "whh_f16.wgsl",
            Shader::Dropout => "dropout.wgsl",
            Shader::Attention => "attention.wgsl",
            Shader::Data => "data.wgsl",
        }
    }

    /// The files of this module in order: those its `// requires:` line
    /// lists, then itself.
    pub fn files(self) -> Vec<&'static str> {
        let own = file(self.name()).expect("every shader is in FILES");
        let mut v = requires(own);
        v.push(self.name());
        v
    }

    /// The complete WGSL module: the files of [`Shader::files`] joined by newlines.
    pub fn source(self) -> String {
        self.files()
            .iter()
            .map(|n| {
                file(n).unwrap_or_else(|| {
                    panic!("{}: requires {n}, which is not in shaders/", self.name())
                })
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Entry points of this file.
    pub fn kernels(self) -> Vec<Kernel> {
        Kernel::ALL
            .iter()
            .copied()
            .filter(|k| k.shader() == self)
            .collect()
    }
}

/// One entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Register-blocked GEMM, 4x4 outputs per invocation (vec4s, constant
    /// indices): the fixed choice.
    Gemm,
    /// The same with 2x2 or 8x8 outputs per invocation (an override, loops
    /// over arrays): only for the tuner's candidates with RM != 4.
    GemmRm,
    /// 8x8 outputs per invocation on 128x128 or 64x64 blocks, vec4 workgroup
    /// tiles, double-buffered over K: only for the tuner's `Wide` candidates.
    GemmWide,
    GemmSmall,
    GemmSplitReduce,
    ColumnSums,
    LstmStepForward,
    LstmStepBackward,
    GruStepForward,
    GruStepBackward,
    RnnStepForward,
    RnnStepBackward,
    LossCe,
    LossMse,
    GradNormPartial,
    GradNormFinish,
    OptimizerStep,
    EmbedForward,
    EmbedBackward,
    /// W_hh of a layer (both directions) to its f16 copy.
    WhhToF16,
    /// A dropout mask applied to (or, off, a copy of) a block of `work`.
    DropoutApply,
    /// Sequence to sequence (`attention.wgsl`): the masked softmax of the
    /// scores and its backward, `tanh` and its backward, block copies, the
    /// arg-max of a decoding step and the embedding of its tokens, the rows
    /// of states beam search gathers.
    AttnSoftmax,
    AttnSoftmaxBackward,
    TanhForward,
    TanhBackward,
    CopyBlock,
    Argmax,
    EmbedTokens,
    GatherRows,
    /// A batch's rows of a resident training set into `work` (f32) or `ints` (i32).
    GatherF32,
    GatherI32,
}

impl Kernel {
    pub const ALL: [Kernel; 31] = [
        Kernel::Gemm,
        Kernel::GemmRm,
        Kernel::GemmWide,
        Kernel::GemmSmall,
        Kernel::GemmSplitReduce,
        Kernel::ColumnSums,
        Kernel::LstmStepForward,
        Kernel::LstmStepBackward,
        Kernel::GruStepForward,
        Kernel::GruStepBackward,
        Kernel::RnnStepForward,
        Kernel::RnnStepBackward,
        Kernel::LossCe,
        Kernel::LossMse,
        Kernel::GradNormPartial,
        Kernel::GradNormFinish,
        Kernel::OptimizerStep,
        Kernel::EmbedForward,
        Kernel::EmbedBackward,
        Kernel::WhhToF16,
        Kernel::DropoutApply,
        Kernel::AttnSoftmax,
        Kernel::AttnSoftmaxBackward,
        Kernel::TanhForward,
        Kernel::TanhBackward,
        Kernel::CopyBlock,
        Kernel::Argmax,
        Kernel::EmbedTokens,
        Kernel::GatherRows,
        Kernel::GatherF32,
        Kernel::GatherI32,
    ];

    pub fn shader(self) -> Shader {
        use Kernel::*;
        match self {
            Gemm | GemmRm | GemmWide | GemmSmall | GemmSplitReduce | ColumnSums => Shader::Gemm,
            LstmStepForward | LstmStepBackward => Shader::Lstm,
            GruStepForward | GruStepBackward => Shader::Gru,
            RnnStepForward | RnnStepBackward => Shader::Rnn,
            LossCe | LossMse => Shader::Head,
            GradNormPartial | GradNormFinish | OptimizerStep => Shader::Optim,
            EmbedForward | EmbedBackward => Shader::Embed,
            WhhToF16 => Shader::WhhF16,
            DropoutApply => Shader::Dropout,
            AttnSoftmax | AttnSoftmaxBackward | TanhForward | TanhBackward | CopyBlock | Argmax
            | EmbedTokens | GatherRows => Shader::Attention,
            GatherF32 | GatherI32 => Shader::Data,
        }
    }

    /// A cell's backward step kernel?
    pub fn is_step_backward(self) -> bool {
        matches!(
            self,
            Kernel::LstmStepBackward | Kernel::GruStepBackward | Kernel::RnnStepBackward
        )
    }

    pub fn entry(self) -> &'static str {
        use Kernel::*;
        match self {
            Gemm => "gemm",
            GemmRm => "gemm_rm",
            GemmWide => "gemm_wide",
            GemmSmall => "gemm_small",
            GemmSplitReduce => "gemm_split_reduce",
            ColumnSums => "column_sums",
            LstmStepForward => "lstm_step_forward",
            LstmStepBackward => "lstm_step_backward",
            GruStepForward => "gru_step_forward",
            GruStepBackward => "gru_step_backward",
            RnnStepForward => "rnn_step_forward",
            RnnStepBackward => "rnn_step_backward",
            LossCe => "loss_ce",
            LossMse => "loss_mse",
            GradNormPartial => "grad_norm_partial",
            GradNormFinish => "grad_norm_finish",
            OptimizerStep => "optimizer_step",
            EmbedForward => "embed_forward",
            EmbedBackward => "embed_backward",
            WhhToF16 => "whh_to_f16",
            DropoutApply => "dropout_apply",
            AttnSoftmax => "attn_softmax",
            AttnSoftmaxBackward => "attn_softmax_backward",
            TanhForward => "tanh_forward",
            TanhBackward => "tanh_backward",
            CopyBlock => "copy_block",
            Argmax => "argmax",
            EmbedTokens => "embed_tokens",
            GatherRows => "gather_rows",
            GatherF32 => "gather_f32",
            GatherI32 => "gather_i32",
        }
    }
}

/// Bytes of one dispatch's uniform slot (a multiple of every adapter's
/// `min_uniform_buffer_offset_alignment`, which is at most 256).
pub const SLOT_BYTES: u64 = 256;

/// Which text of a shader a module is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The file as it is.
    Plain,
    /// `gemm.wgsl` specialised to one GEMM's operands ([`GemmSpec`]; only
    /// under `specialise_gemms`, else the plain module).
    Gemm(GemmSpec),
    /// A step shader for the persistent grid ([`super::grid_module::variant`]).
    Grid,
}

/// A kernel, its override constants (name, value bits) and its module's variant.
type PipelineKey = (Kernel, Vec<(&'static str, u64)>, Variant);

/// The shared bind-group and pipeline layouts, and the module and pipeline caches.
pub struct Registry {
    pub bind_group_layout: wgpu::BindGroupLayout,
    pipeline_layout: wgpu::PipelineLayout,
    /// `data.wgsl`'s: `0` the set's f32, `1` its i32, `2 work`, `3 ints`
    /// (written), `4` the batch's rows (read-only storage), `5` the uniform slot.
    pub data_layout: wgpu::BindGroupLayout,
    data_pipeline_layout: wgpu::PipelineLayout,
    modules: Mutex<HashMap<(Shader, Variant), wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    checks: ShaderChecks,
    /// Build each GEMM's module specialised to its operands ([`GemmSpec`]).
    specialise_gemms: bool,
}

fn storage(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

/// The dispatch's uniform slot: a dynamic offset into one uniform buffer.
fn uniform_slot(binding: u32) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: std::num::NonZeroU64::new(SLOT_BYTES),
        },
        count: None,
    }
}

impl Registry {
    pub fn new(device: &wgpu::Device, checks: ShaderChecks, specialise_gemms: bool) -> Registry {
        let bind_group_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("recurrent.bind_group_layout"),
            entries: &[
                storage(0, false),
                storage(1, false),
                storage(2, false),
                storage(3, true),
                storage(4, false),
                uniform_slot(5),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("recurrent.pipeline_layout"),
            bind_group_layouts: &[Some(&bind_group_layout)],
            immediate_size: 0,
        });
        let data_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("recurrent.data_layout"),
            entries: &[
                storage(0, true),
                storage(1, true),
                storage(2, false),
                storage(3, false),
                storage(4, true),
                uniform_slot(5),
            ],
        });
        let data_pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("recurrent.data_pipeline_layout"),
            bind_group_layouts: &[Some(&data_layout)],
            immediate_size: 0,
        });
        Registry {
            bind_group_layout,
            pipeline_layout,
            data_layout,
            data_pipeline_layout,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            checks,
            specialise_gemms,
        }
    }

    /// The runtime checks the modules are compiled with.
    pub fn shader_checks(&self) -> ShaderChecks {
        self.checks
    }

    /// Are GEMMs built from modules specialised to their operands?
    pub fn specialises_gemms(&self) -> bool {
        self.specialise_gemms
    }

    /// Modules of `gemm.wgsl` built so far (one, or one per operand spec).
    pub fn gemm_modules(&self) -> usize {
        self.modules
            .lock()
            .map_or(0, |m| m.keys().filter(|(s, _)| *s == Shader::Gemm).count())
    }

    /// Modules of the step shaders for the persistent grid built so far.
    pub fn grid_modules(&self) -> usize {
        self.modules
            .lock()
            .map_or(0, |m| m.keys().filter(|(_, v)| *v == Variant::Grid).count())
    }

    /// The pipeline of kernel `k` with override constants `consts` from the
    /// module `variant` of its shader (a GEMM's specialised module only under
    /// `specialise_gemms`; compiled on first use, then cached).
    pub fn pipeline(
        &self,
        device: &wgpu::Device,
        k: Kernel,
        consts: &[(&'static str, f64)],
        variant: Variant,
    ) -> Result<wgpu::ComputePipeline> {
        let variant = match variant {
            Variant::Gemm(_) if !(self.specialise_gemms && k.shader() == Shader::Gemm) => {
                Variant::Plain
            }
            Variant::Grid if !matches!(k.shader(), Shader::Lstm | Shader::Gru | Shader::Rnn) => {
                return Err(Error::Gpu(format!(
                    "kernel {} is not a step kernel: it has no persistent grid module",
                    k.entry()
                )))
            }
            v => v,
        };
        let key = (
            k,
            consts
                .iter()
                .map(|(n, v)| (*n, v.to_bits()))
                .collect::<Vec<_>>(),
            variant,
        );
        if let Some(p) = self.pipelines.lock().map_err(|_| poisoned())?.get(&key) {
            return Ok(p.clone());
        }
        let module = self.module(device, k.shader(), variant)?;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(k.entry()),
            layout: Some(if k.shader() == Shader::Data {
                &self.data_pipeline_layout
            } else {
                &self.pipeline_layout
            }),
            module: &module,
            entry_point: Some(k.entry()),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: consts,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "kernel {} ({}) does not build: {e}",
                k.entry(),
                k.shader().name()
            )));
        }
        self.pipelines
            .lock()
            .map_err(|_| poisoned())?
            .insert(key, p.clone());
        Ok(p)
    }

    /// The module of `shader` in `variant` (compiled on first use, then cached).
    fn module(
        &self,
        device: &wgpu::Device,
        shader: Shader,
        variant: Variant,
    ) -> Result<wgpu::ShaderModule> {
        let mut modules = self.modules.lock().map_err(|_| poisoned())?;
        if let Some(m) = modules.get(&(shader, variant)) {
            return Ok(m.clone());
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let source = match variant {
            Variant::Plain => shader.source(),
            Variant::Gemm(s) => s.specialise(&shader.source()),
            Variant::Grid => super::grid_module::variant(&shader.source()),
        };
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(shader.name()),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        };
        let m = match self.checks {
            ShaderChecks::Checked => device.create_shader_module(desc),
            // SAFETY: the module is one of ours (`Shader::ALL`, built from the
            // files in shaders/), never user input. Every loop is bounded by a
            // uniform or a constant, every workgroup or private array index (a
            // local invocation id or a loop counter) stays within the array's
            // constant or override-constant size, and every buffer index is
            // guarded by the sizes in the uniforms, which the host checks
            // against the buffers it binds (see `ShaderChecks`). The GPU tests
            // run the unchecked modules against the checked ones bit for bit.
            ShaderChecks::Unchecked => unsafe {
                device.create_shader_module_trusted(desc, self.checks.runtime_checks())
            },
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "shader {} does not compile: {e}",
                shader.name()
            )));
        }
        modules.insert((shader, variant), m.clone());
        Ok(m)
    }
}

fn poisoned() -> Error {
    Error::Gpu("the pipeline cache lock was poisoned by a panic in another thread".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every module's files exist, parts come before the file that needs
    /// them, and each part's own requirements come before it.
    #[test]
    fn every_module_lists_what_it_is_built_from() {
        for s in Shader::ALL {
            let files = s.files();
            for (i, f) in files.iter().enumerate() {
                let text = file(f).unwrap_or_else(|| panic!("{}: no {f}", s.name()));
                if i + 1 < files.len() {
                    assert!(PARTS.contains(f), "{}: {f} is not a part", s.name());
                    assert!(text.starts_with("// part:"), "{f} says it is a part");
                }
                for r in requires(text) {
                    assert!(
                        files[..i].contains(&r),
                        "{}: {f} needs {r} before it",
                        s.name()
                    );
                }
            }
            assert!(
                !file(s.name()).unwrap().starts_with("// part:"),
                "{} is a module",
                s.name()
            );
        }
    }
}

//! Every shader parses and validates with naga, and every entry point (with
//! its `override` constants resolved as the runtime resolves them) translates
//! to SPIR-V, MSL, HLSL and GLSL ES 3.10 — how Metal, DX12 and GL stay honest
//! without their hardware. Needs no GPU.

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use recurrent::gpu::internals::{blocked_gemm_kernel, gemm_constants, step_constants, Shader};
use recurrent::gpu::{Kernel, StepTile};

fn validate(shader: Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    validate_text(shader.name(), &shader.source())
}

/// `src` (the module `name`) parsed and validated.
fn validate_text(name: &str, src: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let shader = Name(name);
    let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
        panic!(
            "{} does not parse:\n{}",
            shader.name(),
            e.emit_to_string(&src)
        )
    });
    let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| {
            panic!(
                "{} does not validate:\n{}",
                shader.name(),
                e.emit_to_string(&src)
            )
        });
    (module, info)
}

/// A module's name where `validate_text` prints it.
struct Name<'a>(&'a str);
impl Name<'_> {
    fn name(&self) -> &str {
        self.0
    }
}

/// The override values the runtime passes to kernel `k`: for the GEMM shader
/// exactly what the runtime passes ([`gemm_constants`]) for every GEMM tile the
/// autotuner may pick (TILE 8/16; RM 4 for `gemm`, 2/4/8 for `gemm_rm`, 1 for
/// the others); for the other shaders the smallest and the default tunables,
/// and the step kernels' variant that reads the f16 copy of W_hh (`WHH16`);
/// for the step kernels also what the runtime passes ([`step_constants`]) for
/// tiles with 1 to 8 rows per invocation (`RB`), K split over slices (`SK`)
/// and a direct tile (`DIRECT`), f32 and f16, and persistent tiles (`PERSIST`).
fn constant_sets(k: Kernel) -> Vec<Vec<(&'static str, f64)>> {
    if k == Kernel::GemmWide {
        // Its workgroup edge WT only.
        return [16, 8].iter().map(|&t| gemm_constants(k, t, 8)).collect();
    }
    if k.shader() == Shader::Gemm {
        let rms: &[u32] = match k {
            Kernel::Gemm => &[4],
            Kernel::GemmRm => &[2, 4, 8],
            _ => &[1],
        };
        let mut sets = Vec::new();
        for tile in [8, 16] {
            for &rm in rms {
                sets.push(gemm_constants(k, tile, rm));
            }
        }
        return sets;
    }
    let mut step_sets = Vec::new();
    if matches!(k.shader(), Shader::Lstm | Shader::Gru | Shader::Rnn) {
        for (units, rows, chunk, rb, sk) in [
            (16, 16, 32, 1, 1),
            (16, 4, 32, 4, 1),
            (8, 8, 64, 8, 1),
            (8, 4, 16, 2, 4),
        ] {
            let tile = StepTile {
                units,
                rows,
                chunk,
                rows_per_invocation: rb,
                splits: sk,
                direct: false,
                back_units: 1,
                persistent: false,
                grid: 1,
            };
            for f16 in [false, true] {
                step_sets.push(step_constants(tile, f16));
            }
        }
        // Units per invocation backward.
        for f16 in [false, true] {
            step_sets.push(step_constants(
                StepTile::new(16, 16, 32, 2).with_back_units(4),
                f16,
            ));
        }
        // A direct tile (no staging; the slices' tree in workgroup memory).
        for f16 in [false, true] {
            step_sets.push(step_constants(StepTile::direct(16, 1, 7, 8, 4), f16));
        }
        // Persistent tiles: the loop over steps and tiles in the entry point.
        for tile in [
            StepTile::new(16, 16, 32, 1),
            StepTile::new(16, 4, 32, 4).with_back_units(2),
            StepTile::direct(16, 1, 7, 8, 4),
        ] {
            step_sets.push(step_constants(tile.persist(), false));
        }
        // Across a grid of workgroups (the sync module: see grid_variant below).
        step_sets.push(step_constants(
            StepTile::new(16, 4, 32, 1).persist_on(4),
            false,
        ));
    }
    [
        vec![("TILE", 16.0), ("WG", 64.0)],
        vec![("TILE", 8.0), ("WG", 128.0)],
        vec![("WG", 256.0)],
        vec![("WG", 64.0), ("WHH16", 1.0)],
    ]
    .into_iter()
    .chain(step_sets)
    .collect()
}

/// Register-blocked GEMMs: RM = 4 (the fixed choice's block) runs the measured
/// vec4 `gemm`, the other blocks the generic `gemm_rm`; `gemm` gets no RM
/// override (its 4 is a constant of the shader).
#[test]
fn register_blocks_pick_their_entry_point() {
    assert_eq!(blocked_gemm_kernel(4), Kernel::Gemm);
    assert_eq!(blocked_gemm_kernel(2), Kernel::GemmRm);
    assert_eq!(blocked_gemm_kernel(8), Kernel::GemmRm);
    for tile in [8, 16] {
        assert_eq!(
            gemm_constants(Kernel::Gemm, tile, 4),
            vec![("TILE", tile as f64)]
        );
    }
    let src = Shader::Gemm.source();
    assert!(src.contains("const RM: u32 = 4u;"));
    assert!(src.contains("var acc: array<vec4<f32>, 4>;"));
}

#[test]
fn every_shader_parses_and_validates() {
    for shader in Shader::ALL {
        let (module, _) = validate(shader);
        let names: Vec<&str> = module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        for k in shader.kernels() {
            assert!(
                names.contains(&k.entry()),
                "{}: entry point {} is missing (has {names:?})",
                shader.name(),
                k.entry()
            );
        }
    }
}

#[test]
fn every_kernel_is_registered_with_its_shader() {
    for k in Kernel::ALL {
        assert!(k.shader().kernels().contains(&k));
    }
    let total: usize = Shader::ALL.iter().map(|s| s.kernels().len()).sum();
    assert_eq!(total, Kernel::ALL.len());
}

/// Entry point `k` of `module` (`name`) with the override values `constants`
/// (`set`, for messages) translated to SPIR-V, MSL, HLSL and GLSL.
fn translate(
    name: &str,
    module: &naga::Module,
    info: &naga::valid::ModuleInfo,
    k: Kernel,
    constants: &naga::back::PipelineConstants,
    set: &[(&'static str, f64)],
) {
    let ep = Some((naga::ShaderStage::Compute, k.entry()));
    let (m, i) = naga::back::pipeline_constants::process_overrides(module, info, ep, constants)
        .unwrap_or_else(|e| panic!("{}: overrides {set:?}: {e}", k.entry()));
    let what = format!("{name}::{} with {set:?}", k.entry());

    let words = spv::write_vec(
        &m,
        &i,
        &spv::Options::default(),
        Some(&spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: k.entry().to_string(),
        }),
    )
    .unwrap_or_else(|e| panic!("{what}: SPIR-V: {e}"));
    assert!(
        words.len() > 5 && words[0] == 0x0723_0203,
        "{what}: not a SPIR-V module"
    );

    let (src, _) = msl::write_string(
        &m,
        &i,
        &msl::Options::default(),
        &msl::PipelineOptions {
            entry_point: Some((naga::ShaderStage::Compute, k.entry().to_string())),
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{what}: MSL: {e}"));
    assert!(src.contains("kernel"), "{what}: MSL has no kernel function");

    let mut out = String::new();
    let hopts = hlsl::Options {
        fake_missing_bindings: true,
        ..Default::default()
    };
    let hpipe = hlsl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, k.entry().to_string())),
    };
    hlsl::Writer::new(&mut out, &hopts, &hpipe)
        .write(&m, &i, None)
        .unwrap_or_else(|e| panic!("{what}: HLSL: {e}"));
    assert!(
        out.contains("numthreads"),
        "{what}: HLSL has no compute entry"
    );

    let mut out = String::new();
    let gopts = glsl::Options::default();
    let gpipe = glsl::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: k.entry().to_string(),
        multiview: None,
    };
    glsl::Writer::new(
        &mut out,
        &m,
        &i,
        &gopts,
        &gpipe,
        naga::proc::BoundsCheckPolicies::default(),
    )
    .and_then(|mut w| w.write())
    .unwrap_or_else(|e| panic!("{what}: GLSL: {e}"));
    assert!(
        out.contains("local_size_x"),
        "{what}: GLSL has no compute layout"
    );
}

#[test]
fn every_entry_point_translates_to_spirv_msl_hlsl_glsl() {
    for shader in Shader::ALL {
        let (module, info) = validate(shader);
        for k in shader.kernels() {
            for set in constant_sets(k) {
                let constants: naga::back::PipelineConstants = set
                    .iter()
                    .filter(|(n, _)| {
                        // The GEMM shader gets exactly the runtime's set: every
                        // name must be one of its overrides.
                        k.shader() == Shader::Gemm
                            || module
                                .overrides
                                .iter()
                                .any(|(_, o)| o.name.as_deref() == Some(*n))
                    })
                    .map(|(n, v)| (n.to_string(), *v))
                    .collect();
                translate(shader.name(), &module, &info, k, &constants, &set);
            }
        }
    }
}

/// The step kernels have their f16 variant (the `WHH16` override) and the
/// conversion kernel shares the f16 helpers with them.
#[test]
fn the_step_kernels_have_an_f16_weight_variant() {
    for shader in [Shader::Lstm, Shader::Gru, Shader::Rnn] {
        let (module, _) = validate(shader);
        assert!(
            module
                .overrides
                .iter()
                .any(|(_, o)| o.name.as_deref() == Some("WHH16")),
            "{} has no WHH16 override",
            shader.name()
        );
        assert!(shader.source().contains("fn f16_value("));
    }
    assert_eq!(Kernel::WhhToF16.shader(), Shader::WhhF16);
    assert!(Shader::WhhF16.source().contains("fn f16_bits("));
}

/// `gemm.wgsl` specialised to operands (`GemmSpec`, `RECURRENT_GEMM_SPECIALISE`)
/// parses and validates for every combination of transposes, bias and beta,
/// and for each buffer of each operand.
#[test]
fn specialised_gemm_modules_validate() {
    use recurrent::gpu::internals::GemmSpec;
    let src = Shader::Gemm.source();
    let mut specs = Vec::new();
    for bits in 0..16u32 {
        specs.push(GemmSpec {
            a_buf: 2,
            b_buf: 0,
            c_buf: 2,
            bias_buf: 0,
            a_t: bits & 1 != 0,
            b_t: bits & 2 != 0,
            has_bias: bits & 4 != 0,
            beta_on: bits & 8 != 0,
        });
    }
    for buf in 0..3 {
        specs.push(GemmSpec {
            a_buf: buf,
            b_buf: buf,
            c_buf: buf,
            bias_buf: buf,
            ..specs[0]
        });
    }
    for spec in specs {
        let text = spec.specialise(&src);
        let module = naga::front::wgsl::parse_str(&text)
            .unwrap_or_else(|e| panic!("{spec:?} does not parse:\n{}", e.emit_to_string(&text)));
        Validator::new(ValidationFlags::all(), Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{spec:?} does not validate:\n{}", e.emit_to_string(&text)));
    }
}

/// The step shaders' persistent grid module (`grid_variant`: the sync
/// buffer's atomics at binding 4, grads at binding 1) validates, and its
/// step kernels translate to every backend with a grid tile's constants.
#[test]
fn the_grid_modules_validate_and_translate() {
    use recurrent::gpu::internals::grid_variant;
    for shader in [Shader::Lstm, Shader::Gru, Shader::Rnn] {
        let src = grid_variant(&shader.source());
        assert!(src.contains("array<atomic<u32>>") && !src.contains("// grid: "));
        assert_eq!(src.lines().count(), shader.source().lines().count());
        let name = format!("{} (grid)", shader.name());
        let (module, info) = validate_text(&name, &src);
        for k in shader.kernels() {
            for tile in [
                StepTile::new(16, 4, 32, 1).persist_on(4),
                StepTile::direct(16, 1, 7, 8, 4).persist_on(2),
            ] {
                let mut set = step_constants(tile, false);
                set.push(("GRID_SPIN", 1000.0));
                set.push(("RDROP", 1.0));
                if !tile.direct && !k.is_step_backward() {
                    // The forward's W_hh rows kept (H = 64 in chunks of 32).
                    set.extend([("KEEP", 1.0), ("KH", 65.0), ("KEEP_LEN", 4.0 * 16.0 * 65.0)]);
                }
                let constants = set.iter().map(|(n, v)| (n.to_string(), *v)).collect();
                translate(&name, &module, &info, k, &constants, &set);
            }
        }
    }
}

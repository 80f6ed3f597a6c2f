//! Every shader parses and validates with naga, and every entry point (with
//! its `override` constants resolved as the runtime resolves them) translates
//! to SPIR-V, MSL, HLSL and GLSL ES 3.10 — how Metal, DX12 and GL stay honest
//! without their hardware. Needs no GPU.

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use recurrent::gpu::kernels::{Kernel, Shader};

fn validate(shader: Shader) -> (naga::Module, naga::valid::ModuleInfo) {
    let src = shader.source();
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

/// The override values the runtime passes for the smallest and the default
/// tunables, and every GEMM tile the autotuner may pick (TILE 8/16 x RM 1/2/4/8).
fn constant_sets() -> Vec<Vec<(&'static str, f64)>> {
    let mut sets = vec![
        vec![("TILE", 16.0), ("RM", 4.0), ("WG", 64.0)],
        vec![("TILE", 8.0), ("RM", 1.0), ("WG", 128.0)],
        vec![("WG", 256.0)],
    ];
    for tile in [8.0, 16.0] {
        for rm in [1.0, 2.0, 8.0] {
            sets.push(vec![("TILE", tile), ("RM", rm)]);
        }
    }
    sets
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

#[test]
fn every_entry_point_translates_to_spirv_msl_hlsl_glsl() {
    for shader in Shader::ALL {
        let (module, info) = validate(shader);
        for k in shader.kernels() {
            for set in constant_sets() {
                let constants: naga::back::PipelineConstants = set
                    .iter()
                    .filter(|(n, _)| {
                        module
                            .overrides
                            .iter()
                            .any(|(_, o)| o.name.as_deref() == Some(*n))
                    })
                    .map(|(n, v)| (n.to_string(), *v))
                    .collect();
                let ep = Some((naga::ShaderStage::Compute, k.entry()));
                let (m, i) = naga::back::pipeline_constants::process_overrides(
                    &module, &info, ep, &constants,
                )
                .unwrap_or_else(|e| panic!("{}: overrides {set:?}: {e}", k.entry()));
                let what = format!("{}::{} with {set:?}", shader.name(), k.entry());

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
        }
    }
}

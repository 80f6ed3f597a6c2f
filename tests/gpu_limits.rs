//! The GPU path against adapters with artificially lowered limits (what does
//! not fit is refused with a clear error before anything is submitted, and
//! what fits still matches the CPU path), and against injected device faults
//! (a lost device ends in an error, with the last good checkpoint on disk).

mod common;
use common::*;
use recurrent::gpu::{GpuContext, GpuModel};
use recurrent::rng::Rng;
use recurrent::{Cell, Dataset, Init, Inputs, Model, ModelConfig};
use std::sync::Arc;

/// A context on the same adapter as `common::gpu`, with `lower` applied to its limits.
fn context_with(lower: impl FnOnce(&mut wgpu::Limits)) -> recurrent::Result<Arc<GpuContext>> {
    let backends = match std::env::var("RECURRENT_BACKEND") {
        Ok(v) => wgpu::Backends::from_comma_list(&v),
        Err(_) => wgpu::Backends::all(),
    };
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.enumerate_adapters(backends))
        .into_iter()
        .next()
        .expect("common::gpu found an adapter");
    let mut limits = adapter.limits();
    lower(&mut limits);
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("lowered limits"),
        required_limits: limits,
        ..Default::default()
    }))
    .expect("a device with lower limits than the adapter's");
    GpuContext::from_device(device, queue, adapter.get_info())
}

fn batch(n: usize, t: usize, f: usize) -> Dataset {
    let mut rng = Rng::new(1);
    Dataset::new(
        Inputs::features(
            (0..n * t * f).map(|_| rng.normal() as f32).collect(),
            n,
            t,
            f,
        )
        .unwrap(),
        None,
        None,
    )
}

#[test]
fn a_workspace_above_the_binding_limit_is_refused_before_submitting() {
    if gpu("a_workspace_above_the_binding_limit_is_refused_before_submitting").is_none() {
        return;
    }
    // 4 MiB storage bindings: the small model and batch fit, a long batch does not.
    let ctx = context_with(|l| {
        l.max_storage_buffer_binding_size = 4 << 20;
        l.max_buffer_size = 4 << 20;
    })
    .unwrap();
    let model = Model::new(ModelConfig::new(Cell::Lstm, 8, 16, 3), &Init::seed(1)).unwrap();
    let mut gpu = GpuModel::new(ctx.clone(), &model).unwrap();
    let small = batch(4, 10, 8);
    assert_close(
        "fits under lowered limits",
        &gpu.forward(&small).unwrap().data,
        &model.forward(&small).unwrap().data,
        FORWARD,
    );
    let e = gpu.forward(&batch(64, 400, 8)).unwrap_err().to_string();
    assert!(
        e.contains("storage binding limit") && e.contains("HINT"),
        "{e}"
    );
    // The context is still usable afterwards.
    assert_close(
        "still usable",
        &gpu.forward(&small).unwrap().data,
        &model.forward(&small).unwrap().data,
        FORWARD,
    );
    // A model whose parameters alone do not fit.
    let big = Model::new(ModelConfig::new(Cell::Lstm, 1024, 1024, 3), &Init::seed(1)).unwrap();
    let e = GpuModel::new(ctx, &big).err().expect("refused").to_string();
    assert!(
        e.contains("the parameters") && e.contains("storage binding limit"),
        "{e}"
    );
}

#[test]
fn too_few_storage_buffers_or_too_little_workgroup_memory_are_refused() {
    if gpu("too_few_storage_buffers_or_too_little_workgroup_memory_are_refused").is_none() {
        return;
    }
    let Err(e) = context_with(|l| l.max_storage_buffers_per_shader_stage = 4) else {
        panic!("4 storage buffers per stage should be refused")
    };
    let e = e.to_string();
    assert!(e.contains("storage buffers per shader stage"), "{e}");
    let Err(e) = context_with(|l| l.max_compute_workgroup_storage_size = 1024) else {
        panic!("1 KiB of workgroup memory should be refused")
    };
    let e = e.to_string();
    assert!(e.contains("workgroup storage limit"), "{e}");
}

#[test]
fn a_lost_device_ends_in_an_error_not_a_panic_or_a_hang() {
    if gpu("a_lost_device_ends_in_an_error_not_a_panic_or_a_hang").is_none() {
        return;
    }
    let ctx = context_with(|_| {}).unwrap();
    let model = Model::new(ModelConfig::new(Cell::Gru, 8, 16, 3), &Init::seed(1)).unwrap();
    let mut gpu = GpuModel::new(ctx.clone(), &model).unwrap();
    let b = batch(4, 6, 8);
    gpu.forward(&b).unwrap();
    ctx.device.destroy();
    let e = gpu.forward(&b).unwrap_err().to_string();
    assert!(e.contains("GPU"), "{e}");
    assert!(gpu.download().is_err());
}

#[test]
fn a_device_lost_during_a_fit_leaves_the_last_good_checkpoint() {
    use recurrent::train::{CheckpointConfig, Control, FitConfig, Trainer};
    use recurrent::{Loss, Optimizer, Targets};
    if gpu("a_device_lost_during_a_fit_leaves_the_last_good_checkpoint").is_none() {
        return;
    }
    let ctx = context_with(|_| {}).unwrap();
    let model = Model::new(ModelConfig::new(Cell::Lstm, 8, 16, 3), &Init::seed(1)).unwrap();
    let mut data = batch(24, 6, 8);
    data.y = Some(Targets::Classes {
        data: (0..24).map(|i| i % 3).collect(),
        shape: vec![24],
    });
    let path = temp_dir("gpu-lost").join("ckpt.safetensors");
    let mut gpu = GpuModel::new(ctx.clone(), &model).unwrap();
    let cfg = FitConfig {
        epochs: 5,
        batch_size: 8,
        loss: Loss::Ce,
        checkpoint: Some(CheckpointConfig {
            path: path.clone(),
            every: 1,
            best_only: false,
        }),
        ..FitConfig::default()
    };
    let lost = ctx.clone();
    let err = Trainer::new(cfg)
        .on_epoch(move |m| {
            if m.epoch == 2 {
                lost.device.destroy(); // the driver goes away after epoch 2's checkpoint
            }
            Control::Continue
        })
        .fit_on(&mut gpu, &mut Optimizer::adam(1e-2), &data, None)
        .unwrap_err();
    assert!(matches!(err, recurrent::Error::Gpu(_)), "{err}");
    let (saved, meta) = recurrent::io::checkpoint::load_with_metadata(&path).unwrap();
    assert!(
        meta.values().any(|v| v.contains("\"epoch\":2")),
        "the epoch-2 checkpoint is on disk: {meta:?}"
    );
    assert!(saved.params().iter().all(|v| v.is_finite()));
}

/// A device opened without `TIMESTAMP_QUERY` (as on adapters that lack it):
/// profiles fail with the typed error, before anything is timed.
#[test]
fn a_profile_without_timestamp_queries_is_a_typed_error() {
    if gpu("a_profile_without_timestamp_queries_is_a_typed_error").is_none() {
        return;
    }
    // `context_with` asks for no optional features: no timestamps.
    let ctx = context_with(|_| {}).unwrap();
    assert!(!ctx.has_timestamps());
    let size = recurrent::bench::Size {
        cell: Cell::Lstm,
        input: 3,
        hidden: 4,
        batch: 2,
        steps: 3,
        layers: 1,
        recurrent_dropout: 0.0,
    };
    let err = recurrent::bench::run_gpu_profiled(&size, 1, &ctx).unwrap_err();
    match &err {
        recurrent::Error::MissingFeature {
            feature,
            needed_for,
            ..
        } => {
            assert!(feature.contains("TIMESTAMP_QUERY"), "{err}");
            assert_eq!(needed_for, "bench --profile");
        }
        other => panic!("expected MissingFeature, got {other:?}"),
    }
    assert!(
        err.to_string().contains("has no timestamp queries"),
        "{err}"
    );
    // The model-level profile says the same.
    let model = Model::new(ModelConfig::new(Cell::Lstm, 3, 4, 1), &Init::seed(1)).unwrap();
    let mut g = GpuModel::new(ctx.clone(), &model).unwrap();
    let data = Dataset::new(
        batch(2, 3, 3).x,
        Some(recurrent::Targets::Values {
            data: vec![0.5; 2],
            shape: vec![2, 1],
        }),
        None,
    );
    let opts = recurrent::StepOptions {
        loss: recurrent::Loss::Mse,
        clip: None,
    };
    let err = g
        .profile_train_step(&data, &opts, &mut recurrent::Optimizer::adam(1e-3))
        .unwrap_err();
    assert!(
        matches!(err, recurrent::Error::MissingFeature { .. }),
        "{err}"
    );
}

/// Lowered workgroup limits: the GEMM autotuner only measures (and plans only
/// run) configurations that fit them, and the model still matches the CPU.
#[test]
fn lowered_workgroup_limits_keep_gemm_candidates_within_them() {
    if gpu("lowered_workgroup_limits_keep_gemm_candidates_within_them").is_none() {
        return;
    }
    use recurrent::gpu::{GemmConfig, GemmShape};
    let shapes = [
        GemmShape {
            m: 12,
            n: 7,
            k: 700,
            a_t: true,
            b_t: false,
            batch: 2,
        },
        GemmShape {
            m: 300,
            n: 130,
            k: 17,
            a_t: false,
            b_t: true,
            batch: 1,
        },
        GemmShape {
            m: 1030,
            n: 520,
            k: 8,
            a_t: false,
            b_t: true,
            batch: 1,
        },
    ];
    type Lower = fn(&mut wgpu::Limits);
    let limited: [(&str, Lower); 2] = [
        // GL ES 3.1's guarantee: 128 invocations, so no 16x16 workgroup.
        ("128 invocations", |l| {
            l.max_compute_invocations_per_workgroup = 128
        }),
        // 12 KiB of workgroup storage: the 16x16 tile with 8x8 outputs (16 KiB) does not fit.
        ("12 KiB workgroup storage", |l| {
            l.max_compute_workgroup_storage_size = 12 << 10
        }),
    ];
    for (what, lower) in limited {
        let ctx = context_with(lower).unwrap();
        // Tuning is opt-in (RECURRENT_AUTOTUNE=1); on here, to measure within the limits.
        ctx.set_autotune(true);
        for s in &shapes {
            let cands = ctx.gemm_candidates(s);
            assert!(!cands.is_empty());
            for c in &cands {
                assert!(
                    c.fits(&ctx.limits),
                    "{what}: {s}: candidate {c} does not fit"
                );
                assert!(c.tile() * c.tile() <= ctx.limits.max_compute_invocations_per_workgroup);
                assert!(c.workgroup_bytes() <= ctx.limits.max_compute_workgroup_storage_size);
            }
            assert!(
                !cands.contains(&GemmConfig::Blocked { tile: 16, rm: 8 }),
                "{what}: {s}"
            );
            // What the tuner picks is one of them.
            let picked = ctx.gemm_config(s).unwrap();
            assert!(cands.contains(&picked), "{what}: {s}: {picked}");
        }
        let model = Model::new(
            ModelConfig::new(Cell::Lstm, 8, 37, 3).layers(2),
            &Init::seed(1),
        )
        .unwrap();
        let mut g = GpuModel::new(ctx.clone(), &model).unwrap();
        let b = batch(5, 7, 8);
        for c in g.gemm_choices(5, 7).unwrap() {
            assert!(
                c.config.fits(&ctx.limits),
                "{what}: {}: {}",
                c.label,
                c.config
            );
        }
        assert_close(
            &format!("forward under {what}"),
            &g.forward(&b).unwrap().data,
            &model.forward(&b).unwrap().data,
            FORWARD,
        );
        // `context_with` asks for no timestamps: the tuner timed on the wall clock.
        assert!(!ctx.has_timestamps());
        let measured: Vec<f64> = ctx
            .tuned_gemms()
            .iter()
            .filter(|(_, t)| t.decision == recurrent::gpu::Decision::Measured)
            .map(|(_, t)| t.us.unwrap())
            .collect();
        assert!(!measured.is_empty() && measured.iter().all(|u| u.is_finite() && *u > 0.0));
        eprintln!(
            "{what}: {} shapes tuned within the limits ({} measured on the wall clock)",
            ctx.tuned_gemms().len(),
            measured.len()
        );
    }
}

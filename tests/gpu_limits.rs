//! The GPU path against adapters with artificially lowered limits: what does
//! not fit is refused with a clear error before anything is submitted, and
//! what fits still matches the CPU path.

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
    let e = context_with(|l| l.max_storage_buffers_per_shader_stage = 4)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("storage buffers per shader stage"), "{e}");
    let e = context_with(|l| l.max_compute_workgroup_storage_size = 1024)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("workgroup storage limit"), "{e}");
}

//! The recurrent stack as an op: the CPU op gives the model path's stack
//! output and final states (same bits), its gradients pass central differences, the GPU op matches the CPU
//! op on the same inputs (host API and the application's own buffers with
//! offsets, in its own encoder), the composed example (`examples/compose.rs`)
//! passes a gradient check through the composition on both paths and trains,
//! and bad input is refused clearly.

mod common;
#[path = "../examples/compose.rs"]
#[allow(dead_code)]
mod compose;

use common::*;
use recurrent::gpu::{BufferSlice, GpuStack, StackBackward, StackInputs, StackOutputs};
use recurrent::rng::Rng;
use recurrent::{Cell, Dataset, Inputs, Model, ModelConfig, RecurrentStack, Tensor};

fn rand(rng: &mut Rng, shape: Vec<usize>) -> Tensor {
    let n = shape.iter().product();
    Tensor::new(shape, (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect())
}

struct Io {
    x: Tensor,
    lengths: Option<Vec<usize>>,
    h0: Tensor,
    c0: Option<Tensor>,
    dy: Tensor,
    dh_n: Tensor,
    dc_n: Option<Tensor>,
}

fn io(op: &RecurrentStack, t: usize, b: usize, lengths: bool, seed: u64) -> Io {
    let mut rng = Rng::new(seed);
    let cfg = op.config();
    let s = vec![op.state_rows(), b, cfg.hidden];
    let lstm = cfg.cell == Cell::Lstm;
    Io {
        x: rand(&mut rng, vec![t, b, cfg.input]),
        lengths: lengths.then(|| {
            let mut l: Vec<usize> = (0..b).map(|_| 1 + rng.below(t)).collect();
            l[0] = t;
            l
        }),
        h0: rand(&mut rng, s.clone()),
        c0: lstm.then(|| rand(&mut rng, s.clone())),
        dy: rand(&mut rng, vec![t, b, op.output_width()]),
        dh_n: rand(&mut rng, s.clone()),
        dc_n: lstm.then(|| rand(&mut rng, s)),
    }
}

fn stacks() -> Vec<RecurrentStack> {
    let mut v = Vec::new();
    for cell in [Cell::Lstm, Cell::Gru, Cell::Rnn] {
        v.push(RecurrentStack::new(cell, 3, 5));
        v.push(
            RecurrentStack::new(cell, 4, 6)
                .layers(2)
                .bidirectional(true),
        );
    }
    v
}

/// Σ dy·y + Σ dh_n·h_n (+ Σ dc_n·c_n): a loss whose gradients are dy, dh_n, dc_n.
fn probe(
    op: &RecurrentStack,
    p: &[f32],
    v: &Io,
    x: &Tensor,
    h0: &Tensor,
    c0: Option<&Tensor>,
) -> f64 {
    let f = op
        .forward(p, x, v.lengths.as_deref(), Some(h0), c0)
        .unwrap();
    let dot = |a: &Tensor, b: &Tensor| {
        a.data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| (*x as f64) * (*y as f64))
            .sum::<f64>()
    };
    let mut l = dot(&f.y, &v.dy) + dot(&f.h_n, &v.dh_n);
    if let (Some(c), Some(d)) = (&f.c_n, &v.dc_n) {
        l += dot(c, d);
    }
    l
}

#[test]
fn the_cpu_op_gives_the_model_paths_output_and_states() {
    for op in stacks() {
        let cfg = ModelConfig {
            out_features: 2,
            output: recurrent::OutputMode::Sequence,
            ..op.config().clone()
        };
        let model = Model::new(cfg, &recurrent::Init::seed(4)).unwrap();
        let p = &model.params()[..op.num_params()];
        let v = io(&op, 6, 3, true, 1);
        // The model takes batch-first inputs.
        let (t, b, i) = (6, 3, op.config().input);
        let mut xb = vec![0.0; t * b * i];
        for ti in 0..t {
            for bi in 0..b {
                xb[(bi * t + ti) * i..(bi * t + ti + 1) * i]
                    .copy_from_slice(&v.x.data[(ti * b + bi) * i..(ti * b + bi + 1) * i]);
            }
        }
        let data = Dataset::new(
            Inputs::features(xb, b, t, i).unwrap(),
            None,
            v.lengths.clone(),
        )
        .with_states(v.h0.clone(), v.c0.clone());
        let (_, finals) = model.forward_states(&data).unwrap();
        // The model's own stack output (time-major, before its head).
        let cache = recurrent::cpu::forward_stack(
            model.config(),
            model.layout(),
            model.params(),
            &data.x,
            data.lengths.as_deref(),
            &data.cpu_states(),
            None,
        );
        let f = op
            .forward(p, &v.x, v.lengths.as_deref(), Some(&v.h0), v.c0.as_ref())
            .unwrap();
        assert_eq!(
            f.y.data,
            cache.inputs[op.config().layers],
            "{:?}: y",
            op.config().cell
        );
        assert_eq!(Some(f.h_n.data), finals.h, "{:?}: h_n", op.config().cell);
        assert_eq!(
            f.c_n.map(|c| c.data),
            finals.c,
            "{:?}: c_n",
            op.config().cell
        );
    }
}

#[test]
fn cpu_op_gradients_pass_central_differences() {
    let eps = 1e-2f32;
    for op in stacks() {
        let p = op.init(2);
        let v = io(&op, 5, 3, true, 3);
        let f = op
            .forward(&p, &v.x, v.lengths.as_deref(), Some(&v.h0), v.c0.as_ref())
            .unwrap();
        let g = op
            .backward(&p, &f, &v.dy, Some(&v.dh_n), v.dc_n.as_ref())
            .unwrap();
        let mut rng = Rng::new(9);
        let (mut ana, mut num) = (Vec::new(), Vec::new());
        let central = |lp: f64, lm: f64| ((lp - lm) / (2.0 * eps as f64)) as f32;
        for _ in 0..24 {
            let k = rng.below(p.len());
            let (mut a, mut b) = (p.clone(), p.clone());
            a[k] += eps;
            b[k] -= eps;
            num.push(central(
                probe(&op, &a, &v, &v.x, &v.h0, v.c0.as_ref()),
                probe(&op, &b, &v, &v.x, &v.h0, v.c0.as_ref()),
            ));
            ana.push(g.dparams[k]);
        }
        for _ in 0..12 {
            let k = rng.below(v.x.len());
            let (mut a, mut b) = (v.x.clone(), v.x.clone());
            a.data[k] += eps;
            b.data[k] -= eps;
            num.push(central(
                probe(&op, &p, &v, &a, &v.h0, v.c0.as_ref()),
                probe(&op, &p, &v, &b, &v.h0, v.c0.as_ref()),
            ));
            ana.push(g.dx.data[k]);
        }
        for _ in 0..12 {
            let k = rng.below(v.h0.len());
            let (mut a, mut b) = (v.h0.clone(), v.h0.clone());
            a.data[k] += eps;
            b.data[k] -= eps;
            num.push(central(
                probe(&op, &p, &v, &v.x, &a, v.c0.as_ref()),
                probe(&op, &p, &v, &v.x, &b, v.c0.as_ref()),
            ));
            ana.push(g.dh0.data[k]);
            if let Some(c0) = &v.c0 {
                let (mut a, mut b) = (c0.clone(), c0.clone());
                a.data[k] += eps;
                b.data[k] -= eps;
                num.push(central(
                    probe(&op, &p, &v, &v.x, &v.h0, Some(&a)),
                    probe(&op, &p, &v, &v.x, &v.h0, Some(&b)),
                ));
                ana.push(g.dc0.as_ref().unwrap().data[k]);
            }
        }
        assert!(
            ana.iter().any(|g| g.abs() > 1e-2),
            "gradients near zero prove nothing"
        );
        assert_close(
            &format!("{:?} op gradients", op.config()),
            &ana,
            &num,
            GRADCHECK,
        );
    }
}

#[test]
fn the_gpu_op_matches_the_cpu_op() {
    let Some(ctx) = gpu("the_gpu_op_matches_the_cpu_op") else {
        return;
    };
    for op in stacks() {
        for lengths in [false, true] {
            let p = op.init(5);
            let v = io(&op, 7, 4, lengths, 6);
            let label = format!("{:?} lengths={lengths}", op.config());
            let f = op
                .forward(&p, &v.x, v.lengths.as_deref(), Some(&v.h0), v.c0.as_ref())
                .unwrap();
            let g = op
                .backward(&p, &f, &v.dy, Some(&v.dh_n), v.dc_n.as_ref())
                .unwrap();
            let mut gs = GpuStack::new(ctx.clone(), &op, &p).unwrap();
            let (y, h_n, c_n, handle) = gs
                .forward(&v.x, v.lengths.as_deref(), Some(&v.h0), v.c0.as_ref())
                .unwrap();
            assert_close(&format!("{label} y"), &y.data, &f.y.data, FORWARD);
            assert_close(&format!("{label} h_n"), &h_n.data, &f.h_n.data, FORWARD);
            if let Some(c) = &f.c_n {
                assert_close(
                    &format!("{label} c_n"),
                    &c_n.unwrap().data,
                    &c.data,
                    FORWARD,
                );
            }
            let gg = gs
                .backward(handle, &v.dy, Some(&v.dh_n), v.dc_n.as_ref())
                .unwrap();
            assert_close(&format!("{label} dx"), &gg.dx.data, &g.dx.data, GRADIENTS);
            assert_close(
                &format!("{label} dh0"),
                &gg.dh0.data,
                &g.dh0.data,
                GRADIENTS,
            );
            if let Some(c) = &g.dc0 {
                assert_close(
                    &format!("{label} dc0"),
                    &gg.dc0.unwrap().data,
                    &c.data,
                    GRADIENTS,
                );
            }
            assert_close(
                &format!("{label} dparams"),
                &gg.dparams,
                &g.dparams,
                GRADIENTS,
            );
        }
    }
}

/// The buffer API: the application's buffers (inputs and outputs packed into
/// two buffers at offsets), its own encoder and submission.
#[test]
fn the_gpu_op_records_into_the_applications_encoder_on_its_buffers() {
    let Some(ctx) = gpu("the_gpu_op_records_into_the_applications_encoder_on_its_buffers") else {
        return;
    };
    let op = RecurrentStack::new(Cell::Lstm, 3, 5).layers(2);
    let p = op.init(8);
    let (t, b) = (6, 3);
    let v = io(&op, t, b, false, 2);
    let f = op
        .forward(&p, &v.x, None, Some(&v.h0), v.c0.as_ref())
        .unwrap();
    let g = op
        .backward(&p, &f, &v.dy, Some(&v.dh_n), v.dc_n.as_ref())
        .unwrap();
    let mut gs = GpuStack::new(ctx.clone(), &op, &p).unwrap();
    // Inputs at byte offsets 256, then packed: x | h0 | c0 | dy | dh_n | dc_n.
    let parts = [
        &v.x,
        &v.h0,
        v.c0.as_ref().unwrap(),
        &v.dy,
        &v.dh_n,
        v.dc_n.as_ref().unwrap(),
    ];
    let mut at = vec![];
    let mut host = vec![0.0f32; 64];
    for t in parts {
        at.push((host.len() * 4) as u64);
        host.extend_from_slice(&t.data);
    }
    let inputs = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app.inputs"),
        size: (host.len() * 4) as u64,
        usage: wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    ctx.queue
        .write_buffer(&inputs, 0, bytemuck::cast_slice(&host));
    // Outputs: y | h_n | c_n | dx | dh0 | dc0, from byte 128.
    let sizes = [
        f.y.len(),
        v.h0.len(),
        v.h0.len(),
        v.x.len(),
        v.h0.len(),
        v.h0.len(),
    ];
    let mut out_at = vec![];
    let mut n = 32usize;
    for s in sizes {
        out_at.push((n * 4) as u64);
        n += s;
    }
    let outputs = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app.outputs"),
        size: (n * 4) as u64,
        usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let s = |buf, off| BufferSlice::new(buf, off);
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    let handle = gs
        .record_forward(
            &mut enc,
            t,
            b,
            None,
            StackInputs {
                x: s(&inputs, at[0]),
                h0: Some(s(&inputs, at[1])),
                c0: Some(s(&inputs, at[2])),
            },
            StackOutputs {
                y: s(&outputs, out_at[0]),
                h_n: Some(s(&outputs, out_at[1])),
                c_n: Some(s(&outputs, out_at[2])),
            },
        )
        .unwrap();
    gs.record_backward(
        &mut enc,
        handle,
        StackBackward {
            dy: s(&inputs, at[3]),
            dh_n: Some(s(&inputs, at[4])),
            dc_n: Some(s(&inputs, at[5])),
            dx: Some(s(&outputs, out_at[3])),
            dh0: Some(s(&outputs, out_at[4])),
            dc0: Some(s(&outputs, out_at[5])),
        },
    )
    .unwrap();
    ctx.queue.submit([enc.finish()]);
    let got = read_all(&ctx, &outputs, n);
    let part = |k: usize| &got[out_at[k] as usize / 4..out_at[k] as usize / 4 + sizes[k]];
    assert_close("app y", part(0), &f.y.data, FORWARD);
    assert_close("app h_n", part(1), &f.h_n.data, FORWARD);
    assert_close("app c_n", part(2), &f.c_n.as_ref().unwrap().data, FORWARD);
    assert_close("app dx", part(3), &g.dx.data, GRADIENTS);
    assert_close("app dh0", part(4), &g.dh0.data, GRADIENTS);
    assert_close("app dc0", part(5), &g.dc0.as_ref().unwrap().data, GRADIENTS);
    assert_close(
        "app dparams",
        &gs.param_grads().unwrap(),
        &g.dparams,
        GRADIENTS,
    );
    assert_eq!(
        &got[..32],
        &[0.0; 32],
        "nothing written before the outputs' offsets"
    );

    // Bad buffers and a stale handle, each refused with what is wrong.
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    let small = StackOutputs {
        y: s(&outputs, (n * 4 - 8) as u64),
        h_n: None,
        c_n: None,
    };
    let ok_in = StackInputs {
        x: s(&inputs, at[0]),
        h0: None,
        c0: None,
    };
    let e = gs
        .record_forward(&mut enc, t, b, None, ok_in, small)
        .unwrap_err()
        .to_string();
    assert!(e.contains("y: needs"), "{e}");
    let odd = StackInputs {
        x: s(&inputs, 6),
        h0: None,
        c0: None,
    };
    let y_ok = StackOutputs {
        y: s(&outputs, out_at[0]),
        h_n: None,
        c_n: None,
    };
    let e = gs
        .record_forward(&mut enc, t, b, None, odd, y_ok)
        .unwrap_err()
        .to_string();
    assert!(e.contains("multiple of 4"), "{e}");
    let e = gs
        .record_forward(&mut enc, t, b, Some(&[1, 9, 2]), ok_in, y_ok)
        .unwrap_err()
        .to_string();
    assert!(e.contains("length"), "{e}");
    let h1 = gs
        .record_forward(&mut enc, t, b, None, ok_in, y_ok)
        .unwrap();
    let _h2 = gs
        .record_forward(&mut enc, t, b, None, ok_in, y_ok)
        .unwrap();
    let bw = StackBackward {
        dy: s(&inputs, at[3]),
        dh_n: None,
        dc_n: None,
        dx: None,
        dh0: None,
        dc0: None,
    };
    let e = gs
        .record_backward(&mut enc, h1, bw)
        .unwrap_err()
        .to_string();
    assert!(e.contains("overwritten"), "{e}");
}

fn read_all(ctx: &recurrent::gpu::GpuContext, buf: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read"),
        size: (n * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(buf, 0, &staging, 0, (n * 4) as u64);
    ctx.queue.submit([enc.finish()]);
    staging.map_async(wgpu::MapMode::Read, .., |r| r.unwrap());
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .unwrap();
    let v = bytemuck::pod_collect_to_vec(&staging.get_mapped_range(..).unwrap());
    v
}

#[test]
fn the_cpu_op_refuses_bad_input() {
    let op = RecurrentStack::new(Cell::Gru, 3, 4);
    let p = op.init(1);
    let x = Tensor::new(vec![5, 2, 3], vec![0.1; 30]);
    let e = |r: recurrent::Result<recurrent::StackForward>| r.err().unwrap().to_string();
    assert!(e(op.forward(&p[1..], &x, None, None, None)).contains("parameters"));
    assert!(e(op.forward(
        &p,
        &Tensor::new(vec![5, 2, 4], vec![0.1; 40]),
        None,
        None,
        None
    ))
    .contains("time-major"));
    let h0 = Tensor::new(vec![1, 2, 4], vec![0.0; 8]);
    assert!(e(op.forward(&p, &x, None, Some(&h0), Some(&h0))).contains("only an LSTM"));
    let bad = Tensor::new(vec![1, 3, 4], vec![0.0; 12]);
    assert!(e(op.forward(&p, &x, None, Some(&bad), None)).contains("h0"));
    let nan = Tensor::new(vec![1, 2, 4], vec![f32::NAN; 8]);
    assert!(
        e(op.forward(&p, &x, None, Some(&nan), None)).contains("NaN")
            || e(op.forward(&p, &x, None, Some(&nan), None)).contains("finite")
    );
    assert!(e(op.forward(&p, &x, Some(&[5, 6]), None, None)).contains("length"));
    let f = op.forward(&p, &x, None, None, None).unwrap();
    let dy = Tensor::new(vec![5, 2, 5], vec![0.0; 50]);
    assert!(op
        .backward(&p, &f, &dy, None, None)
        .unwrap_err()
        .to_string()
        .contains("dy"));
}

/// The composition's gradients (convolution, stack, readout) against
/// central differences of its loss, on `path`.
fn compose_gradcheck(mut path: compose::Path, label: &str) {
    let net = compose::Net::new(6, 2);
    let p = net.init(4);
    let (t, b) = (9, 3);
    let (x, y) = compose::waves(b, t, 1);
    if let compose::Path::Gpu(op) = &mut path {
        op.set_params(&p[..net.stack.num_params()]).unwrap();
    }
    let (_, g) = net.loss_and_grad(&mut path, &p, &x, t, b, &y).unwrap();
    let eps = 1e-2f32;
    let mut rng = Rng::new(3);
    let mut picks: Vec<usize> = (0..30).map(|_| rng.below(p.len())).collect();
    picks.extend(net.stack.num_params()..p.len()); // every non-stack parameter
    let (mut ana, mut num) = (Vec::new(), Vec::new());
    for k in picks {
        let mut loss_at = |v: f32| {
            let mut q = p.clone();
            q[k] += v;
            if let compose::Path::Gpu(op) = &mut path {
                op.set_params(&q[..net.stack.num_params()]).unwrap();
            }
            net.loss_and_grad(&mut path, &q, &x, t, b, &y).unwrap().0 as f64
        };
        let (lp, lm) = (loss_at(eps), loss_at(-eps));
        num.push(((lp - lm) / (2.0 * eps as f64)) as f32);
        ana.push(g[k]);
    }
    assert!(
        ana.iter().any(|g| g.abs() > 1e-3),
        "{label}: gradients near zero prove nothing"
    );
    assert_close(
        &format!("{label} composed gradients"),
        &ana,
        &num,
        GRADCHECK,
    );
}

#[test]
fn the_composed_example_passes_a_gradient_check_on_both_paths() {
    let net = compose::Net::new(6, 2);
    compose_gradcheck(compose::Path::Cpu(net.stack.clone()), "cpu");
    if let Some(ctx) = gpu("the_composed_example_passes_a_gradient_check_on_both_paths") {
        let p = net.init(4);
        let gs = GpuStack::new(ctx.clone(), &net.stack, &p[..net.stack.num_params()]).unwrap();
        compose_gradcheck(compose::Path::Gpu(Box::new(gs)), "gpu");
    }
}

/// The composed example's training loop (as `main` runs it) on `path`:
/// the validation MSE before and after 60 Adam steps.
fn train_composed(net: &compose::Net, mut path: compose::Path) -> (f32, f32) {
    let mut p = net.init(3);
    let ps = net.stack.num_params();
    let mut opt = recurrent::Optimizer::adam(1e-2);
    let (vx, vy) = compose::waves(64, 20, 99);
    let sync = |path: &mut compose::Path, p: &[f32]| {
        if let compose::Path::Gpu(op) = path {
            op.set_params(&p[..ps]).unwrap();
        }
    };
    sync(&mut path, &p);
    let before = net
        .loss_and_grad(&mut path, &p, &vx, 20, 64, &vy)
        .unwrap()
        .0;
    for step in 0..60 {
        let (x, y) = compose::waves(16, 20, step);
        sync(&mut path, &p);
        let (_, g) = net.loss_and_grad(&mut path, &p, &x, 20, 16, &y).unwrap();
        opt.update(&mut p, &g);
    }
    sync(&mut path, &p);
    let after = net
        .loss_and_grad(&mut path, &p, &vx, 20, 64, &vy)
        .unwrap()
        .0;
    (before, after)
}

#[test]
fn the_composed_example_trains_on_both_paths() {
    let net = compose::Net::new(16, 1);
    let (before, after) = train_composed(&net, compose::Path::Cpu(net.stack.clone()));
    assert!(
        after < 0.5 * before,
        "cpu: validation mse {before} -> {after}: it did not learn"
    );
    if let Some(ctx) = gpu("the_composed_example_trains_on_both_paths") {
        let p = net.init(3);
        let gs = GpuStack::new(ctx.clone(), &net.stack, &p[..net.stack.num_params()]).unwrap();
        let (gb, ga) = train_composed(&net, compose::Path::Gpu(Box::new(gs)));
        assert!(
            ga < 0.5 * gb,
            "gpu: validation mse {gb} -> {ga}: it did not learn"
        );
        // The same loop on the same data: the paths stay close.
        assert!(
            (ga - after).abs() <= 1e-2 * after.max(1e-3),
            "gpu {ga} vs cpu {after}"
        );
    }
}

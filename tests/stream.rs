//! Streaming: chunked output equals whole-sequence output, for every cell,
//! 1-3 layers and every chunking (1, 7, T) — bit for bit on the CPU path
//! where the arithmetic is the same (`STREAM_CPU` says where it is not),
//! within the parity tolerance on the GPU — and the errors a stream gives.

mod common;
use common::*;
use recurrent::gpu::{GpuModel, GpuStream};
use recurrent::{Cell, Dataset, Inputs, Loss, OutputMode, Stream, Tensor};

const T: usize = 13;

/// The steps `a..b` of every sequence of `x`.
fn steps(x: &Inputs, a: usize, b: usize) -> Inputs {
    match x {
        Inputs::Features { data, n, t, f } => {
            let mut out = Vec::new();
            for i in 0..*n {
                out.extend_from_slice(&data[(i * t + a) * f..(i * t + b) * f]);
            }
            Inputs::features(out, *n, b - a, *f).unwrap()
        }
        Inputs::Tokens { ids, n, t } => {
            let mut out = Vec::new();
            for i in 0..*n {
                out.extend_from_slice(&ids[i * t + a..i * t + b]);
            }
            Inputs::tokens(out, *n, b - a).unwrap()
        }
    }
}

/// Chunk outputs joined along time (`sequence`), or the last one (`last`).
fn join(outs: &[Tensor], output: OutputMode) -> Vec<f32> {
    match output {
        OutputMode::Last => outs.last().unwrap().data.clone(),
        OutputMode::Sequence => {
            let (n, o) = (outs[0].shape[0], outs[0].shape[2]);
            let mut v = Vec::new();
            for i in 0..n {
                for c in outs {
                    let tc = c.shape[1];
                    v.extend_from_slice(&c.data[i * tc * o..(i + 1) * tc * o]);
                }
            }
            v
        }
    }
}

fn chunkings() -> [usize; 3] {
    [1, 7, T]
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for cell in [Cell::Lstm, Cell::Gru, Cell::Rnn] {
        for layers in 1..=3 {
            for output in [OutputMode::Sequence, OutputMode::Last] {
                v.push(Case {
                    layers,
                    output,
                    steps: T,
                    batch: 3,
                    hidden: 7,
                    ..Case::new(cell)
                });
            }
        }
    }
    v.push(Case {
        vocab: Some(11),
        steps: T,
        output: OutputMode::Sequence,
        ..Case::new(Cell::Lstm)
    });
    v
}

#[test]
fn cpu_chunked_output_is_whole_sequence_output() {
    for case in cases() {
        let model = case.model(3);
        let data = case.data(Loss::Mse, 4);
        let (whole, finals) = model.forward_states(&data).unwrap();
        for chunk in chunkings() {
            let mut s = Stream::new(&model).unwrap();
            let outs: Vec<Tensor> = (0..T)
                .step_by(chunk)
                .map(|a| s.step(steps(&data.x, a, (a + chunk).min(T))).unwrap())
                .collect();
            let label = format!("{} chunks of {chunk}", case.label(Loss::Mse));
            let got = join(&outs, case.output);
            let st = s.states().unwrap();
            if case.cell == Cell::Gru {
                // Its input projection is a GEMM over the chunk's rows: see STREAM_CPU.
                let d = assert_close(&label, &got, &whole.data, STREAM_CPU);
                assert_close(
                    &format!("{label} h_n"),
                    st.h.as_ref().unwrap(),
                    finals.h.as_ref().unwrap(),
                    STREAM_CPU,
                );
                println!("{label}: {d}");
                continue;
            }
            // LSTM and RNN at this size fold the input projection into each
            // step's product: the same arithmetic, the same bits.
            assert_eq!(got.len(), whole.data.len(), "{label}");
            for (i, (g, w)) in got.iter().zip(&whole.data).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{label}: output {i}: {g} vs {w}");
            }
            let st = s.states().unwrap();
            assert_eq!(st.h, finals.h, "{label}: h_n");
            assert_eq!(st.c, finals.c, "{label}: c_n");
        }
    }
}

#[test]
fn gpu_chunked_output_matches_the_whole_sequence() {
    let Some(ctx) = gpu("gpu_chunked_output_matches_the_whole_sequence") else {
        return;
    };
    for case in cases() {
        let model = case.model(3);
        let data = case.data(Loss::Mse, 4);
        let (whole, finals) = model.forward_states(&data).unwrap();
        let mut g = GpuModel::new(ctx.clone(), &model).unwrap();
        for chunk in chunkings() {
            let mut s = GpuStream::new(&mut g).unwrap();
            let outs: Vec<Tensor> = (0..T)
                .step_by(chunk)
                .map(|a| s.step(steps(&data.x, a, (a + chunk).min(T))).unwrap())
                .collect();
            let label = format!("gpu {} chunks of {chunk}", case.label(Loss::Mse));
            assert_close(&label, &join(&outs, case.output), &whole.data, FORWARD);
            let st = s.states().unwrap().unwrap();
            assert_close(
                &format!("{label} h_n"),
                st.h.as_ref().unwrap(),
                finals.h.as_ref().unwrap(),
                FORWARD,
            );
            if let Some(c) = &finals.c {
                assert_close(&format!("{label} c_n"), st.c.as_ref().unwrap(), c, FORWARD);
            }
        }
        // The one-step plan had the streams' states copied into its first
        // slots (every chunk of 1 but the first): a forward without states
        // on it afterwards starts from zeros again.
        let first = Dataset::new(steps(&data.x, 0, 1), None, None);
        let again = g.forward(&first).unwrap();
        let want = model.forward(&first).unwrap();
        assert_close(
            "gpu forward after streaming",
            &again.data,
            &want.data,
            FORWARD,
        );
    }
}

/// After `reset_stream(1)`, stream 1's next outputs are those of a fresh
/// stream; stream 0 goes on (both paths).
#[test]
fn reset_stream_restarts_one_stream_only() {
    let case = Case {
        batch: 2,
        steps: 8,
        output: OutputMode::Sequence,
        ..Case::new(Cell::Lstm)
    };
    let model = case.model(5);
    let data = case.data(Loss::Mse, 6);
    let first = steps(&data.x, 0, 4);
    let second = steps(&data.x, 4, 8);
    // Expected: stream 0 continues over 8 steps; stream 1 sees `second` from zero.
    let whole = model.forward(&data).unwrap();
    let fresh = model
        .forward(&Dataset::new(second.clone(), None, None))
        .unwrap();
    let (o, per) = (case.out, 4 * case.out);
    let check = |label: &str, out: &Tensor| {
        assert_close(
            &format!("{label} stream 0"),
            &out.data[..per],
            &whole.data[per..2 * per],
            FORWARD,
        );
        assert_close(
            &format!("{label} stream 1"),
            &out.data[per..],
            &fresh.data[per..],
            FORWARD,
        );
        assert_eq!(o * 4 * 2, out.data.len());
    };
    let mut s = Stream::new(&model).unwrap();
    s.step(first.clone()).unwrap();
    s.reset_stream(1).unwrap();
    check("cpu", &s.step(second.clone()).unwrap());
    assert!(s
        .reset_stream(2)
        .unwrap_err()
        .to_string()
        .contains("2 streams"));
    if let Some(ctx) = gpu("reset_stream_restarts_one_stream_only") {
        let mut g = GpuModel::new(ctx.clone(), &model).unwrap();
        let mut s = GpuStream::new(&mut g).unwrap();
        s.step(first).unwrap();
        s.reset_stream(1).unwrap();
        check("gpu", &s.step(second).unwrap());
    }
}

#[test]
fn streams_refuse_bad_input_clearly_and_keep_their_states() {
    let case = Case {
        batch: 2,
        steps: 4,
        ..Case::new(Cell::Gru)
    };
    let model = case.model(1);
    let bi = Case {
        bidirectional: true,
        ..case
    }
    .model(1);
    let e = Stream::new(&bi).err().unwrap().to_string();
    assert!(e.contains("bidirectional"), "{e}");
    let x = |n: usize, f: usize, v: f32| Inputs::features(vec![v; n * f], n, 1, f).unwrap();
    let mut s = Stream::new(&model).unwrap();
    s.step(x(2, case.input, 0.5)).unwrap();
    let before = s.states().unwrap().clone();
    let e = s.step(x(3, case.input, 0.5)).unwrap_err().to_string();
    assert!(e.contains("2 streams") && e.contains("reset"), "{e}");
    let e = s.step(x(2, case.input + 1, 0.5)).unwrap_err().to_string();
    assert!(e.contains("input size"), "{e}");
    let e = s.step(x(2, case.input, f32::NAN)).unwrap_err().to_string();
    assert!(e.contains("NaN") || e.contains("finite"), "{e}");
    let after = s.states().unwrap();
    assert_eq!(before.h, after.h, "a refused chunk leaves the states");
    s.reset();
    s.step(x(3, case.input, 0.5)).unwrap();
    assert_eq!(s.streams(), Some(3));

    if let Some(ctx) = gpu("streams_refuse_bad_input_clearly_and_keep_their_states") {
        let mut gbi = GpuModel::new(ctx.clone(), &bi).unwrap();
        assert!(GpuStream::new(&mut gbi).is_err());
        let mut g = GpuModel::new(ctx.clone(), &model).unwrap();
        let mut s = GpuStream::new(&mut g).unwrap();
        s.step(x(2, case.input, 0.5)).unwrap();
        let before = s.states().unwrap().unwrap();
        assert!(s.step(x(3, case.input, 0.5)).is_err());
        assert!(s.step(x(2, case.input + 1, 0.5)).is_err());
        assert!(s.step(x(2, case.input, f32::INFINITY)).is_err());
        assert_eq!(before.h, s.states().unwrap().unwrap().h);
        s.reset();
        s.step(x(3, case.input, 0.5)).unwrap();
        assert_eq!(s.streams(), Some(3));
    }
}

//! GEMMs from modules specialised to their operands
//! (`RECURRENT_GEMM_SPECIALISE=1`, `GpuOptions::specialise_gemms`: their
//! buffers, transposes, bias and beta as constants) compute the same bits as
//! the generic module: every GEMM configuration alone, and whole training
//! runs of plain and sequence-to-sequence models.

mod common;
use common::*;
use recurrent::gpu::internals::GemmBench;
use recurrent::gpu::{
    DevicePreference, GemmConfig, GemmShape, GpuContext, GpuModel, GpuOptions, GpuSeq2Seq,
};
use recurrent::rng::Rng;
use recurrent::{Cell, Loss, Optimizer, OutputMode, StepOptions};
use std::sync::Arc;

/// A context without and one with specialisation, whatever the environment says.
fn contexts() -> (Arc<GpuContext>, Arc<GpuContext>) {
    let with = |specialise_gemms| {
        let options = GpuOptions {
            specialise_gemms,
            ..GpuOptions::from_env().unwrap()
        };
        GpuContext::with_options(DevicePreference::Auto, options).unwrap()
    };
    let (generic, special) = (with(false), with(true));
    assert!(!generic.specialises_gemms() && special.specialises_gemms());
    (generic, special)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn every_gemm_configuration_gives_the_same_bits_specialised() {
    let Some(_turn) = gpu("every_gemm_configuration_gives_the_same_bits_specialised") else {
        return;
    };
    let (generic, special) = contexts();
    let mut configs = Vec::new();
    for tile in [8, 16] {
        for rm in [2, 4, 8] {
            configs.push(GemmConfig::Blocked { tile, rm });
        }
        for splits in [1, 3] {
            configs.push(GemmConfig::Small { tile, splits });
        }
    }
    configs.extend([GemmConfig::Wide { tile: 8 }, GemmConfig::Wide { tile: 16 }]);
    let mut rng = Rng::new(3);
    let mut runs = 0;
    for (m, n, k, a_t, b_t, batch, beta) in [
        (37, 29, 19, false, false, 1, 0.0),
        (70, 33, 130, true, false, 1, 1.0),
        (65, 67, 45, false, true, 2, 0.0),
        (19, 100, 301, true, true, 1, 1.0),
    ] {
        let s = GemmShape {
            m,
            n,
            k,
            a_t,
            b_t,
            batch,
        };
        let z = batch as usize;
        let (m, n, k) = (m as usize, n as usize, k as usize);
        let a: Vec<f32> = (0..z * m * k).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let b: Vec<f32> = (0..z * k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let c: Vec<f32> = (0..z * m * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        for &cfg in &configs {
            if !cfg.valid_for(&s, &generic.limits) {
                continue;
            }
            let mut got = Vec::new();
            for ctx in [&generic, &special] {
                let g = GemmBench::with_config(ctx, s, beta, cfg).unwrap();
                g.write_operands(&a, &b, Some(&c)).unwrap();
                g.run(1).unwrap();
                got.push(bits(&g.read_c().unwrap()));
            }
            assert!(
                got[0] == got[1],
                "{s} beta {beta} with {cfg}: the bits differ"
            );
            runs += 1;
        }
    }
    assert!(runs >= 30, "{runs} configurations ran");
    assert!(special.gemm_modules() > 1, "specialised modules were built");
    assert_eq!(generic.gemm_modules(), 1, "the generic context built one");
}

#[test]
fn training_gives_the_same_bits_with_specialised_gemms() {
    let Some(_turn) = gpu("training_gives_the_same_bits_with_specialised_gemms") else {
        return;
    };
    let (generic, special) = contexts();
    let cases = [
        (
            Case {
                layers: 2,
                bidirectional: true,
                output: OutputMode::Sequence,
                lengths: true,
                ..Case::new(Cell::Lstm)
            },
            Loss::Ce,
        ),
        (
            Case {
                vocab: Some(11),
                hidden: 13,
                ..Case::new(Cell::Gru)
            },
            Loss::Mse,
        ),
        (
            Case {
                relu: true,
                steps: 9,
                ..Case::new(Cell::Rnn)
            },
            Loss::Mse,
        ),
    ];
    for (i, (case, loss)) in cases.iter().enumerate() {
        let model = case.model(60 + i as u64);
        let data = case.data(*loss, 70 + i as u64);
        let opts = StepOptions {
            loss: *loss,
            clip: Some(1.0),
        };
        let mut runs = Vec::new();
        for ctx in [&generic, &special] {
            let mut g = GpuModel::new(ctx.clone(), &model).unwrap();
            let out = bits(&g.forward(&data).unwrap().data);
            let mut opt = Optimizer::adam(1e-2);
            for _ in 0..3 {
                g.train_step(&data, &opts, &mut opt).unwrap();
            }
            let losses: Vec<u32> = g
                .finish()
                .unwrap()
                .iter()
                .map(|s| s.loss.to_bits())
                .collect();
            runs.push((out, losses, bits(&g.download().unwrap())));
        }
        let what = case.label(*loss);
        assert!(
            runs[0] == runs[1],
            "{what}: specialised GEMMs changed the bits"
        );
    }
    // A sequence-to-sequence model: attention's batched GEMMs, the bridge, decoding.
    let c = recurrent::seq2seq::checkpoint::load(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/seq2seq/s2s-lstm-2layer-bidir-general/model.safetensors"),
    )
    .unwrap();
    let data = recurrent::seq2seq::data::load(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/seq2seq/s2s-lstm-2layer-bidir-general/data.safetensors"),
    )
    .unwrap();
    let mut runs = Vec::new();
    for ctx in [&generic, &special] {
        let mut g = GpuSeq2Seq::new(ctx.clone(), &c).unwrap();
        let mut opt = Optimizer::adam(1e-2);
        let losses: Vec<u32> = (0..3)
            .map(|_| g.train_step(&data, &mut opt, Some(1.0)).unwrap().to_bits())
            .collect();
        let tokens = g.greedy(&data.src, 4).unwrap().tokens;
        runs.push((losses, bits(g.download().unwrap().params()), tokens));
    }
    assert!(
        runs[0] == runs[1],
        "seq2seq: specialised GEMMs changed the bits"
    );
}

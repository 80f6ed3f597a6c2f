//! Determinism: the same seed gives the same weights bit for bit, for every
//! cell, bidirectional stacks, variable lengths and embeddings; on the CPU
//! path, and run twice on the GPU path (no float atomics in the kernels).

use crate::bits;
use crate::common::{self, Case};
use recurrent::gpu::GpuModel;
use recurrent::train::{Backend, FitConfig, Trainer};
use recurrent::{Cell, Loss, Model, Optimizer, OutputMode};

fn cases() -> Vec<(Case, Loss)> {
    let mut gru = Case::new(Cell::Gru);
    gru.bidirectional = true;
    gru.lengths = true;
    gru.output = OutputMode::Sequence;
    let mut rnn = Case::new(Cell::Rnn);
    rnn.layers = 2;
    rnn.relu = true;
    let mut lstm = Case::new(Cell::Lstm);
    lstm.layers = 2;
    lstm.bidirectional = true;
    lstm.lengths = true;
    let mut embed = Case::new(Cell::Lstm);
    embed.vocab = Some(11);
    embed.lengths = true;
    for c in [&mut gru, &mut rnn, &mut lstm, &mut embed] {
        c.batch = 12;
    }
    vec![
        (gru, Loss::Ce),
        (rnn, Loss::Mse),
        (lstm, Loss::Ce),
        (embed, Loss::Ce),
    ]
}

/// Two epochs of shuffled batches of 4 with Adam and clipping; the final weights.
fn run<B: Backend>(backend: &mut B, case: &Case, loss: Loss, seed: u64) -> Vec<f32> {
    let data = case.data(loss, 21);
    let cfg = FitConfig {
        epochs: 2,
        batch_size: 4,
        seed,
        loss,
        clip: Some(0.5),
        progress: false,
        ..FitConfig::default()
    };
    Trainer::new(cfg)
        .fit_on(backend, &mut Optimizer::adam(1e-2), &data, None)
        .unwrap();
    let mut m = case.model(1);
    backend.sync_to(&mut m).unwrap();
    m.params().to_vec()
}

#[test]
fn same_seed_same_weights_bit_for_bit_on_the_cpu_for_every_cell() {
    for (case, loss) in cases() {
        let label = case.label(loss);
        let a = run(&mut case.model(1), &case, loss, 7);
        let b = run(&mut case.model(1), &case, loss, 7);
        assert_eq!(bits(&a), bits(&b), "{label}: two runs with seed 7 differ");
        // The seed matters (another shuffle, other weights): the comparison above can fail.
        let c = run(&mut case.model(1), &case, loss, 8);
        assert_ne!(
            bits(&a),
            bits(&c),
            "{label}: seeds 7 and 8 gave the same weights"
        );
    }
}

#[test]
fn same_seed_same_weights_bit_for_bit_on_the_gpu() {
    let Some(ctx) = common::gpu("same_seed_same_weights_bit_for_bit_on_the_gpu") else {
        return;
    };
    // With the f16 copy of W_hh too: its conversion adds no atomics or reductions.
    for f16 in [false, true] {
        for (case, loss) in cases() {
            let label = format!("{}{}", case.label(loss), if f16 { " f16 W_hh" } else { "" });
            let m: Model = case.model(1);
            let gpu = || GpuModel::with_f16_weights(ctx.clone(), &m, f16).unwrap();
            assert_eq!(gpu().f16_weights(), f16, "{label}: the copy's switch");
            let a = run(&mut gpu(), &case, loss, 7);
            let b = run(&mut gpu(), &case, loss, 7);
            let differing = a
                .iter()
                .zip(&b)
                .filter(|(x, y)| x.to_bits() != y.to_bits())
                .count();
            assert_eq!(
                differing,
                0,
                "{label}: {differing} of {} weights differ between two GPU runs on {}",
                a.len(),
                ctx.describe()
            );
        }
    }
}

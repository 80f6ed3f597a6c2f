//! A training set kept on the device (`GpuModel::keep_dataset`, the trainer's
//! `keep_on_device`): each step gathers its rows there, and the fit is the
//! same as with every batch gathered on the host and uploaded, bit for bit —
//! features and token ids, `last` and `sequence` outputs, ce (with ignored
//! positions) and mse, lengths cut to each batch's longest or not, shuffled.

mod common;
use common::*;
use recurrent::gpu::GpuModel;
use recurrent::train::{FitConfig, Trainer};
use recurrent::{Cell, Loss, Optimizer, OutputMode, StepOptions};

/// The cases: (shape, loss).
fn cases() -> Vec<(Case, Loss)> {
    vec![
        (
            Case {
                output: OutputMode::Sequence,
                lengths: true,
                bidirectional: true,
                batch: 11,
                ..Case::new(Cell::Lstm)
            },
            Loss::Mse,
        ),
        (
            Case {
                lengths: true,
                vocab: Some(9),
                batch: 13,
                ..Case::new(Cell::Gru)
            },
            Loss::Ce,
        ),
        (
            Case {
                output: OutputMode::Sequence,
                vocab: Some(7),
                layers: 2,
                batch: 10,
                ..Case::new(Cell::Rnn)
            },
            Loss::Ce,
        ),
        (
            Case {
                batch: 9,
                ..Case::new(Cell::Lstm)
            },
            Loss::Mse,
        ),
        (
            Case {
                output: OutputMode::Sequence,
                lengths: true,
                batch: 12,
                ..Case::new(Cell::Gru)
            },
            Loss::Ce,
        ),
    ]
}

/// Three epochs of Adam in shuffled batches of 4 (the last one short), the
/// set kept on the device or not: the same losses, the same weights.
#[test]
fn a_fit_on_a_kept_set_equals_one_on_uploaded_batches() {
    let Some(ctx) = gpu("a_fit_on_a_kept_set_equals_one_on_uploaded_batches") else {
        return;
    };
    for (case, loss) in cases() {
        let data = case.data(loss, 3);
        for trim in [true, false] {
            let mut runs = Vec::new();
            for keep in [true, false] {
                let mut gpu = GpuModel::new(ctx.ctx.clone(), &case.model(5)).unwrap();
                let cfg = FitConfig {
                    epochs: 3,
                    batch_size: 4,
                    loss,
                    clip: Some(1.0),
                    trim_to_longest: trim,
                    keep_on_device: keep,
                    progress: false,
                    ..FitConfig::default()
                };
                let h = Trainer::new(cfg)
                    .fit_on(&mut gpu, &mut Optimizer::adam(1e-2), &data, None)
                    .unwrap();
                assert_eq!(gpu.kept_len(), None, "the fit let go of the set");
                assert_eq!(gpu.kept_sets, keep as u64, "the fit kept its set: {keep}");
                let losses: Vec<(f32, f32)> = h
                    .epochs
                    .iter()
                    .map(|e| (e.train_loss, e.grad_norm))
                    .collect();
                runs.push((losses, gpu.download().unwrap()));
            }
            let what = format!("{} trim {trim}", case.label(loss));
            assert_eq!(runs[0].0, runs[1].0, "{what}: epoch losses");
            assert_eq!(runs[0].1, runs[1].1, "{what}: weights");
        }
    }
}

/// Steps on rows of a kept set in any order equal steps on those rows
/// gathered on the host; what cannot be kept or stepped on is refused.
#[test]
fn steps_on_kept_rows_equal_steps_on_gathered_batches_and_bad_use_is_refused() {
    let Some(ctx) =
        gpu("steps_on_kept_rows_equal_steps_on_gathered_batches_and_bad_use_is_refused")
    else {
        return;
    };
    let (case, loss) = cases().remove(0);
    let data = case.data(loss, 4);
    let model = case.model(2);
    let opts = StepOptions { loss, clip: None };
    let batches: [&[usize]; 3] = [&[3, 0, 7], &[10, 10, 1, 2], &[5]];
    let mut kept = GpuModel::new(ctx.ctx.clone(), &model).unwrap();
    kept.keep_dataset(&data, loss).unwrap();
    assert_eq!(kept.kept_len(), Some(data.len()));
    let mut host = GpuModel::new(ctx.ctx.clone(), &model).unwrap();
    let (mut ok, mut oh) = (Optimizer::adam(1e-2), Optimizer::adam(1e-2));
    for rows in batches {
        kept.train_step_rows(rows, true, &opts, &mut ok).unwrap();
        let b = data.gather(rows).trim_to_longest();
        host.train_step(&b, &opts, &mut oh).unwrap();
    }
    let (sk, sh) = (kept.finish().unwrap(), host.finish().unwrap());
    assert_eq!(
        sk.iter().map(|s| s.loss).collect::<Vec<_>>(),
        sh.iter().map(|s| s.loss).collect::<Vec<_>>()
    );
    assert_eq!(kept.download().unwrap(), host.download().unwrap());
    // Refused: a row past the set, no rows, another loss's targets, no set,
    // a set with initial states.
    let e = kept
        .train_step_rows(&[0, data.len()], true, &opts, &mut ok)
        .unwrap_err();
    assert!(e.to_string().contains("row"), "{e}");
    assert!(kept.train_step_rows(&[], true, &opts, &mut ok).is_err());
    let too_many: Vec<usize> = (0..data.len() + 1).map(|i| i % data.len()).collect();
    let e = kept
        .train_step_rows(&too_many, true, &opts, &mut ok)
        .unwrap_err();
    assert!(e.to_string().contains("at most"), "{e}");
    // New settings rebuild the plans: the next step gathers into the new ones.
    kept.set_input_gradient(true);
    host.set_input_gradient(true);
    kept.train_step_rows(&[2, 4], true, &opts, &mut ok).unwrap();
    host.train_step(&data.gather(&[2, 4]).trim_to_longest(), &opts, &mut oh)
        .unwrap();
    kept.finish().unwrap();
    host.finish().unwrap();
    assert_eq!(
        kept.download().unwrap(),
        host.download().unwrap(),
        "after a rebuild"
    );
    let ce = StepOptions {
        loss: Loss::Ce,
        clip: None,
    };
    assert!(kept.train_step_rows(&[0], true, &ce, &mut ok).is_err());
    kept.drop_dataset();
    assert!(kept.train_step_rows(&[0], true, &opts, &mut ok).is_err());
    let mut with_states = data.clone();
    with_states.states = Some(recurrent::InitialStates {
        h0: recurrent::Tensor::new(
            vec![2, data.len(), case.hidden],
            vec![0.0; 2 * data.len() * case.hidden],
        ),
        c0: None,
    });
    assert!(kept.keep_dataset(&with_states, loss).is_err());
    assert_eq!(kept.kept_len(), None);
    assert_eq!(ok.step, 4, "refused steps took no step");
}

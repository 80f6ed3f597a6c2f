//! Shaders without wgpu's runtime checks (`RECURRENT_SHADER_CHECKS=unchecked`,
//! `GpuOptions::shader_checks`) compute the same bits as the checked ones:
//! forward outputs, losses and the weights after training, for every cell,
//! stacks, both directions, lengths, embeddings and the f16 weight copy.
//! (wgpu does not say which checks a module was built with, so this shows
//! the results agree, not that the checks are gone: on GL, and possibly on
//! lavapipe, the two builds may be the same.)

mod common;
use common::*;
use recurrent::gpu::{DevicePreference, GpuContext, GpuModel, GpuOptions, ShaderChecks};
use recurrent::{Cell, Loss, Optimizer, OutputMode, StepOptions};

#[test]
fn unchecked_shaders_give_the_same_bits_as_checked_ones() {
    let Some(gpu) = gpu("unchecked_shaders_give_the_same_bits_as_checked_ones") else {
        return;
    };
    // Both contexts made here, whatever RECURRENT_SHADER_CHECKS says (the
    // shared one is held only for the GPU test lock).
    let _turn = gpu;
    let with = |shader_checks| {
        let options = GpuOptions {
            shader_checks,
            ..GpuOptions::from_env().unwrap()
        };
        GpuContext::with_options(DevicePreference::Auto, options).unwrap()
    };
    let (checked, unchecked) = (with(ShaderChecks::Checked), with(ShaderChecks::Unchecked));
    assert_eq!(checked.shader_checks(), ShaderChecks::Checked);
    assert_eq!(unchecked.shader_checks(), ShaderChecks::Unchecked);
    assert_eq!(unchecked.describe(), checked.describe(), "the same adapter");
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
            false,
        ),
        (
            Case {
                vocab: Some(11),
                hidden: 13,
                ..Case::new(Cell::Gru)
            },
            Loss::Ce,
            false,
        ),
        (
            Case {
                relu: true,
                steps: 9,
                ..Case::new(Cell::Rnn)
            },
            Loss::Mse,
            false,
        ),
        (
            Case {
                hidden: 64,
                batch: 16,
                input: 28,
                steps: 12,
                ..Case::new(Cell::Lstm)
            },
            Loss::Mse,
            true,
        ),
    ];
    for (i, (case, loss, f16)) in cases.iter().enumerate() {
        let model = case.model(40 + i as u64);
        let data = case.data(*loss, 50 + i as u64);
        let opts = StepOptions {
            loss: *loss,
            clip: Some(1.0),
        };
        let mut runs = Vec::new();
        for ctx in [&checked, &unchecked] {
            let before = ctx.set_f16_weights(*f16);
            let mut g = GpuModel::new((*ctx).clone(), &model).unwrap();
            ctx.set_f16_weights(before);
            let out = g.forward(&data).unwrap();
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
            let w: Vec<u32> = g.download().unwrap().iter().map(|v| v.to_bits()).collect();
            let out: Vec<u32> = out.data.iter().map(|v| v.to_bits()).collect();
            runs.push((out, losses, w));
        }
        let what = format!("{}{}", case.label(*loss), if *f16 { " f16" } else { "" });
        assert!(runs[0].0 == runs[1].0, "{what}: forward outputs differ");
        assert!(runs[0].1 == runs[1].1, "{what}: losses differ");
        assert!(
            runs[0].2 == runs[1].2,
            "{what}: weights after 3 steps differ"
        );
    }
}

#[test]
fn the_setting_parses_defaults_to_checked_and_refuses_bad_values() {
    assert_eq!(
        ShaderChecks::parse("unchecked").unwrap(),
        ShaderChecks::Unchecked
    );
    assert_eq!(
        ShaderChecks::parse(" Checked ").unwrap(),
        ShaderChecks::Checked
    );
    let e = ShaderChecks::parse("off").unwrap_err().to_string();
    assert!(e.contains("RECURRENT_SHADER_CHECKS='off'"), "{e}");
    assert_eq!(GpuOptions::default().shader_checks, ShaderChecks::Checked);
}

//! The README's library example, as written there (on golden data files, the CPU path
//! unless a hardware GPU is present).

mod common;
use common::golden_dir;

#[test]
fn readme_library_example_runs() -> recurrent::Result<()> {
    use recurrent::train::{FitConfig, Trainer};
    use recurrent::{Cell, Device, DeviceChoice, Init, Loss, Model, ModelConfig, Optimizer};

    let dir = golden_dir().join("lstm-last-ce");
    let train = recurrent::io::dataset::load(dir.join("data.safetensors"))?; // x [N, T, F], y [N]
    let val = recurrent::io::dataset::load(dir.join("data.safetensors"))?;
    let mut model = Model::new(ModelConfig::new(Cell::Lstm, 5, 16, 3), &Init::seed(7))?;
    let mut backend = Device::resolve(DeviceChoice::Auto)?.backend(&model)?;
    let cfg = FitConfig {
        epochs: 3,
        batch_size: 4,
        loss: Loss::Ce,
        clip: Some(1.0),
        ..FitConfig::default()
    };
    let history = Trainer::new(cfg).fit_on(
        &mut *backend,
        &mut Optimizer::adam(1e-3),
        &train,
        Some(&val),
    )?;
    backend.sync_to(&mut model)?; // weights back to the host
    let path = common::temp_dir("readme").join("model.safetensors");
    recurrent::io::checkpoint::save(&model, &path)?; // PyTorch names
    let logits = model.forward(&val)?; // [N, 3]
    assert_eq!(logits.shape, vec![8, 3]);
    assert_eq!(history.epochs.len(), 3);
    Ok(())
}

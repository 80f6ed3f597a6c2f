//! Killed during a save: a process training with a checkpoint every epoch on a
//! data set whose epochs are short and whose model is large (so saves take a
//! good share of the time), SIGKILLed at random moments, again and again, each
//! time resuming from what the previous one left. After every kill the
//! checkpoint must load (old or new, never partial), pair with one of its
//! optimizer-state files (current or previous), its
//! epoch must not go back (nothing lost), and no temporary file may carry the
//! checkpoint's name.

use crate::common::temp_dir;
use recurrent::io::{checkpoint, optim_state};
use recurrent::rng::Rng;
use recurrent::train::fit::CHECKPOINT_TRAIN_KEY;
use recurrent::train::{CheckpointConfig, FitConfig, Trainer};
use recurrent::{Cell, Init, Model, ModelConfig, Optimizer};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KILLS: usize = 12;

/// The child: this test binary run again with `RECURRENT_KILL_DIR` set runs
/// [`kill_child`], a fit that writes a checkpoint every epoch through the same
/// Trainer code as `recurrent train --checkpoint` (spawning the `recurrent`
/// binary itself would depend on the shared target folder, which other builds
/// overwrite). An RNN with 512 units: ~264k parameters, 1 MiB per model save
/// plus 2 MiB of Adam moments; one batch of 4 per epoch, so saves dominate.
fn child(dir: &Path, resume: bool, epochs: usize) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "kill::kill_child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("RECURRENT_KILL_DIR", dir)
    .env("RECURRENT_KILL_RESUME", if resume { "1" } else { "0" })
    .env("RECURRENT_KILL_EPOCHS", epochs.to_string())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c
}

/// Epoch recorded in a checkpoint's training metadata.
fn epoch_of(path: &Path) -> usize {
    let (_, meta) = checkpoint::load_with_metadata(path)
        .unwrap_or_else(|e| panic!("the checkpoint does not load after a kill: {e}"));
    let json: serde_json::Value = serde_json::from_str(&meta[CHECKPOINT_TRAIN_KEY]).unwrap();
    json["epoch"].as_u64().unwrap() as usize
}

#[test]
#[ignore = "the child process of the kill test, which runs it"]
fn kill_child() {
    let Ok(dir) = std::env::var("RECURRENT_KILL_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    let resume = std::env::var("RECURRENT_KILL_RESUME").as_deref() == Ok("1");
    let epochs: usize = std::env::var("RECURRENT_KILL_EPOCHS")
        .unwrap()
        .parse()
        .unwrap();
    let ckpt = dir.join("ckpt.safetensors");
    let data = crate::toy(4, 2, 1);
    let mut model = Model::new(ModelConfig::new(Cell::Rnn, 3, 512, 2), &Init::seed(1)).unwrap();
    let cfg = FitConfig {
        epochs,
        batch_size: 4,
        checkpoint: Some(CheckpointConfig {
            path: ckpt.clone(),
            every: 1,
            best_only: false,
        }),
        resume: resume.then_some(ckpt),
        progress: false,
        ..FitConfig::default()
    };
    Trainer::new(cfg)
        .fit(&mut model, &mut Optimizer::adam(1e-4), &data, None)
        .unwrap();
}

#[test]
fn sigkill_during_saves_leaves_a_loadable_checkpoint_and_loses_nothing() {
    let dir = temp_dir("kill");
    let ckpt = dir.join("ckpt.safetensors");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let mut rng = Rng::new(now.as_nanos() as u64);
    let (mut kills, mut from_previous, mut last_epoch) = (0usize, 0usize, 0usize);
    let (mut leftovers, mut inside_save) = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(60);
    while kills < KILLS && Instant::now() < deadline {
        let resume = ckpt.exists();
        let mut child = child(&dir, resume, 1_000_000).spawn().unwrap();
        // Wait for the first save of this process (or a short while), then kill at a random moment.
        let t0 = Instant::now();
        let before = std::fs::metadata(&ckpt).and_then(|m| m.modified()).ok();
        while std::fs::metadata(&ckpt).and_then(|m| m.modified()).ok() == before
            && t0.elapsed() < Duration::from_secs(10)
        {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                panic!("the child exited by itself ({status}): {err}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_micros(rng.below(300_000) as u64));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;

        assert!(
            ckpt.exists(),
            "kill {kills}: no checkpoint although one was written"
        );
        let epoch = epoch_of(&ckpt);
        assert!(
            epoch >= last_epoch,
            "kill {kills}: the checkpoint went back from epoch {last_epoch} to {epoch}"
        );
        last_epoch = epoch;
        let (_, state) = optim_state::load_pair(&ckpt).unwrap_or_else(|e| {
            panic!("kill {kills}: the checkpoint has no optimizer state that pairs with it: {e}")
        });
        assert_eq!(
            state.epoch, epoch,
            "kill {kills}: sidecar and model disagree on the epoch"
        );
        if state.optimizer.step != epoch as u64 {
            panic!(
                "kill {kills}: optimizer step {} for epoch {epoch} (one step per epoch)",
                state.optimizer.step
            );
        }
        let primary = std::fs::read(optim_state::sidecar_path(&ckpt)).ok();
        let model_bytes = std::fs::read(&ckpt).unwrap();
        if !primary.is_some_and(|b| {
            optim_state::from_bytes(&b, "sidecar", &model_bytes, state.optimizer.m.len()).is_ok()
        }) {
            from_previous += 1;
        }
        // Temporary files are hidden `.NAME.tmp-PID` files, never the checkpoint's or sidecar's name.
        let mut in_save = false;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if name.contains(".tmp-") {
                assert!(
                    name.starts_with('.') && !name.ends_with(".safetensors"),
                    "{name}"
                );
                leftovers += 1;
                in_save = true;
                std::fs::remove_file(dir.join(&name)).unwrap();
            }
        }
        inside_save += in_save as usize;
    }
    assert_eq!(kills, KILLS, "only {kills} kills in 60 s");
    assert!(
        last_epoch >= 2,
        "training did not progress across kills (epoch {last_epoch})"
    );
    // The survivor resumes to the end.
    let out = child(&dir, true, last_epoch + 1).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(epoch_of(&ckpt), last_epoch + 1);
    eprintln!("kill test: {kills} SIGKILLs, last checkpoint epoch {last_epoch}, {from_previous} times the model paired with the previous sidecar (killed between renames), {inside_save} kills inside a save (they left {leftovers} temporary files: hidden, never taken for the checkpoint)");
}

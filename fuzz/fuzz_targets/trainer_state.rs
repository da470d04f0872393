//! Fuzz the trainer files the model card reads: `trainer_state.json` (log history, eval
//! summary, best checkpoint) and `training_args.json`. The first byte picks the file. Never a
//! panic.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use loraforge_model_card::{EvaluationSummary, TrainingArgs};

fn scratch() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder");
        // checkpoints for the best-checkpoint search
        for step in [10, 20] {
            std::fs::create_dir_all(dir.path().join(format!("checkpoint-{step}")))
                .expect("checkpoint folder");
        }
        dir
    });
    dir.path().to_path_buf()
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let dir = scratch();
    if which % 2 == 0 {
        std::fs::write(dir.join("trainer_state.json"), body).expect("scratch write");
        let _ = EvaluationSummary::read(&dir);
    } else {
        std::fs::write(dir.join("training_args.json"), body).expect("scratch write");
        let _ = TrainingArgs::read(&dir);
    }
});

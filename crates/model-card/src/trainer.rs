//! Which adapter of a fine-tuning output folder to use: the one place that knows the layouts a
//! trainer leaves (a PEFT adapter folder, or a trainer output folder with `checkpoint-N/`).

use std::path::{Path, PathBuf};

use crate::error::CardError;
use crate::sources::find_checkpoints;

/// The adapter chosen in a fine-tuning output folder, and where its trainer files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainerFolder {
    /// The folder with `adapter_config.json` and `adapter_model.safetensors`.
    pub adapter_dir: PathBuf,
    /// Where `trainer_state.json`, `training_args.json` and `runs/` describe the training: the
    /// root for the whole run, a checkpoint for the run up to it.
    pub training_dir: PathBuf,
    /// The checkpoint chosen (`None` = the final adapter at the folder's root).
    pub checkpoint: Option<u64>,
}

impl TrainerFolder {
    /// Pick the adapter of `dir`: `checkpoint-{step}` when `checkpoint` is given; else the
    /// adapter at the root when there is one; else the last `checkpoint-N`. The adapter must
    /// have `adapter_config.json` and `adapter_model.safetensors`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # for n in ["checkpoint-10", "checkpoint-20"] {
    /// #     let c = dir.path().join(n);
    /// #     std::fs::create_dir_all(&c).unwrap();
    /// #     std::fs::write(c.join("adapter_config.json"), "{}").unwrap();
    /// #     std::fs::write(c.join("adapter_model.safetensors"), "").unwrap();
    /// # }
    /// use loraforge_model_card::TrainerFolder;
    /// let last = TrainerFolder::select(dir.path(), None)?;
    /// assert_eq!(last.checkpoint, Some(20));
    /// let first = TrainerFolder::select(dir.path(), Some(10))?;
    /// assert!(first.adapter_dir.ends_with("checkpoint-10"));
    /// assert!(TrainerFolder::select(dir.path(), Some(30)).is_err());
    /// # Ok::<(), loraforge_model_card::CardError>(())
    /// ```
    pub fn select(dir: &Path, checkpoint: Option<u64>) -> Result<TrainerFolder, CardError> {
        let has_config = |dir: &Path| dir.join("adapter_config.json").is_file();
        let available = find_checkpoints(dir)?;
        let (adapter_dir, picked) = match checkpoint {
            Some(step) => {
                let Some(found) = available.iter().find(|c| c.step == step) else {
                    return Err(CardError::NoSuchCheckpoint {
                        dir: dir.to_path_buf(),
                        step,
                        available: available.iter().map(|c| c.step).collect(),
                    });
                };
                (found.dir.clone(), Some(step))
            }
            None if has_config(dir) => (dir.to_path_buf(), None),
            None => match available.last() {
                Some(last) => (last.dir.clone(), Some(last.step)),
                None => {
                    return Err(CardError::NotAnAdapterFolder {
                        dir: dir.to_path_buf(),
                    })
                }
            },
        };
        if !has_config(&adapter_dir) {
            return Err(CardError::NoAdapterConfig { dir: adapter_dir });
        }
        if !adapter_dir.join("adapter_model.safetensors").is_file() {
            let pickle_only = adapter_dir.join("adapter_model.bin").is_file();
            return Err(CardError::NoAdapterWeights {
                dir: adapter_dir,
                pickle_only,
            });
        }
        // Trainer files: the root's describe the whole run; a checkpoint's the run up to it.
        let training_dir = match picked {
            Some(_) if dir.join("trainer_state.json").is_file() && checkpoint.is_none() => {
                dir.to_path_buf()
            }
            Some(_) => adapter_dir.clone(),
            None => dir.to_path_buf(),
        };
        Ok(TrainerFolder {
            adapter_dir,
            training_dir,
            checkpoint: picked,
        })
    }
}

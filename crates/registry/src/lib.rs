//! The loraforge store: base, trained, saved and deployed models with their cards, the lifecycle
//! operations between them, and background jobs.
//!
//! # Layout on disk
//!
//! ```text
//! <home>/                      $LORAFORGE_HOME, else ~/.local/share/loraforge
//!   lock                       advisory lock serializing changes
//!   base/<technical-name>/     entry.json, card.json, README.md, template.Modelfile, model/ (when copied)
//!   trained/<name>/            entry.json, card.json, README.md, adapter/, training/
//!   saved/<name>/              entry.json, card.json, README.md, model/ (safetensors, config, tokenizer)
//!   deployed/<name>/           entry.json, card.json, README.md
//!   exports/                   GGUF exports cached by content (<key>.<type>.gguf + .json)
//!   jobs/<id>.json, <id>.log   job records and logs
//!   tmp/                       staging folders; entries are built here and renamed into place
//! ```
//!
//! Every entry is built in `tmp/` and renamed into place whole, its card written last; a crash
//! leaves at most a staging folder, which the next registry operation removes once the process
//! that owned it is gone. Storage goes through the [`Storage`] trait so another backend can be
//! added without touching lifecycle logic.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use loraforge_registry::{BaseAddOptions, Registry};
//! let work = tempfile::tempdir()?;
//! let demo = loraforge_demo::generate(work.path(), &loraforge_demo::DemoSpec::default())?;
//! let registry = Registry::open(&work.path().join("store"))?;
//! registry.add_base(&demo.base_dir, "tiny", &BaseAddOptions::default())?;
//! let trained = registry.add_trained(&demo.trainer_dir, "tiny", "demo run", None)?;
//! assert!(trained.name.starts_with("tiny_demo-run_"));
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod cards;
mod deploy;
mod error;
mod jobs;
mod lock;
mod records;
mod registry;
mod storage;

pub use deploy::{stop_tokens, DeployOptions, DeployedStatus, ExportedGguf};
pub use error::{RegistryError, Result};
pub use jobs::{Job, JobKind, JobProgress, JobState, JOB_DELAY_ENV};
pub use lock::{DEFAULT_LOCK_TIMEOUT, LOCK_TIMEOUT_ENV};
pub use records::{BaseRecord, DeployedRecord, FileRecord, SavedRecord, TrainedRecord};
pub use registry::{error_chain, BaseAddOptions, Registry, HOME_ENV};
pub use storage::{EntryKind, FsStorage, Storage};

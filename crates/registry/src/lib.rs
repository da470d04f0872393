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
//! that owned it is gone.
//!
//! # Modules
//!
//! - `store`: the [`Registry`] type, opening it over a [`Storage`], the lock, crash recovery;
//! - `base`, `trained`, `save`, `export`, `deploy`: one lifecycle stage each;
//! - `jobs`: job records, progress into them, cancel and wait;
//! - `storage`: the [`Storage`] trait, the only way lifecycle code reaches persistent state
//!   (entries, cards, job records, the export cache, the lock); `fs` ([`FsStorage`], the folder
//!   on disk) and `memory` ([`MemoryStorage`], in memory with a local cache, as an object store
//!   would be) implement it;
//! - `records`, `cards`, `error`: `entry.json` records with typed names, model cards, errors.
//!
//! The registry reads no environment variables: the caller passes the store location and
//! [`RegistryOptions`] (the CLI reads `LORAFORGE_HOME` and `LORAFORGE_LOCK_TIMEOUT`).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use loraforge_registry::{BaseAddOptions, MemoryStorage, Registry, RegistryOptions};
//! let work = tempfile::tempdir()?;
//! let demo = loraforge_demo::generate(work.path(), &loraforge_demo::DemoSpec::default())?;
//! let registry = Registry::with_storage(MemoryStorage::new()?, RegistryOptions::default())?;
//! registry.add_base(&demo.base_dir, "tiny", &BaseAddOptions::default())?;
//! let trained = registry.add_trained(&demo.trainer_dir, "tiny", "demo run", None)?;
//! assert!(trained.name.to_string().starts_with("tiny_demo-run_"));
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod base;
mod cards;
mod deploy;
mod error;
mod export;
mod finite;
mod folder_export;
mod fs;
mod hub;
mod jobs;
mod memory;
mod records;
mod save;
mod stamp;
mod storage;
mod store;
mod trained;

pub use base::{BaseAddOptions, TEMPLATE_FILE};
pub use deploy::{DeployOptions, DeployedStatus};
pub use error::{chain_text, RegistryError, Result};
pub use export::ExportedGguf;
pub use folder_export::{FolderExport, SavedExportFormat, TrainedExportOptions};
pub use fs::FsStorage;
pub use hub::{HubPushOptions, HubPushRecord, SavedPushFormat, PUSHES_FILE};
pub use jobs::{Job, JobKind, JobProgress, JobState, UnreadableRecord, QUEUE_GRACE};
pub use memory::MemoryStorage;
pub use records::{BaseRecord, DeployedRecord, FileRecord, SavedRecord, TrainedRecord};
pub use storage::{EntryKind, Storage, StoreLock};
pub use store::{Registry, RegistryOptions, DEFAULT_LOCK_TIMEOUT, ENTRY_FILE};

//! Trained models: registering a PEFT adapter or trainer output folder against a base, listing,
//! removing (adapter files only, or the whole record).

use std::path::Path;

use chrono::Utc;
use loraforge_naming::{TrainName, TrainedName, UuidPrefix};

use crate::cards;
use crate::error::{RegistryError, Result};
use crate::fs::{copy_listed, write_atomic};
use crate::records::TrainedRecord;
use crate::storage::EntryKind;
use crate::store::{fresh_uuid, owner_tag, to_json, Registry, ENTRY_FILE};

/// Files of an adapter folder that a trained entry keeps.
const ADAPTER_FILES: &[&str] = &[
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "README.md",
];

/// Trainer files a trained entry keeps for its card.
const TRAINING_FILES: &[&str] = &[
    "trainer_state.json",
    "training_args.json",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
];

/// The part of a trained entry that [`Registry::remove_trained`] removes.
pub(crate) const ADAPTER_PART: &str = "adapter";

impl Registry {
    /// Register a PEFT adapter folder, or a trainer output folder (`checkpoint-N/` subfolders),
    /// as a trained model of `base`. The name is generated:
    /// `{base}_{train name}_{YYYYMMDD}_{first 4 hex of a fresh UUID}`.
    pub fn add_trained(
        &self,
        path: &Path,
        base: &str,
        train_name: &str,
        checkpoint: Option<u64>,
    ) -> Result<TrainedRecord> {
        let train = TrainName::new(train_name)?;
        let base_record = self.base(base)?;
        let source = path
            .canonicalize()
            .map_err(|source| RegistryError::Unreadable {
                what: "the adapter folder",
                path: path.to_path_buf(),
                source,
            })?;
        let selection = loraforge_model_card::TrainerFolder::select(&source, checkpoint)?;
        // Parse the adapter config now so a broken adapter never enters the store.
        loraforge_adapter_merge::AdapterConfig::load(&selection.adapter_dir).map_err(|error| {
            RegistryError::BadAdapter {
                path: selection.adapter_dir.clone(),
                source: Box::new(error),
            }
        })?;
        // Validate the weights' header (and that the file holds every tensor it lists) now, as
        // `add_base` does: a truncated adapter must be refused here, naming the user's file, not
        // at save time naming the store's copy.
        let weights = selection.adapter_dir.join("adapter_model.safetensors");
        loraforge_hf_model::SafetensorsFile::open(&weights).map_err(|error| {
            RegistryError::BadAdapterWeights {
                path: weights.clone(),
                source: Box::new(error),
            }
        })?;
        let recorded = loraforge_model_card::TrainingDate::find(&selection.training_dir)?;
        let (date, date_source) = match recorded {
            Some(found) => (found.date, found.source),
            None => (Utc::now().date_naive(), "registration".to_string()),
        };
        let base_model_dir = self.base_model_dir(&base_record)?;
        self.in_staging(&owner_tag("add"), |staged| {
            copy_listed(
                &selection.adapter_dir,
                &staged.join(ADAPTER_PART),
                ADAPTER_FILES,
            )?;
            copy_listed(
                &selection.training_dir,
                &staged.join("training"),
                TRAINING_FILES,
            )?;
            let _lock = self.lock()?;
            let existing: Vec<uuid::Uuid> = self.trained_models()?.iter().map(|t| t.uuid).collect();
            let uuid = fresh_uuid(&existing)?;
            let name = TrainedName::new(
                base_record.technical_name.clone(),
                &train,
                date,
                UuidPrefix::of(&uuid),
            )?;
            let record = TrainedRecord {
                name: name.clone(),
                uuid,
                base: base_record.technical_name.clone(),
                train_name: train.clone(),
                date,
                date_source: date_source.clone(),
                source: source.clone(),
                checkpoint: selection.checkpoint,
                adapter_present: true,
                added: Utc::now(),
            };
            let base_card_dir = self
                .storage()
                .local_dir(EntryKind::Base, base_record.technical_name.as_str())?;
            let card =
                cards::trained_card(&record, &base_model_dir, &base_card_dir, &selection, staged)?;
            card.write_to_dir(staged)?;
            write_atomic(&staged.join(ENTRY_FILE), &to_json(&record))?;
            self.storage()
                .publish(staged, EntryKind::Trained, &name.to_string())?;
            Ok(record)
        })
    }

    /// All trained models, sorted by name.
    pub fn trained_models(&self) -> Result<Vec<TrainedRecord>> {
        self.read_all(EntryKind::Trained)
    }

    /// One trained model.
    pub fn trained(&self, name: &str) -> Result<TrainedRecord> {
        self.read_record(EntryKind::Trained, name)
    }

    /// Remove a trained model's adapter files. Its record and card stay (marked removed) so saved
    /// models made from it keep their lineage; those saved models are untouched.
    pub fn remove_trained(&self, name: &str) -> Result<TrainedRecord> {
        let _lock = self.lock()?;
        let mut record = self.trained(name)?;
        self.storage()
            .remove_part(EntryKind::Trained, name, ADAPTER_PART)?;
        record.adapter_present = false;
        self.write_record(EntryKind::Trained, name, &record)?;
        Ok(record)
    }

    /// Forget a trained model entirely (record and card too), after its adapter was removed or now.
    pub fn purge_trained(&self, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        self.trained(name)?;
        self.storage().remove(EntryKind::Trained, name)
    }
}

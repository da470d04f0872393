//! Base models: registering a Hugging Face folder (copied into the store or referenced in
//! place) with an optional deployment template, listing, removing.

use std::path::{Path, PathBuf};

use chrono::Utc;
use loraforge_naming::TechnicalName;

use crate::cards;
use crate::error::{RegistryError, Result};
use crate::fs::{copy_tree, write_atomic};
use crate::records::BaseRecord;
use crate::storage::EntryKind;
use crate::store::{owner_tag, to_json, Registry, ENTRY_FILE};

/// A base model's deployment template (an Ollama Modelfile fragment) in its entry.
pub const TEMPLATE_FILE: &str = "template.Modelfile";

/// How a base model is registered.
#[derive(Debug, Clone, Default)]
pub struct BaseAddOptions {
    /// Copy the folder into the store (else reference it where it is).
    pub copy: bool,
    /// An Ollama Modelfile fragment used when deploying models of this base.
    pub template: Option<PathBuf>,
}

impl Registry {
    /// Register a local Hugging Face model folder under a technical name. The folder's
    /// `config.json` and weight headers are validated, and the template parsed, before anything
    /// is stored.
    pub fn add_base(
        &self,
        path: &Path,
        name: &str,
        options: &BaseAddOptions,
    ) -> Result<BaseRecord> {
        let technical = TechnicalName::new(name)?;
        let source = path
            .canonicalize()
            .map_err(|source| RegistryError::Unreadable {
                what: "the base model folder",
                path: path.to_path_buf(),
                source,
            })?;
        let model = loraforge_hf_model::HfModel::open(&source).map_err(|error| {
            RegistryError::BadBaseModel {
                path: source.clone(),
                source: Box::new(error),
            }
        })?;
        let template = match &options.template {
            Some(file) => Some(read_template(file)?),
            None => None,
        };
        if self.storage().exists(EntryKind::Base, technical.as_str()) {
            return Err(RegistryError::AlreadyExists {
                kind: "base",
                name: technical.to_string(),
            });
        }
        self.in_staging(&owner_tag("add"), |staged| {
            let model_dir = if options.copy {
                copy_tree(&source, &staged.join("model"))?;
                self.storage()
                    .local_dir(EntryKind::Base, technical.as_str())?
                    .join("model")
            } else {
                source.clone()
            };
            let config = model.config();
            let record = BaseRecord {
                technical_name: technical.clone(),
                model_name: config
                    .get("_name_or_path")
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .or_else(|| source.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .unwrap_or_default(),
                model_dir,
                copied: options.copy,
                source: source.clone(),
                architecture: config
                    .get("architectures")
                    .and_then(|a| a.get(0))
                    .and_then(|a| a.as_str())
                    .map(str::to_string),
                has_template: template.is_some(),
                uuid: uuid::Uuid::new_v4(),
                added: Utc::now(),
            };
            if let Some(text) = &template {
                write_atomic(&staged.join(TEMPLATE_FILE), text.as_bytes())?;
            }
            let card = cards::base_card(&record, &source)?;
            card.write_to_dir(staged)?;
            write_atomic(&staged.join(ENTRY_FILE), &to_json(&record))?;
            let _lock = self.lock()?;
            self.storage()
                .publish(staged, EntryKind::Base, technical.as_str())?;
            Ok(record)
        })
    }

    /// All base models, sorted by name.
    pub fn bases(&self) -> Result<Vec<BaseRecord>> {
        self.read_all(EntryKind::Base)
    }

    /// One base model.
    pub fn base(&self, name: &str) -> Result<BaseRecord> {
        self.read_record(EntryKind::Base, name)
    }

    /// The local Hugging Face folder of a base model: the store's copy, or the user's folder.
    pub fn base_model_dir(&self, record: &BaseRecord) -> Result<PathBuf> {
        if record.copied {
            Ok(self
                .storage()
                .local_dir(EntryKind::Base, record.technical_name.as_str())?
                .join("model"))
        } else {
            Ok(record.model_dir.clone())
        }
    }

    /// A base model's deployment template, if it has one.
    pub fn base_template(&self, name: &str) -> Result<Option<String>> {
        let record = self.base(name)?;
        if !record.has_template {
            return Ok(None);
        }
        let bytes = self.storage().read(EntryKind::Base, name, TEMPLATE_FILE)?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Remove a base model; refused while trained models use it unless `force`.
    pub fn remove_base(&self, name: &str, force: bool) -> Result<BaseRecord> {
        let _lock = self.lock()?;
        let record = self.base(name)?;
        let users: Vec<String> = self
            .trained_models()?
            .into_iter()
            .filter(|t| t.base == record.technical_name)
            .map(|t| t.name.to_string())
            .collect();
        if !users.is_empty() && !force {
            return Err(RegistryError::BaseInUse {
                name: name.to_string(),
                users: users.join(", "),
            });
        }
        self.storage().remove(EntryKind::Base, name)?;
        Ok(record)
    }
}

/// Read and parse a deployment template.
fn read_template(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file).map_err(|source| RegistryError::Unreadable {
        what: "the deployment template",
        path: file.to_path_buf(),
        source,
    })?;
    loraforge_ollama_client::Modelfile::parse(&text).map_err(|source| {
        RegistryError::BadTemplate {
            path: file.to_path_buf(),
            source,
        }
    })?;
    Ok(text)
}

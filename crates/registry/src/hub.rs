//! Pushing entries to the Hugging Face Hub: which files go, the README the Hub reads, and the
//! record of each push kept beside the entry (`hub_pushes.json`).
//!
//! - a trained model: the adapter folder as stored (adapter config and weights, the tokenizer
//!   files saved with it) and, when asked, the adapter as a LoRA GGUF
//!   (`{name}.lora-{outtype}.gguf`, what llama.cpp's `--lora` loads);
//! - a saved model: the merged 16-bit folder (`merged_16bit`), the same quantized to
//!   bitsandbytes NF4 on the way (`merged_4bit`), or GGUF exports from the store's cache, one per
//!   quantization, named `{name}.{type}.gguf` (`gguf`).
//!
//! Every push carries `README.md` rendered by [`ModelCard::to_hub_readme`]. Checksums the store
//! recorded are handed to the client, which reuses them and refuses a file that changed since.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use loraforge_hub::{HubClient, PushFile, PushOutcome, PushRequest, RepoId};
use loraforge_model_card::{BaseModelRelation, HubReadme, ModelCard, Stage, README_FILE};
use loraforge_naming::QuantType;
use loraforge_progress::Reporter;
use serde::{Deserialize, Serialize};

use crate::error::{RegistryError, Result};
use crate::records::FileRecord;
use crate::storage::EntryKind;
use crate::store::{owner_tag, to_json, Registry};

/// The file beside an entry's record listing its pushes, oldest first.
pub const PUSHES_FILE: &str = "hub_pushes.json";

/// What `saved push` uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavedPushFormat {
    /// The merged folder as saved (16-bit safetensors, config, tokenizer).
    Merged16bit,
    /// The merged folder quantized to bitsandbytes NF4 (4-bit) while pushing.
    Merged4bit,
    /// GGUF files, one per quantization.
    Gguf(Vec<QuantType>),
}

impl SavedPushFormat {
    /// `merged_16bit`, `merged_4bit`, `gguf`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SavedPushFormat::Merged16bit => "merged_16bit",
            SavedPushFormat::Merged4bit => "merged_4bit",
            SavedPushFormat::Gguf(_) => "gguf",
        }
    }
}

/// Where a push goes.
#[derive(Debug, Clone)]
pub struct HubPushOptions {
    /// The repository (`owner/name`).
    pub repo: RepoId,
    /// The branch.
    pub revision: String,
    /// Create the repository private.
    pub private: bool,
}

/// One push of an entry, as recorded in [`PUSHES_FILE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubPushRecord {
    /// The Hub endpoint.
    pub endpoint: String,
    /// The repository.
    pub repo: String,
    /// The branch.
    pub revision: String,
    /// The commit the branch pointed at after the push.
    pub commit_id: String,
    /// The commit's URL, when a commit was made.
    pub commit_url: Option<String>,
    /// `adapter`, `merged_16bit`, `merged_4bit`, `gguf`.
    pub format: String,
    /// False when nothing had changed (no commit was made).
    pub committed: bool,
    /// File bytes sent.
    pub bytes_sent: u64,
    /// The files in the repository with their checksums.
    pub files: Vec<FileRecord>,
    /// When.
    pub pushed: DateTime<Utc>,
}

impl Registry {
    /// Pushes a trained model's adapter (and, with `lora_gguf`, its LoRA GGUF in that out type:
    /// `f32`, `f16`, `bf16`, `q8_0`) to the Hub, and records the push on the entry.
    pub async fn push_trained(
        &self,
        name: &str,
        client: &HubClient,
        options: &HubPushOptions,
        lora_gguf: Option<&str>,
        reporter: &dyn Reporter,
    ) -> Result<HubPushRecord> {
        let record = self.trained(name)?;
        if !record.adapter_present {
            return Err(RegistryError::AdapterRemoved {
                name: name.to_string(),
            });
        }
        let dir = self.entry_dir(EntryKind::Trained, name)?;
        let adapter_dir = dir.join("adapter");
        let card = ModelCard::read_from_dir(&dir)?;
        let recorded = recorded_files(&card, Stage::Trained, "adapter/");
        let mut files = folder_files(&adapter_dir, &recorded)?;
        files.retain(|f| f.path_in_repo != README_FILE);

        self.with_staging("push", |staging| async move {
            let mut readme = HubReadme::new(BaseModelRelation::Adapter);
            if let Some(outtype_text) = lora_gguf {
                let target = loraforge_export::ExportTarget::for_outtype(outtype_text)
                    .filter(|t| matches!(t, loraforge_export::ExportTarget::Convert(_)))
                    .ok_or_else(|| RegistryError::BadInput {
                        path: PathBuf::from(outtype_text),
                        problem: "the LoRA GGUF type must be f32, f16, bf16 or q8_0".into(),
                    })?;
                let base = self.base(record.base.as_ref())?;
                let base_dir = self.base_model_dir(&base)?;
                let file = format!("{name}.lora-{}.gguf", outtype_text.to_ascii_lowercase());
                let out = staging.join(&file);
                let report = loraforge_export::convert_lora(
                    &adapter_dir,
                    &base_dir,
                    &out,
                    &loraforge_export::LoraConvertOptions {
                        target,
                        sha256: true,
                    },
                    reporter,
                )
                .map_err(|e| RegistryError::BadInput {
                    path: adapter_dir.clone(),
                    problem: format!(
                        "cannot convert the adapter to a LoRA GGUF: {}",
                        crate::error::chain_text(&e)
                    ),
                })?;
                let mut push = PushFile::new(file, &out);
                if let Some(sha) = report.sha256 {
                    push = push.recorded(report.bytes, sha);
                }
                files.push(push);
                readme.extra_tags.push("gguf".into());
            }
            let readme_path = staging.join(README_FILE);
            write_file(&readme_path, card.to_hub_readme(&readme).as_bytes())?;
            files.push(PushFile::new(README_FILE, &readme_path));
            let plan = PushPlan {
                kind: EntryKind::Trained,
                name,
                format: "adapter",
                files,
                message: format!("Upload trained model {name} with loraforge"),
            };
            self.push_files(plan, client, options, reporter).await
        })
        .await
    }
}

/// What one push sends, for which entry.
struct PushPlan<'a> {
    kind: EntryKind,
    name: &'a str,
    format: &'a str,
    files: Vec<PushFile>,
    message: String,
}

/// The recorded `(path relative to the folder, size, sha256)` of a card step's files under
/// `prefix`.
fn recorded_files(card: &ModelCard, stage: Stage, prefix: &str) -> Vec<(String, u64, String)> {
    card.lineage
        .iter()
        .filter(|s| s.stage == stage)
        .flat_map(|s| &s.files)
        .filter_map(|f| {
            f.path
                .strip_prefix(prefix)
                .map(|p| (p.to_string(), f.size, f.sha256.clone()))
        })
        .collect()
}

/// Every file under `dir` (recursively, sorted), as push files named by their relative path,
/// with the recorded size and checksum when there is one.
fn folder_files(dir: &Path, recorded: &[(String, u64, String)]) -> Result<Vec<PushFile>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let entries =
            std::fs::read_dir(&current).map_err(RegistryError::io("cannot read", &current))?;
        for entry in entries {
            let entry = entry.map_err(RegistryError::io("cannot read", &current))?;
            let path = entry.path();
            let kind = entry
                .file_type()
                .map_err(RegistryError::io("cannot read", &path))?;
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(relative) = path.strip_prefix(dir) else {
                continue;
            };
            let relative = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let mut file = PushFile::new(relative.clone(), &path);
            if let Some((_, size, sha)) = recorded.iter().find(|(p, _, _)| *p == relative) {
                file = file.recorded(*size, sha.clone());
            }
            out.push(file);
        }
    }
    out.sort_by(|a, b| a.path_in_repo.cmp(&b.path_in_repo));
    Ok(out)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(RegistryError::io("cannot write", path))
}

impl Registry {
    /// Pushes a saved model in `format` and records the push on the entry.
    pub async fn push_saved(
        &self,
        name: &str,
        client: &HubClient,
        options: &HubPushOptions,
        format: &SavedPushFormat,
        reporter: &dyn Reporter,
    ) -> Result<HubPushRecord> {
        let record = self.saved(name)?;
        let dir = self.entry_dir(EntryKind::Saved, name)?;
        let model_dir = dir.join("model");
        let card = ModelCard::read_from_dir(&dir)?;
        self.with_staging("push", |staging| async move {
            let (mut files, readme) = match format {
                SavedPushFormat::Merged16bit => {
                    let recorded: Vec<(String, u64, String)> = record
                        .files
                        .iter()
                        .map(|f| (f.path.clone(), f.bytes, f.sha256.clone()))
                        .collect();
                    (
                        folder_files(&model_dir, &recorded)?,
                        HubReadme::new(BaseModelRelation::Finetune),
                    )
                }
                SavedPushFormat::Merged4bit => {
                    let out = staging.join("merged_4bit");
                    loraforge_nf4::quantize_folder(
                        &model_dir,
                        &out,
                        &loraforge_nf4::Nf4Options::default(),
                        reporter,
                    )
                    .map_err(|e| RegistryError::BadInput {
                        path: model_dir.clone(),
                        problem: format!(
                            "cannot quantize to 4-bit NF4: {}",
                            crate::error::chain_text(&e)
                        ),
                    })?;
                    let mut readme = HubReadme::new(BaseModelRelation::Quantized);
                    readme.library_name = Some("transformers".into());
                    readme.extra_tags = vec!["4-bit".into(), "bitsandbytes".into()];
                    (folder_files(&out, &[])?, readme)
                }
                SavedPushFormat::Gguf(quants) => {
                    let mut files = Vec::new();
                    let mut types = Vec::new();
                    for quant in quants {
                        let exported = self.export_gguf(name, *quant, reporter)?;
                        let file = format!("{name}.{}.gguf", exported.file_type);
                        files.push(
                            PushFile::new(file, &exported.path)
                                .recorded(exported.bytes, exported.sha256.clone()),
                        );
                        types.push(*quant);
                    }
                    (files, HubReadme::gguf(&types))
                }
            };
            files.retain(|f| f.path_in_repo != README_FILE);
            let readme_path = staging.join(README_FILE);
            write_file(&readme_path, card.to_hub_readme(&readme).as_bytes())?;
            files.push(PushFile::new(README_FILE, &readme_path));
            let plan = PushPlan {
                kind: EntryKind::Saved,
                name,
                format: format.as_str(),
                files,
                message: format!(
                    "Upload saved model {name} ({}) with loraforge",
                    format.as_str()
                ),
            };
            self.push_files(plan, client, options, reporter).await
        })
        .await
    }

    /// The pushes recorded on an entry, oldest first (none when it was never pushed).
    pub fn hub_pushes(&self, kind: EntryKind, name: &str) -> Result<Vec<HubPushRecord>> {
        self.read_record::<serde_json::Value>(kind, name)?;
        match self.storage().read(kind, name, PUSHES_FILE) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| RegistryError::CorruptRecord {
                    path: PathBuf::from(self.storage().location())
                        .join(kind.as_str())
                        .join(name)
                        .join(PUSHES_FILE),
                    source,
                })
            }
            Err(RegistryError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `work` with a fresh staging folder, removed afterwards whatever happens.
    async fn with_staging<T, F, Fut>(&self, prefix: &str, work: F) -> Result<T>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let owner = owner_tag(prefix);
        let staging = self.storage().stage(&owner)?;
        let result = work(staging).await;
        let _ = self.storage().discard_staged(&owner);
        result
    }

    /// Pushes the plan's files and appends the push to the entry's [`PUSHES_FILE`].
    async fn push_files(
        &self,
        plan: PushPlan<'_>,
        client: &HubClient,
        options: &HubPushOptions,
        reporter: &dyn Reporter,
    ) -> Result<HubPushRecord> {
        let PushPlan {
            kind,
            name,
            format,
            files,
            message,
        } = plan;
        let mut request = PushRequest::new(options.repo.clone(), files);
        request.revision = options.revision.clone();
        request.private = options.private;
        request.commit_message = message;
        let outcome: PushOutcome = client.push(&request, reporter).await?;
        let push = HubPushRecord {
            endpoint: client.endpoint().to_string(),
            repo: outcome.repo.to_string(),
            revision: outcome.revision.clone(),
            commit_id: outcome.commit_id.clone(),
            commit_url: outcome.commit_url.clone(),
            format: format.to_string(),
            committed: outcome.committed,
            bytes_sent: outcome.bytes_sent,
            files: outcome
                .files
                .iter()
                .map(|f| FileRecord {
                    path: f.path.clone(),
                    bytes: f.size,
                    sha256: f.sha256.clone(),
                })
                .collect(),
            pushed: Utc::now(),
        };
        let _lock = self.lock()?;
        let mut pushes = self.hub_pushes(kind, name)?;
        pushes.push(push.clone());
        self.storage()
            .write(kind, name, PUSHES_FILE, &to_json(&pushes))?;
        Ok(push)
    }
}

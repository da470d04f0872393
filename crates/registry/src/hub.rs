//! Pushing entries to the Hugging Face Hub: which files go, the README the Hub reads, and the
//! record of each push kept beside the entry (`hub_pushes.json`).
//!
//! - a trained model: the `lora` folder `trained export` writes (the PEFT files as trained, the
//!   base's tokenizer files) and, with a GGUF type, the LoRA GGUF `adapter.gguf` that
//!   `convert_lora` writes (llama.cpp's `--lora`);
//! - a saved model: the merged 16-bit folder as stored (`merged_16bit`), the same quantized to
//!   bitsandbytes NF4 by `saved export`'s code (`merged_4bit`), or GGUF exports from the store's
//!   cache, one per quantization, named `{saved name}.{type}.gguf` (`gguf`).
//!
//! Every push carries `README.md` rendered by [`ModelCard::to_hub_readme`] with the `## Export`
//! section `saved export` / `trained export` write. Files are prepared in a store staging folder
//! (removed afterwards; a killed run's is removed by the next registry operation). Checksums the
//! store recorded are handed to the client, which reuses them and refuses a file that changed
//! since.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use loraforge_hub::{HubClient, PushFile, PushOutcome, PushRequest, RepoId};
use loraforge_model_card::{BaseModelRelation, HubReadme, ModelCard, Stage, README_FILE};
use loraforge_naming::{QuantType, SavedName};
use loraforge_progress::Reporter;
use serde::{Deserialize, Serialize};

use crate::error::{RegistryError, Result};
use crate::folder_export::{merged_16bit_note, with_export_section};
use crate::fs::write_atomic;
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
    /// Pushes a trained model's `lora` folder (and, with `lora_gguf`, its LoRA GGUF of that
    /// type) to the Hub, and records the push on the entry.
    pub async fn push_trained(
        &self,
        name: &str,
        client: &HubClient,
        options: &HubPushOptions,
        lora_gguf: Option<loraforge_export::ExportTarget>,
        reporter: &dyn Reporter,
    ) -> Result<HubPushRecord> {
        let record = self.trained(name)?;
        let name = record.name.to_string();
        let card = ModelCard::read_from_dir(&self.entry_dir(EntryKind::Trained, &name)?)?;
        let recorded = recorded_files(&card, Stage::Trained, "adapter/");
        let name = name.as_str();
        self.with_staging("push", |staging| async move {
            let folder = staging.join("lora");
            std::fs::create_dir(&folder).map_err(RegistryError::io("cannot create", &folder))?;
            let did = self.fill_trained_folder(name, &folder, lora_gguf, reporter)?;
            let mut readme = HubReadme::new(BaseModelRelation::Adapter);
            if lora_gguf.is_some() {
                readme.extra_tags.push("gguf".into());
            }
            write_atomic(
                &folder.join(README_FILE),
                with_export_section(&card.to_hub_readme(&readme), &did).as_bytes(),
            )?;
            let plan = PushPlan {
                kind: EntryKind::Trained,
                name,
                format: "adapter",
                files: folder_files(&folder, &recorded)?,
                message: format!("Upload trained model {name} with loraforge"),
            };
            self.push_files(plan, client, options, reporter).await
        })
        .await
    }
}

/// `{saved name}.{type}.gguf`: the name of a pushed GGUF, the file type in it as users expect
/// (`no_quantization` keeps the saved dtype, so that file is `….bf16.gguf` or `….f16.gguf`).
pub fn gguf_file_name(saved: &SavedName, file_type: &str) -> String {
    format!("{saved}.{file_type}.gguf")
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
        let name = record.name.to_string();
        let dir = self.entry_dir(EntryKind::Saved, &name)?;
        let model_dir = dir.join("model");
        let card = ModelCard::read_from_dir(&dir)?;
        let name = name.as_str();
        self.with_staging("push", |staging| async move {
            let (mut files, readme, did) = match format {
                SavedPushFormat::Merged16bit => {
                    let recorded: Vec<(String, u64, String)> = record
                        .files
                        .iter()
                        .map(|f| (f.path.clone(), f.bytes, f.sha256.clone()))
                        .collect();
                    (
                        folder_files(&model_dir, &recorded)?,
                        HubReadme::new(BaseModelRelation::Finetune),
                        merged_16bit_note(&record),
                    )
                }
                SavedPushFormat::Merged4bit => {
                    let out = staging.join("merged_4bit");
                    let did = self.write_merged_4bit(name, &out, reporter)?;
                    // merged, like merged_16bit (the weights are not the base's); 4-bit says
                    // the tags and the folder's quantization_config
                    let mut readme = HubReadme::new(BaseModelRelation::Finetune);
                    readme.extra_tags = vec!["4-bit".into(), "bitsandbytes".into()];
                    (folder_files(&out, &[])?, readme, did)
                }
                SavedPushFormat::Gguf(quants) => {
                    let mut files = Vec::new();
                    let mut notes = Vec::new();
                    for quant in quants {
                        let exported = self.export_gguf(name, *quant, reporter)?;
                        let file = gguf_file_name(&record.name, &exported.file_type);
                        notes.push(format!("`{file}` ({quant})"));
                        files.push(
                            PushFile::new(file, &exported.path)
                                .recorded(exported.bytes, exported.sha256.clone()),
                        );
                    }
                    let did = format!(
                        "Exported by loraforge {} on {} as GGUF: {}, written from saved model \
                         `{name}` as loraforge's `saved deploy` exports it. Run one with \
                         `llama-cli -m FILE.gguf`.",
                        env!("CARGO_PKG_VERSION"),
                        Utc::now().format("%Y-%m-%d %H:%M UTC"),
                        notes.join(", "),
                    );
                    (files, HubReadme::gguf(quants), did)
                }
            };
            files.retain(|f| f.path_in_repo != README_FILE);
            let readme_path = staging.join(README_FILE);
            write_atomic(
                &readme_path,
                with_export_section(&card.to_hub_readme(&readme), &did).as_bytes(),
            )?;
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
                    modified_ns: None,
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

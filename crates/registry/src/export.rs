//! Exporting a saved model to GGUF, through the store's export cache (keyed by the saved files'
//! checksums, the output type and the tool version).

use std::path::{Path, PathBuf};
use std::time::Instant;

use loraforge_naming::QuantType;
use loraforge_progress::Reporter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{RegistryError, Result};
use crate::fs::write_atomic;
use crate::records::SavedRecord;
use crate::stamp;
use crate::store::{owner_tag, to_json, Registry};

/// A GGUF export of a saved model, in the store's export cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedGguf {
    /// The GGUF file.
    pub path: PathBuf,
    /// Lowercase hex sha256 of the file (the Ollama blob digest without `sha256:`).
    pub sha256: String,
    /// File size.
    pub bytes: u64,
    /// The cache file's modification time the store set when it recorded `sha256` (see
    /// `FileRecord::modified_ns`): a cache file with this size and time is reused unhashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_ns: Option<u64>,
    /// The GGUF file type written (`f16`, `bf16`, `q8_0`, `q4_K_M`, `q4_K_S`).
    pub file_type: String,
    /// Seconds spent exporting now (0 when the cache had it).
    pub seconds: f64,
    /// True when the cache already had it.
    #[serde(skip)]
    pub reused: bool,
}

/// How to produce a GGUF: the export target, and the name of the result's type (also the
/// cache key's).
pub(crate) struct ExportPlan {
    target: loraforge_export::ExportTarget,
    file_type: String,
}

impl ExportPlan {
    /// The export for a deployment quantization ([`loraforge_export::ExportTarget::for_quant`]).
    pub(crate) fn for_quant(quant: QuantType, saved_dtype: &str) -> ExportPlan {
        let file_type = match quant {
            // no_quantization keeps the saved dtype.
            QuantType::NoQuantization => saved_dtype.to_string(),
            other => other.as_str().to_string(),
        };
        ExportPlan {
            target: loraforge_export::ExportTarget::for_quant(quant),
            file_type,
        }
    }

    /// The F16 GGUF uploaded when Ollama is asked to quantize (`--server-quantize`).
    pub(crate) fn f16_for_server() -> ExportPlan {
        let f16 = loraforge_naming::FileType::F16;
        ExportPlan {
            target: loraforge_export::ExportTarget::Convert(f16),
            file_type: f16.to_string(),
        }
    }
}

impl Registry {
    /// Export a saved model to GGUF with the given quantization, reusing the store's cache when
    /// the same saved files were exported the same way before. The saved files are checked
    /// against the checksums recorded when they were saved.
    pub fn export_gguf(
        &self,
        saved: &str,
        quant: QuantType,
        reporter: &dyn Reporter,
    ) -> Result<ExportedGguf> {
        let record = self.saved(saved)?;
        let plan = ExportPlan::for_quant(quant, &record.dtype);
        self.export(&record, &plan, reporter)
    }

    /// Export `record` (a saved entry, just read) as `plan` says.
    pub(crate) fn export(
        &self,
        record: &SavedRecord,
        plan: &ExportPlan,
        reporter: &dyn Reporter,
    ) -> Result<ExportedGguf> {
        let saved_name = record.name.to_string();
        let saved = saved_name.as_str();
        let saved_dir = self.saved_dir(saved)?;
        let model_dir = saved_dir.join("model");
        check_files(record, &model_dir, Trust::Stamps, reporter)?;
        let file_type = &plan.file_type;
        // The cache key covers the content (file checksums), the recipe and the tool version.
        let mut key = Sha256::new();
        for file in &record.files {
            key.update(file.path.as_bytes());
            key.update(file.sha256.as_bytes());
        }
        key.update(file_type.as_bytes());
        key.update(env!("CARGO_PKG_VERSION").as_bytes());
        let key = hex::encode(key.finalize());
        let gguf_file = format!("{}.{file_type}.gguf", &key[..16]);
        let sidecar_file = format!("{}.{file_type}.json", &key[..16]);
        if let Some(cached) = self.reusable_export(&gguf_file, &sidecar_file, reporter)? {
            return Ok(cached);
        }
        let started = Instant::now();
        let owner = owner_tag("export");
        self.in_staging(&owner, |staging| {
            let card = loraforge_model_card::ModelCard::read_from_dir(&saved_dir)?;
            let options = loraforge_export::ConvertOptions {
                target: plan.target,
                general: general_metadata(&card, saved),
                // Ollama names blobs by SHA-256: hash while writing.
                sha256: true,
                ..Default::default()
            };
            let written = staging.join("model.gguf");
            let converted = loraforge_export::convert(&model_dir, &written, &options, reporter)?;
            let sha256 = match converted.sha256 {
                Some(sha256) => sha256,
                None => loraforge_model_card::sha256_file(&written)?,
            };
            let bytes = std::fs::metadata(&written)
                .map_err(RegistryError::io("cannot read", &written))?
                .len();
            let path = self.storage().cache(&gguf_file, &written)?;
            reporter.checkpoint("export-cached");
            let exported = ExportedGguf {
                modified_ns: stamp::stamp(&path),
                path,
                sha256,
                bytes,
                file_type: file_type.to_string(),
                seconds: started.elapsed().as_secs_f64(),
                reused: false,
            };
            let sidecar = staging.join(&sidecar_file);
            write_atomic(&sidecar, &to_json(&exported))?;
            self.storage().cache(&sidecar_file, &sidecar)?;
            Ok(exported)
        })
        .inspect(|_| {
            let _ = self.storage().discard_staged(&owner);
        })
    }
}

impl Registry {
    /// The cached export `gguf_file`, when its sidecar reads and the file still has the size and
    /// SHA-256 the sidecar recorded; `None` (export again, replacing it) otherwise. A truncated
    /// or altered cache file must never be uploaded: Ollama would refuse it, every time.
    fn reusable_export(
        &self,
        gguf_file: &str,
        sidecar_file: &str,
        reporter: &dyn Reporter,
    ) -> Result<Option<ExportedGguf>> {
        let (Some(path), Some(sidecar)) = (
            self.storage().cached(gguf_file)?,
            self.storage().cached(sidecar_file)?,
        ) else {
            return Ok(None);
        };
        let Some(mut cached) = std::fs::read(&sidecar)
            .ok()
            .and_then(|b| serde_json::from_slice::<ExportedGguf>(&b).ok())
        else {
            reporter.message("the export cache's record is unreadable: exporting again");
            return Ok(None);
        };
        let bytes = std::fs::metadata(&path).map(|m| m.len()).ok();
        if bytes != Some(cached.bytes) {
            reporter.message(&format!(
                "the cached GGUF {} has {} bytes, {} when it was exported: exporting again",
                path.display(),
                bytes.map_or_else(|| "no".to_string(), |b| b.to_string()),
                cached.bytes
            ));
            return Ok(None);
        }
        // Not as the export left it (or unstamped): the upload is named by this digest, so check it.
        if !stamp::unchanged(&path, cached.bytes, cached.modified_ns) {
            reporter.begin("verify cache", None);
            let actual = loraforge_model_card::sha256_file(&path)?;
            reporter.finish();
            if actual != cached.sha256 {
                reporter.message(&format!(
                    "the cached GGUF {} changed since it was exported (sha256 {actual}, recorded \
                     {}): exporting again",
                    path.display(),
                    cached.sha256
                ));
                return Ok(None);
            }
        }
        cached.path = path;
        cached.reused = true;
        cached.seconds = 0.0;
        Ok(Some(cached))
    }
}

/// Whether a file stamped as the save left it is taken to hold the bytes it hashed.
#[derive(Clone, Copy, PartialEq)]
enum Trust {
    Stamps,
    Nothing,
}

/// Checks the files of a saved model against the SHA-256 recorded when it was saved: every file
/// with [`Trust::Nothing`]; with [`Trust::Stamps`], only those written since the save stamped them
/// (or never stamped).
fn check_files(
    record: &SavedRecord,
    model_dir: &Path,
    trust: Trust,
    reporter: &dyn Reporter,
) -> Result<()> {
    let to_hash: Vec<_> = record
        .files
        .iter()
        .filter(|file| {
            trust == Trust::Nothing
                || !stamp::unchanged(&model_dir.join(&file.path), file.bytes, file.modified_ns)
        })
        .collect();
    if to_hash.is_empty() {
        return Ok(());
    }
    reporter.begin("verify", Some(to_hash.iter().map(|f| f.bytes).sum()));
    for file in to_hash {
        let actual = loraforge_model_card::sha256_file(&model_dir.join(&file.path))?;
        if actual != file.sha256 {
            return Err(RegistryError::ChecksumMismatch {
                name: record.name.to_string(),
                file: file.path.clone(),
                recorded: file.sha256.clone(),
                actual,
            });
        }
        reporter.advance(file.bytes);
    }
    reporter.finish();
    Ok(())
}

impl Registry {
    /// Reads every file of a saved model again and checks it against the SHA-256 recorded when
    /// it was saved, whatever its time stamp says (deployments trust files that still carry the
    /// save's stamp; this is the full check). Returns the record when every file matches.
    pub fn verify_saved(&self, name: &str, reporter: &dyn Reporter) -> Result<SavedRecord> {
        let record = self.saved(name)?;
        let model_dir = self.saved_dir(name)?.join("model");
        check_files(&record, &model_dir, Trust::Nothing, reporter)?;
        Ok(record)
    }
}

fn general_metadata(
    card: &loraforge_model_card::ModelCard,
    saved: &str,
) -> loraforge_export::GeneralMetadata {
    loraforge_export::GeneralMetadata {
        name: Some(saved.to_string()),
        finetune: card.train_name.clone(),
        license: card.license.clone(),
        base_models: card
            .adapter
            .as_ref()
            .and_then(|a| a.base_model_name_or_path.clone())
            .map(|name| {
                vec![loraforge_export::BaseModel {
                    name: Some(name),
                    ..Default::default()
                }]
            })
            .unwrap_or_default(),
        ..Default::default()
    }
}

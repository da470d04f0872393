//! Exporting store entries as standalone folders outside the store: a trained model as the
//! PEFT adapter folder (save method `lora`, optionally with its LoRA GGUF), a saved model as
//! `merged_16bit` (its folder) or `merged_4bit` (bitsandbytes NF4). Each is written into a
//! temporary folder beside the output and renamed into place, its README card last.

use std::path::{Path, PathBuf};

use chrono::Utc;
use loraforge_progress::Reporter;

use crate::error::{RegistryError, Result};
use crate::fs::{copy_listed, copy_tree, write_atomic};
use crate::storage::EntryKind;
use crate::store::Registry;
use crate::trained::ADAPTER_PART;

/// The files of a PEFT adapter as `save_pretrained` writes them.
const PEFT_FILES: &[&str] = &["adapter_config.json", "adapter_model.safetensors"];

/// Tokenizer files copied from the base model so the adapter folder is usable on its own.
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
];

/// The README card every exported folder gets.
const README: &str = "README.md";

/// The LoRA GGUF's name in a `lora` folder (llama.cpp `--lora`).
pub(crate) const LORA_GGUF: &str = "adapter.gguf";

/// Options of [`Registry::export_trained`].
#[derive(Debug, Clone, Default)]
pub struct TrainedExportOptions {
    /// Also write the LoRA GGUF (`adapter.gguf`, llama.cpp `--lora`) with this output type.
    pub gguf: Option<loraforge_export::ExportTarget>,
}

/// How [`Registry::export_saved`] writes a saved model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SavedExportFormat {
    /// The saved folder as it is (safetensors in the model dtype).
    Merged16bit,
    /// Quantized to bitsandbytes NF4 with double quantization, as transformers'
    /// `save_pretrained` writes a 4-bit model.
    Merged4bit,
}

impl SavedExportFormat {
    /// The save-method name (`merged_16bit`, `merged_4bit`).
    pub fn as_str(self) -> &'static str {
        match self {
            SavedExportFormat::Merged16bit => "merged_16bit",
            SavedExportFormat::Merged4bit => "merged_4bit",
        }
    }
}

/// What an export to a folder wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FolderExport {
    /// The folder.
    pub out_dir: PathBuf,
    /// The save method (`lora`, `merged_16bit`, `merged_4bit`).
    pub save_method: &'static str,
    /// The files in it, sorted.
    pub files: Vec<String>,
    /// The LoRA GGUF, when asked for.
    pub gguf: Option<PathBuf>,
}

impl Registry {
    /// Write the trained model `name` as the folder PEFT's `save_pretrained` writes
    /// (`adapter_config.json`, `adapter_model.safetensors`), with the base's tokenizer files
    /// and a README card (`base_model_relation: adapter`, `library_name: peft`) saying what
    /// the export did; `options.gguf` adds the LoRA GGUF. `out` must not exist or be empty.
    pub fn export_trained(
        &self,
        name: &str,
        out: &Path,
        options: &TrainedExportOptions,
        reporter: &dyn Reporter,
    ) -> Result<FolderExport> {
        let readme = self.card_readme(EntryKind::Trained, name)?;
        into_new_folder(out, |staged| {
            let did = self.fill_trained_folder(name, staged, options.gguf, reporter)?;
            write_atomic(
                &staged.join(README),
                with_export_section(&readme, &did).as_bytes(),
            )?;
            Ok(options.gguf.map(|_| out.join(LORA_GGUF)))
        })
        .map(|(files, gguf)| FolderExport {
            out_dir: out.to_path_buf(),
            save_method: "lora",
            files,
            gguf,
        })
    }

    /// Fill the empty folder `staged` with everything of trained model `name`'s `lora` folder
    /// but its README: the PEFT files as trained, the base's tokenizer files and, with `gguf`,
    /// the LoRA GGUF ([`LORA_GGUF`]). Returns the text of the README's `## Export` section.
    /// `trained export` and `trained push` both write the folder this way.
    pub(crate) fn fill_trained_folder(
        &self,
        name: &str,
        staged: &Path,
        gguf: Option<loraforge_export::ExportTarget>,
        reporter: &dyn Reporter,
    ) -> Result<String> {
        let record = self.trained(name)?;
        let adapter_dir = self
            .storage()
            .local_dir(EntryKind::Trained, name)?
            .join(ADAPTER_PART);
        if !record.adapter_present || !adapter_dir.is_dir() {
            return Err(RegistryError::AdapterRemoved { name: name.into() });
        }
        let base = self.base(record.base.as_str())?;
        let base_dir = self.base_model_dir(&base)?;
        if !base_dir.is_dir() {
            return Err(RegistryError::BaseFolderGone {
                name: base.technical_name.to_string(),
                path: base_dir,
            });
        }
        copy_listed(&adapter_dir, staged, PEFT_FILES)?;
        copy_listed(&base_dir, staged, TOKENIZER_FILES)?;
        let mut did = format!(
            "Exported by loraforge {} on {} with save method `lora`: the PEFT adapter of \
             trained model `{}` (`adapter_config.json`, `adapter_model.safetensors`, as \
             trained) and the tokenizer files of base model `{}`. Load it over the base model \
             with PEFT (`PeftModel.from_pretrained`); the base is needed at inference.",
            env!("CARGO_PKG_VERSION"),
            Utc::now().format("%Y-%m-%d %H:%M UTC"),
            record.name,
            base.technical_name,
        );
        if let Some(target) = gguf {
            let report = loraforge_export::convert_lora(
                &adapter_dir,
                &base_dir,
                &staged.join(LORA_GGUF),
                &loraforge_export::LoraConvertOptions {
                    target,
                    sha256: false,
                },
                reporter,
            )?;
            did.push_str(&format!(
                "\n\n`{LORA_GGUF}` is the same adapter as a LoRA GGUF ({} tensors, as \
                 llama.cpp's `convert_lora_to_gguf.py` writes it): load it with \
                 `llama-cli -m BASE.gguf --lora {LORA_GGUF}`.",
                report.tensors
            ));
            for warning in &report.warnings {
                did.push_str(&format!("\n\n- note: {warning}"));
            }
        }
        Ok(did)
    }

    /// Write the saved model `name` into the new folder `out` as `format` says, with its README
    /// card saying what the export did. The store's saved model itself stays 16-bit.
    pub fn export_saved(
        &self,
        name: &str,
        format: SavedExportFormat,
        out: &Path,
        reporter: &dyn Reporter,
    ) -> Result<FolderExport> {
        let readme = self.card_readme(EntryKind::Saved, name)?;
        into_new_folder(out, |staged| {
            let did = match format {
                SavedExportFormat::Merged16bit => {
                    let record = self.saved(name)?;
                    copy_tree(&self.saved_dir(name)?.join("model"), staged)?;
                    merged_16bit_note(&record)
                }
                SavedExportFormat::Merged4bit => {
                    // quantize_folder wants a folder that does not exist yet
                    std::fs::remove_dir(staged)
                        .map_err(RegistryError::io("cannot prepare", staged))?;
                    self.write_merged_4bit(name, staged, reporter)?
                }
            };
            write_atomic(
                &staged.join(README),
                with_export_section(&readme, &did).as_bytes(),
            )?;
            Ok(None)
        })
        .map(|(files, gguf)| FolderExport {
            out_dir: out.to_path_buf(),
            save_method: format.as_str(),
            files,
            gguf,
        })
    }

    /// Quantize saved model `name` to bitsandbytes NF4 into the new folder `out` (which must
    /// not exist; no README). Returns the text of the README's `## Export` section.
    /// `saved export --format merged_4bit` and `saved push --format merged_4bit` both use it.
    pub(crate) fn write_merged_4bit(
        &self,
        name: &str,
        out: &Path,
        reporter: &dyn Reporter,
    ) -> Result<String> {
        let record = self.saved(name)?;
        let model_dir = self.saved_dir(name)?.join("model");
        let report = loraforge_nf4::quantize_folder(
            &model_dir,
            out,
            &loraforge_nf4::Nf4Options::default(),
            reporter,
        )?;
        Ok(format!(
            "Exported by loraforge {} on {} with save method `merged_4bit`: saved \
             model `{}` quantized to bitsandbytes NF4 with double quantization \
             ({} weights in 4 bits, {} tensors kept in {}), as transformers' \
             `save_pretrained` writes the model loaded with \
             `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=\"nf4\", \
             bnb_4bit_use_double_quant=True)`. Loading it needs bitsandbytes. The \
             saved model in the store stays {}: 4-bit is an export only.",
            env!("CARGO_PKG_VERSION"),
            Utc::now().format("%Y-%m-%d %H:%M UTC"),
            record.name,
            report.quantized,
            report.kept,
            report.dtype.safetensors_name().to_ascii_lowercase(),
            record.dtype
        ))
    }
}

/// The `## Export` text of a `merged_16bit` folder: the saved model as saved.
pub(crate) fn merged_16bit_note(record: &crate::records::SavedRecord) -> String {
    format!(
        "Exported by loraforge {} on {} with save method `merged_16bit`: saved \
         model `{}` as saved ({}).",
        env!("CARGO_PKG_VERSION"),
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        record.name,
        record.dtype
    )
}

impl Registry {
    /// Write the saved model `name` as GGUF files of several types into the new folder `out`,
    /// one file per type named `{name}.{type}.gguf` (`no_quantization`: the saved dtype, e.g.
    /// `{name}.bf16.gguf`), plus the README card. The lossless GGUF comes from the export cache
    /// (made once if needed) and is read once for all the quantized types
    /// ([`loraforge_export::quantize_file_multi`]); each file is the one
    /// [`Registry::export_gguf`] makes for its type. Repeated types are written once.
    pub fn export_saved_gguf(
        &self,
        name: &str,
        quants: &[loraforge_naming::QuantType],
        out: &Path,
        reporter: &dyn Reporter,
    ) -> Result<Vec<crate::ExportedGguf>> {
        use loraforge_naming::QuantType;
        let record = self.saved(name)?;
        let readme = self.card_readme(EntryKind::Saved, name)?;
        let mut unique: Vec<QuantType> = Vec::new();
        for q in quants {
            if !unique.contains(q) {
                unique.push(*q);
            }
        }
        let started = std::time::Instant::now();
        let source = self.export_gguf(name, QuantType::NoQuantization, reporter)?;
        let saved = record.name.to_string();
        into_new_folder(out, |staged| {
            let file_name = |t: &str| format!("{saved}.{t}.gguf");
            let mut outputs = Vec::new();
            let mut written = Vec::new();
            for q in &unique {
                match q.file_type().filter(|t| t.is_quantized()) {
                    Some(t) => outputs.push((staged.join(file_name(t.as_str())), t)),
                    None => {
                        let path = staged.join(file_name(&source.file_type));
                        std::fs::copy(&source.path, &path)
                            .map_err(RegistryError::io("cannot copy into", &path))?;
                        written.push(crate::ExportedGguf {
                            path,
                            modified_ns: None,
                            ..source.clone()
                        });
                    }
                }
            }
            if !outputs.is_empty() {
                let reports = loraforge_export::quantize_file_multi(
                    &source.path,
                    &outputs,
                    &loraforge_export::QuantizeFileOptions::default(),
                    reporter,
                )?;
                for ((path, t), report) in outputs.iter().zip(reports) {
                    written.push(crate::ExportedGguf {
                        path: path.clone(),
                        sha256: report.sha256,
                        bytes: report.output_bytes,
                        file_type: t.as_str().to_string(),
                        seconds: 0.0,
                        reused: false,
                        modified_ns: None,
                    });
                }
            }
            let types: Vec<&str> = written.iter().map(|w| w.file_type.as_str()).collect();
            let did = format!(
                "Exported by loraforge {} on {}: saved model `{name}` as GGUF {} (one file per \
                 type, `{name}.TYPE.gguf`), quantized as llama.cpp's `llama-quantize` does from \
                 the lossless {} GGUF, in one pass.",
                env!("CARGO_PKG_VERSION"),
                Utc::now().format("%Y-%m-%d %H:%M UTC"),
                types.join(", "),
                source.file_type
            );
            write_atomic(
                &staged.join(README),
                with_export_section(&readme, &did).as_bytes(),
            )?;
            Ok(written)
        })
        .map(|(_, written)| {
            let seconds = started.elapsed().as_secs_f64();
            written
                .into_iter()
                .map(|w| crate::ExportedGguf {
                    path: out.join(w.path.file_name().unwrap_or_default()),
                    seconds,
                    ..w
                })
                .collect()
        })
    }
}

/// The card with an `## Export` section before its footer.
pub(crate) fn with_export_section(readme: &str, did: &str) -> String {
    let section = format!("## Export\n\n{did}\n\n");
    match readme.rfind("---\n\n*Generated by") {
        Some(at) => format!("{}{section}{}", &readme[..at], &readme[at..]),
        None => format!("{readme}\n{section}"),
    }
}

/// Refuse an existing non-empty `out`; fill a temporary folder beside it with `write`, then
/// rename it into place. The temporary folder is removed on every path. Returns the files
/// written (sorted) and what `write` returned.
fn into_new_folder<T>(
    out: &Path,
    write: impl FnOnce(&Path) -> Result<T>,
) -> Result<(Vec<String>, T)> {
    // a file, an unreadable folder or a folder with anything in it
    let occupied = out.exists() && std::fs::read_dir(out).map_or(true, |mut d| d.next().is_some());
    if occupied {
        return Err(RegistryError::OutputExists {
            path: out.to_path_buf(),
        });
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".loraforge-export-")
        .tempdir_in(&parent)
        .map_err(RegistryError::io(
            "cannot create a temporary folder in",
            &parent,
        ))?;
    let staged = temp.path().join("out");
    std::fs::create_dir(&staged).map_err(RegistryError::io("cannot create", &staged))?;
    let value = write(&staged)?;
    let mut files: Vec<String> = std::fs::read_dir(&staged)
        .map_err(RegistryError::io("cannot read", &staged))?
        .filter_map(|e| {
            e.ok()
                .and_then(|e| e.file_name().to_str().map(str::to_owned))
        })
        .collect();
    files.sort();
    if out.exists() {
        // an empty folder: replaced by the complete one
        std::fs::remove_dir(out).map_err(RegistryError::io("cannot replace", out))?;
    }
    std::fs::rename(&staged, out).map_err(RegistryError::io("cannot rename into", out))?;
    Ok((files, value))
}

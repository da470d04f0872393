//! Lineage: base → trained → saved → deployed, one typed step per stage, with checksums.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use chrono::{DateTime, Utc};
use loraforge_naming::QuantType;
use loraforge_progress::Reporter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::CardError;

/// A lifecycle stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// A registered base model.
    Base,
    /// A registered PEFT adapter (a trained model).
    Trained,
    /// The adapter merged into its base (a saved model).
    Saved,
    /// A saved model deployed to Ollama.
    Deployed,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Base => "base",
            Stage::Trained => "trained",
            Stage::Saved => "saved",
            Stage::Deployed => "deployed",
        })
    }
}

/// The program that performed a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    /// Program name.
    pub name: String,
    /// Program version.
    pub version: String,
}

impl ToolInfo {
    /// This loraforge.
    pub fn loraforge() -> ToolInfo {
        ToolInfo {
            name: "loraforge".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// One file a step produced or registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChecksum {
    /// Path relative to the entry's folder, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// One step of a model's lineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageStep {
    /// The stage this step created.
    pub stage: Stage,
    /// The entry's name (technical name for a base, generated name otherwise).
    pub name: String,
    /// The entry's full UUID (its 4-hex prefix is in the name).
    pub uuid: Uuid,
    /// When the step completed (UTC).
    pub date: DateTime<Utc>,
    /// What the step did, in a sentence ("merged the adapter into the base in bfloat16").
    pub action: String,
    /// Where the input came from (a path, `checkpoint-200`, an Ollama host …).
    pub source: Option<String>,
    /// The weights' dtype after this step.
    pub dtype: Option<String>,
    /// The quantization (deployed steps).
    pub quantization: Option<QuantType>,
    /// The files the step produced or registered, with checksums.
    pub files: Vec<FileChecksum>,
    /// The program that did it.
    pub tool: ToolInfo,
}

impl LineageStep {
    /// A step done now by this loraforge, with no source, dtype, quantization or files yet.
    pub fn new(
        stage: Stage,
        name: impl Into<String>,
        uuid: Uuid,
        action: impl Into<String>,
    ) -> LineageStep {
        LineageStep {
            stage,
            name: name.into(),
            uuid,
            date: Utc::now(),
            action: action.into(),
            source: None,
            dtype: None,
            quantization: None,
            files: Vec::new(),
            tool: ToolInfo::loraforge(),
        }
    }

    /// Sets the completion time.
    pub fn with_date(mut self, date: DateTime<Utc>) -> LineageStep {
        self.date = date;
        self
    }

    /// Sets where the input came from.
    pub fn with_source(mut self, source: impl Into<String>) -> LineageStep {
        self.source = Some(source.into());
        self
    }

    /// Sets the dtype.
    pub fn with_dtype(mut self, dtype: impl Into<String>) -> LineageStep {
        self.dtype = Some(dtype.into());
        self
    }

    /// Sets the quantization.
    pub fn with_quantization(mut self, quant: QuantType) -> LineageStep {
        self.quantization = Some(quant);
        self
    }

    /// Sets the files.
    pub fn with_files(mut self, files: Vec<FileChecksum>) -> LineageStep {
        self.files = files;
        self
    }
}

const BUFFER: usize = 1 << 20;

/// SHA-256 of a file, lowercase hex, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<String, CardError> {
    Ok(hash_file(path, &loraforge_progress::NoProgress)?.1)
}

fn hash_file(path: &Path, reporter: &dyn Reporter) -> Result<(u64, String), CardError> {
    let io = |source| CardError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUFFER];
    let mut size: u64 = 0;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        let chunk = buf.get(..n).unwrap_or(&[]);
        hasher.update(chunk);
        size = size.saturating_add(n as u64);
        reporter.advance(n as u64);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Checksums of every regular file under `dir` (recursively; symlinks to files are followed,
/// symlinked folders are skipped), sorted by path. Reports phase `"checksum"` in bytes.
pub fn checksum_dir(dir: &Path, reporter: &dyn Reporter) -> Result<Vec<FileChecksum>, CardError> {
    let mut files = Vec::new();
    collect_files(dir, "", &mut files)?;
    files.sort();
    let total = files.iter().map(|(_, size)| *size).sum();
    reporter.begin("checksum", Some(total));
    let mut out = Vec::with_capacity(files.len());
    for (rel, _) in files {
        let (size, sha256) = hash_file(&dir.join(&rel), reporter)?;
        out.push(FileChecksum {
            path: rel,
            size,
            sha256,
        });
    }
    reporter.finish();
    Ok(out)
}

/// Checksums of the named files (paths relative to `dir`), in the given order.
pub fn checksum_files(dir: &Path, files: &[&str]) -> Result<Vec<FileChecksum>, CardError> {
    files
        .iter()
        .map(|rel| {
            let (size, sha256) = hash_file(&dir.join(rel), &loraforge_progress::NoProgress)?;
            Ok(FileChecksum {
                path: rel.replace('\\', "/"),
                size,
                sha256,
            })
        })
        .collect()
}

fn collect_files(dir: &Path, prefix: &str, out: &mut Vec<(String, u64)>) -> Result<(), CardError> {
    let io = |source| CardError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(|source| CardError::Io {
            path: path.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let is_link = entry.file_type().map_err(io)?.is_symlink();
        if meta.is_dir() {
            // Symlinked folders are not entered: a link to an ancestor would never end.
            if !is_link {
                collect_files(&path, &rel, out)?;
            }
        } else if meta.is_file() {
            out.push((rel, meta.len()));
        }
    }
    Ok(())
}

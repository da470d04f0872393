//! One push: files on disk → one commit on a branch, the way huggingface_hub's `create_commit`
//! does it without Xet.
//!
//! 1. check the paths and sizes (a recorded size or SHA-256 that no longer matches refuses the
//!    push before anything is sent);
//! 2. create the repository (`409` = it exists);
//! 3. validate `README.md`'s metadata with the Hub when one is pushed;
//! 4. preupload: which files go through LFS, and the oid of what the branch holds at each path;
//!    a file whose oid matches is unchanged and left out;
//! 5. LFS batch for the changed LFS files (once per distinct oid): objects the Hub stores already
//!    are not sent again, so a push interrupted after some uploads resumes where it stopped;
//!    the others are uploaded (single PUT, or multipart when the answer has `chunk_size`) and
//!    verified;
//! 6. one commit with the changed files; with nothing changed there is no commit and the outcome
//!    names the commit the branch already points at.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use loraforge_progress::Reporter;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::client::{BatchAnswer, CommitOperation, HubClient, PreuploadFile};
use crate::endpoint::{validate_path_in_repo, RepoId};
use crate::HubError;

/// The Hub's limit for one file (50 GB).
pub const MAX_FILE_SIZE: u64 = 50_000_000_000;
/// Regular (non-LFS) files are read into memory for the commit; the Hub sends files over
/// 10 MB through LFS, so a larger "regular" answer is refused as a protocol error.
const MAX_REGULAR_SIZE: u64 = 64 << 20;
/// How many bytes of each file preupload sees.
const SAMPLE_SIZE: usize = 512;
/// The default commit message, as huggingface_hub's `upload_folder`.
pub const DEFAULT_COMMIT_MESSAGE: &str = "Upload folder using loraforge";

/// One file to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushFile {
    /// Its path in the repository (`/`-separated, relative).
    pub path_in_repo: String,
    /// Where it is on disk.
    pub local: PathBuf,
    /// Its SHA-256 as recorded earlier (hex); reused instead of hashing the file again, and
    /// checked against the bytes that are sent.
    pub sha256: Option<String>,
    /// Its size as recorded earlier; a file of another size is refused.
    pub size: Option<u64>,
}

impl PushFile {
    /// A file with nothing recorded about it.
    pub fn new(path_in_repo: impl Into<String>, local: impl Into<PathBuf>) -> PushFile {
        PushFile {
            path_in_repo: path_in_repo.into(),
            local: local.into(),
            sha256: None,
            size: None,
        }
    }

    /// Adds the recorded size and SHA-256.
    pub fn recorded(mut self, size: u64, sha256: impl Into<String>) -> PushFile {
        self.size = Some(size);
        self.sha256 = Some(sha256.into());
        self
    }
}

/// What to push where.
#[derive(Debug, Clone)]
pub struct PushRequest {
    /// The repository.
    pub repo: RepoId,
    /// The branch (huggingface_hub's default `main`).
    pub revision: String,
    /// Create the repository private (an existing repository keeps its visibility).
    pub private: bool,
    /// The commit's summary line.
    pub commit_message: String,
    /// The commit's description.
    pub commit_description: String,
    /// The files.
    pub files: Vec<PushFile>,
}

impl PushRequest {
    /// A push of `files` to `repo` on `main`, public, with the default message.
    pub fn new(repo: RepoId, files: Vec<PushFile>) -> PushRequest {
        PushRequest {
            repo,
            revision: "main".to_owned(),
            private: false,
            commit_message: DEFAULT_COMMIT_MESSAGE.to_owned(),
            commit_description: String::new(),
            files,
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transfer {
    /// Its bytes were sent (an LFS upload, or inline in the commit).
    Sent,
    /// An LFS object the Hub already stored (from another path, repository or an earlier
    /// interrupted push): committed without sending its bytes.
    AlreadyStored,
    /// The branch already holds this content at this path: left out of the commit.
    Unchanged,
    /// The repository's `.gitignore` excludes it: left out.
    Ignored,
}

/// One pushed file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PushedFile {
    /// Path in the repository.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// True when stored through LFS.
    pub lfs: bool,
    /// What happened to it.
    pub transfer: Transfer,
}

/// The result of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The repository.
    pub repo: RepoId,
    /// The branch.
    pub revision: String,
    /// The commit the branch points at after the push.
    pub commit_id: String,
    /// The new commit's URL, when one was made.
    pub commit_url: Option<String>,
    /// True when a commit was made (false when nothing had changed).
    pub committed: bool,
    /// True when the repository was created by this push.
    pub created_repo: bool,
    /// File bytes sent (LFS uploads plus inline files).
    pub bytes_sent: u64,
    /// The files, in request order.
    pub files: Vec<PushedFile>,
}

/// A file once checked and hashed.
struct Prepared {
    path: String,
    local: PathBuf,
    size: u64,
    sample: Vec<u8>,
    sha256: Option<String>,
}

impl HubClient {
    /// Pushes `request.files` to `request.repo` as one commit (see the module docs). Progress:
    /// phases `hash <file>` and `upload <file>` in bytes.
    pub async fn push(
        &self,
        request: &PushRequest,
        reporter: &dyn Reporter,
    ) -> Result<PushOutcome, HubError> {
        let repo = &request.repo;
        let revision = request.revision.as_str();
        let mut files = prepare(&request.files, self.options().max_file_size)?;

        let created_repo = self.create_repo(repo, request.private).await?;
        if let Some(readme) = files.iter().find(|f| f.path == "README.md") {
            let text = std::fs::read_to_string(&readme.local).map_err(|source| HubError::Io {
                path: readme.local.clone(),
                source,
            })?;
            self.validate_readme(&text).await?;
        }

        let samples: Vec<PreuploadFile<'_>> = files
            .iter()
            .map(|f| PreuploadFile {
                path: &f.path,
                sample: &f.sample,
                size: f.size,
            })
            .collect();
        let modes = self.preupload(repo, revision, &samples).await?;
        let mode_of = |path: &str| modes.iter().find(|m| m.path == path);

        let mut pushed = Vec::with_capacity(files.len());
        let mut operations = Vec::new();
        let mut bytes_sent = 0;
        // Changed LFS files: oid → (size, first file with it).
        let mut lfs_objects: BTreeMap<String, (u64, usize)> = BTreeMap::new();
        for (index, file) in files.iter_mut().enumerate() {
            let mode = mode_of(&file.path).ok_or_else(|| HubError::Protocol {
                operation: format!("preupload to {repo}@{revision}"),
                message: format!("no answer for {}", file.path),
            })?;
            // Empty files cannot go through LFS (huggingface_hub sends them as regular files).
            let lfs = mode.lfs && file.size > 0;
            let (sha256, content, local_oid) = if lfs {
                let sha = match &file.sha256 {
                    Some(sha) => sha.clone(),
                    None => hash_file(&file.local, file.size, reporter)?,
                };
                (sha.clone(), None, sha)
            } else {
                let content = read_regular(file)?;
                let sha = hex::encode(Sha256::digest(&content));
                if let Some(expected) = &file.sha256 {
                    if *expected != sha {
                        return Err(HubError::FileChanged {
                            path: file.local.clone(),
                            expected: format!("sha256 {expected}"),
                            actual: format!("sha256 {sha}"),
                        });
                    }
                }
                let oid = git_blob_oid(&content);
                (sha, Some(content), oid)
            };
            file.sha256 = Some(sha256.clone());
            let transfer = if mode.should_ignore {
                Transfer::Ignored
            } else if mode.remote_oid.as_deref() == Some(local_oid.as_str()) {
                Transfer::Unchanged
            } else if let Some(content) = content {
                bytes_sent += file.size;
                operations.push(CommitOperation::Regular {
                    path: file.path.clone(),
                    content,
                });
                Transfer::Sent
            } else {
                lfs_objects
                    .entry(sha256.clone())
                    .or_insert((file.size, index));
                operations.push(CommitOperation::Lfs {
                    path: file.path.clone(),
                    oid: sha256.clone(),
                    size: file.size,
                });
                Transfer::AlreadyStored
            };
            pushed.push(PushedFile {
                path: file.path.clone(),
                size: file.size,
                sha256,
                lfs,
                transfer,
            });
        }

        let objects: Vec<(String, u64)> = lfs_objects
            .iter()
            .map(|(oid, (size, _))| (oid.clone(), *size))
            .collect();
        let answers = if objects.is_empty() {
            Vec::new()
        } else {
            self.lfs_batch(repo, revision, &objects).await?
        };
        for ((oid, size), answer) in objects.iter().zip(answers) {
            let index = lfs_objects[oid].1;
            let file = &files[index];
            match answer {
                BatchAnswer::Stored => {}
                BatchAnswer::Error { code, message } => {
                    return Err(HubError::LfsObject {
                        path: file.path.clone(),
                        code,
                        message,
                    })
                }
                BatchAnswer::Upload { upload, verify } => {
                    bytes_sent += if upload.header.contains_key("chunk_size") {
                        self.upload_multipart(&file.local, &upload, oid, *size, reporter)
                            .await?
                    } else {
                        self.upload_single(&file.local, &upload.href, oid, *size, reporter)
                            .await?
                    };
                    if let Some(verify) = verify {
                        self.verify(&verify, oid, *size).await?;
                    }
                    pushed[index].transfer = Transfer::Sent;
                }
            }
        }

        if operations.is_empty() {
            let commit_id = self.revision_sha(repo, revision).await?;
            return Ok(PushOutcome {
                repo: repo.clone(),
                revision: revision.to_owned(),
                commit_id,
                commit_url: None,
                committed: false,
                created_repo,
                bytes_sent,
                files: pushed,
            });
        }
        let info = self
            .commit(
                repo,
                revision,
                &request.commit_message,
                &request.commit_description,
                &operations,
            )
            .await?;
        Ok(PushOutcome {
            repo: repo.clone(),
            revision: revision.to_owned(),
            commit_id: info.commit_oid,
            commit_url: info.commit_url,
            committed: true,
            created_repo,
            bytes_sent,
            files: pushed,
        })
    }
}

/// Checks paths (valid, distinct), sizes (recorded ones must match, none over `max_size`,
/// normally [`MAX_FILE_SIZE`]) and reads each file's sample.
fn prepare(files: &[PushFile], max_size: u64) -> Result<Vec<Prepared>, HubError> {
    let mut seen = BTreeSet::new();
    let mut prepared = Vec::with_capacity(files.len());
    for file in files {
        let path = validate_path_in_repo(&file.path_in_repo)?.to_owned();
        if !seen.insert(path.clone()) {
            return Err(HubError::DuplicatePath { path });
        }
        let io = |source| HubError::Io {
            path: file.local.clone(),
            source,
        };
        let mut handle = std::fs::File::open(&file.local).map_err(io)?;
        let size = handle.metadata().map_err(io)?.len();
        if let Some(expected) = file.size {
            if expected != size {
                return Err(HubError::FileChanged {
                    path: file.local.clone(),
                    expected: format!("{expected} bytes"),
                    actual: format!("{size} bytes"),
                });
            }
        }
        if size > max_size {
            return Err(HubError::FileTooLarge {
                path: file.local.clone(),
                size,
                limit: max_size,
            });
        }
        let mut sample = Vec::with_capacity(SAMPLE_SIZE);
        handle
            .by_ref()
            .take(SAMPLE_SIZE as u64)
            .read_to_end(&mut sample)
            .map_err(io)?;
        prepared.push(Prepared {
            path,
            local: file.local.clone(),
            size,
            sample,
            sha256: file.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
        });
    }
    Ok(prepared)
}

fn read_regular(file: &Prepared) -> Result<Vec<u8>, HubError> {
    if file.size > MAX_REGULAR_SIZE {
        return Err(HubError::Protocol {
            operation: "preupload".to_owned(),
            message: format!(
                "the Hub asked for {} ({} bytes) as a regular file; files this large go through LFS",
                file.path, file.size
            ),
        });
    }
    let content = std::fs::read(&file.local).map_err(|source| HubError::Io {
        path: file.local.clone(),
        source,
    })?;
    if content.len() as u64 != file.size {
        return Err(HubError::FileChanged {
            path: file.local.clone(),
            expected: format!("{} bytes", file.size),
            actual: format!("{} bytes", content.len()),
        });
    }
    Ok(content)
}

fn hash_file(path: &Path, size: u64, reporter: &dyn Reporter) -> Result<String, HubError> {
    reporter.begin(&format!("hash {}", path.display()), Some(size));
    let sha = sha256_reader(path, |n| reporter.advance(n))?;
    reporter.finish();
    Ok(sha)
}

/// SHA-256 of a file, lowercase hex, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<String, HubError> {
    sha256_reader(path, |_| {})
}

fn sha256_reader(path: &Path, mut progress: impl FnMut(u64)) -> Result<String, HubError> {
    let io = |source| HubError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        progress(n as u64);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Git's blob id: SHA-1 of `blob <len>\0` followed by the content (what the Hub reports as a
/// regular file's oid).
pub fn git_blob_oid(content: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", content.len()).as_bytes());
    hasher.update(content);
    hex::encode(hasher.finalize())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_oid_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            git_blob_oid(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        // The empty blob.
        assert_eq!(
            git_blob_oid(b""),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
    }

    #[test]
    fn prepare_refuses_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"abc").unwrap();
        let dup = [PushFile::new("x", &a), PushFile::new("x", &a)];
        assert!(matches!(
            prepare(&dup, MAX_FILE_SIZE),
            Err(HubError::DuplicatePath { .. })
        ));
        let bad = [PushFile::new("../x", &a)];
        assert!(matches!(
            prepare(&bad, MAX_FILE_SIZE),
            Err(HubError::InvalidPathInRepo { .. })
        ));
        let changed = [PushFile::new("x", &a).recorded(4, "00")];
        assert!(matches!(
            prepare(&changed, MAX_FILE_SIZE),
            Err(HubError::FileChanged { .. })
        ));
        let missing = [PushFile::new("x", dir.path().join("nope"))];
        assert!(matches!(
            prepare(&missing, MAX_FILE_SIZE),
            Err(HubError::Io { .. })
        ));
        let ok = prepare(&[PushFile::new("x", &a)], MAX_FILE_SIZE).unwrap();
        assert_eq!((ok[0].size, ok[0].sample.as_slice()), (3, &b"abc"[..]));
    }
}

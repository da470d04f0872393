//! `loraforge-hub`: push files to the Hugging Face Hub the way huggingface_hub's
//! `create_commit` does, over the Hub's HTTP API with Git LFS uploads (not Xet).
//!
//! * [`HubClient`] + [`ClientOptions`] talk to one [`Endpoint`] (`HF_ENDPOINT`) with one
//!   [`Token`]: create repository, validate README metadata, preupload, LFS batch, LFS transfers
//!   (single PUT, or multipart with parallel parts), verify, commit, revision info.
//! * [`HubClient::push`] runs a whole push of a [`PushRequest`] and returns a [`PushOutcome`]
//!   (commit id, each file's SHA-256 and whether its bytes were sent). Unchanged files and LFS
//!   objects the Hub already has are not sent again.
//! * [`resolve_token`] finds the token like huggingface_hub (explicit, `HF_TOKEN`, token file)
//!   from [`TokenInputs`] the caller fills: this crate reads no environment variable.
//!
//! The token goes only to URLs with the endpoint's own origin (never to the pre-signed LFS
//! storage URLs), never over plain http to another machine ([`HubError::InsecureEndpoint`]), and
//! never into a message: [`Token`]'s `Debug` and `Display` hide it.
//!
//! ```
//! use loraforge_hub::{resolve_token, Endpoint, HubClient, ClientOptions, RepoId, TokenInputs};
//!
//! let repo: RepoId = "me/my-lora".parse()?;
//! assert_eq!(repo.owner(), "me");
//! assert!("my-lora".parse::<RepoId>().is_err());
//!
//! let inputs = TokenInputs { explicit: Some("hf_abc".into()), ..TokenInputs::default() };
//! let (token, source) = resolve_token(&inputs)?.expect("a token");
//! assert_eq!(source.to_string(), "--token");
//! assert_eq!(format!("{token:?}"), "Token(<hidden>)");
//!
//! // A token never travels over plain http to another machine.
//! let remote = Endpoint::parse("http://hub.example.com")?;
//! assert!(HubClient::new(remote, Some(token.clone()), ClientOptions::default()).is_err());
//! let local = Endpoint::parse("http://127.0.0.1:8080")?;
//! assert!(HubClient::new(local, Some(token), ClientOptions::default()).is_ok());
//! # Ok::<(), loraforge_hub::HubError>(())
//! ```
#![deny(missing_docs)]

mod client;
mod endpoint;
mod error;
mod push;
mod token;

pub use client::{
    BatchAnswer, ClientOptions, CommitInfo, CommitOperation, HubClient, LfsAction, PreuploadFile,
    UploadMode,
};
pub use endpoint::{validate_path_in_repo, Endpoint, RepoId, DEFAULT_ENDPOINT, HF_ENDPOINT_ENV};
pub use error::HubError;
pub use push::{
    git_blob_oid, sha256_file, PushFile, PushOutcome, PushRequest, PushedFile, Transfer,
    DEFAULT_COMMIT_MESSAGE, MAX_FILE_SIZE,
};
pub use token::{
    require_token, resolve_token, Token, TokenInputs, TokenSource, HF_HOME_ENV, HF_TOKEN_ENV,
    HF_TOKEN_PATH_ENV, HUGGING_FACE_HUB_TOKEN_ENV, XDG_CACHE_HOME_ENV,
};

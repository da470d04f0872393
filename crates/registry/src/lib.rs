//! `loraforge-registry`: The loraforge store: base/trained/saved/deployed entries, lifecycle operations, background jobs.
//!
//! Work in progress: see the crate README in `crates/README.md`.
#![deny(missing_docs)]

//! `loraforge-ollama-client`: Async Ollama REST client: blobs, create with NDJSON progress, list/show/delete, Modelfile parsing.
//!
//! Work in progress: see the crate README in `crates/README.md`.
#![deny(missing_docs)]

//! `loraforge-gguf-writer`: GGUF v3 reader and streaming writer; GGUF-to-GGUF quantization pipeline.
//!
//! Work in progress: see the crate README in `crates/README.md`.
#![deny(missing_docs)]

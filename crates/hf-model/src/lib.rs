//! `loraforge-hf-model`: Hugging Face model folders: config.json, (sharded) safetensors, mmap, dtypes.
//!
//! Work in progress: see the crate README in `crates/README.md`.
#![deny(missing_docs)]

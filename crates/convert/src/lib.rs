//! `loraforge-convert`: Hugging Face model folder to GGUF conversion, matching llama.cpp's convert_hf_to_gguf.py.
//!
//! Work in progress: see the crate README in `crates/README.md`.
#![deny(missing_docs)]

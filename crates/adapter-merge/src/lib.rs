//! `loraforge-adapter-merge`: PEFT-exact LoRA merge into a base model, streaming, on BLAS.
//!
//! Work in progress: see the crate README in `crates/README.md`.
#![deny(missing_docs)]

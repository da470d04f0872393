//! `loraforge-naming`: Pure naming rules for loraforge models: technical names, trained/saved/deployed names, Ollama names.
//!
//! Work in progress: see the crate README in `crates/README.md`.
#![deny(missing_docs)]

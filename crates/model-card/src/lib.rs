//! `loraforge-model-card`: Model cards for loraforge: gathered from training artifacts, rendered as JSON and HF README.
//!
//! Work in progress: see the crate README in `crates/README.md`.
#![deny(missing_docs)]

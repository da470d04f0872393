//! loraforge: take fine-tuned LoRA adapters from "training finished" to "running in Ollama".
//!
//! This facade re-exports the workspace's libraries under short names so that a user can depend on
//! `loraforge` alone.
//!
//! ```
//! use loraforge::quantize::GgmlType;
//! assert_eq!(GgmlType::Q8_0.block_size(), 32);
//! ```
#![deny(missing_docs)]

pub use loraforge_adapter_merge as adapter_merge;
pub use loraforge_export as export;
pub use loraforge_gguf as gguf;
pub use loraforge_hf_model as hf_model;
pub use loraforge_model_card as model_card;
pub use loraforge_naming as naming;
pub use loraforge_nf4 as nf4;
pub use loraforge_ollama_client as ollama_client;
pub use loraforge_progress as progress;
pub use loraforge_quantize as quantize;
pub use loraforge_registry as registry;

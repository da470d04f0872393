//! The README pushed to the Hugging Face Hub: the card's Markdown under front matter the Hub reads
//! (`base_model`, `base_model_relation`, `library_name`, `license`, `tags`) plus the loraforge
//! lineage (names, UUIDs, files with SHA-256) under a `loraforge:` key.
//!
//! `base_model` is the base's Hub id when one is known: the adapter's `base_model_name_or_path`,
//! else the base `config.json`'s `_name_or_path`, when either is `owner/name`; a local path is
//! never written (the Hub would refuse it). Without one, `base_model` and `base_model_relation`
//! are left out.

use std::fmt::{self, Write};

use loraforge_naming::QuantType;

use crate::render::{body, is_hub_id, tags, yaml_scalar};
use crate::{ModelCard, Stage};

/// How the pushed model relates to its base, as the Hub's `base_model_relation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseModelRelation {
    /// A LoRA adapter (`adapter`).
    Adapter,
    /// The base with the adapter merged in (`finetune`).
    Finetune,
    /// A quantized model, GGUF (`quantized`).
    Quantized,
}

impl BaseModelRelation {
    /// The value the Hub expects.
    pub fn as_str(self) -> &'static str {
        match self {
            BaseModelRelation::Adapter => "adapter",
            BaseModelRelation::Finetune => "finetune",
            BaseModelRelation::Quantized => "quantized",
        }
    }

    /// The `library_name` that goes with it: `peft`, `transformers`, `gguf`.
    pub fn library_name(self) -> &'static str {
        match self {
            BaseModelRelation::Adapter => "peft",
            BaseModelRelation::Finetune => "transformers",
            BaseModelRelation::Quantized => "gguf",
        }
    }
}

impl fmt::Display for BaseModelRelation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the Hub README says beyond the card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubReadme {
    /// The relation to the base.
    pub relation: BaseModelRelation,
    /// `library_name`; `None` = the relation's ([`BaseModelRelation::library_name`]).
    pub library_name: Option<String>,
    /// Tags after the card's own (the GGUF file types pushed, `4-bit`, `bitsandbytes` …).
    pub extra_tags: Vec<String>,
}

impl HubReadme {
    /// A README for `relation` with its default library and no extra tags.
    pub fn new(relation: BaseModelRelation) -> HubReadme {
        HubReadme {
            relation,
            library_name: None,
            extra_tags: Vec::new(),
        }
    }

    /// GGUF files of these quantizations (`relation` quantized, library `gguf`, tags `gguf` and
    /// each type).
    pub fn gguf(quantizations: &[QuantType]) -> HubReadme {
        let mut readme = HubReadme::new(BaseModelRelation::Quantized);
        readme.extra_tags = quantizations.iter().map(|q| q.to_string()).collect();
        readme
    }
}

impl ModelCard {
    /// The base model's Hub id, when the adapter config or the base config records one.
    pub fn base_model_hub_id(&self) -> Option<&str> {
        let adapter = self
            .adapter
            .as_ref()
            .and_then(|a| a.base_model_name_or_path.as_deref());
        adapter
            .into_iter()
            .chain(self.base.name_or_path.as_deref())
            .find(|id| is_hub_id(id))
    }

    /// The `README.md` to push to the Hub (see the module docs).
    pub fn to_hub_readme(&self, hub: &HubReadme) -> String {
        let mut out = String::from("---\n");
        if let Some(id) = self.base_model_hub_id() {
            let _ = writeln!(out, "base_model: {}", yaml_scalar(id));
            let _ = writeln!(out, "base_model_relation: {}", hub.relation);
        }
        let library = hub
            .library_name
            .as_deref()
            .unwrap_or(hub.relation.library_name());
        let _ = writeln!(out, "library_name: {}", yaml_scalar(library));
        if let Some(license) = &self.license {
            let _ = writeln!(out, "license: {}", yaml_scalar(license));
        }
        let mut all_tags = tags(self, self.current().map(|s| s.stage));
        if library == "gguf" {
            all_tags.push("gguf".to_owned());
        }
        all_tags.extend(hub.extra_tags.iter().cloned());
        let mut seen = std::collections::BTreeSet::new();
        all_tags.retain(|t| seen.insert(t.clone()));
        out.push_str("tags:\n");
        for tag in &all_tags {
            let _ = writeln!(out, "- {}", yaml_scalar(tag));
        }
        lineage_yaml(self, &mut out);
        out.push_str("---\n\n");
        out.push_str(&body(self));
        out
    }
}

/// `loraforge:` with the schema and each lineage step (stage, name, uuid, date, files).
fn lineage_yaml(card: &ModelCard, out: &mut String) {
    if card.lineage.is_empty() {
        return;
    }
    out.push_str("loraforge:\n");
    let _ = writeln!(out, "  schema: {}", yaml_scalar(crate::SCHEMA));
    out.push_str("  lineage:\n");
    for step in &card.lineage {
        let _ = writeln!(out, "  - stage: {}", step.stage);
        let _ = writeln!(out, "    name: {}", yaml_scalar(&step.name));
        let _ = writeln!(out, "    uuid: {}", yaml_scalar(&step.uuid.to_string()));
        let _ = writeln!(
            out,
            "    date: {}",
            yaml_scalar(&step.date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        );
        if let Some(q) = step.quantization {
            let _ = writeln!(out, "    quantization: {}", yaml_scalar(q.as_str()));
        }
        if step.stage != Stage::Base && !step.files.is_empty() {
            out.push_str("    files:\n");
            for f in &step.files {
                let _ = writeln!(out, "    - path: {}", yaml_scalar(&f.path));
                let _ = writeln!(out, "      size: {}", f.size);
                let _ = writeln!(out, "      sha256: {}", yaml_scalar(&f.sha256));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{AdapterInfo, FileChecksum, LineageStep};
    use uuid::Uuid;

    fn card(base_dir: &std::path::Path, adapter_base: Option<&str>) -> ModelCard {
        std::fs::write(
            base_dir.join("config.json"),
            r#"{"model_type": "llama", "_name_or_path": "meta-llama/Llama-3.2-1B"}"#,
        )
        .unwrap();
        let mut card = ModelCard::for_base(base_dir).unwrap();
        card.adapter = adapter_base.map(|b| {
            let dir = base_dir.join("adapter");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("adapter_config.json"),
                format!(r#"{{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "base_model_name_or_path": {b:?}}}"#),
            )
            .unwrap();
            AdapterInfo::read(&dir).unwrap()
        });
        card
    }

    #[test]
    fn base_model_comes_from_the_adapter_then_the_config_never_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let c = card(dir.path(), Some("owner/base"));
        assert_eq!(c.base_model_hub_id(), Some("owner/base"));
        let c = card(dir.path(), Some("/home/me/base"));
        assert_eq!(c.base_model_hub_id(), Some("meta-llama/Llama-3.2-1B"));
        let mut c = card(dir.path(), None);
        c.base.name_or_path = Some("./local/x".into());
        assert_eq!(c.base_model_hub_id(), None);
        let readme = c.to_hub_readme(&HubReadme::new(BaseModelRelation::Adapter));
        assert!(!readme.contains("base_model"));
    }

    #[test]
    fn front_matter_has_relation_library_tags_and_lineage() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = card(dir.path(), Some("owner/base"));
        let uuid = Uuid::new_v4();
        c.push_step(LineageStep::new(
            Stage::Base,
            "tiny-llama",
            uuid,
            "registered",
        ))
        .unwrap();
        let trained_uuid = Uuid::new_v4();
        let name = format!(
            "tiny-llama_chat_20260101_{}",
            &trained_uuid.simple().to_string()[..4]
        );
        c.push_step(
            LineageStep::new(Stage::Trained, &name, trained_uuid, "registered").with_files(vec![
                FileChecksum {
                    path: "adapter_model.safetensors".into(),
                    size: 12,
                    sha256: "ab".repeat(32),
                },
            ]),
        )
        .unwrap();
        let readme = c.to_hub_readme(&HubReadme::gguf(&[QuantType::Quantized(
            loraforge_naming::FileType::Q4KM,
        )]));
        let front = readme.split("\n---\n").next().unwrap();
        assert!(front.contains("base_model: owner/base\nbase_model_relation: quantized\n"));
        assert!(front.contains("library_name: gguf\n"));
        assert!(front.contains("- gguf\n- q4_K_M\n"));
        assert!(front.contains(&format!("    name: {name}\n    uuid: {trained_uuid}\n")));
        assert!(readme.contains(&format!("      sha256: {}\n---\n", "ab".repeat(32))));
        assert!(readme.contains(&format!("# {name}")));
    }
}

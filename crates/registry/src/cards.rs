//! Building each entry's model card from the model-card crate, and writing it into an entry.

use std::path::Path;

use loraforge_model_card::{
    checksum_dir, CardSources, FileChecksum, LineageStep, ModelCard, Stage,
};

use crate::error::Result;
use crate::records::{BaseRecord, DeployedRecord, SavedRecord, TrainedRecord};

/// The card of a new base entry: what `config.json` and the weights' headers say, and one
/// lineage step.
pub(crate) fn base_card(record: &BaseRecord, source: &Path) -> Result<ModelCard> {
    let mut card = ModelCard::for_base(source)?;
    let dtype = card.base.dtype.clone();
    let mut step = LineageStep::new(
        Stage::Base,
        record.technical_name.to_string(),
        record.uuid,
        if record.copied {
            "registered the base model (copied into the store)"
        } else {
            "registered the base model (referenced in place)"
        },
    )
    .with_date(record.added)
    .with_source(source.display().to_string());
    if let Some(dtype) = dtype {
        step = step.with_dtype(dtype);
    }
    card.push_step(step)?;
    Ok(card)
}

/// The card of a new trained entry staged in `staged` (`adapter/`, `training/`): the base card's
/// lineage, the adapter config, training arguments and evaluation summary.
///
/// The card is gathered from the user's folders (`selection`), so an error names the user's
/// file, never the staging copy; the checksums are of the copies in `staged`.
pub(crate) fn trained_card(
    record: &TrainedRecord,
    base_model_dir: &Path,
    base_card_dir: &Path,
    selection: &loraforge_model_card::TrainerFolder,
    staged: &Path,
) -> Result<ModelCard> {
    let adapter_dir = staged.join("adapter");
    let mut card = ModelCard::gather(&CardSources {
        base_dir: base_model_dir,
        adapter_dir: Some(&selection.adapter_dir),
        trainer_dir: Some(&selection.training_dir),
    })?;
    card.train_name = Some(record.train_name.to_string());
    card.lineage = ModelCard::read_from_dir(base_card_dir)?.lineage;
    let files = checksum_dir(&adapter_dir, &loraforge_progress::NoProgress)?
        .into_iter()
        .map(|f| FileChecksum {
            path: format!("adapter/{}", f.path),
            ..f
        })
        .collect();
    let which = match record.checkpoint {
        Some(step) => format!("registered the LoRA adapter of checkpoint-{step}"),
        None => "registered the final LoRA adapter".to_string(),
    };
    card.push_step(
        LineageStep::new(Stage::Trained, record.name.to_string(), record.uuid, which)
            .with_date(record.added)
            .with_source(record.source.display().to_string())
            .with_files(files),
    )?;
    Ok(card)
}

/// The card of a new saved entry: the trained card plus the save step.
pub(crate) fn saved_card(record: &SavedRecord, trained_dir: &Path) -> Result<ModelCard> {
    let card = ModelCard::read_from_dir(trained_dir)?;
    let files = record
        .files
        .iter()
        .map(|f| FileChecksum {
            path: format!("model/{}", f.path),
            size: f.bytes,
            sha256: f.sha256.clone(),
        })
        .collect();
    Ok(card.derive(
        LineageStep::new(
            Stage::Saved,
            record.name.to_string(),
            record.uuid,
            format!("merged the adapter into the base model in {}", record.dtype),
        )
        .with_date(record.created)
        .with_dtype(record.dtype.clone())
        .with_files(files),
    )?)
}

/// The card of a new deployed entry: the saved card plus the deploy step.
pub(crate) fn deployed_card(
    record: &DeployedRecord,
    saved_dir: &Path,
    gguf_bytes: u64,
) -> Result<ModelCard> {
    let card = ModelCard::read_from_dir(saved_dir)?;
    let how = if record.server_quantize {
        "exported to GGUF F16 and deployed to Ollama, which quantized it"
    } else {
        "exported to GGUF and deployed to Ollama"
    };
    Ok(card.derive(
        LineageStep::new(Stage::Deployed, record.name.to_string(), record.uuid, how)
            .with_date(record.created)
            .with_source(record.host.clone())
            .with_quantization(record.quant)
            .with_files(vec![FileChecksum {
                path: "model.gguf".into(),
                size: gguf_bytes,
                sha256: record
                    .digest
                    .strip_prefix("sha256:")
                    .unwrap_or(&record.digest)
                    .to_string(),
            }]),
    )?)
}

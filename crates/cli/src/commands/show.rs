//! `base|trained|saved|deployed show NAME`: an entry's model card.

use loraforge_registry::{EntryKind, Registry};

use super::Context;
use crate::args::ShowArgs;
use crate::output::{print_json, println_stdout};

/// The card as JSON (`--json`, with `hub_pushes` when it was pushed), as Markdown (`--readme`), or the README, where the files are and
/// the entry's Hub pushes.
pub fn show(
    context: &Context,
    registry: &Registry,
    kind: EntryKind,
    args: &ShowArgs,
) -> anyhow::Result<()> {
    if args.readme {
        println_stdout(&registry.card_readme(kind, &args.name)?);
        return Ok(());
    }
    if context.json {
        let mut card: serde_json::Value =
            serde_json::from_str(&registry.card_json(kind, &args.name)?)?;
        let pushes = registry.hub_pushes(kind, &args.name)?;
        if let (false, Some(object)) = (pushes.is_empty(), card.as_object_mut()) {
            object.insert("hub_pushes".into(), serde_json::to_value(&pushes)?);
        }
        return print_json(&card);
    }
    let dir = registry.entry_dir(kind, &args.name)?;
    println_stdout(&registry.card_readme(kind, &args.name)?);
    println_stdout(&format!("\nfiles: {}", dir.display()));
    if let Some(text) = super::hub::pushes_text(&registry.hub_pushes(kind, &args.name)?) {
        println_stdout(&text);
    }
    Ok(())
}

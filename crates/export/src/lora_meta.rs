//! gguf-py's `Metadata.load` for an adapter folder (what `convert_lora_to_gguf.py` writes into
//! `general.*`): README.md YAML front matter, `config.json`'s `_name_or_path`, the folder name.
//!
//! The front matter is read for the shapes Hugging Face cards use (`key: scalar`, `key:` + `- item`
//! lists, `key: [a, b]`); other YAML (nested maps, multi-line strings) is skipped.

use std::path::Path;

use loraforge_gguf::Metadata;
use regex::Regex;
use serde_json::Value as Json;

use crate::ConvertError;

#[derive(Debug, Clone)]
enum Yaml {
    Str(String),
    List(Vec<String>),
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('\'') && s.ends_with('\'')))
    {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

fn front_matter(dir: &Path) -> Vec<(String, Yaml)> {
    let Ok(text) = std::fs::read_to_string(dir.join("README.md")) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    if lines.next() != Some("---") {
        return Vec::new();
    }
    let mut out: Vec<(String, Yaml)> = Vec::new();
    for line in lines {
        if line == "---" {
            break;
        }
        if let Some(item) = line
            .strip_prefix("- ")
            .or_else(|| line.trim_start().strip_prefix("- "))
        {
            if let Some((_, Yaml::List(l))) = out.last_mut() {
                l.push(unquote(item));
            }
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        let value = if v.is_empty() {
            Yaml::List(Vec::new())
        } else if let Some(inner) = v.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            Yaml::List(
                inner
                    .split(',')
                    .map(unquote)
                    .filter(|s| !s.is_empty())
                    .collect(),
            )
        } else {
            Yaml::Str(unquote(v))
        };
        out.push((k.trim().to_string(), value));
    }
    out
}

/// `Metadata.id_to_title`.
fn id_to_title(s: &str) -> String {
    let version = Regex::new(r"^(v\d+(?:\.\d+)*|\d.*)$").ok();
    s.trim()
        .replace('-', " ")
        .split_whitespace()
        .map(|w| {
            let lower = w.chars().any(char::is_lowercase) && !w.chars().any(char::is_uppercase);
            if lower && !version.as_ref().is_some_and(|r| r.is_match(w)) {
                crate::convert::python_title(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Default, Debug)]
struct IdParts {
    name: Option<String>,
    org: Option<String>,
    basename: Option<String>,
    finetune: Option<String>,
    version: Option<String>,
    size_label: Option<String>,
}

/// `Metadata.get_model_id_components`.
fn model_id_components(model_id: &str, total_params: i64) -> IdParts {
    if model_id.contains(' ') {
        return IdParts {
            name: Some(model_id.into()),
            ..IdParts::default()
        };
    }
    let (mut org, full) = match model_id.split_once('/') {
        Some((o, n)) => (Some(o.to_string()), n.to_string()),
        None => (None, model_id.to_string()),
    };
    if org.as_deref().is_some_and(|o| o.starts_with('.')) {
        org = None;
    }
    let mut parts: Vec<String> = full
        .split('-')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    let mut types: Vec<Vec<&str>> = vec![Vec::new(); parts.len()];
    let re = |p: &str| Regex::new(p).ok();
    let (re_ver, re_type, re_size, re_ft) = (
        re(r"(?i)^(v|iter)?\d+([.]\d+)*$"),
        re(r"(?i)^(i?q\d(_\w)*|b?fp?(16|32))$"),
        re(r"(?i)^(([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl)$"),
        re(r"(?i)^(chat|instruct|vision|lora)$"),
    );
    let m = |r: &Option<Regex>, s: &str| r.as_ref().is_some_and(|r| r.is_match(s));
    for i in 0..parts.len() {
        let part = parts[i].clone();
        if m(&re_ver, &part) {
            types[i].push("version");
        } else if m(&re_type, &part) {
            types[i].push("type");
            parts[i] = part.to_uppercase();
        } else if i > 0 && m(&re_size, &part) {
            let mut p = part.replace('_', ".");
            let chars: Vec<char> = p.chars().collect();
            if chars.last().is_some_and(|c| c.is_ascii_digit()) && chars.len() >= 2 {
                let n = chars.len();
                p = format!(
                    "{}.{}{}",
                    chars[..n - 2].iter().collect::<String>(),
                    chars[n - 1],
                    chars[n - 2]
                );
            }
            let chars: Vec<char> = p.chars().collect();
            if chars.len() > 1 && chars[chars.len() - 2].is_ascii_digit() {
                if let Some(l) = chars.last().filter(|c| "kmbt".contains(**c)) {
                    p = format!("{}{}", &p[..p.len() - 1], l.to_ascii_uppercase());
                }
            }
            if total_params != 0 {
                let unit = " KMBT".find(p.chars().last().unwrap_or(' '));
                if let (Ok(v), Some(u)) = (p[..p.len().saturating_sub(1)].parse::<f64>(), unit) {
                    let label = v * 1000f64.powi(u as i32);
                    let tp = total_params as f64;
                    if (total_params < 0 && label < (total_params.unsigned_abs() / 8) as f64)
                        || (total_params > 0 && (label - tp).abs() > (7 * total_params / 8) as f64)
                    {
                        types[i].push("finetune");
                        let last = p.chars().last().unwrap_or(' ').to_ascii_lowercase();
                        p = format!("{}{}", &p[..p.len() - 1], last);
                    }
                }
            }
            if types[i].is_empty() {
                types[i].push("size_label");
            }
            parts[i] = p;
        } else if i > 0 && m(&re_ft, &part) {
            if total_params < 0 && part.eq_ignore_ascii_case("lora") {
                types[i].push("type");
            } else {
                types[i].push("finetune");
            }
        }
    }
    let numeric_size = parts
        .iter()
        .zip(&types)
        .any(|(n, t)| t.contains(&"size_label") && n.chars().any(|c| c.is_ascii_digit()));
    if numeric_size {
        for (n, t) in parts.iter().zip(types.iter_mut()) {
            if t.contains(&"size_label") && n.chars().all(char::is_alphabetic) {
                t.retain(|x| *x != "size_label");
            }
        }
    }
    let mut at_start = true;
    for (p, t) in parts.iter().zip(types.iter_mut()) {
        let alpha0 = p.chars().next().is_some_and(char::is_alphabetic);
        if at_start && ((t.is_empty() && alpha0) || t.contains(&"version")) {
            t.push("basename");
        } else {
            at_start = false;
            if t.is_empty() {
                t.push("finetune");
            }
        }
    }
    for t in types.iter_mut().rev() {
        if t.contains(&"basename") && t.len() > 1 {
            t.retain(|x| *x != "basename");
        } else {
            break;
        }
    }
    let join = |want: &str, exclude: Option<&str>| -> Option<String> {
        let mut seen: Vec<&str> = Vec::new();
        for (p, t) in parts.iter().zip(&types) {
            if t.contains(&want) && !exclude.is_some_and(|e| t.contains(&e)) {
                if want == "size_label" && seen.contains(&p.as_str()) {
                    continue;
                }
                seen.push(p);
            }
        }
        (!seen.is_empty()).then(|| seen.join("-"))
    };
    let mut basename = join("basename", None);
    let size_label = join("size_label", None);
    let finetune = join("finetune", None);
    let version = join("version", Some("basename"));
    if size_label.is_none() && finetune.is_none() && version.is_none() {
        basename = None;
    }
    IdParts {
        name: Some(full),
        org,
        basename,
        finetune,
        version,
        size_label,
    }
}

#[derive(Default)]
struct Meta {
    name: Option<String>,
    author: Option<String>,
    version: Option<String>,
    organization: Option<String>,
    finetune: Option<String>,
    basename: Option<String>,
    description: Option<String>,
    size_label: Option<String>,
    license: Option<String>,
    license_name: Option<String>,
    license_link: Option<String>,
    source_url: Option<String>,
    source_doi: Option<String>,
    source_uuid: Option<String>,
    source_repo_url: Option<String>,
    base_models: Option<Vec<Vec<(&'static str, String)>>>,
    datasets: Option<Vec<Vec<(&'static str, String)>>>,
    tags: Option<Vec<String>>,
    languages: Option<Vec<String>>,
}

fn id_entries(ids: &[String], total_params: i64) -> Vec<Vec<(&'static str, String)>> {
    let hf = Regex::new(r"^https?://huggingface.co/([^/]+/[^/]+)$").ok();
    ids.iter()
        .map(|id| {
            let mut e: Vec<(&'static str, String)> = Vec::new();
            if id.starts_with("http://") || id.starts_with("https://") || id.starts_with("ssh://") {
                e.push(("repo_url", id.clone()));
                if let Some(c) = hf.as_ref().and_then(|r| r.captures(id)) {
                    let p = model_id_components(&c[1], total_params);
                    if let Some(n) = p.name {
                        e.push(("name", id_to_title(&n)));
                    }
                    if let Some(o) = p.org {
                        e.push(("organization", id_to_title(&o)));
                    }
                    if let Some(v) = p.version {
                        e.push(("version", v));
                    }
                }
            } else {
                let p = model_id_components(id, total_params);
                if let Some(n) = &p.name {
                    e.push(("name", id_to_title(n)));
                }
                if let Some(o) = &p.org {
                    e.push(("organization", id_to_title(o)));
                }
                if let Some(v) = p.version {
                    e.push(("version", v));
                }
                if let (Some(o), Some(n)) = (p.org, p.name) {
                    e.push(("repo_url", format!("https://huggingface.co/{o}/{n}")));
                }
            }
            e
        })
        .collect()
}

/// Writes gguf-py's `general.*` keys for the adapter folder `dir` (`Metadata.load` +
/// `set_gguf_meta_model`). `total_params` is negative for LoRA, as gguf-py counts it.
pub(crate) fn model_card_metadata(
    md: &mut Metadata,
    dir: &Path,
    total_params: i64,
) -> Result<(), ConvertError> {
    let card = front_matter(dir);
    let get = |k: &str| {
        card.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let get_str = |k: &str| match get(k) {
        Some(Yaml::Str(s)) => Some(s),
        _ => None,
    };
    let mut m = Meta::default();
    let use_str = |slot: &mut Option<String>, keys: &[&str]| {
        for k in keys {
            if slot.is_none() {
                if let Some(v) = get_str(k) {
                    *slot = Some(v);
                }
            }
        }
    };
    use_str(&mut m.name, &["name", "model_name"]);
    use_str(&mut m.author, &["author", "model_author", "model_creator"]);
    use_str(&mut m.version, &["version", "model_version"]);
    use_str(&mut m.organization, &["organization", "model_organization"]);
    use_str(&mut m.description, &["description", "model_description"]);
    use_str(&mut m.finetune, &["finetune", "model_finetune"]);
    use_str(
        &mut m.basename,
        &["basename", "model_basename", "model_type"],
    );
    use_str(&mut m.size_label, &["size_label", "model_size_label"]);
    use_str(&mut m.source_url, &["url", "model_url"]);
    use_str(&mut m.source_doi, &["doi", "model_doi"]);
    use_str(&mut m.source_uuid, &["uuid", "model_uuid"]);
    use_str(&mut m.source_repo_url, &["repo_url", "model_repo_url"]);
    let list = |v: Option<Yaml>| match v {
        Some(Yaml::Str(s)) => Some(vec![s]),
        Some(Yaml::List(l)) => Some(l),
        None => None,
    };
    if let Some(ids) = list(get("base_model"))
        .or_else(|| list(get("base_models")))
        .or_else(|| list(get("base_model_sources")))
    {
        m.base_models = Some(id_entries(&ids, total_params));
    }
    if let Some(ids) = list(get("datasets"))
        .or_else(|| list(get("dataset")))
        .or_else(|| list(get("dataset_sources")))
    {
        m.datasets = Some(id_entries(&ids, total_params));
    }
    use_str(&mut m.license, &["license"]);
    use_str(&mut m.license_name, &["license_name"]);
    use_str(&mut m.license_link, &["license_link"]);
    for k in ["tags", "pipeline_tag"] {
        if let Some(v) = list(get(k)) {
            m.tags.get_or_insert_with(Vec::new).extend(v);
        }
    }
    for k in ["languages", "language"] {
        if let Some(v) = list(get(k)) {
            m.languages.get_or_insert_with(Vec::new).extend(v);
        }
    }
    let apply = |p: IdParts, m: &mut Meta| {
        if m.name.is_none() {
            m.name = p.name.as_deref().map(id_to_title);
        }
        if m.organization.is_none() {
            m.organization = p.org.as_deref().map(id_to_title);
        }
        m.basename = m.basename.take().or(p.basename);
        m.finetune = m.finetune.take().or(p.finetune);
        m.version = m.version.take().or(p.version);
        m.size_label = m.size_label.take().or(p.size_label);
    };
    let cfg_path = dir.join("config.json");
    if cfg_path.is_file() {
        let text = std::fs::read_to_string(&cfg_path).map_err(|source| ConvertError::Io {
            path: cfg_path.clone(),
            source,
        })?;
        let cfg: Json =
            serde_json::from_str(&text).map_err(|source| ConvertError::InvalidJson {
                path: cfg_path.clone(),
                source,
            })?;
        if let Some(n) = cfg.get("_name_or_path").and_then(Json::as_str) {
            if n.matches('/').count() <= 1 {
                apply(model_id_components(n, total_params), &mut m);
            }
        }
    }
    let dir_name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "adapter".into());
    apply(model_id_components(&dir_name, total_params), &mut m);

    let opt = |md: &mut Metadata, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            md.set(k, v.clone());
        }
    };
    md.set("general.name", m.name.clone().unwrap_or(dir_name));
    opt(md, "general.author", &m.author);
    opt(md, "general.version", &m.version);
    opt(md, "general.organization", &m.organization);
    opt(md, "general.finetune", &m.finetune);
    opt(md, "general.basename", &m.basename);
    opt(md, "general.description", &m.description);
    opt(md, "general.size_label", &m.size_label);
    opt(md, "general.license", &m.license);
    opt(md, "general.license.name", &m.license_name);
    opt(md, "general.license.link", &m.license_link);
    opt(md, "general.source.url", &m.source_url);
    opt(md, "general.source.doi", &m.source_doi);
    opt(md, "general.source.uuid", &m.source_uuid);
    opt(md, "general.source.repo_url", &m.source_repo_url);
    for (kind, entries) in [("base_model", &m.base_models), ("dataset", &m.datasets)] {
        if let Some(entries) = entries {
            md.set(format!("general.{kind}.count"), entries.len() as u32);
            for (i, e) in entries.iter().enumerate() {
                for field in [
                    "name",
                    "author",
                    "version",
                    "organization",
                    "description",
                    "url",
                    "doi",
                    "uuid",
                    "repo_url",
                ] {
                    if let Some((_, v)) = e.iter().find(|(k, _)| *k == field) {
                        md.set(format!("general.{kind}.{i}.{field}"), v.clone());
                    }
                }
            }
        }
    }
    if let Some(t) = &m.tags {
        md.set("general.tags", t.clone());
    }
    if let Some(l) = &m.languages {
        md.set("general.languages", l.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_split_like_gguf_py() {
        let p = model_id_components("refs-fixtures/public-a_llama_qv-base", -100);
        assert_eq!(p.name.as_deref(), Some("public-a_llama_qv-base"));
        assert_eq!(
            id_to_title("public-a_llama_qv-base"),
            "Public A_Llama_Qv Base"
        );
        let p = model_id_components("meta-llama/Llama-3.2-1B-Instruct", 0);
        assert_eq!(p.basename.as_deref(), Some("Llama-3.2"));
        assert_eq!(p.size_label.as_deref(), Some("1B"));
        assert_eq!(p.finetune.as_deref(), Some("Instruct"));
    }
}

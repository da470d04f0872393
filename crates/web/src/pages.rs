//! The HTML pages: overview, one list per stage, jobs, and an entry's card.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::Extension;
use loraforge_registry::{Job, JobState};
use serde::Deserialize;
use serde_json::Value;

use crate::actions::{self, Listing, Stage, SAVE_DTYPES};
use crate::auth::Access;
use crate::error::Failure;
use crate::html::{date, esc, name, seg, size};
use crate::AppState;

const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/style.css");

/// Rows per list page; beyond that the list is paged.
pub const PAGE_SIZE: usize = 500;

/// Which part of the site a page belongs to (for the navigation).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Overview,
    Stage(Stage),
    Jobs,
}

struct Page<'a> {
    title: String,
    section: Section,
    access: &'a Access,
    ollama_host: &'a str,
    /// The stage whose delete semantics the delete dialog states.
    delete_stage: Option<Stage>,
    jobs: Vec<Job>,
}

impl Page<'_> {
    fn render(&self, body: &str) -> Html<String> {
        let mut out = String::with_capacity(body.len() + 8192);
        let _ = write!(
            out,
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{csrf}">
<title>{title} · loraforge</title>
<link rel="stylesheet" href="/assets/style.css">
<script src="/assets/app.js" defer></script>
</head>
<body>
<header class="top">
<a class="brand" href="/">loraforge</a>
<nav aria-label="Sections">"#,
            csrf = esc(self.access.csrf()),
            title = esc(&self.title),
        );
        let mut link = |href: &str, label: &str, active: bool| {
            let current = if active {
                r#" aria-current="page""#
            } else {
                ""
            };
            let _ = write!(out, r#"<a href="{href}"{current}>{label}</a>"#);
        };
        link("/", "Overview", self.section == Section::Overview);
        for stage in Stage::ALL {
            let label = match stage {
                Stage::Base => "Base",
                Stage::Trained => "Trained",
                Stage::Saved => "Saved",
                Stage::Deployed => "Deployed",
            };
            link(
                &format!("/{}", stage.as_str()),
                label,
                self.section == Section::Stage(stage),
            );
        }
        link("/jobs", "Jobs", self.section == Section::Jobs);
        out.push_str("</nav>\n</header>\n");
        out.push_str(r#"<section id="live-jobs" aria-live="polite" aria-label="Running jobs">"#);
        for job in self.jobs.iter().filter(|j| !j.state.is_final()) {
            out.push_str(&job_panel(job));
        }
        out.push_str("</section>\n<main>\n");
        out.push_str(body);
        out.push_str("\n</main>\n");
        out.push_str(r#"<dialog id="dialog" aria-labelledby="dialog-title"></dialog>"#);
        out.push_str(&self.templates());
        out.push_str("\n</body>\n</html>\n");
        Html(out)
    }

    /// The dialogs' contents; the script copies one into the page's `<dialog>` when a button
    /// asks for it, so only the open dialog's OK button is in the document.
    fn templates(&self) -> String {
        let mut dtypes = String::new();
        for dtype in SAVE_DTYPES {
            let label = match dtype {
                "auto" => "auto — keep the base model's dtype",
                "bf16" => "bf16 — bfloat16",
                "f16" => "f16 — float16",
                _ => "f32 — float32 (twice the size)",
            };
            let selected = if dtype == "auto" { " selected" } else { "" };
            let _ = write!(
                dtypes,
                r#"<option value="{dtype}"{selected}>{label}</option>"#
            );
        }
        let mut quants = String::new();
        for quant in loraforge_naming::QuantType::ALL {
            let q = quant.as_str();
            let label = match q {
                "no_quantization" => {
                    "no_quantization — keep the saved dtype (f16/bf16)".to_string()
                }
                "q8_0" => "q8_0 — 8-bit, near lossless".to_string(),
                "q4_K_M" => "q4_K_M — 4-bit, recommended".to_string(),
                "q4_K_S" => "q4_K_S — 4-bit, smallest".to_string(),
                other => other.to_string(),
            };
            let selected = if q == "q4_K_M" { " selected" } else { "" };
            let _ = write!(
                quants,
                r#"<option value="{q}"{selected}>{label}</option>"#,
                label = esc(&label)
            );
        }
        let semantics = self.delete_stage.map(Stage::delete_semantics).unwrap_or("");
        format!(
            r#"
<template id="tpl-save">
<form method="dialog" class="dlg" data-kind="save">
<h2 id="dialog-title">Save <code data-field="name"></code></h2>
<p>Merges the adapter into its base model as a new, standalone saved model. This runs as a background job; the saved model appears on the Saved page when it is done.</p>
<dl class="params">
<dt>Saved model name</dt><dd><code data-field="pattern"></code><br><small>xxxx = the first 4 hex digits of the saving UUID, drawn when the job is queued</small></dd>
<dt><label for="dlg-dtype">Weights dtype</label></dt><dd><select name="dtype" id="dlg-dtype">{dtypes}</select></dd>
<dt>Files</dt><dd>safetensors shards (5 GB max), config, tokenizer, model card, SHA-256 of every file</dd>
</dl>
<p class="error" role="alert" hidden></p>
<div class="buttons"><button type="button" data-cancel>Cancel</button><button type="submit" class="primary" data-confirm>Save</button></div>
</form>
</template>
<template id="tpl-deploy">
<form method="dialog" class="dlg" data-kind="deploy">
<h2 id="dialog-title">Deploy <code data-field="name"></code></h2>
<p>Exports the saved model to GGUF (reused when already exported), uploads it to Ollama and creates the model with the base model's deployment template. This runs as a background job.</p>
<dl class="params">
<dt><label for="dlg-quant">Quantization</label></dt><dd><select name="quant" id="dlg-quant">{quants}</select></dd>
<dt><label for="dlg-host">Ollama host</label></dt><dd><input name="host" id="dlg-host" value="{host}" autocomplete="off" spellcheck="false"></dd>
<dt>Deployed name</dt><dd><code data-field="pattern"></code></dd>
</dl>
<p class="error" role="alert" hidden></p>
<div class="buttons"><button type="button" data-cancel>Cancel</button><button type="submit" class="primary" data-confirm>Deploy</button></div>
</form>
</template>
<template id="tpl-delete">
<form method="dialog" class="dlg" data-kind="delete">
<h2 id="dialog-title">Delete <code data-field="name"></code>?</h2>
<p class="semantics">{semantics}</p>
<p class="error" role="alert" hidden></p>
<div class="buttons"><button type="button" data-cancel>Cancel</button><button type="submit" class="danger" data-confirm>Delete</button></div>
</form>
</template>
<template id="tpl-cancel">
<form method="dialog" class="dlg" data-kind="cancel">
<h2 id="dialog-title">Cancel job <code data-field="name"></code>?</h2>
<p>A queued job never starts; a running one is stopped and its partial output removed. Nothing it already published (a saved or deployed model) is touched.</p>
<p class="error" role="alert" hidden></p>
<div class="buttons"><button type="button" data-cancel>Keep it running</button><button type="submit" class="danger" data-confirm>Cancel the job</button></div>
</form>
</template>"#,
            host = esc(self.ollama_host),
            semantics = esc(semantics),
        )
    }
}

/// A running job's panel: what, state in words, progress bar, last message.
fn job_panel(job: &Job) -> String {
    format!(
        r#"<div class="job-panel" data-job="{id}" data-state="{state}"><span class="what">{what}</span> <span class="state">{state}</span> {bar} <span class="msg">{msg}</span></div>"#,
        id = esc(&job.id),
        state = actions::state_word(job.state),
        what = esc(&job.kind.describe()),
        bar = progress_bar(job),
        msg = esc(&job.progress.message),
    )
}

fn percent(job: &Job) -> Option<u64> {
    match (job.state, job.progress.total) {
        (JobState::Succeeded, _) => Some(100),
        (_, Some(total)) if total > 0 => Some((job.progress.done.min(total) * 100) / total),
        _ => None,
    }
}

fn progress_bar(job: &Job) -> String {
    let phase = esc(&job.progress.phase);
    match percent(job) {
        Some(p) => format!(
            r#"<progress max="100" value="{p}" aria-label="progress">{p}%</progress> <span class="phase">{phase}</span>"#
        ),
        None if job.state.is_final() => format!(r#"<span class="phase">{phase}</span>"#),
        None => format!(
            r#"<progress max="100" aria-label="progress"></progress> <span class="phase">{phase}</span>"#
        ),
    }
}

/// A failure as a small HTML page with the same status.
pub fn failure_page(failure: &Failure) -> Response {
    let hint = failure
        .hint
        .as_deref()
        .map(|h| format!(r#"<p class="hint">{}</p>"#, esc(h)))
        .unwrap_or_default();
    let body = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{status} · loraforge</title><link rel="stylesheet" href="/assets/style.css"></head><body><main class="failure"><h1>{status}</h1><p class="error">{error}</p>{hint}<p><a href="/">Overview</a></p></main></body></html>"#,
        status = failure.status,
        error = esc(&failure.error),
    );
    (failure.status, Html(body)).into_response()
}

type PageResult = Result<Html<String>, Response>;

fn fail(failure: Failure) -> Response {
    failure_page(&failure)
}

fn page<'a>(
    state: &'a AppState,
    access: &'a Access,
    title: impl Into<String>,
    section: Section,
    jobs: Vec<Job>,
) -> Page<'a> {
    Page {
        title: title.into(),
        section,
        access,
        ollama_host: &state.ollama_host,
        delete_stage: match section {
            Section::Stage(stage) => Some(stage),
            _ => None,
        },
        jobs,
    }
}

pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return fail(Failure::not_found(format!("no asset '{file}'"))),
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

pub async fn overview(
    State(state): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
) -> PageResult {
    let (counts, jobs) = actions::overview(&state.registry).await.map_err(fail)?;
    let mut body = String::from(r#"<h1>Overview</h1><ul class="counts">"#);
    for (stage, count) in Stage::ALL.iter().zip(counts) {
        let _ = write!(
            body,
            r#"<li><a href="/{s}" data-count="{s}"><span class="count">{count}</span> <span>{title}</span></a></li>"#,
            s = stage.as_str(),
            title = stage.title(),
        );
    }
    body.push_str("</ul>");
    let running: Vec<&Job> = jobs.iter().filter(|j| !j.state.is_final()).collect();
    body.push_str("<h2>Running jobs</h2>");
    if running.is_empty() {
        body.push_str(r#"<p class="empty">No job is running. Save a model on the <a href="/trained">Trained</a> page, or deploy one on the <a href="/saved">Saved</a> page.</p>"#);
    } else {
        body.push_str(&jobs_table(running.into_iter()));
    }
    let recent: Vec<&Job> = jobs
        .iter()
        .rev()
        .filter(|j| j.state.is_final())
        .take(5)
        .collect();
    if !recent.is_empty() {
        body.push_str(r#"<h2>Recent jobs</h2>"#);
        body.push_str(&jobs_table(recent.into_iter()));
    }
    Ok(page(&state, &access, "Overview", Section::Overview, jobs).render(&body))
}

pub async fn jobs(
    State(state): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
) -> PageResult {
    let jobs = actions::jobs(&state.registry).await.map_err(fail)?;
    let mut body = String::from("<h1>Jobs</h1>");
    if jobs.is_empty() {
        body.push_str(r#"<p class="empty">No jobs yet. Jobs come from Save (Trained page, or <code>loraforge trained save NAME --background</code>) and Deploy (Saved page).</p>"#);
    } else {
        body.push_str(&jobs_table(jobs.iter().rev()));
    }
    Ok(page(&state, &access, "Jobs", Section::Jobs, jobs).render(&body))
}

fn result_link(job: &Job) -> String {
    let Some(result) = &job.result else {
        return String::new();
    };
    let stage = match &job.kind {
        loraforge_registry::JobKind::Save { .. } => "saved",
        loraforge_registry::JobKind::Deploy { .. } => "deployed",
    };
    format!(r#"<a href="/{stage}/{}">{}</a>"#, seg(result), name(result))
}

/// What a job does, with the entry's name split into its parts.
fn what(job: &Job) -> String {
    match &job.kind {
        loraforge_registry::JobKind::Save { trained, dtype, .. } => {
            format!(
                "Save {} <span class=\"muted\">({})</span>",
                name(trained),
                esc(dtype)
            )
        }
        loraforge_registry::JobKind::Deploy { saved, quant, .. } => {
            format!(
                "Deploy {} <span class=\"muted\">({})</span>",
                name(saved),
                esc(quant)
            )
        }
    }
}

fn jobs_table<'a>(jobs: impl Iterator<Item = &'a Job>) -> String {
    let mut out = String::from(
        r#"<div class="table-wrap"><table class="list jobs"><thead><tr><th>Job</th><th>What</th><th>State</th><th>Progress</th><th>Result</th><th>Created</th><th></th></tr></thead><tbody>"#,
    );
    for job in jobs {
        let error = match (&job.error, job.state) {
            (Some(error), JobState::Failed) => format!(
                r#"<div class="error">{}</div><div class="hint">details: <code>loraforge jobs show {}</code></div>"#,
                esc(error),
                esc(&job.id)
            ),
            _ => String::new(),
        };
        let cancel = if job.state.is_final() {
            String::new()
        } else {
            format!(
                r#"<button type="button" data-action="cancel" data-stage="jobs" data-name="{id}">Cancel</button>"#,
                id = esc(&job.id)
            )
        };
        let _ = write!(
            out,
            r#"<tr data-name="{id}" data-job="{id}" data-state="{state}"><td><code class="job-id" title="{id}">{short}</code></td><td class="what">{what}</td><td class="state">{state}</td><td class="progress-cell">{bar}</td><td class="result">{result}{error}</td><td>{created}</td><td class="actions">{cancel}</td></tr>"#,
            id = esc(&job.id),
            short = esc(job.id.get(..8).unwrap_or(&job.id)),
            what = what(job),
            state = actions::state_word(job.state),
            bar = progress_bar(job),
            result = result_link(job),
            created = date(&job.created),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

/// `?page=N` for long lists, `?removed=1` to include trained models whose adapter was deleted.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    page: Option<usize>,
    removed: Option<u8>,
}

fn stage_of(text: &str) -> Result<Stage, Failure> {
    Stage::parse(text).ok_or_else(|| {
        Failure::not_found(format!("no page '/{text}'"))
            .with_hint("the pages are /base, /trained, /saved, /deployed and /jobs")
    })
}

fn action(
    kind: &str,
    stage: Stage,
    entry: &(impl std::fmt::Display + ?Sized),
    label: &str,
) -> String {
    let entry = &entry.to_string();
    let pattern = match kind {
        "save" => format!("{entry}_s_xxxx"),
        "deploy" => format!("{entry}_d_xxxx_<quant>"),
        _ => String::new(),
    };
    format!(
        r#"<button type="button" data-action="{kind}" data-stage="{stage}" data-name="{name}" data-pattern="{pattern}">{label}</button>"#,
        stage = stage.as_str(),
        name = esc(entry),
        pattern = esc(&pattern),
    )
}

fn link(stage: Stage, entry: &(impl std::fmt::Display + ?Sized)) -> String {
    let entry = &entry.to_string();
    format!(
        r#"<a href="/{}/{}">{}</a>"#,
        stage.as_str(),
        seg(entry),
        name(entry)
    )
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    Path(stage_text): Path<String>,
    Query(query): Query<ListQuery>,
) -> PageResult {
    let stage = stage_of(&stage_text).map_err(fail)?;
    // Every entry: the page hides removed ones itself and says how many it hid.
    let listing = actions::list(&state.registry, stage, true)
        .await
        .map_err(fail)?;
    let jobs = actions::jobs(&state.registry).await.map_err(fail)?;
    let body = render_list(stage, &listing, &query);
    Ok(page(&state, &access, stage.title(), Section::Stage(stage), jobs).render(&body))
}

/// The list page's body.
pub fn render_list(stage: Stage, listing: &Listing, query: &ListQuery) -> String {
    let mut rows: Vec<String> = Vec::with_capacity(listing.len());
    let mut hidden = 0usize;
    let headers: &[&str] = match listing {
        Listing::Base(records) => {
            for r in records {
                rows.push(format!(
                    r#"<tr data-name="{n}"><td><a href="/base/{s}"><code class="name">{n}</code></a></td><td>{model}</td><td>{arch}</td><td>{template}</td><td>{added}</td><td class="actions">{delete}</td></tr>"#,
                    n = esc(&r.technical_name),
                    s = seg(&r.technical_name),
                    model = esc(&r.model_name),
                    arch = esc(r.architecture.as_deref().unwrap_or("—")),
                    template = if r.has_template { "yes" } else { "none" },
                    added = date(&r.added),
                    delete = action("delete", stage, &r.technical_name, "Delete"),
                ));
            }
            &[
                "Name",
                "Model",
                "Architecture",
                "Deployment template",
                "Added",
                "",
            ]
        }
        Listing::Trained(records) => {
            let show_removed = query.removed == Some(1);
            for r in records {
                if !r.adapter_present && !show_removed {
                    hidden += 1;
                    continue;
                }
                let actions = if r.adapter_present {
                    format!(
                        "{}{}",
                        action("save", stage, &r.name, "Save"),
                        action("delete", stage, &r.name, "Delete")
                    )
                } else {
                    r#"<span class="muted">adapter deleted</span>"#.to_string()
                };
                rows.push(format!(
                    r#"<tr data-name="{n}"><td>{link}</td><td><a href="/base/{bs}"><code class="name">{base}</code></a></td><td>{train}</td><td>{date}</td><td>{checkpoint}</td><td class="actions">{actions}</td></tr>"#,
                    n = esc(&r.name),
                    link = link(stage, &r.name),
                    bs = seg(&r.base),
                    base = esc(&r.base),
                    train = esc(&r.train_name),
                    date = r.date.format("%Y-%m-%d"),
                    checkpoint = r
                        .checkpoint
                        .map(|c| format!("checkpoint-{c}"))
                        .unwrap_or_else(|| "final".into()),
                ));
            }
            &["Name", "Base", "Train name", "Date", "Adapter", ""]
        }
        Listing::Saved(records) => {
            for r in records {
                let bytes: u64 = r.files.iter().map(|f| f.bytes).sum();
                rows.push(format!(
                    r#"<tr data-name="{n}"><td>{link}</td><td>{trained}</td><td>{dtype}</td><td>{size}</td><td>{created}</td><td class="actions">{deploy}{delete}</td></tr>"#,
                    n = esc(&r.name),
                    link = link(stage, &r.name),
                    trained = link(Stage::Trained, &r.trained),
                    dtype = esc(&r.dtype),
                    size = size(bytes),
                    created = date(&r.created),
                    deploy = action("deploy", stage, &r.name, "Deploy"),
                    delete = action("delete", stage, &r.name, "Delete"),
                ));
            }
            &["Name", "Trained model", "Dtype", "Size", "Saved", ""]
        }
        Listing::Deployed(records) => {
            for r in records {
                rows.push(format!(
                    r#"<tr data-name="{n}"><td>{link}</td><td>{saved}</td><td>{quant}</td><td><code>{host}</code></td><td>{created}</td><td class="actions">{delete}</td></tr>"#,
                    n = esc(&r.name),
                    link = link(stage, &r.name),
                    saved = link(Stage::Saved, &r.saved),
                    quant = esc(&r.quant),
                    host = esc(&r.host),
                    created = date(&r.created),
                    delete = action("delete", stage, &r.name, "Delete"),
                ));
            }
            &[
                "Name",
                "Saved model",
                "Quantization",
                "Ollama host",
                "Deployed",
                "",
            ]
        }
    };
    let mut body = format!(r#"<h1>{}</h1>"#, stage.title());
    if rows.is_empty() {
        let _ = write!(
            body,
            r#"<p class="empty">No {} models yet. <code>{}</code></p>"#,
            stage.as_str(),
            esc(stage.empty_hint())
        );
    } else {
        let pages = rows.len().div_ceil(PAGE_SIZE);
        let current = query.page.unwrap_or(1).clamp(1, pages);
        body.push_str(r#"<div class="table-wrap"><table class="list"><thead><tr>"#);
        for h in headers {
            let _ = write!(body, "<th>{h}</th>");
        }
        body.push_str("</tr></thead><tbody>");
        for row in rows.iter().skip((current - 1) * PAGE_SIZE).take(PAGE_SIZE) {
            body.push_str(row);
        }
        body.push_str("</tbody></table></div>");
        if pages > 1 {
            body.push_str(r#"<nav class="pager" aria-label="Pages">"#);
            for p in 1..=pages {
                if p == current {
                    let _ = write!(body, r#"<span aria-current="page">{p}</span>"#);
                } else {
                    let _ = write!(body, r#"<a href="?page={p}">{p}</a>"#);
                }
            }
            body.push_str("</nav>");
        }
    }
    if hidden > 0 {
        let _ = write!(
            body,
            r#"<p class="muted">{hidden} trained model(s) whose adapter files were deleted are hidden; their cards stay for lineage. <a href="?removed=1">Show them</a></p>"#
        );
    }
    body
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(if *b { "yes".into() } else { "no".into() }),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => Some(
            items
                .iter()
                .filter_map(scalar)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    }
}

/// A JSON object as a definition list (nested objects nest), `null`s left out.
fn facts(value: &Value, out: &mut String) {
    let Value::Object(map) = value else {
        if let Some(text) = scalar(value) {
            out.push_str(&esc(&text));
        }
        return;
    };
    out.push_str(r#"<dl class="facts">"#);
    for (key, item) in map {
        if item.is_null() || item.as_object().is_some_and(|m| m.is_empty()) {
            continue;
        }
        let _ = write!(out, "<dt>{}</dt><dd>", esc(&key.replace('_', " ")));
        match scalar(item) {
            Some(text) => out.push_str(&esc(&text)),
            None if item.is_object() => facts(item, out),
            None => {
                let _ = write!(out, "<code>{}</code>", esc(&item.to_string()));
            }
        }
        out.push_str("</dd>");
    }
    out.push_str("</dl>");
}

fn lineage(card: &Value, current: &str) -> String {
    let Some(steps) = card.get("lineage").and_then(Value::as_array) else {
        return String::new();
    };
    let mut out = String::from(r#"<h2>Lineage</h2><ol class="lineage">"#);
    for step in steps {
        let stage_text = step.get("stage").and_then(Value::as_str).unwrap_or("");
        let entry = step.get("name").and_then(Value::as_str).unwrap_or("");
        let shown = match Stage::parse(stage_text) {
            Some(_) if entry == current => name(entry),
            Some(stage) => link(stage, entry),
            None => name(entry),
        };
        let when = step
            .get("date")
            .and_then(Value::as_str)
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
            .map(|d| date(&d.with_timezone(&chrono::Utc)))
            .unwrap_or_default();
        let _ = write!(
            out,
            r#"<li><span class="stage">{stage}</span> {shown} <span class="muted">{action}</span> {when}</li>"#,
            stage = esc(stage_text),
            action = esc(step.get("action").and_then(Value::as_str).unwrap_or("")),
        );
    }
    out.push_str("</ol>");
    out
}

/// The files of this entry with checksums, from its own lineage step.
fn files(card: &Value, stage: Stage, current: &str) -> String {
    let step = card
        .get("lineage")
        .and_then(Value::as_array)
        .and_then(|steps| {
            steps.iter().rev().find(|s| {
                s.get("stage").and_then(Value::as_str) == Some(stage.as_str())
                    && s.get("name").and_then(Value::as_str) == Some(current)
            })
        });
    let Some(list) = step.and_then(|s| s.get("files")).and_then(Value::as_array) else {
        return String::new();
    };
    if list.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        r#"<h2>Files</h2><div class="table-wrap"><table class="list files"><thead><tr><th>File</th><th>Size</th><th>SHA-256</th></tr></thead><tbody>"#,
    );
    for file in list {
        let path = file.get("path").and_then(Value::as_str).unwrap_or("");
        let bytes = file.get("size").and_then(Value::as_u64).unwrap_or(0);
        let sha = file.get("sha256").and_then(Value::as_str).unwrap_or("");
        let _ = write!(
            out,
            r#"<tr data-file="{p}"><td><code>{p}</code></td><td>{size}</td><td><code class="sha">{sha}</code></td></tr>"#,
            p = esc(path),
            size = size(bytes),
            sha = esc(sha),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

pub async fn detail(
    State(state): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    Path((stage_text, entry)): Path<(String, String)>,
) -> PageResult {
    let stage = stage_of(&stage_text).map_err(fail)?;
    let (card, readme) = actions::card(&state.registry, stage, &entry)
        .await
        .map_err(fail)?;
    let record = actions::record(&state.registry, stage, &entry)
        .await
        .map_err(fail)?;
    let jobs = actions::jobs(&state.registry).await.map_err(fail)?;
    let buttons = match stage {
        Stage::Trained if record.get("adapter_present").and_then(Value::as_bool) == Some(true) => {
            format!(
                "{}{}",
                action("save", stage, &entry, "Save"),
                action("delete", stage, &entry, "Delete")
            )
        }
        Stage::Trained => r#"<span class="muted">adapter files deleted</span>"#.into(),
        Stage::Saved => format!(
            "{}{}",
            action("deploy", stage, &entry, "Deploy"),
            action("delete", stage, &entry, "Delete")
        ),
        _ => action("delete", stage, &entry, "Delete"),
    };
    let mut body = format!(
        r#"<p class="crumbs"><a href="/{s}">{title}</a></p><div class="entry" data-name="{n}" data-stage="{s}"><h1>{shown}</h1><div class="actions">{buttons}</div></div>"#,
        s = stage.as_str(),
        title = stage.title(),
        n = esc(&entry),
        shown = name(&entry),
    );
    body.push_str(&lineage(&card, &entry));
    body.push_str(&files(&card, stage, &entry));
    body.push_str("<h2>Record</h2>");
    facts(&record, &mut body);
    body.push_str("<h2>Model card</h2>");
    let mut summary = card.clone();
    if let Some(map) = summary.as_object_mut() {
        map.remove("lineage");
    }
    facts(&summary, &mut body);
    let _ = write!(
        body,
        r#"<details><summary>README.md</summary><pre class="readme">{}</pre></details>"#,
        esc(&readme)
    );
    Ok(page(&state, &access, entry.clone(), Section::Stage(stage), jobs).render(&body))
}

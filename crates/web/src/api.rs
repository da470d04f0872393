//! `/api/v1`: JSON answers equal to the CLI's `--json` output, jobs, and job events (SSE).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::actions::{self, Stage};
use crate::error::Failure;
use crate::AppState;

/// `{"error", "hint"}` with the failure's status.
pub fn failure_response(failure: &Failure) -> Response {
    (
        failure.status,
        Json(json!({ "error": failure.error, "hint": failure.hint })),
    )
        .into_response()
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        failure_response(&self)
    }
}

type ApiResult = Result<Response, Failure>;

fn stage(text: &str) -> Result<Stage, Failure> {
    Stage::parse(text).ok_or_else(|| {
        Failure::not_found(format!("no such list '{text}'"))
            .with_hint("the lists are base, trained, saved, deployed and jobs")
    })
}

pub async fn not_found() -> Failure {
    Failure::not_found("no such page").with_hint("start from /")
}

/// The query of `GET /api/v1/{stage}`: `?all=1` as `list --all`.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    all: Option<String>,
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult {
    let all = matches!(query.all.as_deref(), Some("1" | "true"));
    let listing = actions::list(&state.registry, stage(&name)?, all).await?;
    Ok(Json(listing.to_json()?).into_response())
}

pub async fn show(
    State(state): State<Arc<AppState>>,
    Path((stage_name, name)): Path<(String, String)>,
) -> ApiResult {
    let (card, _) = actions::card(&state.registry, stage(&stage_name)?, &name).await?;
    Ok(Json(card).into_response())
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path((stage_name, name)): Path<(String, String)>,
) -> ApiResult {
    let answer = actions::delete(&state.registry, stage(&stage_name)?, &name).await?;
    Ok(Json(answer).into_response())
}

pub async fn jobs(State(state): State<Arc<AppState>>) -> ApiResult {
    let jobs = actions::jobs(&state.registry).await?;
    Ok(Json(actions::jobs_json(&jobs)?).into_response())
}

pub async fn job(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let job = actions::job(&state.registry, &id).await?;
    Ok(Json(actions::job_json(&job)?).into_response())
}

/// `POST /api/v1/jobs/{id}/cancel`: the job record after cancelling (unchanged when it had
/// already ended).
pub async fn cancel_job(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult {
    let job = actions::cancel_job(&state.registry, &id).await?;
    Ok(Json(actions::job_json(&job)?).into_response())
}

/// The body of `POST /api/v1/trained/{name}/save` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveBody {
    dtype: Option<String>,
}

/// The body of `POST /api/v1/saved/{name}/deploy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployBody {
    quant: String,
    host: Option<String>,
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Option<T>, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        Failure::bad_request(format!("the request body is not the expected JSON: {e}"))
    })
}

fn accepted(job: &loraforge_registry::Job) -> Response {
    (StatusCode::ACCEPTED, Json(json!({ "job": job.id }))).into_response()
}

pub async fn save(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: SaveBody = parse_body(&body)?.unwrap_or_default();
    let dtype = body.dtype.as_deref().unwrap_or("auto");
    let job = actions::start_save(&state, &name, dtype).await?;
    Ok(accepted(&job))
}

pub async fn deploy(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let body: DeployBody = parse_body(&body)?.ok_or_else(|| {
        Failure::bad_request("the request body must be JSON {\"quant\": …, \"host\": …}")
            .with_hint("quant is one of no_quantization, q8_0, q4_K_M, q4_K_S")
    })?;
    let job = actions::start_deploy(&state, &name, &body.quant, body.host.as_deref()).await?;
    Ok(accepted(&job))
}

/// How often the event stream looks at the job record.
const POLL: Duration = Duration::from_millis(250);

/// `GET /api/v1/jobs/{id}/events`: a `job` event with the job record whenever it changes, until
/// it is final.
pub async fn job_events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Failure> {
    let first = actions::job(&state.registry, &id).await?;
    let start = (Some(first), String::new(), false);
    let stream = stream::unfold(start, move |(mut next, mut last, done)| {
        let state = Arc::clone(&state);
        let id = id.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let job = match next.take() {
                    Some(job) => job,
                    None => {
                        tokio::time::sleep(POLL).await;
                        match actions::job(&state.registry, &id).await {
                            Ok(job) => job,
                            Err(failure) => {
                                let event = Event::default().event("failure").data(
                                    json!({"error": failure.error, "hint": failure.hint})
                                        .to_string(),
                                );
                                return Some((Ok::<Event, Infallible>(event), (None, last, true)));
                            }
                        }
                    }
                };
                let data = event_data(&job);
                if data != last {
                    let done = job.state.is_final();
                    let event = Event::default().event("job").data(data.clone());
                    last = data;
                    return Some((Ok(event), (None, last, done)));
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The job record plus its state in words and a hint when it failed.
fn event_data(job: &loraforge_registry::Job) -> String {
    let mut value = serde_json::to_value(job).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.insert("state_text".into(), actions::state_word(job.state).into());
        if job.state == loraforge_registry::JobState::Failed {
            object.insert(
                "hint".into(),
                format!("details: loraforge jobs show {}", job.id).into(),
            );
        }
    }
    value.to_string()
}

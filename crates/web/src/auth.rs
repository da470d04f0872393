//! The token, the session cookie, the CSRF token and the Origin rule, in one middleware.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::Failure;
use crate::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "loraforge_session";
/// The header pages send their CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A random 64-hex-digit secret (two v4 UUIDs: 244 random bits from the OS).
pub fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The token and the sessions opened with it (session id → CSRF token).
pub struct Auth {
    token: String,
    sessions: Mutex<HashMap<String, String>>,
}

/// How a request proved it may be served; handlers read it to embed the CSRF token.
#[derive(Debug, Clone)]
pub enum Access {
    /// `Authorization: Bearer`: not sent by browsers on their own, so no CSRF token is needed.
    Bearer,
    /// The session cookie; `csrf` is the token mutating requests must carry.
    Session {
        /// The session's CSRF token.
        csrf: String,
    },
}

impl Access {
    /// The CSRF token pages embed (empty for bearer access).
    pub fn csrf(&self) -> &str {
        match self {
            Access::Bearer => "",
            Access::Session { csrf } => csrf,
        }
    }
}

impl Auth {
    pub fn new(token: String) -> Auth {
        Auth {
            token,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    fn is_token(&self, candidate: &str) -> bool {
        constant_time_eq(candidate.as_bytes(), self.token.as_bytes())
    }

    fn open_session(&self) -> String {
        let id = random_token();
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(id.clone(), random_token());
        }
        id
    }

    fn session_csrf(&self, id: &str) -> Option<String> {
        let sessions = self.sessions.lock().ok()?;
        sessions
            .iter()
            .find(|(known, _)| constant_time_eq(known.as_bytes(), id.as_bytes()))
            .map(|(_, csrf)| csrf.clone())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// `..` segments, encoded dots or separators, backslashes: never part of a valid route.
fn is_traversal(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    path.split('/')
        .any(|segment| segment == ".." || segment == ".")
        || lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains("%00")
        || path.contains('\\')
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The query string without its `token` parameter.
fn query_without_token(query: &str) -> (Option<&str>, String) {
    let mut token = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("token=") {
            Some(value) => token = Some(value),
            None => rest.push(pair),
        }
    }
    (token, rest.join("&"))
}

/// True when the request comes from another site: an `Origin` that is not this server's (the
/// `Host` it was reached by), `Origin: null`, or `Sec-Fetch-Site: cross-site`.
fn is_cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if fetch_site.eq_ignore_ascii_case("cross-site") {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let own = ["http://", "https://"]
        .iter()
        .any(|scheme| !host.is_empty() && origin.eq_ignore_ascii_case(&format!("{scheme}{host}")));
    !own
}

fn refuse(status: StatusCode, message: &str, hint: &str, path: &str) -> Response {
    let failure = Failure::new(status, message).with_hint(hint);
    if path.starts_with("/api/") {
        crate::api::failure_response(&failure)
    } else {
        crate::pages::failure_page(&failure)
    }
}

/// The middleware in front of every route.
pub async fn guard(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    if is_traversal(&path) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the address contains a path traversal ('..', '.', or an encoded '/', '\\' or '.')",
            "entries are addressed by their names only, e.g. /saved/<name>",
            &path,
        );
    }
    let auth = &state.auth;
    let headers = request.headers();
    let access = if let Some(token) = bearer(headers) {
        if !auth.is_token(token) {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "the bearer token is not this server's token",
                "use the token `loraforge serve` printed (or LORAFORGE_SERVE_TOKEN)",
                &path,
            );
        }
        Access::Bearer
    } else if let Some(csrf) = cookie(headers, SESSION_COOKIE).and_then(|id| auth.session_csrf(id))
    {
        Access::Session { csrf }
    } else {
        let query = request.uri().query().unwrap_or("");
        let (token, rest) = query_without_token(query);
        match token {
            Some(token) if auth.is_token(token) && request.method() == Method::GET => {
                // Trade the token for a session cookie and drop it from the address bar.
                let session = auth.open_session();
                let location = if rest.is_empty() {
                    path.clone()
                } else {
                    format!("{path}?{rest}")
                };
                let cookie =
                    format!("{SESSION_COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/");
                let mut response = StatusCode::SEE_OTHER.into_response();
                let headers = response.headers_mut();
                if let (Ok(location), Ok(cookie)) =
                    (HeaderValue::from_str(&location), HeaderValue::from_str(&cookie))
                {
                    headers.insert(header::LOCATION, location);
                    headers.insert(header::SET_COOKIE, cookie);
                }
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return response;
            }
            _ => {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "this loraforge server needs its access token",
                    "open the address `loraforge serve` printed (it ends in ?token=…), or send Authorization: Bearer <token>",
                    &path,
                )
            }
        }
    };
    if is_mutating(request.method()) {
        if is_cross_site(request.headers()) {
            return refuse(
                StatusCode::FORBIDDEN,
                "cross-site request refused",
                "changes can only be made from loraforge's own pages",
                &path,
            );
        }
        if let Access::Session { csrf } = &access {
            let sent = request
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !constant_time_eq(sent.as_bytes(), csrf.as_bytes()) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "missing or wrong CSRF token",
                    "reload the page and try again",
                    &path,
                );
            }
        }
    }
    request.extensions_mut().insert(access);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_spellings_are_recognized() {
        for path in [
            "/saved/..",
            "/saved/../x",
            "/saved/%2e%2e",
            "/saved/%2E%2e%2Fetc",
            "/saved/a%2fb",
            "/saved/a%5cb",
            "/saved/a\\b",
            "/./saved",
        ] {
            assert!(is_traversal(path), "{path}");
        }
        assert!(!is_traversal("/saved/tiny_demo-run_20260101_ab12_s_0c1d"));
        assert!(!is_traversal("/base/qw2.5-7-i"));
    }

    #[test]
    fn the_token_parameter_is_taken_out_of_the_query() {
        assert_eq!(
            query_without_token("token=abc"),
            (Some("abc"), String::new())
        );
        assert_eq!(
            query_without_token("page=2&token=abc&x=1"),
            (Some("abc"), "page=2&x=1".to_string())
        );
        assert_eq!(query_without_token("page=2"), (None, "page=2".to_string()));
    }

    #[test]
    fn origin_must_be_this_server() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8765"));
        assert!(
            !is_cross_site(&headers),
            "no Origin: not a browser cross-site request"
        );
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8765"),
        );
        assert!(!is_cross_site(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(is_cross_site(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(is_cross_site(&headers));
    }
}

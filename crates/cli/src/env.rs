//! Every environment variable loraforge reads, in one place. Libraries read none: what these
//! say is passed to them as options.

use std::path::PathBuf;
use std::time::Duration;

use loraforge_ollama_client::OllamaHost;

/// The store root; `--home` overrides it. Default: the platform data folder
/// (`~/.local/share/loraforge`).
pub const LORAFORGE_HOME: &str = "LORAFORGE_HOME";

/// The Ollama server (`host`, `host:port` or `scheme://host:port/path`, as Ollama reads it);
/// `--host` overrides it. Default: `127.0.0.1:11434`.
pub const OLLAMA_HOST: &str = "OLLAMA_HOST";

/// Seconds a command waits for the store lock before failing (fractions allowed). Default: 30.
pub const LORAFORGE_LOCK_TIMEOUT: &str = "LORAFORGE_LOCK_TIMEOUT";

/// The access token of `loraforge serve`. Default: a random token per start.
pub const LORAFORGE_SERVE_TOKEN: &str = "LORAFORGE_SERVE_TOKEN";

/// Test aid: milliseconds to sleep at each progress report, so that tests can signal a
/// low-level command (`merge`, `convert`, `quantize`) mid-write. Unset in normal use.
pub const LORAFORGE_TEST_PROGRESS_DELAY_MS: &str = "LORAFORGE_TEST_PROGRESS_DELAY_MS";

/// The pause at each progress report that `LORAFORGE_TEST_PROGRESS_DELAY_MS` asks for, if any.
pub fn test_progress_delay() -> Option<Duration> {
    std::env::var(LORAFORGE_TEST_PROGRESS_DELAY_MS)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
}

/// Test aid: the name of a checkpoint (see `loraforge_progress::Reporter::checkpoint`) at which
/// the process kills itself with SIGKILL, so crash tests hit exact points. Unset in normal use.
pub const LORAFORGE_TEST_CRASH_AT: &str = "LORAFORGE_TEST_CRASH_AT";

/// The checkpoint named by `LORAFORGE_TEST_CRASH_AT`, if set.
pub fn test_crash_at() -> Option<String> {
    std::env::var(LORAFORGE_TEST_CRASH_AT)
        .ok()
        .filter(|v| !v.is_empty())
}

/// The store root: `LORAFORGE_HOME` when set and not empty, else the platform data folder.
pub fn store_home() -> Option<PathBuf> {
    match std::env::var_os(LORAFORGE_HOME) {
        Some(home) if !home.is_empty() => Some(PathBuf::from(home)),
        _ => dirs::data_dir().map(|d| d.join("loraforge")),
    }
}

/// The lock wait: `LORAFORGE_LOCK_TIMEOUT` when it is a non-negative number of seconds, else
/// the registry's default.
pub fn lock_timeout() -> Duration {
    std::env::var(LORAFORGE_LOCK_TIMEOUT)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(loraforge_registry::DEFAULT_LOCK_TIMEOUT)
}

/// The Ollama server: `--host` when given, else `OLLAMA_HOST`, else the default.
pub fn ollama_host(flag: Option<&str>) -> OllamaHost {
    match flag {
        Some(text) => OllamaHost::parse(text),
        None => OllamaHost::parse(&std::env::var(OLLAMA_HOST).unwrap_or_default()),
    }
}

/// The token `loraforge serve` asks for: `LORAFORGE_SERVE_TOKEN` trimmed, `None` when unset
/// (a random token), an error when set but empty (a forgotten value must not mean "random").
pub fn serve_token() -> Result<Option<String>, String> {
    match std::env::var(LORAFORGE_SERVE_TOKEN) {
        Ok(token) if token.trim().is_empty() => Err(format!(
            "{LORAFORGE_SERVE_TOKEN} is set but empty; unset it for a random token"
        )),
        Ok(token) => Ok(Some(token.trim().to_string())),
        Err(_) => Ok(None),
    }
}

/// Hugging Face token for `trained push` / `saved push` (`--token` overrides it).
pub const HF_TOKEN: &str = loraforge_hub::HF_TOKEN_ENV;

/// Older name of `HF_TOKEN`, read when `HF_TOKEN` is not set (as huggingface_hub does).
pub const HUGGING_FACE_HUB_TOKEN: &str = loraforge_hub::HUGGING_FACE_HUB_TOKEN_ENV;

/// File holding the token (default `$HF_HOME/token`), as `hf auth login` writes it.
pub const HF_TOKEN_PATH: &str = loraforge_hub::HF_TOKEN_PATH_ENV;

/// Hugging Face home (default `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`).
pub const HF_HOME: &str = loraforge_hub::HF_HOME_ENV;

/// Cache root under which the Hugging Face home lies when `HF_HOME` is not set.
pub const XDG_CACHE_HOME: &str = loraforge_hub::XDG_CACHE_HOME_ENV;

/// The user's home folder, last place the token file is looked for.
pub const HOME: &str = "HOME";

/// The Hugging Face Hub to push to. Default: `https://huggingface.co`.
pub const HF_ENDPOINT: &str = loraforge_hub::HF_ENDPOINT_ENV;

/// Where a push looks for the token, as huggingface_hub does: `--token` when given, then the
/// environment, then the token file.
pub fn hub_token_inputs(explicit: Option<String>) -> loraforge_hub::TokenInputs {
    let var = |name: &str| std::env::var(name).ok();
    let path = |name: &str| std::env::var_os(name).map(PathBuf::from);
    loraforge_hub::TokenInputs {
        explicit,
        hf_token: var(HF_TOKEN),
        hugging_face_hub_token: var(HUGGING_FACE_HUB_TOKEN),
        hf_token_path: path(HF_TOKEN_PATH),
        hf_home: path(HF_HOME),
        xdg_cache_home: path(XDG_CACHE_HOME),
        home: path(HOME),
    }
}

/// The Hub endpoint text: `HF_ENDPOINT` when set and not empty, else the public Hub.
pub fn hub_endpoint() -> String {
    match std::env::var(HF_ENDPOINT) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => loraforge_hub::DEFAULT_ENDPOINT.to_string(),
    }
}

//! Shared helpers: fixtures, a recording reporter, a client tuned for tests.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use loraforge_ollama_client::{Client, ClientOptions, OllamaHost};
use loraforge_progress::Reporter;

/// Path of a file in `tests/fixtures/ollama/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/ollama"
    ))
    .join(name)
}

/// The recorded digest of a fixture, from `SHA256SUMS` (made with coreutils `sha256sum`).
pub fn recorded_digest(name: &str) -> String {
    let sums = std::fs::read_to_string(fixture("SHA256SUMS")).unwrap();
    let line = sums.lines().find(|l| l.ends_with(name)).unwrap();
    format!("sha256:{}", line.split_whitespace().next().unwrap())
}

/// A client for `url` with short timeouts and fast retries.
pub fn client_for(url: &str) -> Client {
    let mut o = ClientOptions::with_host(OllamaHost::parse(url));
    o.connect_timeout = Duration::from_secs(2);
    o.request_timeout = Duration::from_secs(10);
    o.stall_timeout = Duration::from_secs(10);
    o.max_backoff = Duration::from_millis(50);
    o.retries = 2;
    o.retry_backoff = Duration::from_millis(5);
    Client::new(o).unwrap()
}

/// One call on a [`Recorder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Begin(String, Option<u64>),
    Advance(u64),
    Message(String),
    Finish,
}

/// A reporter that records every call.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<Event>>);

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
    pub fn messages(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }
    pub fn phases(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Begin(p, _) => Some(p),
                _ => None,
            })
            .collect()
    }
    /// Units advanced after the last `begin(phase, …)`, up to the next `begin`.
    pub fn advanced_in(&self, phase: &str) -> u64 {
        let mut total = 0;
        let mut inside = false;
        for e in self.events() {
            match e {
                Event::Begin(p, _) => {
                    inside = p == phase;
                    if inside {
                        total = 0;
                    }
                }
                Event::Advance(n) if inside => total += n,
                _ => {}
            }
        }
        total
    }
}

impl Reporter for Recorder {
    fn begin(&self, phase: &str, total: Option<u64>) {
        self.0
            .lock()
            .unwrap()
            .push(Event::Begin(phase.to_owned(), total));
    }
    fn advance(&self, units: u64) {
        self.0.lock().unwrap().push(Event::Advance(units));
    }
    fn message(&self, text: &str) {
        self.0.lock().unwrap().push(Event::Message(text.to_owned()));
    }
    fn finish(&self) {
        self.0.lock().unwrap().push(Event::Finish);
    }
}

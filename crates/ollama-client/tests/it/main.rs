//! Integration tests of `loraforge-ollama-client`: host parsing, model names, Modelfile parsing,
//! and the client against the in-process fake Ollama server (plus an opt-in real server).
#![allow(clippy::unwrap_used)]

mod common;
mod fake_server;
mod faults;
mod host;
mod modelfile;
mod names;
mod ollama_parser;
mod props;
mod real_ollama;

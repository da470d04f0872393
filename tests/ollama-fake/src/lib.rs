//! A fake Ollama server for tests, implementing Ollama's documented REST behaviour in process.
#![deny(missing_docs)]

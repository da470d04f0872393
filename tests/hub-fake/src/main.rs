//! `hub-fake`: runs the fake Hub for a client in another process (the official Python client in
//! `tests/python/check_hub.py`).
//!
//! `hub-fake --token TOKEN --user USER [--lfs-threshold BYTES] [--multipart BYTES CHUNK]`
//! prints the Hub's URL on the first line of stdout and serves until stdin closes.

use std::io::{BufRead, Write};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let number = |text: Option<&String>| text.and_then(|t| t.parse::<u64>().ok());
    let fake = hub_fake::FakeHub::spawn()?;
    let token = value("--token").unwrap_or_else(|| "hf_fake_token".to_owned());
    let user = value("--user").unwrap_or_else(|| "fake-user".to_owned());
    fake.add_token(&token, &user, &[], true);
    if let Some(n) = number(value("--lfs-threshold").as_ref()) {
        fake.set_lfs_threshold(n);
    }
    if let Some(i) = args.iter().position(|a| a == "--multipart") {
        if let (Some(t), Some(c)) = (number(args.get(i + 1)), number(args.get(i + 2))) {
            fake.set_multipart(t, c);
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", fake.url())?;
    out.flush()?;
    drop(out);
    for line in std::io::stdin().lock().lines() {
        line?;
    }
    Ok(())
}

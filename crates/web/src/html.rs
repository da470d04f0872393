//! Small HTML helpers: escaping, names split into their parts, human sizes and dates.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use loraforge_naming::ParsedName;

/// Escape text for an HTML text node or a quoted attribute.
pub fn esc(text: &(impl std::fmt::Display + ?Sized)) -> String {
    let text = text.to_string();
    let text = text.as_str();
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn part(out: &mut String, class: &str, title: &str, text: &str) {
    let _ = write!(
        out,
        r#"<span class="{class}" title="{title}">{}</span>"#,
        esc(text)
    );
}

/// A name in monospace with its parts (base, train name, date, UUID prefixes, quantization)
/// in separate spans; names that do not parse are shown whole.
pub fn name(text: &(impl std::fmt::Display + ?Sized)) -> String {
    let text = text.to_string();
    let text = text.as_str();
    let mut out = String::from(r#"<code class="name">"#);
    match ParsedName::parse(text) {
        Ok(parsed) => {
            let trained = parsed.trained();
            part(&mut out, "n-base", "base model", trained.base().as_str());
            out.push_str(r#"<span class="n-sep">_</span>"#);
            part(&mut out, "n-train", "train name", trained.train().as_str());
            out.push_str(r#"<span class="n-sep">_</span>"#);
            part(
                &mut out,
                "n-date",
                "training date",
                &trained.date().format("%Y%m%d").to_string(),
            );
            out.push_str(r#"<span class="n-sep">_</span>"#);
            part(
                &mut out,
                "n-uuid",
                "training UUID prefix",
                &trained.uuid_prefix().to_string(),
            );
            if let Some(saved) = parsed.saved() {
                out.push_str(r#"<span class="n-sep">_s_</span>"#);
                part(
                    &mut out,
                    "n-uuid",
                    "saving UUID prefix",
                    &saved.uuid_prefix().to_string(),
                );
            }
            if let ParsedName::Deployed(deployed) = &parsed {
                out.push_str(r#"<span class="n-sep">_d_</span>"#);
                part(
                    &mut out,
                    "n-uuid",
                    "deploying UUID prefix",
                    &deployed.uuid_prefix().to_string(),
                );
                out.push_str(r#"<span class="n-sep">_</span>"#);
                part(
                    &mut out,
                    "n-quant",
                    "quantization",
                    deployed.quant().as_str(),
                );
            }
        }
        Err(_) => out.push_str(&esc(text)),
    }
    out.push_str("</code>");
    out
}

/// `1.4 GB`, `312 kB`, `17 B` (decimal units).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ if value < 10.0 => format!("{value:.1} {}", UNITS[unit]),
        _ => format!("{value:.0} {}", UNITS[unit]),
    }
}

/// A timestamp as `2026-03-04 17:21 UTC` inside a `<time>` element with the exact value.
pub fn date(when: &DateTime<Utc>) -> String {
    format!(
        r#"<time datetime="{}">{}</time>"#,
        when.to_rfc3339(),
        when.format("%Y-%m-%d %H:%M UTC")
    )
}

/// Percent-encode a path segment (names are validated, but links are built defensively).
pub fn seg(text: &(impl std::fmt::Display + ?Sized)) -> String {
    let text = text.to_string();
    let text = text.as_str();
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') || b == b'.' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(size(17), "17 B");
        assert_eq!(size(312_000), "312 kB");
        assert_eq!(size(1_400_000_000), "1.4 GB");
    }

    #[test]
    fn a_deployed_name_is_split_into_its_parts() {
        let html = name("qw2.5-7-i_support-bot_20240517_3f2a_s_0b1c_d_77e0_q4_K_M");
        for piece in [
            r#"<span class="n-base" title="base model">qw2.5-7-i</span>"#,
            r#"<span class="n-train" title="train name">support-bot</span>"#,
            r#"<span class="n-date" title="training date">20240517</span>"#,
            r#">3f2a</span>"#,
            r#">0b1c</span>"#,
            r#">77e0</span>"#,
            r#"<span class="n-quant" title="quantization">q4_K_M</span>"#,
        ] {
            assert!(html.contains(piece), "{piece} missing from {html}");
        }
        assert_eq!(name("tiny"), r#"<code class="name">tiny</code>"#);
    }
}

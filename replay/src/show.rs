//! `show SEQ`: one event in full. Text mode prints the metadata (with the dedup verdict), the
//! kept headers and the body decoded for reading: JSON pretty-printed (keys in their original
//! order, numbers as written), form fields one per line, other text as it is, binary as
//! base64. `--json` prints the admin API's `EventJson`, whose body is exact.

use base64::Engine as _;
use hooklog::admin::api::EventJson;

use crate::cli::ShowArgs;
use crate::context::Context;
use crate::output::{multi_line, one_line, Out};

const FORM: &str = "application/x-www-form-urlencoded";

/// Runs `show`.
pub fn run(ctx: &Context, args: &ShowArgs) -> anyhow::Result<()> {
    let (mut backend, found) = ctx.first(|b| b.get(args.seq))?;
    let Some(ev) = found else {
        let log = backend.status()?.status.log;
        backend.release()?;
        if log.count == 0 {
            anyhow::bail!("no event {} (the log is empty)", args.seq);
        }
        anyhow::bail!(
            "no event {} (log holds {}..={})",
            args.seq,
            log.first_seq,
            log.last_seq
        );
    };
    backend.release()?;
    let mut out = Out::stdout();
    if ctx.json {
        out.line(&serde_json::to_string(&ev)?)?;
    } else {
        out.write(&render(&ev))?;
    }
    out.flush()
}

/// The text form.
fn render(ev: &EventJson) -> String {
    let mut text = String::new();
    for (k, v) in [
        ("seq", ev.seq.to_string()),
        ("received at", ev.received_at.clone()),
        ("source", ev.source.clone()),
        ("route", one_line(&ev.route, None)),
        ("verified", ev.verified.clone()),
        ("dedup", dedup_verdict(ev.dedup.as_ref())),
    ] {
        text.push_str(&format!("{:<13}{v}\n", format!("{k}:")));
    }
    if ev.headers.is_empty() {
        text.push_str("headers:     (none kept)\n");
    } else {
        text.push_str("headers:\n");
        for (k, v) in &ev.headers {
            text.push_str(&format!("  {}: {}\n", one_line(k, None), one_line(v, None)));
        }
    }
    let bytes = match ev.body_bytes() {
        Ok(bytes) => bytes,
        Err(e) => {
            text.push_str(&format!(
                "body:        cannot decode the {} body: {e}\n",
                ev.body_encoding
            ));
            return text;
        }
    };
    let content_type = ev
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str());
    let (kind, body) = body_view(&bytes, content_type);
    text.push_str(&format!("body:        {} bytes, {kind}\n", bytes.len()));
    if !body.is_empty() {
        text.push_str(&body);
        if !body.ends_with('\n') {
            text.push('\n');
        }
    }
    text
}

/// `original`, `duplicate of 12`, or `no verdict yet` (dedup has not reached the record).
fn dedup_verdict(v: Option<&serde_json::Value>) -> String {
    let Some(v) = v else {
        return "no verdict yet".to_owned();
    };
    match (v["verdict"].as_str(), v["of"].as_u64()) {
        (Some("original"), _) => "original".to_owned(),
        (Some("duplicate"), Some(of)) => format!("duplicate of {of}"),
        _ => one_line(&v.to_string(), None),
    }
}

/// How to show a body: a description and the text.
fn body_view(bytes: &[u8], content_type: Option<&str>) -> (String, String) {
    let media = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    let Ok(text) = std::str::from_utf8(bytes) else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let wrapped: Vec<&str> = b64
            .as_bytes()
            .chunks(76)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        return ("binary, base64".to_owned(), wrapped.join("\n"));
    };
    let says_json = media
        .as_deref()
        .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
    let looks_json = media.is_none() && matches!(text.trim_start().chars().next(), Some('{' | '['));
    if (says_json || looks_json) && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
        return ("JSON, pretty-printed".to_owned(), pretty_json(text));
    }
    let says_form = media.as_deref() == Some(FORM);
    if says_form || (media.is_none() && looks_like_form(text)) {
        let fields: Vec<String> = form_urlencoded::parse(bytes)
            .map(|(k, v)| format!("{} = {}", one_line(&k, None), one_line(&v, None)))
            .collect();
        let kind = if says_form {
            "form fields"
        } else {
            "form fields (no content-type; it looks form-encoded)"
        };
        return (kind.to_owned(), fields.join("\n"));
    }
    let kind = match &media {
        Some(m) => format!("text ({})", one_line(m, None)),
        None => "text".to_owned(),
    };
    (kind, multi_line(text))
}

/// `a=1&b=x%20y`: only URL-safe characters and at least one `key=value`.
fn looks_like_form(text: &str) -> bool {
    !text.is_empty()
        && text.contains('=')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%+=&-._~*".contains(&b))
}

/// Re-indents valid JSON text by two spaces, keeping every token exactly as written (key
/// order, number formats, string escapes), which a round trip through `serde_json::Value`
/// would not. The caller has checked that `text` is JSON.
fn pretty_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(close);
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_reindented_without_reordering_or_reformatting() {
        let text = r#" {"z":1.50,"a":[ ],"m":{},"s":"a,b:{\"c\"}","l":[1, {"k" : null}]} "#;
        assert_eq!(
            pretty_json(text),
            "{\n  \"z\": 1.50,\n  \"a\": [],\n  \"m\": {},\n  \"s\": \"a,b:{\\\"c\\\"}\",\n  \
             \"l\": [\n    1,\n    {\n      \"k\": null\n    }\n  ]\n}"
        );
    }

    #[test]
    fn a_json_body_is_pretty_printed_by_content_type_or_by_its_look() {
        let (kind, body) = body_view(br#"{"a":1}"#, Some("application/json; charset=utf-8"));
        assert_eq!(kind, "JSON, pretty-printed");
        assert_eq!(body, "{\n  \"a\": 1\n}");
        let (kind, _) = body_view(br#"[1]"#, None);
        assert_eq!(kind, "JSON, pretty-printed");
        let (kind, body) = body_view(b"{not json", Some("application/json"));
        assert_eq!(kind, "text (application/json)");
        assert_eq!(body, "{not json");
    }

    #[test]
    fn form_fields_are_decoded_one_per_line() {
        let (kind, body) = body_view(
            b"Body=hi+there%0Ayou&From=%2B15551234567",
            Some("application/x-www-form-urlencoded"),
        );
        assert_eq!(kind, "form fields");
        assert_eq!(body, "Body = hi there\\nyou\nFrom = +15551234567");
        let (kind, _) = body_view(b"Body=hi", None);
        assert!(kind.starts_with("form fields"));
        let (kind, _) = body_view(b"hello there = you", None);
        assert_eq!(kind, "text");
    }

    #[test]
    fn a_binary_body_is_shown_as_wrapped_base64() {
        let (kind, body) = body_view(&[0xff; 100], Some("application/octet-stream"));
        assert_eq!(kind, "binary, base64");
        assert_eq!(body.lines().next().map(str::len), Some(76));
    }

    #[test]
    fn the_dedup_verdict_is_spelled_out() {
        let v = |j: &str| serde_json::from_str::<serde_json::Value>(j).ok();
        assert_eq!(dedup_verdict(None), "no verdict yet");
        assert_eq!(
            dedup_verdict(v(r#"{"verdict":"original"}"#).as_ref()),
            "original"
        );
        assert_eq!(
            dedup_verdict(v(r#"{"verdict":"duplicate","of":12}"#).as_ref()),
            "duplicate of 12"
        );
    }
}

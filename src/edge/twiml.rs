//! TwiML answers. Voice routes get the configured greeting; every other Twilio route gets an
//! empty `<Response/>` (acknowledge, do nothing). Text from config is XML-escaped; nothing
//! from the request is ever echoed into TwiML.

use crate::config::VoiceConfig;

const PROLOG: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// The empty answer: acknowledged, no action.
pub fn empty() -> String {
    format!("{PROLOG}<Response/>")
}

/// The answer to an incoming call, from `[twilio.voice]`: an optional `<Say>`, then `<Dial>`
/// if a number is set, else a `<Gather>` around the greeting if an action URL is set, else
/// `<Hangup/>`.
pub fn voice(cfg: &VoiceConfig) -> String {
    let mut say = String::new();
    if let Some(text) = &cfg.say {
        say.push_str("<Say");
        attr(&mut say, "voice", cfg.say_voice.as_deref());
        attr(&mut say, "language", cfg.say_language.as_deref());
        say.push('>');
        say.push_str(&escape(text));
        say.push_str("</Say>");
    }
    let mut out = format!("{PROLOG}<Response>");
    if let Some(number) = &cfg.dial {
        out.push_str(&say);
        out.push_str("<Dial");
        let timeout = cfg.dial_timeout_secs.map(|t| t.to_string());
        attr(&mut out, "timeout", timeout.as_deref());
        attr(&mut out, "callerId", cfg.dial_caller_id.as_deref());
        out.push_str("><Number>");
        out.push_str(&escape(number));
        out.push_str("</Number></Dial>");
    } else if let Some(action) = &cfg.gather_action {
        out.push_str("<Gather");
        attr(&mut out, "action", Some(action));
        attr(&mut out, "input", cfg.gather_input.as_deref());
        let digits = cfg.gather_num_digits.map(|d| d.to_string());
        attr(&mut out, "numDigits", digits.as_deref());
        out.push('>');
        out.push_str(&say);
        out.push_str("</Gather><Hangup/>");
    } else {
        out.push_str(&say);
        out.push_str("<Hangup/>");
    }
    out.push_str("</Response>");
    out
}

fn attr(out: &mut String, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        out.push(' ');
        out.push_str(name);
        out.push_str("=\"");
        out.push_str(&escape(v));
        out.push('"');
    }
}

/// Escapes text and attribute values, dropping characters XML 1.0 cannot carry.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_nothing_configured_the_call_is_hung_up() {
        assert_eq!(
            voice(&VoiceConfig::default()),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>"#
        );
    }

    #[test]
    fn a_greeting_is_said_escaped_then_the_call_hangs_up() {
        let cfg = VoiceConfig {
            say: Some("Tom & Jerry <3".into()),
            say_voice: Some("alice".into()),
            ..VoiceConfig::default()
        };
        assert_eq!(
            voice(&cfg),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say voice="alice">Tom &amp; Jerry &lt;3</Say><Hangup/></Response>"#
        );
    }

    #[test]
    fn a_dial_number_forwards_the_call_after_the_greeting() {
        let cfg = VoiceConfig {
            say: Some("Connecting".into()),
            dial: Some("+15555550100".into()),
            dial_timeout_secs: Some(20),
            dial_caller_id: Some("+15555550101".into()),
            ..VoiceConfig::default()
        };
        assert_eq!(
            voice(&cfg),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Say>Connecting</Say><Dial timeout="20" callerId="+15555550101"><Number>+15555550100</Number></Dial></Response>"#
        );
    }

    #[test]
    fn a_gather_wraps_the_greeting_and_escapes_its_action_url() {
        let cfg = VoiceConfig {
            say: Some("Press 1".into()),
            gather_action: Some("https://h.example/menu?a=1&b=2".into()),
            gather_num_digits: Some(1),
            gather_input: Some("dtmf".into()),
            ..VoiceConfig::default()
        };
        assert_eq!(
            voice(&cfg),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="https://h.example/menu?a=1&amp;b=2" input="dtmf" numDigits="1"><Say>Press 1</Say></Gather><Hangup/></Response>"#
        );
    }

    #[test]
    fn control_characters_are_dropped() {
        assert_eq!(escape("a\u{0}b\u{8}c\nd"), "abc\nd");
    }

    #[test]
    fn the_empty_answer_is_a_bare_response() {
        assert_eq!(
            empty(),
            r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#
        );
    }
}

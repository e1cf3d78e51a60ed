//! `[compliance]` and `[[lines]]`: what the outbound gates are configured with.
//!
//! Both are read by [`crate::config::Config`] like every other section (defaults < file <
//! `HOOKLOG_COMPLIANCE_*` environment) and validated at start with errors that name the key.
//! `[[lines]]` is an array of tables, which the `HOOKLOG_<SECTION>_<KEY>` scheme cannot
//! address: lines come from the file only.
//!
//! Invariant: configuration can only make the gates stricter than the federal rules. The
//! window given by `quiet_start`/`quiet_end` must lie inside 08:00–21:00, and no key turns a
//! gate off (the kill switch only stops more).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::provider::SendProvider;

use crate::config::de;
use crate::phone::normalize_e164;

/// A local time of day, `HH:MM`, as minutes after midnight (`24:00` allowed as an end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HhMm(pub u16);

impl HhMm {
    /// `h:m` (no range check; use [`str::parse`] for input).
    pub const fn new(h: u16, m: u16) -> HhMm {
        HhMm(h * 60 + m)
    }
    /// Minutes after midnight.
    pub fn minutes(self) -> u16 {
        self.0
    }
}

impl FromStr for HhMm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a time HH:MM (00:00..24:00)");
        let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 {
            return Err(bad());
        }
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if m > 59 || h > 24 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(HhMm::new(h, m))
    }
}

impl fmt::Display for HhMm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl<'de> Deserialize<'de> for HhMm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HhMm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What to do with a recipient whose area code is not in the table (toll-free,
/// non-geographic, or opened after the table's data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownAreaCode {
    /// Refuse the request (the default: fail closed).
    Refuse,
    /// Assume the recipient may be in any US zone (Eastern to Hawaii) and in a state whose
    /// rules are unknown: the strictest window of docs/reference/compliance.md#if-the-state-is-unknown.
    Strictest,
}

impl FromStr for UnknownAreaCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "refuse" => Ok(UnknownAreaCode::Refuse),
            "strictest" => Ok(UnknownAreaCode::Strictest),
            other => Err(format!("`{other}` is not one of: refuse, strictest")),
        }
    }
}

/// `[compliance]`: the outbound gates.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceConfig {
    /// Start of the allowed sending window, recipient's local time (never before 08:00).
    #[serde(deserialize_with = "de::parsed")]
    pub quiet_start: HhMm,
    /// End of the allowed window, exclusive (never after 21:00): a send at 20:59 is inside,
    /// one at 21:00 is held.
    #[serde(deserialize_with = "de::parsed")]
    pub quiet_end: HhMm,
    /// Longest a request may wait for its window, counted from when it was first requested;
    /// a longer wait is a refusal (the message would arrive out of context).
    #[serde(deserialize_with = "de::parsed")]
    pub max_hold_hours: u64,
    /// Most messages one line sends in any rolling 24 h (keep it below the provider's and
    /// T-Mobile's daily caps).
    #[serde(deserialize_with = "de::parsed")]
    pub line_daily_cap: u32,
    /// Most messages one recipient receives in any rolling 24 h, across all lines and
    /// providers (FL, OK, MD: at most 3).
    #[serde(deserialize_with = "de::parsed")]
    pub recipient_cap_24h: u32,
    /// Refuse every outbound request.
    #[serde(deserialize_with = "de::parsed")]
    pub kill_switch: bool,
    /// Longest body, in characters.
    #[serde(deserialize_with = "de::parsed")]
    pub max_length: usize,
    /// Words or phrases no message may contain (case-insensitive, whole words), e.g. the
    /// owner's personal name.
    #[serde(deserialize_with = "de::list")]
    pub deny_list: Vec<String>,
    /// Link-shortener domains no message may link to (a subdomain matches too).
    #[serde(deserialize_with = "de::list")]
    pub shortener_domains: Vec<String>,
    /// What to do when the recipient's area code is unknown.
    #[serde(deserialize_with = "de::parsed")]
    pub unknown_area_code: UnknownAreaCode,
}

/// Public shorteners carriers filter (docs/reference/compliance.md#content, Twilio 30963).
pub const DEFAULT_SHORTENERS: &[&str] = &[
    "bit.ly",
    "tinyurl.com",
    "t.co",
    "ow.ly",
    "goo.gl",
    "is.gd",
    "buff.ly",
    "rebrand.ly",
    "cutt.ly",
    "shorturl.at",
    "tiny.cc",
    "rb.gy",
];

impl Default for ComplianceConfig {
    fn default() -> Self {
        ComplianceConfig {
            quiet_start: HhMm::new(8, 0),
            quiet_end: HhMm::new(21, 0),
            max_hold_hours: 18,
            line_daily_cap: 200,
            recipient_cap_24h: 3,
            kill_switch: false,
            max_length: 320,
            deny_list: Vec::new(),
            shortener_domains: DEFAULT_SHORTENERS.iter().map(|s| s.to_string()).collect(),
            unknown_area_code: UnknownAreaCode::Refuse,
        }
    }
}

impl ComplianceConfig {
    /// Checks what serde cannot. Messages start with the bare key name.
    pub fn validate(&self) -> Result<(), String> {
        if self.quiet_start < HhMm::new(8, 0) {
            return Err(format!(
                "quiet_start: {} is before 08:00, the federal limit",
                self.quiet_start
            ));
        }
        if self.quiet_end > HhMm::new(21, 0) {
            return Err(format!(
                "quiet_end: {} is after 21:00, the federal limit",
                self.quiet_end
            ));
        }
        if self.quiet_end <= self.quiet_start {
            return Err(format!(
                "quiet_end: {} is not after quiet_start {}",
                self.quiet_end, self.quiet_start
            ));
        }
        if !(1..=168).contains(&self.max_hold_hours) {
            return Err(format!(
                "max_hold_hours: {} is outside 1..=168",
                self.max_hold_hours
            ));
        }
        if self.line_daily_cap == 0 {
            return Err("line_daily_cap: must be at least 1".into());
        }
        if !(1..=3).contains(&self.recipient_cap_24h) {
            return Err(format!(
                "recipient_cap_24h: {} is outside 1..=3 (FL, OK and MD allow 3 per 24 h)",
                self.recipient_cap_24h
            ));
        }
        if !(1..=1600).contains(&self.max_length) {
            return Err(format!(
                "max_length: {} is outside 1..=1600",
                self.max_length
            ));
        }
        if self.deny_list.iter().any(|w| w.trim().is_empty()) {
            return Err("deny_list: an entry is empty".into());
        }
        for d in &self.shortener_domains {
            let ok = !d.is_empty()
                && d.contains('.')
                && d.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
            if !ok {
                return Err(format!(
                    "shortener_domains: `{d}` is not a lower-case domain name such as bit.ly"
                ));
            }
        }
        Ok(())
    }
}

/// A line's A2P 10DLC campaign registration state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TenDlc {
    /// Approved: the only state in which the line may send.
    Approved,
    /// Submitted, not yet approved (OpenPhone sends nothing meanwhile).
    Pending,
    /// Denied or suspended.
    Rejected,
}

impl TenDlc {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TenDlc::Approved => "approved",
            TenDlc::Pending => "pending",
            TenDlc::Rejected => "rejected",
        }
    }
}

/// One `[[lines]]` entry: a sending number.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    /// Name that outbound requests use to pick the line.
    pub id: String,
    /// The line's own number, E.164.
    pub number: String,
    /// The provider it sends through.
    pub provider: SendProvider,
    /// Its 10DLC registration state.
    pub ten_dlc: TenDlc,
    /// The business the line texts for; a first message must name it.
    pub business_name: String,
    /// Quo only: the line's phone-number id (`PN…`). When set, the sender names the line by
    /// it in `from` (Quo takes "PN id or E.164"; the id stays right if the number is ported
    /// or renamed in Quo). `hooklog-replay lines import --from quo` fills it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
}

impl LineConfig {
    /// What the line is called in a provider's `from`: the Quo `PN…` id when one is
    /// configured, else the number.
    pub fn sender_id(&self) -> &str {
        match (&self.provider, &self.phone_number_id) {
            (SendProvider::Quo, Some(pn)) => pn,
            _ => &self.number,
        }
    }
}

/// Longest `phone_number_id` accepted (Quo's ids are about a dozen characters).
const MAX_PHONE_NUMBER_ID: usize = 64;

/// Whether `s` has the shape of a Quo phone-number id: `PN` then 1 to 62 ASCII letters or
/// digits (nothing that could change the meaning of a URL or a JSON body).
pub fn is_phone_number_id(s: &str) -> bool {
    s.len() <= MAX_PHONE_NUMBER_ID
        && s.strip_prefix("PN")
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Checks the `[[lines]]` entries. Errors are `(key, message)` with key `lines[i].field`.
pub fn validate_lines(lines: &[LineConfig]) -> Result<(), (String, String)> {
    let mut ids = std::collections::BTreeSet::new();
    let mut numbers = std::collections::BTreeSet::new();
    let mut phone_number_ids = std::collections::BTreeSet::new();
    for (i, line) in lines.iter().enumerate() {
        let key = |field: &str| format!("lines[{i}].{field}");
        if line.id.trim().is_empty() {
            return Err((key("id"), "must not be empty".into()));
        }
        if !ids.insert(line.id.as_str()) {
            return Err((key("id"), format!("`{}` is used by two lines", line.id)));
        }
        if normalize_e164(&line.number).as_deref() != Some(line.number.as_str()) {
            return Err((
                key("number"),
                format!(
                    "`{}` is not an E.164 number such as +15551234567",
                    line.number
                ),
            ));
        }
        if !numbers.insert(line.number.as_str()) {
            return Err((
                key("number"),
                format!("`{}` is used by two lines", line.number),
            ));
        }
        if line.business_name.trim().chars().count() < 2 {
            return Err((
                key("business_name"),
                "must name the business (a first message has to identify it)".into(),
            ));
        }
        if let Some(pn) = &line.phone_number_id {
            if line.provider != SendProvider::Quo {
                return Err((
                    key("phone_number_id"),
                    format!(
                        "is a Quo phone-number id, but this line sends through {}: remove the key",
                        line.provider.as_str()
                    ),
                ));
            }
            if !is_phone_number_id(pn) {
                return Err((
                    key("phone_number_id"),
                    format!(
                        "`{}` is not a Quo phone-number id (PN followed by letters and digits, \
                         as `hooklog-replay lines import --from quo` prints)",
                        pn.escape_debug()
                    ),
                ));
            }
            if !phone_number_ids.insert(pn.as_str()) {
                return Err((
                    key("phone_number_id"),
                    format!("`{pn}` is used by two lines"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const LINES: &str = r#"
[compliance]
quiet_end = "20:30"
deny_list = ["Jane Doe"]

[[lines]]
id = "quo-main"
number = "+15555550100"
provider = "openphone"
ten_dlc = "approved"
business_name = "Acme Homes"

[[lines]]
id = "twilio-new"
number = "+15555550101"
provider = "twilio"
ten_dlc = "pending"
business_name = "Acme Homes"
"#;

    #[test]
    fn compliance_and_lines_load_from_the_file_and_compliance_keys_from_the_environment() {
        let f = file(LINES);
        let (c, _) = Config::load_from(
            Some(f.path()),
            env(&[
                ("HOOKLOG_COMPLIANCE_KILL_SWITCH", "true"),
                ("HOOKLOG_COMPLIANCE_SHORTENER_DOMAINS", "bit.ly, t.co"),
            ]),
        )
        .unwrap();
        assert_eq!(c.compliance.quiet_end, HhMm::new(20, 30));
        assert!(c.compliance.kill_switch);
        assert_eq!(c.compliance.shortener_domains, ["bit.ly", "t.co"]);
        assert_eq!(c.compliance.deny_list, ["Jane Doe"]);
        assert_eq!(c.lines.len(), 2);
        assert_eq!(c.lines[1].ten_dlc, TenDlc::Pending);
        assert_eq!(c.lines[0].provider, SendProvider::Quo);
    }

    #[test]
    fn the_defaults_are_the_federal_window_and_three_per_recipient() {
        let (c, _) = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(c.compliance.quiet_start, HhMm::new(8, 0));
        assert_eq!(c.compliance.quiet_end, HhMm::new(21, 0));
        assert_eq!(c.compliance.recipient_cap_24h, 3);
        assert_eq!(c.compliance.unknown_area_code, UnknownAreaCode::Refuse);
        assert!(c.lines.is_empty());
    }

    #[test]
    fn bad_values_are_errors_naming_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("HOOKLOG_COMPLIANCE_QUIET_END", "22:00")],
                "compliance.quiet_end",
            ),
            (
                &[("HOOKLOG_COMPLIANCE_QUIET_START", "07:59")],
                "compliance.quiet_start",
            ),
            (
                &[("HOOKLOG_COMPLIANCE_QUIET_START", "8am")],
                "compliance.quiet_start",
            ),
            (
                &[("HOOKLOG_COMPLIANCE_RECIPIENT_CAP_24H", "4")],
                "compliance.recipient_cap_24h",
            ),
            (
                &[("HOOKLOG_COMPLIANCE_MAX_HOLD_HOURS", "0")],
                "compliance.max_hold_hours",
            ),
            (
                &[("HOOKLOG_COMPLIANCE_UNKNOWN_AREA_CODE", "allow")],
                "compliance.unknown_area_code",
            ),
            (
                &[("HOOKLOG_COMPLIANCE_SHORTENER_DOMAINS", "https://bit.ly")],
                "compliance.shortener_domains",
            ),
        ];
        for (vars, key) in cases {
            let err = Config::load_from(None, env(vars)).unwrap_err().to_string();
            assert!(err.contains(key), "expected `{key}` in: {err}");
        }
    }

    #[test]
    fn bad_lines_are_errors_naming_the_entry_and_field() {
        let cases = [
            (
                LINES.replace("+15555550101", "5555550101"),
                "lines[1].number",
            ),
            (LINES.replace("twilio-new", "quo-main"), "lines[1].id"),
            (LINES.replace("\"pending\"", "\"maybe\""), "ten_dlc"),
            (LINES.replace("\"twilio\"", "\"salesmsg\""), "provider"),
            (
                LINES.replace(
                    "business_name = \"Acme Homes\"\n\n",
                    "business_name = \"\"\n\n",
                ),
                "lines[0].business_name",
            ),
            (
                LINES.replace(
                    "ten_dlc = \"approved\"",
                    "ten_dlc = \"approved\"\ntendlc = 1",
                ),
                "tendlc",
            ),
            (LINES.replace("deny_list", "deny_words"), "deny_words"),
        ];
        for (text, key) in cases {
            let f = file(&text);
            let err = Config::load_from(Some(f.path()), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "expected `{key}` in: {err}");
        }
    }

    #[test]
    fn a_quo_phone_number_id_loads_and_names_the_line_in_from() {
        let text = LINES.replace(
            "provider = \"openphone\"\n",
            "provider = \"openphone\"\nphone_number_id = \"PNa1B2c3\"\n",
        );
        let f = file(&text);
        let (c, _) = Config::load_from(Some(f.path()), env(&[])).unwrap();
        assert_eq!(c.lines[0].phone_number_id.as_deref(), Some("PNa1B2c3"));
        assert_eq!(c.lines[0].sender_id(), "PNa1B2c3");
        assert_eq!(c.lines[1].phone_number_id, None);
        assert_eq!(c.lines[1].sender_id(), "+15555550101");
        // It survives check-config's rendering.
        let rendered = file(&c.to_redacted_toml());
        let (back, _) = Config::load_from(Some(rendered.path()), env(&[])).unwrap();
        assert_eq!(back.lines[0].phone_number_id.as_deref(), Some("PNa1B2c3"));
    }

    #[test]
    fn a_bad_phone_number_id_is_an_error_naming_the_entry_and_never_echoing_controls() {
        let with = |line: usize, value: &str| {
            let marker = if line == 0 {
                "\"openphone\""
            } else {
                "\"twilio\""
            };
            LINES.replacen(
                &format!("provider = {marker}\n"),
                &format!("provider = {marker}\nphone_number_id = {value}\n"),
                1,
            )
        };
        let cases = [
            (with(0, "\"+15555550100\""), "not a Quo phone-number id"),
            (with(0, "\"PN\""), "not a Quo phone-number id"),
            (with(0, "\"pn123\""), "not a Quo phone-number id"),
            (with(0, "\"PN12/../x\""), "not a Quo phone-number id"),
            (with(0, "\"PN1\\n2\""), "PN1\\n2"),
            (with(0, &format!("\"PN{}\"", "a".repeat(63))), "not a Quo"),
            (with(0, "\"\""), "not a Quo phone-number id"),
            (with(1, "\"PNabc\""), "sends through twilio"),
        ];
        for (text, says) in cases {
            let f = file(&text);
            let err = Config::load_from(Some(f.path()), env(&[]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(".phone_number_id"), "{err}");
            assert!(err.contains(says), "expected `{says}` in: {err}");
            assert!(!err.contains('\n'), "a control character is escaped: {err}");
        }
        let two = format!(
            "{}[[lines]]\nid = \"quo-2\"\nnumber = \"+15555550102\"\nprovider = \"openphone\"\n\
             ten_dlc = \"pending\"\nbusiness_name = \"Acme\"\nphone_number_id = \"PNsame\"\n",
            with(0, "\"PNsame\"")
        );
        let f = file(&two);
        let err = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lines[2].phone_number_id") && err.contains("used by two lines"),
            "{err}"
        );
    }

    #[test]
    fn the_rendered_config_with_lines_loads_back_the_same() {
        let f = file(LINES);
        let (c, _) = Config::load_from(Some(f.path()), env(&[])).unwrap();
        let rendered = file(&c.to_redacted_toml());
        let (back, _) = Config::load_from(Some(rendered.path()), env(&[])).unwrap();
        assert_eq!(back.lines.len(), 2);
        assert_eq!(back.lines[1].id, "twilio-new");
        assert_eq!(back.compliance.quiet_end, HhMm::new(20, 30));
    }

    #[test]
    fn lines_cannot_be_set_from_the_environment() {
        let err = Config::load_from(None, env(&[("HOOKLOG_LINES_ID", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("HOOKLOG_LINES_ID"), "{err}");
    }

    #[test]
    fn the_example_config_with_its_lines_uncommented_is_valid() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ops/hooklog.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let start = text.find("# [[lines]]\n").unwrap();
        let (head, tail) = text.split_at(start);
        let lines: String = tail
            .lines()
            .filter(|l| !l.starts_with("# #"))
            .map(|l| l.trim_start_matches("# "))
            .collect::<Vec<_>>()
            .join("\n");
        let f = file(&format!("{head}{lines}\n"));
        let (c, _) = Config::load_from(Some(f.path()), env(&[])).unwrap();
        assert_eq!(c.lines.len(), 1);
        assert_eq!(
            c.compliance.shortener_domains.len(),
            DEFAULT_SHORTENERS.len()
        );
    }
}

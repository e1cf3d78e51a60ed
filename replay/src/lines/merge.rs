//! Merging listed numbers into a configuration file's `[[lines]]` with `toml_edit`, which
//! keeps every comment, blank line and key order of the file; and writing the result.
//!
//! # Rules
//!
//! - A listed number that an entry of the file already has (matched by `number`) keeps every
//!   setting the operator wrote: `id`, `ten_dlc`, `business_name`, `provider`. The only change
//!   ever made to it is a missing `phone_number_id` filled in (Quo). A `phone_number_id` or a
//!   `provider` that differs from the listing is reported and left as it is.
//! - A listed number the file does not have is added at the end of the `[[lines]]` entries,
//!   after a comment naming its provider and name, with `ten_dlc = "pending"` (nothing is sent
//!   from it until the operator approves it) and a business name (see [`business_name`]).
//! - An entry of the same provider that the listing no longer has is reported, never deleted.
//! - The merged `[[lines]]` are read back as hooklog reads them and checked with its own
//!   validation before anything is written: a file that would not load is never written.
//!
//! # Writing
//!
//! The new text goes to a temporary file beside the target (the target of a symbolic link),
//! with the original's permissions, owner and group (a configuration file holds secrets, and
//! the daemon may read it through its group), is flushed to disk,
//! and is renamed over the original after the original was copied to `FILE.bak`. A reader
//! sees the old file or the new one, never half of one.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hooklog::gates::config::{validate_lines, LineConfig};
use hooklog::provider::SendProvider;
use serde::Serialize;
use toml_edit::{value, ArrayOfTables, DocumentMut, Item, Table};

use super::entry::{assign_ids, provider_name, Listed, Skipped};
use crate::output::one_line;

/// The business name given to new lines when the file offers none to copy: plainly not a
/// business, so no first message can name it by accident (the content gate wants it in the
/// text) and the operator sees what to replace.
pub const PLACEHOLDER_BUSINESS: &str = "CHANGE ME: the business this line texts for";

/// Why a merge could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The new file cannot be given the old one's owner and group.
    #[error(
        "cannot give the new {path} the owner and group of the old one ({source}): run the \
         import as the file's owner or as root; nothing was written"
    )]
    Owner {
        /// The file.
        path: PathBuf,
        /// The error of fchown.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{path} is not valid TOML: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        detail: String,
    },
    /// `lines` is there but not as `[[lines]]` tables (an inline array, a value).
    #[error(
        "{path}: `lines` is not written as [[lines]] tables; rewrite it in that form (as in \
         docs/configuration.md) and run the import again"
    )]
    NotArrayOfTables {
        /// The file.
        path: PathBuf,
    },
    /// The merged `[[lines]]` would not load; nothing was written.
    #[error(
        "{path}: the merged [[lines]] would not load ({key}: {message}); nothing was written. \
         Fix the file's own entry if the key names one of them"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// `lines[i].field`, or `lines` when the entries cannot be read at all.
        key: String,
        /// Why.
        message: String,
    },
}

/// An entry of the file, or a listed line, as the report shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The `[[lines]]` id (escaped for display).
    pub id: String,
    /// The number.
    pub number: String,
    /// The Quo id, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_id: Option<String>,
}

/// A matched entry whose settings differ from the listing: left as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Differing {
    /// The entry.
    #[serde(flatten)]
    pub entry: Entry,
    /// The key.
    pub key: &'static str,
    /// The file's value (escaped).
    pub in_file: String,
    /// The provider's value.
    pub listed: String,
}

/// What a merge did (or, dry, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// New entries.
    pub added: Vec<Entry>,
    /// Entries given their missing `phone_number_id`.
    pub filled: Vec<Entry>,
    /// Matched entries left as they were, nothing to fill.
    pub unchanged: Vec<Entry>,
    /// Matched entries whose `phone_number_id` or `provider` differs: reported, kept.
    pub differing: Vec<Differing>,
    /// Entries of this provider that it no longer lists: reported, kept.
    pub missing: Vec<Entry>,
    /// Listed items left out (bad number, bad id, listed twice).
    pub skipped: Vec<SkippedJson>,
    /// The business name new entries got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_name: Option<String>,
    /// Whether that business name was copied from the file's entries (else the placeholder).
    pub business_name_copied: bool,
}

/// [`Skipped`] for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SkippedJson {
    /// What the provider called it.
    pub what: String,
    /// Why it was left out.
    pub why: String,
}

impl From<&Skipped> for SkippedJson {
    fn from(s: &Skipped) -> SkippedJson {
        SkippedJson {
            what: s.what.clone(),
            why: s.why.clone(),
        }
    }
}

/// Reads `path` as a document.
pub fn read(path: &Path) -> Result<(String, DocumentMut), MergeError> {
    let text = std::fs::read_to_string(path).map_err(|source| MergeError::Io {
        path: path.to_owned(),
        source,
    })?;
    let doc = text.parse::<DocumentMut>().map_err(|e| MergeError::Parse {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    Ok((text, doc))
}

/// The provider an entry's `provider` value names (`openphone` or `quo`, `twilio`, any case).
fn parse_provider(s: &str) -> Option<SendProvider> {
    match s.trim().to_ascii_lowercase().as_str() {
        "openphone" | "quo" => Some(SendProvider::Quo),
        "twilio" => Some(SendProvider::Twilio),
        _ => None,
    }
}

fn text_of<'a>(t: &'a Table, key: &str) -> Option<&'a str> {
    t.get(key).and_then(Item::as_str)
}

/// The business name for new entries: the one every entry of the file has, when they all
/// have the same valid one (one business texting from all its lines is the usual case), else
/// [`PLACEHOLDER_BUSINESS`]. The second value says whether it was copied.
pub fn business_name(existing: &[String]) -> (String, bool) {
    let names: BTreeSet<&str> = existing.iter().map(|b| b.trim()).collect();
    match names.into_iter().collect::<Vec<_>>().as_slice() {
        [one] if one.chars().count() >= 2 => ((*one).to_owned(), true),
        _ => (PLACEHOLDER_BUSINESS.to_owned(), false),
    }
}

/// Merges `listed` (from `provider`) into `doc` by the rules of the module header.
pub fn merge(
    doc: &mut DocumentMut,
    path: &Path,
    provider: SendProvider,
    listed: &[Listed],
    skipped: &[Skipped],
) -> Result<Report, MergeError> {
    let mut report = Report {
        skipped: skipped.iter().map(SkippedJson::from).collect(),
        ..Report::default()
    };
    let max_position = max_position(doc.as_table());
    let fresh = !doc.contains_key("lines");
    if fresh {
        doc.insert("lines", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    let Some(lines) = doc.get_mut("lines").and_then(Item::as_array_of_tables_mut) else {
        return Err(MergeError::NotArrayOfTables {
            path: path.to_owned(),
        });
    };

    let shown = |t: &Table| Entry {
        id: one_line(text_of(t, "id").unwrap_or("?"), Some(60)),
        number: one_line(text_of(t, "number").unwrap_or("?"), Some(30)),
        phone_number_id: text_of(t, "phone_number_id").map(|p| one_line(p, Some(70))),
    };
    let taken: BTreeSet<String> = lines
        .iter()
        .filter_map(|t| text_of(t, "id").map(str::to_owned))
        .collect();
    let existing_business: Vec<String> = lines
        .iter()
        .filter_map(|t| text_of(t, "business_name").map(str::to_owned))
        .collect();

    let mut new = Vec::new();
    for l in listed {
        let Some(t) = lines
            .iter_mut()
            .find(|t| text_of(t, "number") == Some(l.number.as_str()))
        else {
            new.push(l.clone());
            continue;
        };
        let in_file = text_of(t, "provider").unwrap_or_default().to_owned();
        if parse_provider(&in_file) != Some(provider) {
            report.differing.push(Differing {
                entry: shown(t),
                key: "provider",
                in_file: one_line(&in_file, Some(30)),
                listed: provider.as_str().to_owned(),
            });
            continue;
        }
        match (&l.phone_number_id, text_of(t, "phone_number_id")) {
            (Some(pn), None) => {
                t.insert("phone_number_id", value(pn.as_str()));
                report.filled.push(shown(t));
            }
            (Some(pn), Some(file_pn)) if file_pn != pn => {
                report.differing.push(Differing {
                    entry: shown(t),
                    key: "phone_number_id",
                    in_file: one_line(file_pn, Some(70)),
                    listed: pn.clone(),
                });
            }
            _ => report.unchanged.push(shown(t)),
        }
    }
    for t in lines.iter() {
        let of_provider = text_of(t, "provider").and_then(parse_provider) == Some(provider);
        let number = text_of(t, "number").unwrap_or_default();
        if of_provider && !listed.iter().any(|l| l.number == number) {
            report.missing.push(shown(t));
        }
    }

    if !new.is_empty() {
        let (business, copied) = business_name(&existing_business);
        let ids = assign_ids(&new, &taken);
        for (l, id) in new.iter().zip(ids) {
            let mut t = new_entry(l, &id, &business);
            if fresh {
                // After every table of the file (a new key would otherwise follow the
                // position of whichever table was visited last).
                t.set_position(max_position + 1);
            }
            lines.push(t);
            report.added.push(Entry {
                id,
                number: l.number.clone(),
                phone_number_id: l.phone_number_id.clone(),
            });
        }
        report.business_name = Some(business);
        report.business_name_copied = copied;
    }
    if fresh && lines.is_empty() {
        doc.remove("lines");
    }
    check(doc, path)?;
    Ok(report)
}

/// A new `[[lines]]` entry, after a comment saying where it came from.
pub fn new_entry(l: &Listed, id: &str, business: &str) -> Table {
    let mut t = Table::new();
    let origin = match &l.phone_number_id {
        Some(pn) => format!("{}, {pn}", provider_name(l.provider)),
        None => provider_name(l.provider).to_owned(),
    };
    let comment = match l.shown_name() {
        Some(name) => format!("# {name} (imported from {origin})"),
        None => format!("# imported from {origin}"),
    };
    t.decor_mut().set_prefix(format!("\n{comment}\n"));
    t.insert("id", value(id));
    t.insert("number", value(l.number.as_str()));
    t.insert("provider", value(l.provider.as_str()));
    if let Some(pn) = &l.phone_number_id {
        t.insert("phone_number_id", value(pn.as_str()));
    }
    t.insert("ten_dlc", value("pending"));
    t.insert("business_name", value(business));
    t
}

/// The largest position of any table in `table`, nested ones included.
fn max_position(table: &Table) -> usize {
    let mut max = table.position().unwrap_or(0);
    for (_, item) in table.iter() {
        match item {
            Item::Table(t) => max = max.max(max_position(t)),
            Item::ArrayOfTables(a) => {
                for t in a.iter() {
                    max = max.max(max_position(t));
                }
            }
            _ => {}
        }
    }
    max
}

/// The `[[lines]]` of `doc` read and validated as hooklog does.
fn check(doc: &DocumentMut, path: &Path) -> Result<(), MergeError> {
    #[derive(serde::Deserialize)]
    struct OnlyLines {
        #[serde(default)]
        lines: Vec<LineConfig>,
    }
    let invalid = |key: String, message: String| MergeError::Invalid {
        path: path.to_owned(),
        key,
        message,
    };
    let parsed: OnlyLines = toml::from_str(&doc.to_string())
        .map_err(|e| invalid("lines".into(), one_line(e.message(), Some(300))))?;
    validate_lines(&parsed.lines).map_err(|(key, message)| invalid(key, message))
}

/// The change from `old` to `new` as a unified diff of `path`.
pub fn diff(path: &Path, old: &str, new: &str) -> String {
    let name = path.display().to_string();
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&name, &format!("{name} (merged)"))
        .to_string()
}

/// Replaces the file at `path` (a symbolic link's target) with `text`, keeping the old one as
/// `.bak` beside it. Returns the file written and the backup.
pub fn write_atomically(path: &Path, text: &str) -> Result<(PathBuf, PathBuf), MergeError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| MergeError::Io { path: p, source }
    };
    let target = std::fs::canonicalize(path).map_err(io(path))?;
    let meta = std::fs::metadata(&target).map_err(io(&target))?;
    let permissions = meta.permissions();
    let with_suffix = |suffix: &str| {
        let mut s = target.clone().into_os_string();
        s.push(suffix);
        PathBuf::from(s)
    };
    let (tmp, bak) = (with_suffix(".lines-import.tmp"), with_suffix(".bak"));
    // A temporary file left by an interrupted run is replaced.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&tmp)(e)),
        _ => {}
    }
    let result = (|| {
        // Created readable by the owner only, then given the original's mode, before the
        // secrets are written into it.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.set_permissions(permissions).map_err(io(&tmp))?;
        // The daemon may read the file through its group (root:hooklog 0640): the new file
        // keeps the old one's owner and group, or is not written at all.
        std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid())).map_err(|source| {
            MergeError::Owner {
                path: target.clone(),
                source,
            }
        })?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::copy(&target, &bak).map_err(io(&bak))?;
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
        if let Some(dir) = target.parent() {
            // The rename itself made durable; a directory that cannot be opened this way (not
            // every file system allows it) only loses that guarantee.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| (target, bak))
}

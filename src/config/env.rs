//! The layers above the file: `HOOKLOG_<SECTION>_<KEY>` environment overrides and `<key>_file`
//! indirection, and [`Provenance`], which remembers where each value came from so that an
//! error can say it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::ConfigError;

/// Environment variable that names the config file.
pub const CONFIG_ENV: &str = "HOOKLOG_CONFIG";

pub(super) const ENV_PREFIX: &str = "HOOKLOG_";

/// Environment variables with the prefix that are not configuration keys.
pub(super) const ENV_NOT_KEYS: &[&str] = &[CONFIG_ENV];

/// Sections, longest first so `twilio.voice` wins over `twilio` when matching env names.
pub(super) const SECTIONS: &[&str] = &[
    "server.agent_tokens",
    "log.jetstream",
    "twilio.voice",
    "compliance",
    "consumers",
    "openphone",
    "staleness",
    "postgres",
    "dispatch",
    "salesmsg",
    "sender",
    "alerts",
    "server",
    "twilio",
    "doctor",
    "dedup",
    "log",
];

/// Where the configuration came from, for messages and `check-config`.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    /// The file, if one was read.
    pub file: Option<PathBuf>,
    /// key path → origin (`file …` or `env HOOKLOG_…`).
    pub(super) origins: BTreeMap<String, String>,
}

impl Provenance {
    /// Where the value of `key` (e.g. `server.listen`) came from. A key inside an array of
    /// tables (`dispatch.routes[0].kinds`) came from where the array did.
    pub fn origin(&self, key: &str) -> String {
        // Only the array's own key: a key left unset in a section that is set is a default.
        let key = key.find('[').map_or(key, |i| &key[..i]);
        self.origins
            .get(key)
            .cloned()
            .unwrap_or_else(|| "the defaults".to_owned())
    }
}

pub(super) fn record_origins(
    table: &toml::Table,
    prefix: &str,
    origin: &str,
    out: &mut BTreeMap<String, String>,
) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if let toml::Value::Table(t) = v {
            record_origins(t, &path, origin, out);
        }
        out.insert(path, origin.to_owned());
    }
}

/// `HOOKLOG_TWILIO_VOICE_SAY` → (`Some("twilio.voice")`, `say`).
pub(super) fn env_key(var: &str) -> Result<(Option<&'static str>, String), ConfigError> {
    let rest = var[ENV_PREFIX.len()..].to_ascii_lowercase();
    if rest == "data_dir" || rest == "data_dir_file" {
        return Ok((None, rest));
    }
    for section in SECTIONS {
        let prefix = format!("{}_", section.replace('.', "_"));
        if let Some(key) = rest.strip_prefix(&prefix) {
            if !key.is_empty() {
                return Ok((Some(section), key.to_owned()));
            }
        }
    }
    Err(ConfigError::UnknownEnv {
        var: var.to_owned(),
        sections: SECTIONS.join(", "),
    })
}

pub(super) fn table_at<'a>(
    root: &'a mut toml::Table,
    path: &str,
) -> Result<&'a mut toml::Table, String> {
    let mut table = root;
    for part in path.split('.') {
        let entry = table
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` is not a section"))?;
    }
    Ok(table)
}

/// Replaces every `<key>_file` by `<key>` = the file's contents.
pub(super) fn resolve_files(
    table: &mut toml::Table,
    prefix: &str,
    prov: &mut Provenance,
) -> Result<(), ConfigError> {
    let keys: Vec<String> = table.keys().cloned().collect();
    for k in keys {
        let path_key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if let Some(toml::Value::Table(sub)) = table.get_mut(&k) {
            resolve_files(sub, &path_key, prov)?;
            continue;
        }
        let Some(stem) = k.strip_suffix("_file") else {
            continue;
        };
        let stem = stem.to_owned();
        let origin = prov.origin(&path_key);
        let Some(toml::Value::String(file)) = table.remove(&k) else {
            return Err(ConfigError::Invalid {
                key: path_key,
                origin,
                message: "must be a file path (a string)".into(),
            });
        };
        let stem_key = if prefix.is_empty() {
            stem.clone()
        } else {
            format!("{prefix}.{stem}")
        };
        if table.contains_key(&stem) {
            return Err(ConfigError::Invalid {
                key: stem_key.clone(),
                origin: prov.origin(&stem_key),
                message: format!("set both `{stem_key}` and `{path_key}`; keep one"),
            });
        }
        let contents =
            std::fs::read_to_string(&file).map_err(|source| ConfigError::SecretFile {
                key: path_key.clone(),
                origin: origin.clone(),
                path: PathBuf::from(&file),
                source,
            })?;
        let value = contents.trim_end_matches(['\n', '\r']).to_owned();
        table.insert(stem, toml::Value::String(value));
        prov.origins
            .insert(stem_key, format!("{origin} (via {path_key})"));
    }
    Ok(())
}

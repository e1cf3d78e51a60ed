//! Why configuration could not be loaded: every error names the key and where its value came
//! from (the file, an environment variable, or the defaults), and none repeats a value: what is
//! wrong is said in fixed words (see `message.rs`), because a value may be a secret.

use std::path::PathBuf;

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML. Told by position and key, never by the text there:
    /// the offending line may hold a secret (an unquoted token).
    #[error(
        "config file {path} is not valid TOML: line {line}, column {column}{}: {message}",
        key_note(.key)
    )]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// The key being set there (the dotted path, with its section), when one is.
        key: Option<String>,
        /// What is wrong and how to write it, in fixed words (no text from the file).
        message: String,
    },
    /// A `HOOKLOG_*` variable does not name a known section and key.
    #[error("environment variable {var} does not name a configuration key (expected HOOKLOG_<SECTION>_<KEY> with a section of: data_dir, {sections})")]
    UnknownEnv {
        /// The variable.
        var: String,
        /// The sections there are, comma-separated.
        sections: String,
    },
    /// A `*_file` key names a file that cannot be read.
    #[error("`{key}` (from {origin}): cannot read {path}: {source}")]
    SecretFile {
        /// The key, e.g. `twilio.auth_tokens_file`.
        key: String,
        /// Where the key was set.
        origin: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key has an invalid value (or is unknown).
    #[error("`{key}` (from {origin}): {message}")]
    Invalid {
        /// The key path, e.g. `server.listen`.
        key: String,
        /// Where its value came from: the file, an environment variable, or the defaults.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

fn key_note(key: &Option<String>) -> String {
    key.as_ref()
        .map(|k| format!(", key `{k}`"))
        .unwrap_or_default()
}

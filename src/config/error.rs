//! Why configuration could not be loaded: every error names the key and where its value came
//! from (the file, an environment variable, or the defaults).

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
    /// The config file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
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

//! The config loader: input = the text of a TOML config file, loaded by `Config::load_from`
//! with an empty environment (the file is written to a temporary path first).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use hooklog::config::Config;
use libfuzzer_sys::fuzz_target;

fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("hooklog-fuzz-config-{}.toml", std::process::id()))
    })
}

/// `<key>_file = "<path>"` makes the loader read that file (secrets kept out of the config):
/// a fuzzer that names a device or a huge file would test the machine, not the parser.
fn names_a_file(table: &toml::Table) -> bool {
    table.iter().any(|(k, v)| {
        k.ends_with("_file")
            || match v {
                toml::Value::Table(t) => names_a_file(t),
                _ => false,
            }
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if text.parse::<toml::Table>().is_ok_and(|t| names_a_file(&t)) {
            return;
        }
    }
    if std::fs::write(path(), data).is_err() {
        return;
    }
    if let Ok((config, _)) = Config::load_from(Some(path()), std::iter::empty()) {
        let _ = config.to_redacted_toml();
    }
});

//! Deserializers that accept a value's natural TOML type or a string (from the environment
//! or a `*_file`), so the type information stays on the struct fields. Every section's
//! fields name them: `#[serde(deserialize_with = "crate::config::de::parsed")]`.
//!
//! Their errors never contain the value (it may be a secret typed into the wrong key, or read
//! from a secret's file): they say what was expected, and the parser's reason with the value
//! cut out of it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum StrOr<T> {
    Str(String),
    Value(T),
}

/// What a value of type `T` looks like, in the words of an error message.
pub fn expected<T>() -> &'static str {
    let name = std::any::type_name::<T>();
    let last = name.rsplit("::").next().unwrap_or(name);
    match last {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
            "a whole number"
        }
        "f32" | "f64" => "a number",
        "bool" => "true or false",
        "SocketAddr" => "an address with a port, e.g. 127.0.0.1:18792",
        "Secret" | "String" | "PathBuf" => "a string",
        _ => "a value of the documented form",
    }
}

fn parse<T: FromStr, E: serde::de::Error>(s: &str) -> Result<T, E>
where
    T::Err: fmt::Display,
{
    let s = s.trim();
    s.parse::<T>().map_err(|e| {
        let mut reason = e.to_string();
        // A reason may quote the value, which may be a secret.
        if !s.is_empty() {
            reason = reason.replace(s, "…");
        }
        if reason.is_empty() {
            E::custom(format!("expected {}", expected::<T>()))
        } else {
            E::custom(format!("expected {} ({reason})", expected::<T>()))
        }
    })
}

/// The error for a value of the wrong TOML type (an array for a number, …).
fn wrong_type<T, E: serde::de::Error>() -> E {
    E::custom(format!(
        "wrong type: expected {} (or a string that reads as one)",
        expected::<T>()
    ))
}

/// A value, or a string that parses to it.
pub fn parsed<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + Deserialize<'de>,
    T::Err: fmt::Display,
{
    match StrOr::<T>::deserialize(d).map_err(|_| wrong_type::<T, D::Error>())? {
        StrOr::Str(s) => parse(&s),
        StrOr::Value(v) => Ok(v),
    }
}

/// Like [`parsed`], for optional keys; an empty string means unset.
pub fn opt_parsed<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + Deserialize<'de>,
    T::Err: fmt::Display,
{
    match StrOr::<T>::deserialize(d).map_err(|_| wrong_type::<T, D::Error>())? {
        StrOr::Str(s) if s.trim().is_empty() => Ok(None),
        StrOr::Str(s) => parse(&s).map(Some),
        StrOr::Value(v) => Ok(Some(v)),
    }
}

/// A list, or one string with items separated by commas or newlines. For lists whose items
/// cannot contain a comma (addresses, URLs, domains); secrets use [`lines`].
pub fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    split_list(d, &[',', '\n'])
}

/// A list, or one string with one item per line (an environment variable with a literal
/// newline between the items, or a `*_file` with one per line). For secrets: a comma is an
/// ordinary character of a secret, so it never splits one in two.
pub fn lines<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    split_list(d, &['\n'])
}

fn split_list<'de, D, T>(d: D, separators: &[char]) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let wrong = || {
        <D::Error as serde::de::Error>::custom(format!(
            "wrong type: expected a list of strings, e.g. [\"…\", \"…\"] (each {})",
            expected::<T>()
        ))
    };
    match StrOr::<Vec<String>>::deserialize(d).map_err(|_| wrong())? {
        StrOr::Str(s) => s
            .split(separators)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse)
            .collect(),
        StrOr::Value(items) => items.iter().map(|s| parse(s)).collect(),
    }
}

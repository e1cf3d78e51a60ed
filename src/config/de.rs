//! Deserializers that accept a value's natural TOML type or a string (from the environment
//! or a `*_file`), so the type information stays on the struct fields. Every section's
//! fields name them: `#[serde(deserialize_with = "crate::config::de::parsed")]`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum StrOr<T> {
    Str(String),
    Value(T),
}

fn parse<T: FromStr, E: serde::de::Error>(s: &str) -> Result<T, E>
where
    T::Err: fmt::Display,
{
    s.trim()
        .parse::<T>()
        .map_err(|e| E::custom(format!("`{s}`: {e}")))
}

/// A value, or a string that parses to it.
pub fn parsed<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + Deserialize<'de>,
    T::Err: fmt::Display,
{
    match StrOr::<T>::deserialize(d)? {
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
    match StrOr::<T>::deserialize(d)? {
        StrOr::Str(s) if s.trim().is_empty() => Ok(None),
        StrOr::Str(s) => parse(&s).map(Some),
        StrOr::Value(v) => Ok(Some(v)),
    }
}

/// A list, or one string with items separated by commas or newlines.
pub fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    match StrOr::<Vec<String>>::deserialize(d)? {
        StrOr::Str(s) => s
            .split([',', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse)
            .collect(),
        StrOr::Value(items) => items.iter().map(|s| parse(s)).collect(),
    }
}

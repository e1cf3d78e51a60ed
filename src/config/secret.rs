//! [`Secret`]: a configuration value that is never printed. Its `Debug` and `Serialize` say
//! `<redacted>`, so a secret cannot reach a log line, `check-config`'s output or an error
//! message by accident; [`Secret::expose`] is called only where the value is used.
//!
//! One exception, for comparing two configurations (a reload tells which keys changed):
//! inside [`fingerprinted`], on that thread only, a secret serializes as a digest of its
//! value, so that a changed secret is a changed value. The caller compares and drops the
//! result; it never prints it.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

/// A secret string: never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

thread_local! {
    /// Whether [`fingerprinted`] runs on this thread.
    static FINGERPRINTS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with secrets serialized as digests of their values (on this thread), for a
/// comparison whose result is never printed.
pub fn fingerprinted<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            FINGERPRINTS.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(FINGERPRINTS.with(|c| c.replace(true)));
    f()
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if FINGERPRINTS.with(Cell::get) {
            use sha2::Digest;
            return s.serialize_str(&hex::encode(sha2::Sha256::digest(self.0.as_bytes())));
        }
        s.serialize_str("<redacted>")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

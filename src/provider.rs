//! The providers hooklog speaks to, one name each: [`Provider`] for every one of them (a
//! webhook's sender, an event's source, an opt-out's evidence), and [`SendProvider`] for the
//! narrower set a line sends through (SalesMsg receives only).
//!
//! In code and prose the provider formerly called OpenPhone is **Quo**; `openphone` is only its
//! wire and configuration spelling (the `[openphone]` section, `/webhook/openphone`, the
//! `openphone-signature` header, and the value `openphone` in JSON, keys and metric labels).
//! So [`Provider::Quo`] is written and read as `openphone`, and reading also accepts `quo`.
//! Both types are written with [`Provider::as_str`]: that spelling is in the log (outbound
//! records), in Postgres and in the admin API, and never changes.
//!
//! A leaf: it imports nothing of hooklog.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A provider hooklog receives webhooks from or sends through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    /// Quo (formerly OpenPhone): webhooks, backfill, sending.
    Quo,
    /// Twilio: webhooks, backfill, sending.
    Twilio,
    /// SalesMsg: webhooks only.
    SalesMsg,
}

impl Provider {
    /// Every provider, in the order they are listed to operators.
    pub const ALL: [Provider; 3] = [Provider::Quo, Provider::Twilio, Provider::SalesMsg];

    /// The wire and configuration spelling: `openphone`, `twilio`, `salesmsg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Quo => "openphone",
            Provider::Twilio => "twilio",
            Provider::SalesMsg => "salesmsg",
        }
    }
}

/// A provider hooklog sends through: the provider of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SendProvider {
    /// Quo (formerly OpenPhone).
    Quo,
    /// Twilio.
    Twilio,
}

impl SendProvider {
    /// The wire and configuration spelling: `openphone` or `twilio`.
    pub fn as_str(self) -> &'static str {
        Provider::from(self).as_str()
    }
}

impl From<SendProvider> for Provider {
    fn from(p: SendProvider) -> Provider {
        match p {
            SendProvider::Quo => Provider::Quo,
            SendProvider::Twilio => Provider::Twilio,
        }
    }
}

/// A provider name that is not one of hooklog's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` is not a provider hooklog {what}; expected {expected}")]
pub struct UnknownProvider {
    /// What was given.
    pub name: String,
    /// "knows" or "sends through".
    what: &'static str,
    /// The accepted spellings.
    expected: &'static str,
}

impl FromStr for Provider {
    type Err = UnknownProvider;

    /// `openphone` or `quo`, `twilio`, `salesmsg`; case and surrounding blanks do not matter.
    fn from_str(s: &str) -> Result<Provider, UnknownProvider> {
        match s.trim().to_ascii_lowercase().as_str() {
            "openphone" | "quo" => Ok(Provider::Quo),
            "twilio" => Ok(Provider::Twilio),
            "salesmsg" => Ok(Provider::SalesMsg),
            _ => Err(UnknownProvider {
                name: s.to_owned(),
                what: "knows",
                expected: "openphone (quo), twilio or salesmsg",
            }),
        }
    }
}

impl FromStr for SendProvider {
    type Err = UnknownProvider;

    /// `openphone` or `quo`, `twilio`; case and surrounding blanks do not matter.
    fn from_str(s: &str) -> Result<SendProvider, UnknownProvider> {
        match s.parse::<Provider>() {
            Ok(Provider::Quo) => Ok(SendProvider::Quo),
            Ok(Provider::Twilio) => Ok(SendProvider::Twilio),
            _ => Err(UnknownProvider {
                name: s.to_owned(),
                what: "sends through",
                expected: "openphone (quo) or twilio",
            }),
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SendProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Provider {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for SendProvider {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Provider {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Provider, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for SendProvider {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SendProvider, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quo_is_written_openphone_and_read_from_either_spelling() {
        assert_eq!(Provider::Quo.to_string(), "openphone");
        assert_eq!(
            serde_json::to_string(&Provider::Quo).unwrap(),
            "\"openphone\""
        );
        for s in ["openphone", "quo", " Quo ", "OPENPHONE"] {
            assert_eq!(s.parse::<Provider>(), Ok(Provider::Quo), "{s}");
            assert_eq!(s.parse::<SendProvider>(), Ok(SendProvider::Quo), "{s}");
        }
        let p: SendProvider = serde_json::from_str("\"quo\"").unwrap();
        assert_eq!(p, SendProvider::Quo);
    }

    #[test]
    fn every_provider_reads_back_what_it_writes() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>(), Ok(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Provider>(&json).unwrap(), p);
        }
        for p in [SendProvider::Quo, SendProvider::Twilio] {
            assert_eq!(p.as_str().parse::<SendProvider>(), Ok(p));
            assert_eq!(Provider::from(p).as_str(), p.as_str());
        }
    }

    #[test]
    fn salesmsg_is_a_provider_but_not_one_that_sends() {
        assert_eq!("salesmsg".parse::<Provider>(), Ok(Provider::SalesMsg));
        let e = "salesmsg".parse::<SendProvider>().unwrap_err();
        assert!(e.to_string().contains("openphone (quo) or twilio"), "{e}");
        let e = "whatsapp".parse::<Provider>().unwrap_err();
        assert!(e.to_string().contains("`whatsapp`"), "{e}");
    }
}

//! The area code → region and time zones table, `area_codes.tsv`, embedded in the binary.
//!
//! The data file's header names its source (libphonenumber's time zone map, 2018) and its
//! limits; this module only parses it, once, on first use. An area code maps to *every* zone
//! any of its exchanges is in, because the quiet-hours gate must treat the recipient as
//! possibly being in any of them. A line of the file that does not parse is left out, so its
//! area code is unknown and the gate fails closed on it; a test checks that none is left out.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono_tz::Tz;

const DATA: &str = include_str!("area_codes.tsv");

/// Where an area code is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AreaCode {
    /// The NPA, e.g. 305.
    pub npa: u16,
    /// `US-FL`, `CA-ON`, `JM`, … (see the file's header).
    pub region: &'static str,
    /// Every zone the area code spans; never empty.
    pub zones: Vec<Tz>,
}

/// Why a number has no entry in the table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// Not a +1 number of 10 digits after the country code.
    #[error("{0} is not a North American (+1) number")]
    NotNanp(String),
    /// Toll-free, non-geographic, or an area code the table does not have.
    #[error("area code {0} is toll-free, non-geographic or not in the area code table")]
    Unknown(u16),
}

fn table() -> &'static HashMap<u16, AreaCode> {
    static TABLE: OnceLock<HashMap<u16, AreaCode>> = OnceLock::new();
    TABLE.get_or_init(|| parse(DATA).0)
}

/// Parses the file: the entries, and the lines that did not parse (for the tests).
fn parse(data: &'static str) -> (HashMap<u16, AreaCode>, Vec<&'static str>) {
    let mut map = HashMap::new();
    let mut bad = Vec::new();
    for line in data.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Some(entry) if !map.contains_key(&entry.npa) => {
                map.insert(entry.npa, entry);
            }
            _ => bad.push(line),
        }
    }
    (map, bad)
}

fn parse_line(line: &'static str) -> Option<AreaCode> {
    let mut cols = line.split('\t');
    let npa = cols.next()?;
    let region = cols.next()?;
    let zones = cols.next()?;
    if cols.next().is_some() || npa.len() != 3 || region.is_empty() {
        return None;
    }
    let npa: u16 = npa.parse().ok()?;
    let zones: Vec<Tz> = zones
        .split(',')
        .map(|z| z.parse::<Tz>().ok())
        .collect::<Option<_>>()?;
    (!zones.is_empty()).then_some(AreaCode { npa, region, zones })
}

/// The area code of an E.164 number (`+1NPANXXXXXX`).
pub fn npa_of(e164: &str) -> Result<u16, LookupError> {
    let digits = e164
        .strip_prefix("+1")
        .filter(|d| d.len() == 10 && d.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| LookupError::NotNanp(e164.to_owned()))?;
    digits[..3]
        .parse()
        .map_err(|_| LookupError::NotNanp(e164.to_owned()))
}

/// Looks up the area code of an E.164 number.
pub fn lookup(e164: &str) -> Result<&'static AreaCode, LookupError> {
    let npa = npa_of(e164)?;
    table().get(&npa).ok_or(LookupError::Unknown(npa))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_the_table_parses_and_no_area_code_repeats() {
        let (map, bad) = parse(DATA);
        assert!(bad.is_empty(), "unparsed lines: {bad:?}");
        assert!(map.len() > 380, "only {} area codes", map.len());
    }

    #[test]
    fn a_single_zone_area_code_has_its_state_and_zone() {
        let ac = lookup("+13055550100").unwrap();
        assert_eq!(ac.region, "US-FL");
        assert_eq!(ac.zones, vec![chrono_tz::America::New_York]);
    }

    #[test]
    fn a_split_area_code_lists_every_zone_it_spans() {
        let ac = lookup("+18505550100").unwrap();
        assert!(ac.zones.contains(&chrono_tz::America::New_York));
        assert!(ac.zones.contains(&chrono_tz::America::Chicago));
        let idaho = lookup("+12085550100").unwrap();
        assert_eq!(idaho.zones.len(), 3);
    }

    #[test]
    fn toll_free_and_foreign_numbers_are_not_found() {
        assert_eq!(lookup("+18005550100"), Err(LookupError::Unknown(800)));
        assert_eq!(lookup("+18885550100"), Err(LookupError::Unknown(888)));
        assert!(matches!(
            lookup("+442071234567"),
            Err(LookupError::NotNanp(_))
        ));
    }
}

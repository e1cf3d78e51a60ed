//! Phone numbers: E.164 normalisation, the one spelling of a number that the suppression list,
//! the gates, the lines and the sender compare. A leaf: it imports nothing of hooklog.

/// Normalises a phone number to E.164; US numbers may come without `+1`.
pub fn normalize_e164(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(|c| c.is_ascii_digit()).collect();
    let plus = raw.trim_start().starts_with('+');
    let e164 = match (plus, digits.len()) {
        (true, 8..=15) => format!("+{digits}"),
        (false, 10) => format!("+1{digits}"),
        (false, 11) if digits.starts_with('1') => format!("+{digits}"),
        _ => return None,
    };
    Some(e164)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn us_numbers_get_their_country_code_and_others_keep_theirs() {
        assert_eq!(
            normalize_e164("+1 (555) 555-0123").as_deref(),
            Some("+15555550123")
        );
        assert_eq!(
            normalize_e164("5555550123").as_deref(),
            Some("+15555550123")
        );
        assert_eq!(
            normalize_e164("15555550123").as_deref(),
            Some("+15555550123")
        );
        assert_eq!(
            normalize_e164("+447700900123").as_deref(),
            Some("+447700900123")
        );
        assert_eq!(normalize_e164("USu5AsEHuQ"), None);
        assert_eq!(normalize_e164("123"), None);
    }
}

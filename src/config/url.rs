//! Outgoing URLs in the configuration: where hooklog sends a credential or an event (the Quo and
//! Twilio REST APIs, the agent gateway, the Discord webhook). Each must be `https://`, except to
//! a loopback host, where plain `http://` stays allowed (a gateway or a test fake on the same
//! machine never crosses a network).
//!
//! Loopback is `localhost`, 127.0.0.0/8 and `::1` (an IPv4-mapped `::ffff:127.x.y.z` too). A
//! host name other than `localhost` is never taken as loopback, whatever it resolves to today:
//! the check is on the configuration, not on DNS.
//!
//! Messages never repeat the URL: it may carry a token (Discord's path, a `user:password@`).

use std::net::IpAddr;

/// Whether `host` (a host name or an IP address; IPv6 with or without brackets) is this machine:
/// `localhost`, 127.0.0.0/8 or `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The host of an absolute `scheme://[userinfo@]host[:port][/…]` URL (IPv6 keeps its
/// brackets), or `None` when there is none.
pub fn host_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // The userinfo ends at the last `@` of the authority (a password may hold one, encoded or not).
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port.split_inclusive(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    (!host.is_empty()).then_some(host)
}

/// Checks an outgoing URL: `https://` with a host, or `http://` to a loopback host. The error
/// says what to do and never repeats the URL.
pub fn check_outgoing(url: &str) -> Result<(), String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let Some(host) = host_of(url) else {
        return Err(match scheme {
            Some(_) => "the URL has no host".to_owned(),
            None => "not an absolute URL: it must start with https://".to_owned(),
        });
    };
    match scheme.as_deref() {
        Some("https") => Ok(()),
        Some("http") if is_loopback_host(host) => Ok(()),
        Some("http") => Err(
            "must be https://: plain http:// is allowed only to a loopback host (localhost, \
             127.0.0.0/8, ::1), because what is sent there (a token, events) could be read or \
             changed on the way"
                .to_owned(),
        ),
        _ => Err("must start with https:// (or http:// to a loopback host)".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_localhost_127_slash_8_and_ipv6_one_and_nothing_else() {
        for host in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "127.0.0.1",
            "127.9.8.7",
            "[::1]",
            "::1",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "0.0.0.0",
            "10.0.0.1",
            "128.0.0.1",
            "[::]",
            "localhost.example.com",
            "mylocalhost",
            "127.0.0.1.nip.io",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn https_anywhere_and_http_only_to_loopback_are_accepted() {
        for ok in [
            "https://api.openphone.com",
            "https://discord.com/api/webhooks/1/tok",
            "http://127.0.0.1:18900/v1/dispatch",
            "http://localhost:8080",
            "http://[::1]:9/x",
            "HTTP://127.0.0.1:1",
            "http://user:pw@127.0.0.1:5/x",
        ] {
            assert_eq!(check_outgoing(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn plain_http_to_another_host_and_other_schemes_are_refused_without_the_url() {
        for (bad, says) in [
            (
                "http://gw.example/dispatch?token=tok-secret-1",
                "must be https://",
            ),
            ("http://10.0.0.2:80/tok-secret-1", "must be https://"),
            (
                "http://127.0.0.1@evil.example/tok-secret-1",
                "must be https://",
            ),
            (
                "http://localhost.evil.example/tok-secret-1",
                "must be https://",
            ),
            ("ftp://h/tok-secret-1", "must start with https://"),
            ("tok-secret-1", "not an absolute URL"),
            ("https:///tok-secret-1", "no host"),
        ] {
            let e = check_outgoing(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("tok-secret-1"), "{e}");
        }
    }
}

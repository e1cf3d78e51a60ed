//! TLS verification of the Postgres connection against a fake server on 127.0.0.1: it answers
//! the SSLRequest with `S`, does a rustls handshake with a certificate made here, then reads the
//! startup message and refuses it with an error of its own, which proves the client got past
//! TLS. The host name the client checks comes from the URL (`host=`), the address it dials
//! from `hostaddr=`, so a non-loopback name can be tested on loopback.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::*;

/// What the fake server's error says once the client is past TLS.
const PAST_TLS: &str = "fake server: past TLS";

/// A CA and a server certificate it signed for `name`.
struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn make_pki(name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // A name of its own: two CAs of one name would make an unknown CA a bad signature.
    ca.distinguished_name
        .push(DnType::CommonName, format!("hooklog test CA for {name}"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// Serves one connection as described above; returns the port and what the server saw
/// (`Ok(startup message)` or the handshake's error).
fn fake_server(pki: &Pki) -> (u16, std::sync::mpsc::Receiver<Result<Vec<u8>, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
        .unwrap();
    let config = Arc::new(config);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = [0u8; 8];
        socket.read_exact(&mut request).unwrap();
        // Length 8, then the SSLRequest code 80877103.
        assert_eq!(request, [0, 0, 0, 8, 4, 210, 22, 47], "an SSLRequest first");
        socket.write_all(b"S").unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, socket);
        let mut len = [0u8; 4];
        if let Err(e) = tls.read_exact(&mut len) {
            let _ = tx.send(Err(e.to_string()));
            return;
        }
        let mut startup = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
        tls.read_exact(&mut startup).unwrap();
        // ErrorResponse: severity, SQLSTATE, message, each NUL-terminated, then a NUL.
        let mut fields = Vec::new();
        for (tag, value) in [
            (b'S', "FATAL"),
            (b'V', "FATAL"),
            (b'C', "28000"),
            (b'M', PAST_TLS),
        ] {
            fields.push(tag);
            fields.extend_from_slice(value.as_bytes());
            fields.push(0);
        }
        fields.push(0);
        let mut message = vec![b'E'];
        message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
        message.extend_from_slice(&fields);
        tls.write_all(&message).unwrap();
        tls.flush().unwrap();
        let _ = tx.send(Ok(startup));
    });
    (port, rx)
}

fn ca_file(pem: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(pem.as_bytes()).unwrap();
    f
}

/// Connects to the fake server as `host` (dialled on 127.0.0.1) with `extra` URL parameters.
fn connect_to(port: u16, host: &str, extra: &str, ca: Option<&Path>) -> PgError {
    let url =
        format!("host={host} hostaddr=127.0.0.1 port={port} user=hooklog_test dbname=test {extra}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match runtime.block_on(connect(&url, ca, Duration::from_secs(10))) {
        Ok(_) => panic!("the fake server never accepts a session"),
        Err(e) => e,
    }
}

#[test]
fn verify_full_with_the_ca_file_and_the_certificates_name_connects_past_tls() {
    let pki = make_pki("db.internal.test");
    let ca = ca_file(&pki.ca_pem);
    // No sslmode: a host off this machine gets verify-full by default.
    let (port, seen) = fake_server(&pki);
    let err = connect_to(port, "db.internal.test", "", Some(ca.path())).to_string();
    assert!(err.contains(PAST_TLS), "{err}");
    let startup = seen.recv().unwrap().expect("the handshake completed");
    assert!(
        startup.windows(12).any(|w| w == b"hooklog_test"),
        "the startup message came through TLS"
    );
    // Explicit verify-full on a loopback name, with a certificate for that name.
    let local = make_pki("localhost");
    let ca = ca_file(&local.ca_pem);
    let (port, _) = fake_server(&local);
    let err = connect_to(port, "localhost", "sslmode=verify-full", Some(ca.path())).to_string();
    assert!(err.contains(PAST_TLS), "{err}");
}

#[test]
fn a_wrong_host_name_or_an_unknown_ca_fails_with_a_clear_tls_error() {
    // The certificate names another host than the URL.
    let pki = make_pki("other.internal.test");
    let ca = ca_file(&pki.ca_pem);
    let (port, seen) = fake_server(&pki);
    let err = connect_to(port, "db.internal.test", "", Some(ca.path()));
    let text = err.to_string();
    assert!(matches!(err, PgError::Tls(_)), "{text}");
    assert!(
        text.contains("certificate was refused") && text.contains("name"),
        "{text}"
    );
    assert!(text.contains("postgres.ca_file"), "says what to do: {text}");
    assert!(seen.recv().unwrap().is_err(), "the server saw no session");

    // Signed by a CA the client does not trust: the system roots (no ca_file) ...
    let (port, _) = fake_server(&pki);
    let text = connect_to(port, "other.internal.test", "", None).to_string();
    assert!(
        text.contains("certificate was refused") && text.contains("UnknownIssuer"),
        "{text}"
    );
    // ... or another CA given as ca_file, also when asked for verify-full on a loopback name.
    let stranger = pki_ca_only();
    let local = make_pki("localhost");
    let (port, _) = fake_server(&local);
    let text = connect_to(
        port,
        "localhost",
        "sslmode=verify-full",
        Some(stranger.path()),
    )
    .to_string();
    assert!(
        text.contains("certificate was refused") && text.contains("UnknownIssuer"),
        "{text}"
    );
}

#[test]
fn require_encrypts_without_checking_when_asked_for_explicitly() {
    let pki = make_pki("other.internal.test");
    let (port, seen) = fake_server(&pki);
    let err = connect_to(port, "db.internal.test", "sslmode=require", None).to_string();
    assert!(err.contains(PAST_TLS), "{err}");
    assert!(seen.recv().unwrap().is_ok());
}

/// A CA file of a CA that signed nothing the server has.
fn pki_ca_only() -> tempfile::NamedTempFile {
    ca_file(&make_pki("unrelated.test").ca_pem)
}

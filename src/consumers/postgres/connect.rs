//! One Postgres connection from `postgres.url`, with TLS as the URL asks.
//!
//! `sslmode` follows libpq: `disable` (plain), `prefer` (TLS if the server offers it),
//! `require` (TLS or nothing; the certificate is not checked, unless a CA is given, which makes
//! it `verify-ca` as in libpq), `verify-ca` (the chain must lead to the CA), `verify-full` (and
//! the certificate must name the host). The CA is `postgres.ca_file` or the URL's
//! `sslrootcert`; without one, `verify-*` uses the system's trusted roots (the Mozilla roots of
//! `webpki-roots` when the system has none). tokio-postgres itself only knows
//! disable/prefer/require, so the verify modes and `sslrootcert` are taken out of the URL here
//! and become the rustls verifier.
//!
//! Without an `sslmode`, the default depends on the host (unlike libpq, whose default is
//! `prefer` everywhere): `verify-full` when any host is off this machine, because the URL
//! carries the password and the rows are the business's messages, and `prefer` when every host
//! is loopback (`localhost`, 127.0.0.0/8, `::1`) or a Unix socket. Plaintext or an unchecked
//! certificate to a remote host needs the URL to say so (`sslmode=disable`, `prefer`,
//! `require`).
//!
//! TLS is rustls (ring provider) through `tokio-postgres-rustls`; the connection task is spawned
//! on the caller's runtime and ends when the [`tokio_postgres::Client`] is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;

use super::error::PgError;

/// How the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Encrypt only (libpq `prefer`/`require` without a CA).
    None,
    /// The chain must lead to a trusted root; any host name.
    Ca,
    /// The chain, and the host name.
    Full,
}

/// A parsed connection string.
#[derive(Clone, Debug)]
pub struct Target {
    /// What tokio-postgres connects with (sslmode reduced to disable/prefer/require).
    pub config: tokio_postgres::Config,
    /// The certificate check asked for by the URL alone.
    pub verify: Verify,
    /// `sslrootcert` from the URL.
    pub root_cert: Option<PathBuf>,
}

/// Parses a URL (`postgres://…`, `postgresql://…`) or a libpq `key=value` string. Error
/// messages never repeat the string (it may hold a password).
pub fn parse_url(url: &str) -> Result<Target, PgError> {
    let mut sslmode: Option<String> = None;
    let mut root_cert = None;
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "sslmode" => sslmode = Some(v.into_owned()),
                "sslrootcert" => root_cert = Some(PathBuf::from(v.as_ref())),
                _ => {
                    kept.append_pair(&k, &v);
                }
            }
        }
        let kept = kept.finish();
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{kept}")
        }
    } else {
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            if let Some(v) = token.strip_prefix("sslmode=") {
                sslmode = Some(v.trim_matches('\'').to_owned());
            } else if let Some(v) = token.strip_prefix("sslrootcert=") {
                root_cert = Some(PathBuf::from(v.trim_matches('\'')));
            } else {
                kept.push(token);
            }
        }
        kept.join(" ")
    };
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        PgError::Url(format!("not a valid connection string ({e})"))
    })?;
    if config.get_hosts().is_empty() {
        return Err(PgError::Url("no host".into()));
    }
    let default = if all_local(&config) {
        "prefer"
    } else {
        "verify-full"
    };
    let (mode, verify) = match sslmode.as_deref().unwrap_or(default) {
        "prefer" => (SslMode::Prefer, Verify::None),
        "disable" => (SslMode::Disable, Verify::None),
        "require" => (SslMode::Require, Verify::None),
        "verify-ca" => (SslMode::Require, Verify::Ca),
        "verify-full" => (SslMode::Require, Verify::Full),
        other => {
            return Err(PgError::Url(format!(
                "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
            )))
        }
    };
    config.ssl_mode(mode);
    Ok(Target {
        config,
        verify,
        root_cert,
    })
}

/// Whether every host of `config` is this machine: a Unix socket or a loopback host (and every
/// `hostaddr`, which is where a named host is really reached, a loopback address).
pub fn all_local(config: &tokio_postgres::Config) -> bool {
    let hosts = config.get_hosts().iter().all(|h| match h {
        tokio_postgres::config::Host::Tcp(name) => crate::config::url::is_loopback_host(name),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => true,
    });
    hosts
        && config
            .get_hostaddrs()
            .iter()
            .all(|ip| ip.to_canonical().is_loopback())
}

/// A live connection.
pub struct Connected {
    /// The client; the connection task runs until it is dropped or the server goes away.
    pub client: tokio_postgres::Client,
    /// Whether the session is encrypted.
    pub tls: bool,
}

/// Connects to `url`, with TLS per its `sslmode` and `ca_file`, within `timeout`.
pub async fn connect(
    url: &str,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<Connected, PgError> {
    let target = parse_url(url)?;
    let ca = ca_file.map(Path::to_owned).or(target.root_cert.clone());
    let verify = match (target.verify, &ca) {
        // libpq: `require` with a root certificate verifies the chain.
        (Verify::None, Some(_)) => Verify::Ca,
        (v, _) => v,
    };
    let tls_config = client_config(verify, ca.as_deref())?;
    let mut config = target.config.clone();
    config
        .application_name("hooklog")
        .connect_timeout(timeout)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    let wants_tls = config.get_ssl_mode() != SslMode::Disable;
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config);
    let (client, connection) = tokio::time::timeout(timeout, config.connect(tls))
        .await
        .map_err(|_| PgError::Timeout(timeout.as_secs()))?
        .map_err(|e| certificate_refused(&e).unwrap_or_else(|| e.into()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %super::error::describe(&e), "postgres connection closed");
        }
    });
    let tls = wants_tls && {
        // Whether the session really is encrypted (with `prefer`, the server may say no).
        let rows = client
            .simple_query("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            .await?;
        rows.iter().any(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0) == Some("t"),
            _ => false,
        })
    };
    Ok(Connected { client, tls })
}

/// A connection error that is the server's certificate failing verification, told with what
/// to do; `None` for any other error.
fn certificate_refused(e: &tokio_postgres::Error) -> Option<PgError> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        // tokio-rustls hands the rustls error over inside an io::Error.
        let tls = c.downcast_ref::<rustls::Error>().or_else(|| {
            c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(refused @ rustls::Error::InvalidCertificate(_)) = tls {
            return Some(PgError::Tls(format!(
                "the server's certificate was refused ({refused}). With sslmode verify-full \
                 (the default for a host off this machine) it must be signed by postgres.ca_file \
                 or a system root and name the URL's host: set postgres.ca_file to the CA that \
                 signed it (Supabase: prod-ca-2021.crt), or connect by the name in the \
                 certificate; sslmode=require encrypts without checking, knowingly"
            )));
        }
        cause = c.source();
    }
    None
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client configuration for a verification mode.
pub fn client_config(verify: Verify, ca: Option<&Path>) -> Result<rustls::ClientConfig, PgError> {
    let tls = |e: rustls::Error| PgError::Tls(e.to_string());
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls)?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::None => Arc::new(EncryptOnly(provider())),
        Verify::Ca | Verify::Full => {
            let mut roots = RootCertStore::empty();
            match ca {
                Some(path) => {
                    let certs = read_certs(path)?;
                    for cert in certs {
                        roots.add(cert).map_err(|e| PgError::CaFile {
                            path: path.to_owned(),
                            message: e.to_string(),
                        })?;
                    }
                }
                None => roots = system_roots(),
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| PgError::Tls(e.to_string()))?;
            if verify == Verify::Full {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The system's trusted roots, read once (the sink reconnects with the same store); the
/// Mozilla roots of `webpki-roots` when the system has none that rustls accepts.
fn system_roots() -> RootCertStore {
    static ROOTS: std::sync::OnceLock<RootCertStore> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(error = %e, "a system certificate store could not be read");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::info!(
                    ignored,
                    "no usable system root certificate: the Postgres sink verifies against the \
                     Mozilla roots built in"
                );
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            roots
        })
        .clone()
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PgError> {
    let err = |message: String| PgError::CaFile {
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// libpq's `require`: the session is encrypted and the handshake signature checked, but the
/// certificate is not authenticated (anyone on the path could present one). Use `verify-full`
/// or a CA file where that matters.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// libpq's `verify-ca`: the chain must be valid, the name in the certificate is not checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_and_the_root_certificate_are_taken_out_of_the_url() {
        let t = parse_url(
            "postgres://u:pw@db.example.com:6543/postgres?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(t.verify, Verify::Full);
        assert_eq!(t.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(t.root_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(t.config.get_application_name(), Some("x"));

        let t = parse_url("host=127.0.0.1 user=postgres sslmode=require dbname=test").unwrap();
        assert_eq!(
            (t.verify, t.config.get_ssl_mode()),
            (Verify::None, SslMode::Require)
        );
        let t = parse_url("postgresql://127.0.0.1/test").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Prefer);
    }

    #[test]
    fn without_sslmode_a_remote_host_gets_verify_full_and_a_loopback_host_prefer() {
        for url in [
            "postgres://u:pw@db.example.com:6543/postgres",
            "host=db.example.com user=u dbname=d",
            "postgres://u@127.0.0.1,db.example.com/d",
            "postgres://u@10.0.0.5/d",
            "host=localhost hostaddr=10.0.0.5 user=u dbname=d",
        ] {
            let t = parse_url(url).unwrap();
            assert_eq!(
                (t.verify, t.config.get_ssl_mode()),
                (Verify::Full, SslMode::Require),
                "{url}"
            );
        }
        for url in [
            "postgres://u@localhost/d",
            "postgres://u@127.0.0.1:5432/d",
            "postgres://u@[::1]:5432/d",
            "host=/var/run/postgresql user=u dbname=d",
        ] {
            let t = parse_url(url).unwrap();
            assert_eq!(
                (t.verify, t.config.get_ssl_mode()),
                (Verify::None, SslMode::Prefer),
                "{url}"
            );
        }
        // Plaintext or an unchecked certificate to a remote host only when the URL says so.
        for (mode, expect) in [
            ("disable", (Verify::None, SslMode::Disable)),
            ("prefer", (Verify::None, SslMode::Prefer)),
            ("require", (Verify::None, SslMode::Require)),
            ("verify-ca", (Verify::Ca, SslMode::Require)),
        ] {
            let t = parse_url(&format!("postgres://u@db.example.com/d?sslmode={mode}")).unwrap();
            assert_eq!((t.verify, t.config.get_ssl_mode()), expect, "{mode}");
        }
    }

    #[test]
    fn a_bad_url_is_refused_without_repeating_it() {
        for bad in [
            "postgres://u:secretpw@h/db?sslmode=maybe",
            "postgres://u:secretpw@h:notaport/db",
        ] {
            let e = parse_url(bad).unwrap_err().to_string();
            assert!(!e.contains("secretpw"), "{e}");
        }
    }
}

#[cfg(test)]
#[path = "connect_tests.rs"]
mod tls_tests;

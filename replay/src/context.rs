//! What every subcommand needs: the configuration, where the admin API is, which token to
//! send (and where it came from, for error messages), and the choice of backend.
//!
//! Backend choice (docs/operations.md#hooklog-replay: sled allows one process per database, so the daemon owns the
//! data directory while it runs: `data_dir/log` on sled, `data_dir/state` on JetStream; the
//! data directory is opened with the engine the configuration names, see [`Store`]):
//! - `--direct`: the data directory, always.
//! - otherwise the admin API; if the connection is *refused* (nothing listens: the daemon is
//!   stopped) the data directory instead, with one line on stderr saying so. Any other
//!   failure (timeout, 401, 500) is reported, never papered over by a fallback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use hooklog::config::{Config, Provenance};

use crate::backend::api::{Api, Token};
use crate::backend::direct::Direct;
use crate::backend::{is_unreachable, Backend};
use crate::cli::GlobalArgs;
use crate::store::Store;

/// Everything a subcommand runs with.
#[derive(Debug)]
pub struct Context {
    /// The loaded configuration, with `--data-dir` applied.
    pub config: Config,
    /// Print JSON instead of text.
    pub json: bool,
    /// Whether `--direct` was given.
    pub direct_only: bool,
    /// Admin API base URL, without a trailing slash.
    pub admin_url: String,
    /// Where the admin URL came from (`--admin-url`, or the configuration key and its origin).
    pub admin_url_origin: String,
    /// The token to send, or why there is none.
    pub token: Token,
}

impl Context {
    /// Loads the configuration and resolves the global options.
    pub fn load(args: &GlobalArgs) -> anyhow::Result<Context> {
        let (mut config, prov) = Config::load(args.config.as_deref())?;
        if let Some(dir) = &args.data_dir {
            config.data_dir = dir.clone();
        }
        let (admin_url, admin_url_origin) = match &args.admin_url {
            Some(url) => (normalise_url(url), "--admin-url".to_owned()),
            None => (
                default_admin_url(config.server.admin_listen),
                format!(
                    "server.admin_listen (from {})",
                    prov.origin("server.admin_listen")
                ),
            ),
        };
        let token = resolve_token(args.token.as_deref(), &config, &prov);
        Ok(Context {
            config,
            json: args.json,
            direct_only: args.direct,
            admin_url,
            admin_url_origin,
            token,
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The stopped daemon's log, for the commands that open it directly.
    pub fn store(&self) -> Store {
        Store::new(self.config.clone())
    }

    /// A client of the admin API.
    pub fn api(&self) -> Api {
        Api::new(&self.admin_url, &self.admin_url_origin, self.token.clone())
    }

    /// A reader of the data directory (opened on first use).
    pub fn direct(&self) -> Direct {
        let locked_hint = if self.direct_only {
            "it is in use by another process, most likely the running daemon: drop --direct to \
             read through its admin API"
                .to_owned()
        } else {
            format!(
                "the daemon seems to be running (it holds the data directory) but its admin API \
                 at {} is unreachable: check {} or pass --admin-url",
                self.admin_url, self.admin_url_origin
            )
        };
        Direct::new(self.store(), locked_hint)
    }

    /// Runs `op` on the backend chosen as described in the module docs, and returns that
    /// backend (for further calls) with the result.
    pub fn first<T>(
        &self,
        mut op: impl FnMut(&mut dyn Backend) -> anyhow::Result<T>,
    ) -> anyhow::Result<(Box<dyn Backend>, T)> {
        if !self.direct_only {
            let mut api = self.api();
            match op(&mut api) {
                Ok(v) => return Ok((Box::new(api), v)),
                Err(e) if is_unreachable(&e) => {
                    eprintln!(
                        "hooklog-replay: daemon not reachable at {}; reading {} directly",
                        self.admin_url,
                        self.store().location()
                    );
                }
                Err(e) => return Err(e),
            }
        }
        let mut direct = self.direct();
        let v = op(&mut direct)?;
        Ok((Box::new(direct), v))
    }
}

/// `http://` + the listen address, with an unspecified address (`0.0.0.0`, `::`) replaced by
/// loopback of the same family: the daemon listens there, but one cannot connect to it.
fn default_admin_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// Accepts `host:port` as well as a URL, and drops trailing slashes.
fn normalise_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    }
}

/// `--token`, else `server.admin_token`, else `<data_dir>/admin.token` (as the daemon does).
fn resolve_token(flag: Option<&str>, config: &Config, prov: &Provenance) -> Token {
    if let Some(t) = flag {
        return Token::Found {
            value: t.to_owned(),
            origin: "--token".into(),
        };
    }
    if let Some(t) = &config.server.admin_token {
        return Token::Found {
            value: t.expose().to_owned(),
            origin: format!(
                "server.admin_token (from {})",
                prov.origin("server.admin_token")
            ),
        };
    }
    let path = hooklog::admin::token_path(&config.data_dir);
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().is_empty() => Token::Missing {
            reason: format!("the token file {} is empty", path.display()),
        },
        Ok(s) => Token::Found {
            value: s.trim().to_owned(),
            origin: format!("the token file {}", path.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Token::Missing {
            reason: format!(
                "server.admin_token is not set and {} does not exist (is data_dir the daemon's? \
                 use --config or --data-dir)",
                path.display()
            ),
        },
        Err(e) => Token::Missing {
            reason: format!(
                "server.admin_token is not set and {} cannot be read: {e} (run as the daemon's \
                 user, or pass --token)",
                path.display()
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_reached_through_loopback() {
        assert_eq!(
            default_admin_url(SocketAddr::from(([0, 0, 0, 0], 18800))),
            "http://127.0.0.1:18800"
        );
        assert_eq!(
            default_admin_url("[::]:18800".parse().unwrap()),
            "http://[::1]:18800"
        );
        assert_eq!(
            default_admin_url(SocketAddr::from(([10, 0, 0, 2], 9))),
            "http://10.0.0.2:9"
        );
    }

    #[test]
    fn an_admin_url_may_be_given_as_host_and_port() {
        assert_eq!(normalise_url("127.0.0.1:1/"), "http://127.0.0.1:1");
        assert_eq!(normalise_url("http://h:2//"), "http://h:2");
    }
}

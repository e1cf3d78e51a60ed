//! Reaching NATS and the stream: the connection with its credentials, and the stream created
//! or checked against what hooklog needs (a mismatch is refused with every difference named).
//! [`inspect`] makes the same check without creating or changing anything (`hooklog doctor`).

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::options::{Credentials, JetStreamOptions};
use super::shared::leader_subject;
use crate::log::config::seed_urls;
use crate::log::LogError;

pub(super) async fn connect(
    o: &JetStreamOptions,
) -> Result<(async_nats::Client, jetstream::Context, stream::Stream), LogError> {
    let (client, js) = client(o).await?;
    let stream = ensure_stream(&js, o).await?;
    Ok((client, js, stream))
}

/// What [`inspect`] found of the stream.
#[derive(Clone, Debug)]
pub struct StreamReport {
    /// Records stored.
    pub messages: u64,
    /// The stream's last sequence.
    pub last_seq: u64,
    /// Its replicas.
    pub replicas: usize,
    /// Each way it differs from what `log.jetstream` needs (empty: it matches).
    pub mismatches: Vec<String>,
}

/// Looks at the configured stream without changing anything (`hooklog doctor`): connects,
/// looks the stream up and compares it with what `log.jetstream` needs. A stream that does
/// not exist is [`LogError::Incompatible`] saying so (the daemon would create it; this never
/// does).
pub async fn inspect(o: &JetStreamOptions) -> Result<StreamReport, LogError> {
    let (client, js) = client(o).await?;
    let wanted = wanted_config(o);
    let report = match js.get_stream(&o.stream).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .map_err(|e| unavailable("stream info", e))?;
            Ok(StreamReport {
                messages: info.state.messages,
                last_seq: info.state.last_sequence,
                replicas: info.config.num_replicas,
                mismatches: mismatches(&info.config, &wanted),
            })
        }
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            Err(LogError::Incompatible(format!(
                "JetStream stream {} does not exist (the daemon creates it at its first start)",
                o.stream
            )))
        }
        Err(e) => Err(unavailable("stream lookup", e)),
    };
    drop(client);
    report
}

/// The connection and the JetStream context, with the configured credentials and TLS.
async fn client(
    o: &JetStreamOptions,
) -> Result<(async_nats::Client, jetstream::Context), LogError> {
    let seeds =
        seed_urls(&o.url).map_err(|m| LogError::Config(format!("log.jetstream.nats_url: {m}")))?;
    let mut connect = async_nats::ConnectOptions::new()
        .name("hooklog")
        .connection_timeout(Duration::from_secs(5))
        .require_tls(o.tls_required);
    connect = match &o.credentials {
        Credentials::None => connect,
        Credentials::Token(t) => connect.token(t.clone()),
        Credentials::NKey(seed) => connect.nkey(seed.clone()),
        Credentials::File(path) => connect.credentials_file(path).await.map_err(|e| {
            LogError::Config(format!("log.jetstream.creds_path {}: {e}", path.display()))
        })?,
    };
    if let Some(ca) = &o.tls_ca {
        connect = connect.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &o.tls_client {
        connect = connect.add_client_certificate(cert.clone(), key.clone());
    }
    // Every seed is tried once (in random order) before this fails; once connected, the
    // client reconnects to any server of the cluster, seeds and the ones it learned of.
    let client = connect
        .connect(seeds.as_slice())
        .await
        .map_err(|e| connect_error(&o.url, e))?;
    let js = jetstream::ContextBuilder::new()
        .timeout(o.ack_timeout)
        .build(client.clone());
    Ok((client, js))
}

/// The stream hooklog needs for `o`.
fn wanted_config(o: &JetStreamOptions) -> stream::Config {
    stream::Config {
        name: o.stream.clone(),
        subjects: vec![o.subject.clone(), leader_subject(&o.subject)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        num_replicas: o.replicas,
        duplicate_window: o.duplicate_window,
        ..Default::default()
    }
}

/// A failed connection, classified: no seed answering (connection refused, a timeout, a name
/// that does not resolve yet) is [`LogError::Unavailable`], which the daemon retries at
/// start; credentials or TLS the server refuses, or a seed list it cannot use, are
/// [`LogError::Config`].
fn connect_error(url: &str, e: async_nats::ConnectError) -> LogError {
    use async_nats::ConnectErrorKind as K;
    let message = format!("cannot connect to NATS at {url} (log.jetstream.nats_url): {e}");
    match e.kind() {
        K::Io | K::TimedOut | K::Dns | K::MaxReconnects => LogError::Unavailable(message),
        K::Authentication | K::AuthorizationViolation => LogError::Config(format!(
            "{message}: check log.jetstream.token, nkey_seed or creds_path"
        )),
        K::Tls => LogError::Config(format!(
            "{message}: check log.jetstream.tls_ca_path, tls_cert_path, tls_key_path and \
             tls_required"
        )),
        K::ServerParse => LogError::Config(message),
    }
}

/// The stream as configured: created when missing, checked when present.
pub(super) async fn ensure_stream(
    js: &jetstream::Context,
    o: &JetStreamOptions,
) -> Result<stream::Stream, LogError> {
    let wanted = wanted_config(o);
    match js.get_stream(&o.stream).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .map_err(|e| unavailable("stream info", e))?;
            let problems = mismatches(&info.config, &wanted);
            if problems.is_empty() {
                Ok(existing)
            } else if info.config.subjects == [o.subject.clone()]
                && mismatches(
                    &stream::Config {
                        subjects: wanted.subjects.clone(),
                        ..info.config.clone()
                    },
                    &wanted,
                )
                .is_empty()
            {
                // A stream made before the leader subject existed: add it, nothing else.
                let mut config = info.config.clone();
                config.subjects = wanted.subjects.clone();
                js.update_stream(config)
                    .await
                    .map_err(|e| unavailable("stream update (adding the leader subject)", e))?;
                tracing::info!(stream = %o.stream, "added the leader subject to the stream");
                js.get_stream(&o.stream)
                    .await
                    .map_err(|e| unavailable("stream lookup", e))
            } else {
                Err(LogError::Incompatible(format!(
                    "JetStream stream {} does not match log.jetstream: {}. Change the \
                     configuration, or the stream (`nats stream edit {}`)",
                    o.stream,
                    problems.join("; "),
                    o.stream
                )))
            }
        }
        Err(e)
            if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            js.create_stream(wanted).await.map_err(|e| {
                LogError::Unavailable(format!(
                    "cannot create JetStream stream {} (replicas {}): {e}",
                    o.stream, o.replicas
                ))
            })
        }
        Err(e) => Err(unavailable("stream lookup", e)),
    }
}

/// A request about the stream that failed at start: timed out, no responders, or refused by
/// a cluster that is still electing its leaders or has too few servers up for the stream's
/// replicas. All of these are what a server or cluster that is still starting answers, so
/// they are [`LogError::Unavailable`] (retried with the error in each log line); a stream that
/// exists but does not match is [`LogError::Incompatible`] instead, and not retried.
fn unavailable(what: &str, e: impl std::fmt::Display) -> LogError {
    LogError::Unavailable(format!("JetStream {what}: {e}"))
}

/// Each way an existing stream differs from what hooklog needs, in words.
pub(super) fn mismatches(have: &stream::Config, want: &stream::Config) -> Vec<String> {
    let mut out = Vec::new();
    if have.storage != want.storage {
        out.push(format!(
            "storage is {:?}, hooklog needs File (a memory stream loses the log on restart)",
            have.storage
        ));
    }
    if have.retention != want.retention {
        out.push(format!(
            "retention is {:?}, hooklog needs Limits (consumers read by sequence; nothing may \
             remove a record they have not read)",
            have.retention
        ));
    }
    if have.num_replicas.max(1) != want.num_replicas.max(1) {
        out.push(format!(
            "replicas is {}, log.jetstream.replicas says {}",
            have.num_replicas, want.num_replicas
        ));
    }
    if have.duplicate_window != want.duplicate_window {
        out.push(format!(
            "duplicate window is {} s, log.jetstream.duplicate_window_secs says {} s",
            have.duplicate_window.as_secs(),
            want.duplicate_window.as_secs()
        ));
    }
    if have.subjects != want.subjects {
        out.push(format!(
            "subjects are {:?}, log.jetstream.subject says {:?} (the stream must bind only \
             hooklog's subject and its leader subject, so that its sequences are hooklog's)",
            have.subjects, want.subjects
        ));
    }
    if have.max_messages > 0 || have.max_bytes > 0 || !have.max_age.is_zero() {
        out.push(
            "the stream has message, byte or age limits: JetStream would delete records no \
             consumer has read (use log.retention_days instead)"
                .into(),
        );
    }
    out
}

//! Reaching NATS and the stream: the connection with its credentials, and the stream created
//! or checked against what hooklog needs (a mismatch is refused with every difference named).

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::options::{Credentials, JetStreamOptions};
use super::shared::{js_err, leader_subject};
use crate::log::LogError;

pub(super) async fn connect(
    o: &JetStreamOptions,
) -> Result<(async_nats::Client, jetstream::Context, stream::Stream), LogError> {
    let mut connect = async_nats::ConnectOptions::new()
        .name("hooklog")
        .connection_timeout(Duration::from_secs(5))
        .require_tls(o.tls_required);
    connect = match &o.credentials {
        Credentials::None => connect,
        Credentials::Token(t) => connect.token(t.clone()),
        Credentials::NKey(seed) => connect.nkey(seed.clone()),
        Credentials::File(path) => connect.credentials_file(path).await.map_err(|e| {
            LogError::Storage(format!("log.jetstream.creds_file {}: {e}", path.display()))
        })?,
    };
    if let Some(ca) = &o.tls_ca {
        connect = connect.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &o.tls_client {
        connect = connect.add_client_certificate(cert.clone(), key.clone());
    }
    let client = connect.connect(o.url.as_str()).await.map_err(|e| {
        LogError::Storage(format!(
            "cannot connect to NATS at {} (log.jetstream.nats_url): {e}",
            o.url
        ))
    })?;
    let js = jetstream::ContextBuilder::new()
        .timeout(o.ack_timeout)
        .build(client.clone());
    let stream = ensure_stream(&js, o).await?;
    Ok((client, js, stream))
}

/// The stream as configured: created when missing, checked when present.
pub(super) async fn ensure_stream(
    js: &jetstream::Context,
    o: &JetStreamOptions,
) -> Result<stream::Stream, LogError> {
    let wanted = stream::Config {
        name: o.stream.clone(),
        subjects: vec![o.subject.clone(), leader_subject(&o.subject)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        num_replicas: o.replicas,
        duplicate_window: o.duplicate_window,
        ..Default::default()
    };
    match js.get_stream(&o.stream).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .map_err(|e| js_err("stream info", e))?;
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
                    .map_err(|e| js_err("stream update (adding the leader subject)", e))?;
                tracing::info!(stream = %o.stream, "added the leader subject to the stream");
                js.get_stream(&o.stream)
                    .await
                    .map_err(|e| js_err("stream lookup", e))
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
                LogError::Storage(format!("cannot create JetStream stream {}: {e}", o.stream))
            })
        }
        Err(e) => Err(js_err("stream lookup", e)),
    }
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

//! A JetStream stream of one test's own on a real nats-server, deleted on drop. Shared by the
//! daemon's integration tests (`jetstream`, `failover`, and `engine`'s cleanup) and
//! hooklog-replay's tests (which include this file, replay/tests/it/support.rs), so that every
//! test names and cleans up its stream the same way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The machine's NATS server with JetStream (`nats://127.0.0.1:4222`, or
/// `HOOKLOG_TEST_NATS_URL`).
pub fn machine_nats() -> String {
    std::env::var("HOOKLOG_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A stream name and subject no other test uses (tests of several binaries run at once).
pub struct Stream {
    pub url: String,
    pub name: String,
    pub subject: String,
}

impl Stream {
    pub fn on(url: &str) -> Stream {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let tag = format!(
            "{:x}{:08x}{}",
            std::process::id(),
            nanos,
            N.fetch_add(1, Ordering::Relaxed)
        );
        Stream {
            url: url.to_owned(),
            name: format!("HOOKLOG_IT_{tag}"),
            subject: format!("hooklog.it.{tag}"),
        }
    }

    /// A stream on the machine's server.
    pub fn on_machine() -> Stream {
        Stream::on(&machine_nats())
    }

    /// The `[log]` section of a configuration file that puts the log in this stream.
    // Only hooklog-replay's tests configure a daemon by file; this crate's use the environment.
    #[allow(dead_code)]
    pub fn toml(&self) -> String {
        format!(
            "[log]\nbackend = \"jetstream\"\n[log.jetstream]\nnats_url = \"{}\"\n\
             stream = \"{}\"\nsubject = \"{}\"\nack_timeout_ms = 500\n",
            self.url, self.name, self.subject
        )
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        delete_streams(vec![(self.url.clone(), self.name.clone())]);
    }
}

/// Deletes each `(nats url, stream name)` and its consumers' lease. Bounded: a test that stopped NATS must not hang in
/// its cleanup.
pub fn delete_streams(doomed: Vec<(String, String)>) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async move {
        for (url, name) in doomed {
            if let Ok(Ok(client)) =
                tokio::time::timeout(Duration::from_secs(2), async_nats::connect(url)).await
            {
                let js = async_nats::jetstream::new(client);
                let _ = tokio::time::timeout(Duration::from_secs(5), js.delete_stream(&name)).await;
                // The stream's entry in the consumers' lease bucket, if a daemon ran on it.
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    if let Ok(kv) = js
                        .get_key_value(hooklog::log::jetstream::lease::BUCKET)
                        .await
                    {
                        let _ = kv.purge(&name).await;
                    }
                })
                .await;
            }
        }
    });
}

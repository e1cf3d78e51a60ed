//! Integration tests: the real server on ephemeral loopback ports (and, for crash and signal
//! tests, the real binary), and the outbound clients (Discord alerts, backfill fetchers, agent
//! gateway, Quo and Twilio send) against fake servers.

// The whole crate is test code: clippy.toml's `allow-unwrap-in-tests` then covers its helpers too.
#![cfg(test)]

// Helpers: the in-process daemon and a blocking HTTP client (`util`), the log engine of the run
// (`engine`), a JetStream stream of a test's own (`jetstream_stream`), a scripted fake HTTP
// server (`fake_server`), fake Quo and Twilio APIs (`fake_providers`). hooklog-replay's tests
// include `jetstream_stream` and `fake_providers` too (replay/tests/it/support.rs).
mod engine;
mod fake_providers;
mod fake_server;
mod jetstream_stream;
mod util;

// Tests (some also lend helpers to others, e.g. `crash`'s real-binary daemon).
mod admin;
mod alerts_discord;
mod architecture;
mod backfill;
mod config_errors;
mod consumers;
mod crash;
mod diskfull;
mod dispatch;
mod dispatch_gateway;
mod doctor;
mod edge;
mod edge_survival;
mod failover;
mod fixtures;
mod hostile;
mod jetstream;
mod mirror;
mod nats_cluster;
mod ops;
mod outbound;
mod postgres;
mod postgres_schema;
mod readiness;
mod reload;
mod replays;
mod send_providers;
mod sender;
mod startup;
mod trust_optouts;
mod trust_redeliver;
mod trust_stops;
mod trust_tokens;

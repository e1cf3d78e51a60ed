//! Integration tests: the real server on ephemeral loopback ports (and, for crash and signal
//! tests, the real binary).

// The whole crate is test code: clippy.toml's `allow-unwrap-in-tests` then covers its helpers too.
#![cfg(test)]

mod admin;
#[path = "../common/mod.rs"]
mod common;
mod consumers;
mod crash;
mod diskfull;
mod dispatch;
mod edge;
mod engine;
mod failover;
mod fixtures;
mod hostile;
mod jetstream;
#[path = "../jetstream_stream/mod.rs"]
mod jetstream_stream;
mod ops;
mod outbound;
mod postgres;
mod util;

//! hooklog-replay's integration tests: the built CLI as a child process against the real daemon
//! (`hooklog::run` in-process on `127.0.0.1:0`, see `support`), its data directory, and fake
//! provider APIs.

// The whole crate is test code: clippy.toml's `allow-unwrap-in-tests` then covers its helpers too.
#![cfg(test)]

mod support;

mod backfill;
mod cli;
mod lines;
mod migrate;
mod retention;

//! SIGINT and SIGTERM while `tail --follow` polls: the first one asks the loop to stop
//! (it finishes the write in progress, closes the log if it holds it, and exits 0); a second
//! one exits at once, for a loop stuck in a slow request.
//!
//! The handlers live on a small thread with a current-thread tokio runtime: tokio's signal
//! support is safe code, and the workspace forbids `unsafe`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a sleeping loop looks at the flag: short enough that Ctrl-C feels immediate.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// Set once SIGINT or SIGTERM has arrived.
#[derive(Clone, Debug)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Catches SIGINT and SIGTERM from now on. If the handlers cannot be installed the
    /// signals keep their default effect (the process ends), which is still a way to stop.
    pub fn install() -> Stop {
        let flag = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let set = flag.clone();
        let spawned = std::thread::Builder::new()
            .name("hooklog-replay-signals".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let Ok(mut signals) = Signals::new() else {
                        return;
                    };
                    drop(ready_tx);
                    signals.next().await;
                    set.store(true, Ordering::Release);
                    signals.next().await;
                    std::process::exit(130);
                });
            });
        if spawned.is_ok() {
            // Returns when the handlers are in place (or the thread gave up): a signal
            // sent after `install` is never missed.
            let _ = ready_rx.recv();
        }
        Stop(flag)
    }

    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Sleeps for `d`, or less if a stop is requested meanwhile; returns [`Stop::requested`].
    pub fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if self.requested() {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            std::thread::sleep(CHECK_EVERY.min(until - now));
        }
    }
}

#[cfg(unix)]
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

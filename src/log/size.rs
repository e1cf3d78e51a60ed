//! The log's size as the metrics report it: records, bytes, first sequence, and the data
//! directory's disk usage (the log, consumer state and anything else hooklog keeps there).

use std::path::Path;

use super::{Log, LogError};
use crate::metrics::Metrics;

/// Bytes of every file under `dir` (the data directory's disk usage).
pub fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

/// Sets the log's size gauges (records, bytes, first sequence, data directory usage).
pub fn update_gauges(log: &dyn Log, data_dir: &Path, metrics: &Metrics) -> Result<(), LogError> {
    let stats = log.stats()?;
    metrics.log_records.set(stats.count as i64);
    metrics.log_bytes.set(stats.bytes as i64);
    metrics.log_first_seq.set(stats.first_seq as i64);
    match dir_bytes(data_dir) {
        Ok(bytes) => metrics.data_dir_bytes.set(bytes as i64),
        Err(e) => tracing::warn!(error = %e, "cannot measure the data directory"),
    }
    Ok(())
}

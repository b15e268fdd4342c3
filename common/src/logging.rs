//! Logging set-up shared by the binaries: `-L LEVEL`, `--log-file F`, `--log-format text|json`.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log level `{0}`: use error, warn, info, debug, trace or a filter such as wasmgrid_master=debug")]
    Level(String),
    #[error("cannot open log file {path}")]
    File { path: String, source: std::io::Error },
}

/// Installs the global subscriber. `level` accepts a plain level or an `EnvFilter` directive;
/// `RUST_LOG` wins when set, so a user can always turn up one module.
pub fn init(level: &str, file: Option<&Path>, format: LogFormat) -> Result<(), LoggingError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => EnvFilter::try_new(env),
        _ => EnvFilter::try_new(default_directives(level)),
    }
    .map_err(|_| LoggingError::Level(level.to_string()))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let result = match (file, format) {
        (Some(path), format) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LoggingError::File { path: path.display().to_string(), source })?;
            let builder = builder.with_ansi(false).with_writer(Mutex::new(f));
            match format {
                LogFormat::Text => builder.try_init(),
                LogFormat::Json => builder.json().try_init(),
            }
        }
        // Colours only for a terminal: not in a file or a pipe (`master ... 2> log`).
        (None, LogFormat::Text) => {
            builder.with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).try_init()
        }
        (None, LogFormat::Json) => builder.json().with_writer(std::io::stderr).try_init(),
    };
    // A second init (tests starting several roles in one process) is harmless.
    let _ = result;
    Ok(())
}

/// A bare level applies to our crates; the noisy dependencies stay at `warn` unless asked.
/// openraft's replication errors are off below `debug`: while a master is down they repeat
/// every half second for as long as it stays down; the master logs once that a peer stopped
/// answering, and once that it answers again.
fn default_directives(level: &str) -> String {
    let level = level.trim();
    if level.contains('=') || level.contains(',') {
        return level.to_string();
    }
    let ours = ["wasmgrid_master", "wasmgrid_executor", "wasmgrid_client", "wasmgrid_common"];
    let mut d = "warn,openraft=error".to_string();
    for crate_name in ours {
        d.push_str(&format!(",{crate_name}={level}"));
    }
    if matches!(level, "debug" | "trace") {
        d.push_str(&format!(",openraft={level}"));
    } else {
        d.push_str(",openraft::replication=off");
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_level_targets_our_crates() {
        let d = default_directives("debug");
        assert!(d.contains("wasmgrid_master=debug"));
        assert!(EnvFilter::try_new(&d).is_ok());
        assert_eq!(default_directives("a=trace"), "a=trace");
        assert!(default_directives("info").ends_with(",openraft::replication=off"));
        assert!(!d.contains("replication"));
    }
}

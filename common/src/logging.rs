//! Logging set-up shared by the binaries: `-L LEVEL`, `--log-file F`, `--log-format text|json`.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::callsite::Identifier;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
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
                LogFormat::Text => install(builder.finish()),
                LogFormat::Json => install(builder.json().finish()),
            }
        }
        // Colours only for a terminal: not in a file or a pipe (`master ... 2> log`).
        (None, LogFormat::Text) => {
            install(builder.with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).finish())
        }
        (None, LogFormat::Json) => install(builder.json().with_writer(std::io::stderr).finish()),
    };
    // A second init (tests starting several roles in one process) is harmless.
    if result.is_ok() {
        log_panics();
    }
    Ok(())
}

/// Panics go to the log as one error line, in the log's format and file, not as a raw dump on
/// stderr: the servers catch them (a request, a run, a parser that chokes on a hostile
/// module) and keep serving, so they are events to log, not crashes. The main thread's, which
/// nothing catches, and any the log's filter would drop, still go to stderr as they are.
fn log_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        if thread == "main" || !tracing::enabled!(target: "panic", tracing::Level::ERROR) {
            default(info);
            return;
        }
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = panic_message(info.payload());
        // RUST_BACKTRACE=1 asks for one, as it would for the default hook.
        let backtrace = std::backtrace::Backtrace::capture();
        match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => {
                tracing::error!(target: "panic", thread, location, %backtrace, "panic: {message}")
            }
            _ => tracing::error!(target: "panic", thread, location, "panic: {message}"),
        }
    }));
}

/// What a panic said: its payload is the `&str` or `String` given to `panic!`, or else
/// something that cannot be shown.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Installs `subscriber`, openraft's repeats throttled, as the global one.
fn install(subscriber: impl Subscriber + Send + Sync + 'static) -> Result<(), TryInitError> {
    subscriber.with(Throttle::default()).try_init()
}

/// How often one of openraft's warning or error call sites may be heard.
const THROTTLE: Duration = Duration::from_secs(60);

/// openraft repeats some warnings and errors for as long as a condition lasts: a vote that a
/// stopped master cannot answer, at every election while a majority is down; callers that
/// gave up waiting after a pause. Each of its warning and error call sites is heard at most
/// once a minute; our own logs say when a peer stops and starts answering.
#[derive(Default)]
struct Throttle {
    last: Mutex<HashMap<Identifier, Instant>>,
}

impl Throttle {
    fn applies(meta: &Metadata<'_>) -> bool {
        meta.is_event() && *meta.level() <= Level::WARN && meta.target().starts_with("openraft")
    }
}

impl<S: Subscriber> Layer<S> for Throttle {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        // Asked at every event of these call sites, not once for all.
        if Self::applies(meta) {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        if !Self::applies(meta) {
            return true;
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match last.get(&meta.callsite()) {
            Some(at) if now.duration_since(*at) < THROTTLE => false,
            _ => {
                last.insert(meta.callsite(), now);
                true
            }
        }
    }
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

    /// Counts the events that get through.
    struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl<S: Subscriber> Layer<S> for Count {
        fn on_event(&self, _: &tracing::Event<'_>, _: Context<'_, S>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn openraft_warnings_and_errors_are_heard_once_a_minute_per_call_site() {
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(Throttle::default()).with(Count(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..5 {
                tracing::error!(target: "openraft::core::raft_core", "while requesting vote");
                tracing::warn!(target: "openraft::replication", "error replication");
                tracing::info!(target: "openraft::core", "not throttled: not a warning");
                tracing::error!(target: "wasmgrid_master", "not throttled: ours");
            }
        });
        assert_eq!(seen.load(std::sync::atomic::Ordering::Relaxed), 1 + 1 + 5 + 5);
    }

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

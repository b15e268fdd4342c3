//! Executor configuration: flags, the same keys in a TOML file (`--config`), and defaults,
//! resolved and checked in one place.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};
use wasmgrid_common::logging::LogFormat;
use wasmgrid_common::{Addr, AddrList, Dur, Size};
use wasmgrid_proto::security::SecurityFiles;

/// The sample config printed by `--print-sample-config`.
pub const SAMPLE_CONFIG: &str = include_str!("../../sample/config/executor.toml");

/// The command line of `executor`.
#[derive(Debug, Parser)]
#[command(name = "executor", version = wasmgrid_common::VERSION, about = "The wasmgrid executor: runs WebAssembly tasks sandboxed under wasmtime")]
pub struct Cli {
    /// TOML file with any of the options below (same names, kebab-case); flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print a sample config file with every key and exit.
    #[arg(long)]
    pub print_sample_config: bool,
    #[command(flatten)]
    pub options: ExecutorOptions,
}

/// Every option of an executor, as given by flags or the config file (unset ones are `None`).
#[derive(Debug, Default, Clone, clap::Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ExecutorOptions {
    /// The masters, comma-separated; any one will do, the leader is found from there.
    #[arg(long, value_name = "HOST:PORT,...")]
    pub join: Option<AddrList>,
    /// Address this executor's own status API listens on.
    #[arg(long, value_name = "HOST:PORT")]
    pub worker_addr: Option<Addr>,
    /// Address the masters show for this executor (default: --worker-addr).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise_addr: Option<Addr>,
    /// This executor's name (default: its advertised address); unique in the cluster.
    #[arg(long)]
    pub name: Option<String>,
    /// Tasks run at once (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    pub slots: Option<u32>,
    /// Memory offered to tasks in all (default: three quarters of this machine's).
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<Size>,
    /// Directory of the module cache and compiled artefacts.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Silent this long, this executor is declared lost by the masters.
    #[arg(long, value_name = "DURATION")]
    pub keepalive_ttl: Option<Dur>,
    /// On SIGTERM or a drain, how long running tasks may take to finish before they are
    /// given back to run elsewhere.
    #[arg(long, value_name = "DURATION")]
    pub drain_grace: Option<Dur>,
    /// Fuel of a task that does not set its own.
    #[arg(long, value_name = "N")]
    pub default_fuel: Option<u64>,
    /// Largest output a task may return.
    #[arg(long, value_name = "SIZE")]
    pub max_output_size: Option<Size>,
    /// Stderr kept per task (and the length of a task's own error message); the rest is dropped.
    #[arg(long, value_name = "SIZE")]
    pub max_stderr_size: Option<Size>,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(short = 'L', long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Write logs to this file instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// File holding the cluster's shared secret, presented to the masters (and required by
    /// this executor's own status API).
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// TLS certificate (PEM) of the worker listener; needs --tls-key.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate (PEM) the masters' certificates are verified against; calls to the
    /// masters use TLS when it is set.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

/// An executor's resolved configuration.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    pub join: Vec<Addr>,
    pub worker_addr: Addr,
    pub advertise_addr: Addr,
    /// `None` until the worker listener is bound (the default is the advertised address).
    pub name: Option<String>,
    pub slots: u32,
    pub memory: u64,
    pub data_dir: PathBuf,
    pub keepalive_ttl: Duration,
    pub drain_grace: Duration,
    pub default_fuel: u64,
    pub max_output_size: u64,
    pub max_stderr_size: u64,
    pub log_level: String,
    pub log_file: Option<PathBuf>,
    pub log_format: LogFormat,
    pub security: SecurityFiles,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Largest `max-output-size`: a result (output and stderr) must fit in one gRPC message
/// (256MiB) to reach the masters, and goes into a Raft entry.
const MAX_OUTPUT_SIZE: Size = Size::mib(128);
/// Largest `max-stderr-size`.
const MAX_STDERR_SIZE: Size = Size::mib(16);

impl ExecutorOptions {
    /// Fills in defaults and checks the combination.
    pub fn resolve(self) -> Result<ExecutorConfig, ConfigError> {
        let join = self.join.map(|j| j.0).unwrap_or_default();
        if join.is_empty() {
            return Err(ConfigError("--join is required: the address of at least one master (host:port,...)".into()));
        }
        if let Some(a) = join.iter().find(|a| a.tls()).filter(|_| self.tls_ca.is_none()) {
            return Err(ConfigError(format!(
                "--join {a} asks for TLS: give --tls-ca, the CA of the masters' certificates"
            )));
        }
        let worker_addr = self.worker_addr.unwrap_or_else(|| Addr::new("127.0.0.1", 10250));
        let advertise_addr = self.advertise_addr.unwrap_or_else(|| worker_addr.clone());
        if let Some(name) = &self.name {
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == ',') {
                return Err(ConfigError(format!("name `{name}` must be non-empty, without spaces or ','")));
            }
        }
        let slots = self
            .slots
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1)));
        if slots == 0 || slots > 4096 {
            return Err(ConfigError(format!("slots must be between 1 and 4096, not {slots}")));
        }
        let memory = self.memory.map_or_else(default_memory, Size::bytes);
        if memory == 0 {
            return Err(ConfigError("memory must be more than 0".into()));
        }
        let keepalive_ttl = self.keepalive_ttl.unwrap_or(Dur::secs(10)).0;
        if keepalive_ttl < Duration::from_millis(100) {
            return Err(ConfigError("keepalive-ttl must be at least 100ms".into()));
        }
        if self.default_fuel == Some(0) {
            return Err(ConfigError("default-fuel must be at least 1".into()));
        }
        let max_output_size = self.max_output_size.unwrap_or(Size::mib(16));
        let max_stderr_size = self.max_stderr_size.unwrap_or(Size(64 * 1024));
        let caps = [
            ("max-output-size", max_output_size, MAX_OUTPUT_SIZE),
            ("max-stderr-size", max_stderr_size, MAX_STDERR_SIZE),
        ];
        if let Some((key, size, cap)) = caps.iter().find(|(_, size, cap)| size.bytes() > cap.bytes()) {
            return Err(ConfigError(format!(
                "{key} must be at most {cap} (a result travels to the masters in one message), not {size}"
            )));
        }
        Ok(ExecutorConfig {
            join,
            worker_addr,
            advertise_addr,
            name: self.name,
            slots,
            memory,
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("data/executor")),
            keepalive_ttl,
            drain_grace: self.drain_grace.unwrap_or(Dur::secs(30)).0,
            default_fuel: self.default_fuel.unwrap_or(100_000_000_000),
            max_output_size: max_output_size.bytes(),
            max_stderr_size: max_stderr_size.bytes(),
            log_level: self.log_level.unwrap_or_else(|| "info".to_string()),
            log_file: self.log_file,
            log_format: self.log_format.unwrap_or_default(),
            security: SecurityFiles {
                auth_token_file: self.auth_token_file,
                tls_cert: self.tls_cert,
                tls_key: self.tls_key,
                tls_ca: self.tls_ca,
            },
        })
    }
}

/// Three quarters of this machine's memory (4GiB when it cannot be read).
fn default_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    total.map_or(4 * 1024 * 1024 * 1024, |t| t / 4 * 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_config_parses() {
        let opts: ExecutorOptions = toml::from_str(SAMPLE_CONFIG).unwrap();
        let cfg = opts.resolve().unwrap();
        assert_eq!(cfg.join.len(), 1);
    }

    #[test]
    fn join_is_required_and_checked() {
        assert!(ExecutorOptions::default().resolve().unwrap_err().to_string().contains("--join"));
        let https = ExecutorOptions { join: Some("https://m:1".parse().unwrap()), ..Default::default() };
        assert!(https.resolve().unwrap_err().to_string().contains("--tls-ca"));
        assert!("a:1,,b:2".parse::<AddrList>().is_err());
        assert!(toml::from_str::<ExecutorOptions>("join = \"nope\"").is_err());
        let o: ExecutorOptions = toml::from_str("join = [\"a:1\", \"http://b:2\"]").unwrap();
        assert_eq!(o.join.unwrap().0.len(), 2);
    }

    #[test]
    fn output_limits_fit_in_a_message() {
        let opts = |toml: &str| toml::from_str::<ExecutorOptions>(&format!("join = \"a:1\"\n{toml}")).unwrap();
        assert!(opts("max-output-size = \"128MiB\"").resolve().is_ok());
        let e = opts("max-output-size = \"1GiB\"").resolve().unwrap_err().to_string();
        assert!(e.contains("max-output-size must be at most 128MiB"), "{e}");
        let e = opts("max-stderr-size = \"17MiB\"").resolve().unwrap_err().to_string();
        assert!(e.contains("max-stderr-size must be at most 16MiB"), "{e}");
        let e = opts("default-fuel = 0").resolve().unwrap_err().to_string();
        assert!(e.contains("default-fuel must be at least 1"), "{e}");
    }
}

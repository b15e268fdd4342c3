//! Master configuration: flags, the same keys in a TOML file (`--config`), and defaults,
//! resolved and checked in one place.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use wasmgrid_common::logging::LogFormat;
use wasmgrid_common::{Addr, Dur, Size};
use wasmgrid_proto::security::SecurityFiles;

/// The sample config printed by `--print-sample-config`.
pub const SAMPLE_CONFIG: &str = include_str!("../../sample/config/master.toml");

/// The command line of `master`.
#[derive(Debug, Parser)]
#[command(name = "master", version = wasmgrid_common::VERSION, about = "The wasmgrid master: schedules WebAssembly tasks and keeps their state")]
pub struct Cli {
    /// TOML file with any of the options below (same names, kebab-case); flags win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print a sample config file with every key and exit.
    #[arg(long)]
    pub print_sample_config: bool,
    #[command(flatten)]
    pub options: MasterOptions,
}

/// Every option of a master, as given by flags or the config file (unset ones are `None`).
#[derive(Debug, Default, Clone, clap::Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MasterOptions {
    /// Address the client and executor API listens on.
    #[arg(long, value_name = "HOST:PORT")]
    pub master_addr: Option<Addr>,
    /// Address clients and executors use to reach this master (default: --master-addr).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise_addr: Option<Addr>,
    /// This master's name in the group.
    #[arg(long)]
    pub name: Option<String>,
    /// Directory of the Raft log, the state and the module blobs.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the Raft peer service listens on (default: shared with --master-addr).
    #[arg(long, value_name = "HOST:PORT")]
    pub peer_urls: Option<Addr>,
    /// URL other masters use to reach this one's peer service.
    #[arg(long, value_name = "URL")]
    pub advertise_peer_urls: Option<Addr>,
    /// The founding members: name=URL,name=URL,...
    #[arg(long, value_name = "NAME=URL,...")]
    pub initial_cluster: Option<InitialCluster>,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(short = 'L', long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Write logs to this file instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Largest module accepted by upload.
    #[arg(long, value_name = "SIZE")]
    pub max_module_size: Option<Size>,
    /// Most functions a module may define, all its core modules together: compiling one
    /// costs an executor memory for each (about 10KB), whatever the module's size.
    #[arg(long, value_name = "N")]
    pub max_module_functions: Option<u32>,
    /// Largest task input accepted by submit.
    #[arg(long, value_name = "SIZE")]
    pub max_input_size: Option<Size>,
    /// Largest gRPC message the client API accepts (a submit batch is one).
    #[arg(long, value_name = "SIZE")]
    pub max_message_size: Option<Size>,
    /// Most tasks in one submit call.
    #[arg(long, value_name = "N")]
    pub max_batch_size: Option<u32>,
    /// Most tasks waiting for an executor; submits beyond it are refused.
    #[arg(long, value_name = "N")]
    pub max_pending_tasks: Option<u64>,
    /// Memory a task may use when it does not say.
    #[arg(long, value_name = "SIZE")]
    pub default_memory: Option<Size>,
    /// Wall-clock limit of a task that does not say.
    #[arg(long, value_name = "DURATION")]
    pub default_timeout: Option<Dur>,
    /// Runs a task gets when its executors are lost, when it does not say.
    #[arg(long, value_name = "N")]
    pub default_max_attempts: Option<u32>,
    /// Executors' lease when they do not ask for one.
    #[arg(long, value_name = "DURATION")]
    pub keepalive_ttl: Option<Dur>,
    /// Raft entries between two snapshots of the state machine.
    #[arg(long, value_name = "N")]
    pub snapshot_every: Option<u64>,
    /// Raft heartbeat period; elections start after 4-8 missed heartbeats.
    #[arg(long, value_name = "DURATION")]
    pub raft_heartbeat: Option<Dur>,
    /// How long a write waits to be committed before it is answered with an error.
    #[arg(long, value_name = "DURATION")]
    pub write_timeout: Option<Dur>,
    /// How long finished tasks (record, input, output), and executors lost, are kept; 0 keeps them forever.
    #[arg(long, value_name = "DURATION")]
    pub result_retention: Option<Dur>,
    /// File holding the cluster's shared secret: every call to this master (clients,
    /// executors, other masters) must carry it, and this master presents it to its peers.
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// TLS certificate (PEM) of this master's listeners; needs --tls-key.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate (PEM) that peers' certificates are verified against; calls to other
    /// masters use TLS when it is set.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

/// The founding members of a group: `m0=http://ip0:8291,m1=http://ip1:8291`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InitialCluster(pub Vec<(String, Addr)>);

impl FromStr for InitialCluster {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut members = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, url) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not name=URL (e.g. m0=http://10.0.0.1:8291)"))?;
            let name = name.trim();
            if name.is_empty() {
                return Err(format!("`{part}` has an empty name"));
            }
            if members.iter().any(|(n, _)| n == name) {
                return Err(format!("member `{name}` is listed twice"));
            }
            let addr = url.parse::<Addr>().map_err(|e| e.to_string())?;
            members.push((name.to_string(), addr));
        }
        if members.is_empty() {
            return Err("no members given: expected name=URL,name=URL,...".into());
        }
        Ok(Self(members))
    }
}

impl fmt::Display for InitialCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(n, a)| format!("{n}={}", a.url())).collect();
        write!(f, "{}", parts.join(","))
    }
}

impl Serialize for InitialCluster {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// In a config file, one string as on the command line, or an array of `name=URL`s (as the
/// executor's `join` may be an array of addresses).
impl<'de> Deserialize<'de> for InitialCluster {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let joined = match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected \"name=URL,name=URL\" or an array of \"name=URL\""))?
        {
            Raw::One(s) => s,
            Raw::Many(parts) => parts.join(","),
        };
        joined.parse().map_err(serde::de::Error::custom)
    }
}

/// A master's resolved configuration.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    pub master_addr: Addr,
    pub advertise_addr: Addr,
    pub name: String,
    pub data_dir: PathBuf,
    pub peer_addr: Option<Addr>,
    pub advertise_peer_addr: Addr,
    pub initial_cluster: Vec<(String, Addr)>,
    pub log_level: String,
    pub log_file: Option<PathBuf>,
    pub log_format: LogFormat,
    pub max_module_size: u64,
    pub max_module_functions: u32,
    pub max_input_size: u64,
    pub max_message_size: usize,
    pub max_batch_size: usize,
    pub max_pending_tasks: u64,
    pub default_memory: u64,
    pub default_timeout: Duration,
    pub default_max_attempts: u32,
    pub keepalive_ttl: Duration,
    pub snapshot_every: u64,
    pub raft_heartbeat: Duration,
    pub write_timeout: Duration,
    /// Zero: keep finished tasks forever.
    pub result_retention: Duration,
    pub security: SecurityFiles,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl MasterOptions {
    /// Fills in defaults and checks the combination.
    pub fn resolve(self) -> Result<MasterConfig, ConfigError> {
        let master_addr = self.master_addr.unwrap_or_else(|| Addr::new("127.0.0.1", 10240));
        let advertise_addr = self.advertise_addr.unwrap_or_else(|| master_addr.clone());
        let name = self.name.unwrap_or_else(|| "master".to_string());
        if name.is_empty() || name.contains(['=', ',']) || name.chars().any(char::is_whitespace) {
            return Err(ConfigError(format!("name `{name}` must be non-empty, without spaces, '=' or ','")));
        }
        let initial_cluster = self.initial_cluster.map(|c| c.0).unwrap_or_default();
        let peer_addr = self.peer_urls;
        let advertise_peer_addr = match (&self.advertise_peer_urls, &peer_addr) {
            (Some(a), _) => a.clone(),
            (None, _) => match initial_cluster.iter().find(|(n, _)| *n == name) {
                Some((_, a)) => a.clone(),
                None => peer_addr.clone().unwrap_or_else(|| advertise_addr.clone()),
            },
        };
        if !initial_cluster.is_empty() && !initial_cluster.iter().any(|(n, _)| *n == name) {
            let names: Vec<&str> = initial_cluster.iter().map(|(n, _)| n.as_str()).collect();
            return Err(ConfigError(format!(
                "--name `{name}` is not in --initial-cluster ({}); give this master one of those names",
                names.join(", ")
            )));
        }
        let max_module_size = self.max_module_size.unwrap_or(Size::mib(64)).bytes();
        let max_input_size = self.max_input_size.unwrap_or(Size::mib(16)).bytes();
        let max_message_size = self.max_message_size.unwrap_or(Size::mib(256)).bytes();
        let ceiling = wasmgrid_proto::MAX_MESSAGE_SIZE as u64;
        if !(Size::mib(4).bytes()..=ceiling).contains(&max_message_size) {
            return Err(ConfigError(format!("max-message-size must be between 4MiB and {}", Size(ceiling))));
        }
        if max_input_size > max_message_size / 2 {
            return Err(ConfigError(format!(
                "max-input-size must be at most half of max-message-size ({})",
                Size(max_message_size / 2)
            )));
        }
        let zero = [
            ("max-batch-size", self.max_batch_size == Some(0)),
            ("max-module-size", max_module_size == 0),
            ("max-module-functions", self.max_module_functions == Some(0)),
            ("max-pending-tasks", self.max_pending_tasks == Some(0)),
            ("default-max-attempts", self.default_max_attempts == Some(0)),
            ("snapshot-every", self.snapshot_every == Some(0)),
        ];
        if let Some((key, _)) = zero.iter().find(|(_, is_zero)| *is_zero) {
            return Err(ConfigError(format!("{key} must be at least 1")));
        }
        let short = [("default-timeout", self.default_timeout), ("write-timeout", self.write_timeout)];
        if let Some((key, _)) = short.iter().find(|(_, d)| d.is_some_and(|d| d.0 < Duration::from_millis(1))) {
            return Err(ConfigError(format!("{key} must be at least 1ms")));
        }
        let default_memory = self.default_memory.unwrap_or(Size::mib(128)).bytes();
        if default_memory == 0 {
            return Err(ConfigError("default-memory must be more than 0".into()));
        }
        let keepalive_ttl = self.keepalive_ttl.unwrap_or(Dur::secs(10)).0;
        if keepalive_ttl < Duration::from_millis(100) {
            return Err(ConfigError("keepalive-ttl must be at least 100ms".into()));
        }
        let raft_heartbeat = self.raft_heartbeat.unwrap_or(Dur::millis(100)).0;
        if raft_heartbeat < Duration::from_millis(10) {
            return Err(ConfigError("raft-heartbeat must be at least 10ms".into()));
        }
        Ok(MasterConfig {
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("data").join(&name)),
            master_addr,
            advertise_addr,
            name,
            peer_addr,
            advertise_peer_addr,
            initial_cluster,
            log_level: self.log_level.unwrap_or_else(|| "info".to_string()),
            log_file: self.log_file,
            log_format: self.log_format.unwrap_or_default(),
            max_module_size,
            max_module_functions: self.max_module_functions.unwrap_or(200_000),
            max_input_size,
            max_message_size: usize::try_from(max_message_size).unwrap_or(usize::MAX),
            max_batch_size: self.max_batch_size.unwrap_or(10_000) as usize,
            max_pending_tasks: self.max_pending_tasks.unwrap_or(1_000_000).max(1),
            default_memory,
            default_timeout: self.default_timeout.unwrap_or(Dur::secs(60)).0,
            default_max_attempts: self.default_max_attempts.unwrap_or(3).max(1),
            keepalive_ttl,
            snapshot_every: self.snapshot_every.unwrap_or(50_000).max(10),
            raft_heartbeat,
            write_timeout: self.write_timeout.unwrap_or(Dur::secs(10)).0.max(Duration::from_millis(100)),
            result_retention: self.result_retention.unwrap_or(Dur::secs(7 * 24 * 3600)).0,
            security: SecurityFiles {
                auth_token_file: self.auth_token_file,
                tls_cert: self.tls_cert,
                tls_key: self.tls_key,
                tls_ca: self.tls_ca,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_config_parses_and_lists_every_key() {
        let opts: MasterOptions = toml::from_str(SAMPLE_CONFIG).unwrap();
        opts.clone().resolve().unwrap();
        let table: toml::Table = toml::from_str(SAMPLE_CONFIG).unwrap();
        let all = toml::Table::try_from(MasterOptions {
            master_addr: Some(Addr::new("a", 1)),
            advertise_addr: Some(Addr::new("a", 1)),
            name: Some("m".into()),
            data_dir: Some("d".into()),
            peer_urls: Some(Addr::new("a", 2)),
            advertise_peer_urls: Some(Addr::new("a", 2)),
            initial_cluster: Some("m=a:2".parse().unwrap()),
            log_level: Some("info".into()),
            log_file: Some("f".into()),
            log_format: Some(LogFormat::Text),
            max_module_size: Some(Size(1)),
            max_module_functions: Some(1),
            max_input_size: Some(Size(1)),
            max_message_size: Some(Size(1)),
            max_batch_size: Some(1),
            max_pending_tasks: Some(1),
            default_memory: Some(Size(1)),
            default_timeout: Some(Dur::secs(1)),
            default_max_attempts: Some(1),
            keepalive_ttl: Some(Dur::secs(1)),
            snapshot_every: Some(1),
            raft_heartbeat: Some(Dur::secs(1)),
            write_timeout: Some(Dur::secs(1)),
            result_retention: Some(Dur::secs(1)),
            auth_token_file: Some("t".into()),
            tls_cert: Some("c".into()),
            tls_key: Some("k".into()),
            tls_ca: Some("a".into()),
        })
        .unwrap();
        let text = SAMPLE_CONFIG;
        for key in all.keys() {
            assert!(table.contains_key(key) || text.contains(&format!("# {key} =")), "sample lacks `{key}`");
        }
    }

    #[test]
    fn zero_counts_and_sizes_are_refused_not_bent() {
        for (opts, key) in [
            (MasterOptions { max_batch_size: Some(0), ..Default::default() }, "max-batch-size"),
            (MasterOptions { default_memory: Some(Size(0)), ..Default::default() }, "default-memory"),
            (MasterOptions { max_module_size: Some(Size(0)), ..Default::default() }, "max-module-size"),
            (MasterOptions { max_module_functions: Some(0), ..Default::default() }, "max-module-functions"),
            (MasterOptions { max_pending_tasks: Some(0), ..Default::default() }, "max-pending-tasks"),
            (MasterOptions { default_max_attempts: Some(0), ..Default::default() }, "default-max-attempts"),
            (MasterOptions { snapshot_every: Some(0), ..Default::default() }, "snapshot-every"),
            (MasterOptions { default_timeout: Some(Dur::millis(0)), ..Default::default() }, "default-timeout"),
            (MasterOptions { write_timeout: Some(Dur::millis(0)), ..Default::default() }, "write-timeout"),
        ] {
            assert!(opts.resolve().unwrap_err().to_string().contains(key), "{key}");
        }
    }

    #[test]
    fn initial_cluster_is_checked() {
        let c: InitialCluster = "m0=http://ip0:8291,m1=ip1:8291".parse().unwrap();
        assert_eq!(c.0.len(), 2);
        assert!("m0".parse::<InitialCluster>().is_err());
        assert!("m0=a:1,m0=b:1".parse::<InitialCluster>().is_err());
        assert!("m0=nope".parse::<InitialCluster>().is_err());
        let opts = MasterOptions { name: Some("m9".into()), initial_cluster: Some(c.clone()), ..Default::default() };
        assert!(opts.resolve().unwrap_err().to_string().contains("m9"));
        // In TOML, a string or an array.
        let read =
            |v: &str| toml::from_str::<MasterOptions>(&format!("initial-cluster = {v}")).map(|o| o.initial_cluster);
        assert_eq!(read(r#""m0=http://ip0:8291,m1=ip1:8291""#).unwrap(), Some(c.clone()));
        assert_eq!(read(r#"["m0=http://ip0:8291", "m1=ip1:8291"]"#).unwrap(), Some(c));
        assert!(read("7").unwrap_err().to_string().contains("an array of"));
    }
}

//! The real binaries as child processes: start them on port 0, read the bound address from
//! their log, kill them with SIGKILL. Used by the process tests, the demo and the benchmark.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use wasmgrid_common::Addr;

/// Path of a workspace binary built in the same profile as the running program (a test in
/// `target/<profile>/deps/` or a tool in `target/<profile>/`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let dir = exe.parent().expect("executable dir");
    let candidates = [dir.join(name), dir.parent().map(|p| p.join(name)).unwrap_or_default()];
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => p.clone(),
        None => panic!(
            "{name} is missing next to {}: build the binaries first (cargo build --release --bins)",
            dir.display()
        ),
    }
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub addr: Addr,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `name` with `args`, logging to `log`, and waits for `listening on`.
    pub fn start(name: &str, args: &[String], log: &Path) -> Self {
        let mut command = Command::new(bin(name));
        command.args(args);
        Self::start_command(command, name, log)
    }

    /// Starts `command` (one of the binaries, perhaps through a shell that sets limits
    /// first), logging to `log`, and waits for `listening on`.
    pub fn start_command(mut command: Command, name: &str, log: &Path) -> Self {
        let mut child = command
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let log_path = log.to_path_buf();
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).ok();
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                if !sent {
                    if let Some(addr) = line.split("listening on ").nth(1) {
                        let addr = addr.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a.parse().unwrap_or_else(|e| panic!("bad address {a}: {e}")),
            Err(_) => {
                let _ = child.kill();
                panic!("{name} did not start; see {}", log.display());
            }
        };
        Self { child, addr, log: log.to_path_buf() }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) takes plain integers and has no memory-safety preconditions.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

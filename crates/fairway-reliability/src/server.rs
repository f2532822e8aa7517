//! Finding, building, starting and ending the `fairway` binary.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Why the server could not be found, built, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// An I/O error around the child process.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `cargo build -p fairway` failed.
    #[error("building the fairway binary failed: {0}")]
    Build(String),
    /// The server did not come up.
    #[error("the server did not start: {0}")]
    Start(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// The `fairway` binary of this build profile: `$FAIRWAY_BIN` when set, otherwise built with
/// `cargo build -p fairway` into the target directory this executable runs from (a no-op when
/// it is current), so tests and the load client always drive the current code.
pub fn fairway_bin() -> Result<PathBuf, ServerError> {
    if let Some(p) = std::env::var_os("FAIRWAY_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(io("locating the running executable"))?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| ServerError::Build("executable has no directory".into()))?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    let target = dir
        .parent()
        .ok_or_else(|| ServerError::Build("no target directory".into()))?
        .to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "fairway", "--bin", "fairway"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile == "release" {
        cmd.arg("--release");
    }
    let out = cmd.output().map_err(io("running cargo build"))?;
    if !out.status.success() {
        return Err(ServerError::Build(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let bin = dir.join("fairway");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(ServerError::Build(format!("{} is missing", bin.display())))
    }
}

/// A running `fairway serve` whose stderr goes to a log file.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    /// The bound loopback address.
    pub addr: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Where its stderr (the logs) goes; appended to across restarts.
    pub log: PathBuf,
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The binary.
    pub bin: PathBuf,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The stderr log file.
    pub log: PathBuf,
    /// `RUST_LOG` for the child.
    pub rust_log: String,
    /// Extra arguments after `serve`.
    pub extra: Vec<String>,
    /// A shell prefix run before exec (e.g. `ulimit -f 4096; trap '' XFSZ`), via `sh -c`.
    pub shell_prefix: Option<String>,
}

impl ServerOptions {
    /// Defaults: log level `warn`, log file `<data_dir>/../<name>.log`.
    pub fn new(bin: &Path, data_dir: &Path, log: &Path) -> ServerOptions {
        ServerOptions {
            bin: bin.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
            rust_log: "warn".into(),
            extra: Vec::new(),
            shell_prefix: None,
        }
    }
}

impl Server {
    /// Starts the server on an ephemeral loopback port and waits (up to 60 s) until `/health`
    /// answers 200.
    pub fn start(options: &ServerOptions) -> Result<Server, ServerError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&options.log)
            .map_err(io(format!("opening {}", options.log.display())))?;
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            options.data_dir.display().to_string(),
        ];
        args.extend(options.extra.iter().cloned());
        let mut cmd = match &options.shell_prefix {
            Some(prefix) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("{prefix}; exec \"$0\" \"$@\""))
                    .arg(&options.bin)
                    .args(&args);
                c
            }
            None => {
                let mut c = Command::new(&options.bin);
                c.args(&args);
                c
            }
        };
        let mut child = cmd
            .env("RUST_LOG", &options.rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(io(format!("spawning {}", options.bin.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| ServerError::Start("no stdout".into()))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains("listening on http://") => {
                    let addr = l
                        .split("http://")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                        .and_then(|a| a.parse::<SocketAddr>().ok());
                    match addr {
                        Some(a) => break a,
                        None => return Err(ServerError::Start(format!("no address in {l:?}"))),
                    }
                }
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().ok();
                    return Err(ServerError::Start(format!(
                        "no address printed (exit: {status:?}); see {}",
                        options.log.display()
                    )));
                }
            }
        };
        let server = Server {
            child: Some(child),
            addr,
            data_dir: options.data_dir.clone(),
            log: options.log.clone(),
        };
        while Instant::now() < deadline {
            if server.health() == Some(200) {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(ServerError::Start("/health never answered 200".into()))
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The status of `GET /health`, `None` when it does not answer.
    pub fn health(&self) -> Option<u16> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let req = format!(
            "GET /health HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
            self.addr
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw);
        text.split_whitespace().nth(1)?.parse().ok()
    }

    /// The resident set size of the process, in KiB (from `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid()?)
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) -> Result<(), ServerError> {
        if let Some(mut child) = self.child.take() {
            child.kill().map_err(io("SIGKILL"))?;
            child.wait().map_err(io("waiting for the killed server"))?;
        }
        Ok(())
    }

    /// SIGTERM, then wait up to `timeout` for the exit status (SIGKILL after that).
    pub fn stop(mut self, timeout: Duration) -> Result<ExitStatus, ServerError> {
        let Some(mut child) = self.child.take() else {
            return Err(ServerError::Start("not running".into()));
        };
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .map_err(io("kill -TERM"))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().map_err(io("waiting"))? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ServerError::Start(format!(
                    "did not stop within {timeout:?} of SIGTERM"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

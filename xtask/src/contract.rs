//! `cargo xtask contract`: the API contract test. Starts the already-built `fairway` binary on
//! loopback (a free port, a temporary data directory, no console), registers a user and logs
//! in, then runs schemathesis against the served `GET /openapi.json` over every operation, with
//! the user's token as a header so the authenticated routes are exercised too. Checks: no 5xx
//! (`not_a_server_error`) and every response conforms to its documented schema
//! (`response_schema_conformance`). Bounded: `--max-examples` cases per operation and an
//! overall `--timeout`. Prints the number of cases run; fails on any finding.
//!
//! It never builds: CI builds the workspace once and this reuses `target/debug/fairway`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The checks schemathesis runs.
pub const CHECKS: &str = "not_a_server_error,response_schema_conformance";

/// How `cargo xtask contract` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The `fairway` binary (default: `$CARGO_TARGET_DIR/debug/fairway`).
    pub bin: Option<PathBuf>,
    /// The schemathesis executable (default: `$SCHEMATHESIS`, then the venv `.ci/run` makes
    /// under the target dir, then `schemathesis` on `PATH`).
    pub schemathesis: Option<PathBuf>,
    /// Cases per operation and phase.
    pub max_examples: u32,
    /// The whole run's limit, in seconds (schemathesis is stopped and the run fails past it).
    pub timeout: u64,
    /// The seed (default: schemathesis picks one and prints it).
    pub seed: Option<u64>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            bin: None,
            schemathesis: None,
            max_examples: 25,
            timeout: 150,
            seed: None,
        }
    }
}

/// Parses `[--bin PATH] [--schemathesis PATH] [--max-examples N] [--timeout SECS] [--seed N]`.
pub fn parse(args: &[String]) -> Result<Options> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--bin" => o.bin = Some(PathBuf::from(value("--bin")?)),
            "--schemathesis" => o.schemathesis = Some(PathBuf::from(value("--schemathesis")?)),
            "--max-examples" => {
                o.max_examples = value("--max-examples")?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .context("--max-examples must be a positive number")?;
            }
            "--timeout" => {
                o.timeout = value("--timeout")?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .context("--timeout must be a positive number of seconds")?;
            }
            "--seed" => {
                o.seed = Some(
                    value("--seed")?
                        .parse()
                        .context("--seed must be a number")?,
                );
            }
            other => bail!("unknown option {other:?}; run `cargo xtask help`"),
        }
    }
    Ok(o)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Where `.ci/run` installs schemathesis: a virtual environment in the target dir.
pub fn venv(root: &Path) -> PathBuf {
    target_dir(root).join("contract-venv")
}

fn find_schemathesis(root: &Path, o: &Options) -> PathBuf {
    if let Some(p) = &o.schemathesis {
        return p.clone();
    }
    if let Some(p) = std::env::var_os("SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let in_venv = venv(root).join("bin").join("schemathesis");
    if in_venv.exists() {
        return in_venv;
    }
    PathBuf::from("schemathesis")
}

/// A minimal HTTP/1.1 exchange over a fresh connection: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").context("no HTTP head")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status")?;
    Ok((status, rest.to_owned()))
}

/// The server under test; stopped (SIGTERM, then SIGKILL) when dropped.
struct Served {
    child: Child,
    addr: SocketAddr,
}

impl Served {
    fn start(bin: &Path, data_dir: &Path) -> Result<Served> {
        let log = std::fs::File::create(data_dir.join("serve.log"))?;
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--no-console",
                "--data-dir",
            ])
            .arg(data_dir.join("data"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains("listening on http://") => {
                    break l
                        .split("http://")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                        .and_then(|a| a.parse().ok())
                        .with_context(|| format!("no address in {l:?}"))?;
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!(
                        "fairway did not print its address; its log:\n{}",
                        std::fs::read_to_string(data_dir.join("serve.log")).unwrap_or_default()
                    );
                }
            }
        };
        let served = Served { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !http(addr, "GET", "/health", None).is_ok_and(|(s, _)| s == 200) {
            if Instant::now() > deadline {
                bail!("GET /health never answered 200");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(served)
    }

    /// Still running (did not crash under the test)?
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registers a user and logs in; returns the session token.
fn token(addr: SocketAddr) -> Result<String> {
    let user = r#"{"id":"contract","username":"contract","email":"contract@example.com","password":"contract-password-1"}"#;
    let (status, body) = http(addr, "POST", "/api/users", Some(user))?;
    if status != 201 {
        bail!("registering the test user: {status} {body}");
    }
    let login = r#"{"email":"contract@example.com","password":"contract-password-1"}"#;
    let (status, body) = http(addr, "POST", "/api/users/login", Some(login))?;
    if status != 200 {
        bail!("logging the test user in: {status} {body}");
    }
    let v: serde_json::Value = serde_json::from_str(&body)?;
    v["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no token in {body}"))
}

/// `N` from schemathesis's summary line `N generated, ...` (under `Test cases:`).
pub fn cases_run(output: &str) -> Option<u64> {
    let mut lines = output.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "Test cases:" {
            let next = lines.next()?.trim();
            return next.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

/// The number of operations the document describes (`Selected: N/M` or `Tested: N`).
fn operations_tested(output: &str) -> Option<u64> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .and_then(|n| n.trim().parse().ok())
}

/// Runs the contract test.
pub fn run(root: &Path, o: &Options) -> Result<()> {
    let started = Instant::now();
    let bin = o
        .bin
        .clone()
        .unwrap_or_else(|| target_dir(root).join("debug").join("fairway"));
    if !bin.exists() {
        bail!(
            "{} does not exist: build it first (`cargo build -p fairway`; CI's `cargo test \
             --workspace` does)",
            bin.display()
        );
    }
    let st = find_schemathesis(root, o);
    let version = Command::new(&st)
        .arg("--version")
        .output()
        .with_context(|| {
            format!(
                "cannot run {} (install it: python3 -m venv {v} && {v}/bin/pip install \
                 schemathesis, as .ci/run does)",
                st.display(),
                v = venv(root).display()
            )
        })?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let scratch = std::env::temp_dir().join(format!(
        "fairway-contract-{}-{}",
        std::process::id(),
        started.elapsed().as_nanos()
    ));
    std::fs::create_dir_all(&scratch)?;
    let result = run_in(&bin, &st, &scratch, o, &version, started);
    if result.is_err()
        && let Ok(log) = std::fs::read_to_string(scratch.join("serve.log"))
    {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "contract: the server's last log lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn run_in(
    bin: &Path,
    st: &Path,
    scratch: &Path,
    o: &Options,
    version: &str,
    started: Instant,
) -> Result<()> {
    let mut served = Served::start(bin, scratch)?;
    let token = token(served.addr)?;
    let mut cmd = Command::new(st);
    cmd.arg("run")
        .arg(format!("http://{}/openapi.json", served.addr))
        .args(["--checks", CHECKS])
        .args(["--max-examples", &o.max_examples.to_string()])
        .args(["--request-timeout", "30"])
        .arg("--header")
        .arg(format!("Authorization: Token {token}"))
        .arg("--continue-on-failure")
        // Its caches (`.hypothesis`, `.schemathesis`) go to the scratch directory, not the
        // repository.
        .current_dir(scratch)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(seed) = o.seed {
        cmd.args(["--seed", &seed.to_string()]);
    }
    println!(
        "contract: {version} against fairway on http://{} (max {} examples per operation, \
         limit {} s)",
        served.addr, o.max_examples, o.timeout
    );
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", st.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("{line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = started + Duration::from_secs(o.timeout);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "contract: schemathesis did not finish within {} s (lower --max-examples, or \
                 raise --timeout)",
                o.timeout
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = reader.join();
    let output = rx.try_iter().collect::<Vec<String>>().join("\n");
    let alive = served.running();
    drop(served);
    let cases = cases_run(&output);
    let seconds = started.elapsed().as_secs();
    match cases {
        Some(n) => println!(
            "contract: {n} cases over {} operations in {seconds} s ({version}; checks {CHECKS})",
            operations_tested(&output).map_or_else(|| "?".to_owned(), |n| n.to_string())
        ),
        None => println!("contract: schemathesis printed no case count"),
    }
    if !alive {
        bail!("contract: the server died during the run");
    }
    if !status.success() {
        bail!("contract: schemathesis found problems ({status}); see its report above");
    }
    match cases {
        Some(n) if n > 0 => Ok(()),
        _ => bail!("contract: no test case ran"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_case_count_is_read_from_the_summary() {
        let out = "API Operations:\n  Selected: 21/21\n  Tested: 21\n\nTest cases:\n  1772 \
                   generated, 1 found 1 unique failure\n\nSeed: 2\n";
        assert_eq!(cases_run(out), Some(1772));
        assert_eq!(operations_tested(out), Some(21));
        assert_eq!(cases_run("nothing"), None);
    }

    #[test]
    fn options_parse() {
        let args: Vec<String> = ["--max-examples", "5", "--seed", "7", "--timeout", "60"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let o = parse(&args).unwrap_or_default();
        assert_eq!((o.max_examples, o.seed, o.timeout), (5, Some(7), 60));
        assert!(parse(&["--max-examples".to_owned(), "0".to_owned()]).is_err());
        assert!(parse(&["--what".to_owned()]).is_err());
    }
}

//! `cargo xtask stress-tests`: the whole test suite, several times in a row, on a machine kept
//! busy on purpose: CPU burners (one per core by default) and a disk writer that fsyncs
//! continuously. A test that depends on timing fails here long before it fails for a user.
//!
//! The load runs in child processes of this one (the same binary, started with a hidden task);
//! each stops by itself when its standard input closes, so none outlives the run even when
//! `cargo xtask` is interrupted.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What one stress run does.
#[derive(Debug, Clone)]
pub struct StressOptions {
    /// How many times the suite must pass in a row.
    pub runs: u32,
    /// How many CPU-burning processes run beside it.
    pub burners: u32,
    /// Whether a disk writer (fsync loop) runs beside it.
    pub disk: bool,
    /// Arguments after `--`, passed to `cargo test` (default: `--workspace --locked`).
    pub test_args: Vec<String>,
}

impl Default for StressOptions {
    fn default() -> Self {
        StressOptions {
            runs: 3,
            burners: 2,
            disk: true,
            test_args: Vec::new(),
        }
    }
}

/// The hidden task name the load processes run under.
pub const LOAD_TASK: &str = "__stress-load";

/// Parses `[--runs N] [--burners N] [--no-disk] [-- cargo test args]`.
pub fn parse(args: &[String]) -> Result<StressOptions> {
    let mut o = StressOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => o.runs = number(it.next(), "--runs")?,
            "--burners" => o.burners = number(it.next(), "--burners")?,
            "--no-disk" => o.disk = false,
            "--" => {
                o.test_args = it.cloned().collect();
                break;
            }
            other => bail!("unknown option {other:?}; run `cargo xtask help`"),
        }
    }
    if o.runs == 0 {
        bail!("--runs must be at least 1");
    }
    Ok(o)
}

fn number(v: Option<&String>, flag: &str) -> Result<u32> {
    v.with_context(|| format!("{flag} needs a number"))?
        .parse()
        .with_context(|| format!("{flag} needs a number"))
}

/// Runs the stress task: builds the tests on a quiet machine, then runs them `runs` times under
/// load, stopping at the first failure. Fails when any run fails.
pub fn run(root: &Path, o: &StressOptions) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let test_args: Vec<String> = if o.test_args.is_empty() {
        vec!["--workspace".into(), "--locked".into()]
    } else {
        o.test_args.clone()
    };
    // `cargo test --workspace` rebuilds the `xtask` package, whose binary may be this very
    // file: the load processes run from a copy taken before the build.
    let scratch = tempdir(root)?;
    let exe = std::env::current_exe().context("cannot find the xtask binary")?;
    let load_exe = scratch.join("stress-load");
    std::fs::copy(&exe, &load_exe)
        .with_context(|| format!("cannot copy {} to {}", exe.display(), load_exe.display()))?;
    println!("stress-tests: building the tests first (not timed, no load)");
    let built = Command::new(&cargo)
        .arg("test")
        .args(&test_args)
        .arg("--no-run")
        .current_dir(root)
        .status()
        .context("cannot run cargo")?;
    if !built.success() {
        bail!("the tests do not build ({built})");
    }
    let mut load = Load::start(o, &load_exe, &scratch)?;
    println!(
        "stress-tests: {} CPU burner(s){} running beside the suite on {} core(s)",
        o.burners,
        if o.disk {
            " and a disk writer (fsync loop)"
        } else {
            ""
        },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut times = Vec::new();
    let mut failed = None;
    for i in 1..=o.runs {
        println!("stress-tests: run {i}/{} ...", o.runs);
        let started = Instant::now();
        let status = Command::new(&cargo)
            .arg("test")
            .args(&test_args)
            .current_dir(root)
            .status()
            .context("cannot run cargo")?;
        let secs = started.elapsed().as_secs_f64();
        times.push(secs);
        println!(
            "stress-tests: run {i}/{}: {} in {secs:.0} s",
            o.runs,
            if status.success() { "passed" } else { "FAILED" }
        );
        if !status.success() {
            failed = Some((i, status));
            break;
        }
    }
    let written = load.stop();
    let _ = std::fs::remove_dir_all(&scratch);
    println!(
        "stress-tests: disk writer wrote {:.0} MiB with an fsync every 256 KiB",
        written as f64 / (1024.0 * 1024.0)
    );
    match failed {
        Some((i, status)) => bail!("run {i} of {} failed ({status})", o.runs),
        None => {
            let list: Vec<String> = times.iter().map(|t| format!("{t:.0} s")).collect();
            println!(
                "stress-tests: {} of {} runs passed in a row under load ({})",
                o.runs,
                o.runs,
                list.join(", ")
            );
            Ok(())
        }
    }
}

fn tempdir(root: &Path) -> Result<PathBuf> {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = base.join(format!("stress-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// The load processes.
struct Load {
    children: Vec<Child>,
    disk_report: Option<PathBuf>,
}

impl Load {
    fn start(o: &StressOptions, exe: &Path, scratch: &Path) -> Result<Load> {
        let mut children = Vec::new();
        for _ in 0..o.burners {
            children.push(spawn(exe, &["cpu"])?);
        }
        let mut disk_report = None;
        if o.disk {
            let dir = scratch.to_string_lossy().into_owned();
            children.push(spawn(exe, &["disk", &dir])?);
            disk_report = Some(scratch.join("written"));
        }
        Ok(Load {
            children,
            disk_report,
        })
    }

    /// Stops every load process (closing its stdin, then killing it) and returns the bytes the
    /// disk writer reported.
    fn stop(&mut self) -> u64 {
        for c in &mut self.children {
            drop(c.stdin.take());
        }
        for c in &mut self.children {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
        self.disk_report
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn(exe: &Path, args: &[&str]) -> Result<Child> {
    Command::new(exe)
        .arg(LOAD_TASK)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start a load process")
}

/// The body of a load process: `cpu` spins, `disk DIR` rewrites a 16 MiB file in DIR with an
/// fsync every 256 KiB. Both stop when standard input closes (the parent stopped or died).
pub fn load_process(args: &[String]) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            stop.store(true, Ordering::Relaxed);
        });
    }
    match args {
        [kind] if kind == "cpu" => {
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..100_000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                }
                std::hint::black_box(x);
            }
            Ok(())
        }
        [kind, dir] if kind == "disk" => {
            let dir = PathBuf::from(dir);
            let path = dir.join("load.bin");
            let chunk = vec![0xA5u8; 256 * 1024];
            let mut written: u64 = 0;
            'outer: while !stop.load(Ordering::Relaxed) {
                let mut f = std::fs::File::create(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                for _ in 0..64 {
                    if stop.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    f.write_all(&chunk)?;
                    f.sync_data()?;
                    written += chunk.len() as u64;
                }
                std::fs::write(dir.join("written"), written.to_string())?;
            }
            std::fs::write(dir.join("written"), written.to_string())?;
            let _ = std::fs::remove_file(&path);
            Ok(())
        }
        other => bail!("unknown load {other:?}"),
    }
}

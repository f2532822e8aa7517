//! The newcomer's workflow, end to end, on a copy of the workspace (the real tree is never
//! touched): `new-module view open-loans --context library`, `cargo test -p open-loans`, the host
//! compiles with the module listed; delete the folder, `sync`, the host compiles again.
//!
//! The copy lives at a fixed path under the system's temp dir (its files keep their mtimes, so
//! Cargo's fingerprints survive from run to run) and builds in the same target dir as this test,
//! so only the copied workspace crates and the new module are compiled. On a fresh target dir
//! the first run builds the runtime's dependencies once (about a minute on two cores).

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use xtask::sync::{BEGIN, END, HOST_DIR, host_modules_rs};
use xtask::workspace::{Mode, root};
use xtask::{fail_if_stale, sync_all};

/// Longest any one cargo step may take.
const STEP_LIMIT: Duration = Duration::from_secs(900);

/// The target dir this test was built in: the ancestor of the test binary holding
/// `CACHEDIR.TAG`, which Cargo writes at the top of every target dir.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| std::env::temp_dir().join("fairway-xtask-workflow-target"))
}

/// Copies `from` to `to`, skipping build output and VCS data, keeping modification times.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir").flatten() {
        let name = entry.file_name();
        if [".git", "target", "fairway-data"]
            .iter()
            .any(|s| name == *s)
        {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        let meta = entry.metadata().expect("metadata");
        if meta.is_dir() {
            copy_tree(&src, &dst);
        } else if meta.is_file() {
            fs::copy(&src, &dst).expect("copy");
            if let Ok(modified) = meta.modified() {
                let f = fs::File::options().write(true).open(&dst).expect("open");
                f.set_modified(modified).expect("set mtime");
            }
        }
    }
}

/// Runs cargo in `dir` with the shared target dir, failing the test on error or timeout.
///
/// `XTASK_ROOT` points xtask at the copy explicitly: Cargo hashes a path package by its path
/// relative to the workspace root and the copy keeps the files' mtimes, so `cargo run` in the
/// copy may reuse the xtask binary built from the real tree, whose default root is the real
/// tree.
fn cargo(dir: &Path, args: &[&str]) -> String {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO"))
        .arg(args[0])
        .arg("--offline")
        .args(&args[1..])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env(xtask::workspace::ROOT_ENV, dir)
        .env("CARGO_TERM_COLOR", "never")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cargo starts");
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > STEP_LIMIT {
            let _ = child.kill();
            panic!("`cargo {}` took longer than {STEP_LIMIT:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`cargo {}` failed in the copy:\n{text}",
        args.join(" ")
    );
    eprintln!("cargo {} ok in {:.1?}", args.join(" "), started.elapsed());
    text
}

/// A host for copies made before the real one existed: the contract's two generated regions
/// and a binary listing the modules.
fn ensure_host(ws: &Path) {
    let dir = ws.join(HOST_DIR);
    if dir.join("Cargo.toml").is_file() {
        return;
    }
    fs::create_dir_all(dir.join("src")).expect("mkdir");
    fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"fairway\"\nversion.workspace = true\nedition.workspace = true\n\
             publish.workspace = true\n\n[dependencies]\nfairway-runtime.workspace = true\n\
             {BEGIN}\n{END}\n\n[lints]\nworkspace = true\n"
        ),
    )
    .expect("write");
    fs::write(
        dir.join("src/main.rs"),
        "//! Fixture host.\n\nmod modules;\n\nfn main() {\n    for m in modules::all() {\n        \
         println!(\"{}\", m.info().name);\n    }\n}\n",
    )
    .expect("write");
    sync_all(ws, Mode::Update).expect("sync the fixture host");
}

/// Every file under `root` outside build output, with its modification time.
fn tree_state(root: &Path) -> Vec<(PathBuf, Option<std::time::SystemTime>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name();
            if [".git", "target", "fairway-data"]
                .iter()
                .any(|s| name == *s)
            {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p, e.metadata().and_then(|m| m.modified()).ok()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn new_module_test_serve_delete_sync() {
    let real = root();
    let modules_before = tree_state(&real.join("modules"));
    let host_before = tree_state(&real.join(HOST_DIR));
    let mut h = DefaultHasher::new();
    target_dir().hash(&mut h);
    let ws = std::env::temp_dir().join(format!("fairway-xtask-workflow-{:x}", h.finish()));
    let _ = fs::remove_dir_all(&ws);
    copy_tree(&real, &ws);
    ensure_host(&ws);
    // The copy starts from whatever the real tree holds: bring its host list up to date first.
    sync_all(&ws, Mode::Update).expect("initial sync");

    // The newcomer's name, unless the tree already has a module of that name.
    let name = (1..)
        .map(|i| {
            if i == 1 {
                "open-loans".to_owned()
            } else {
                format!("open-loans{i}")
            }
        })
        .find(|n| !ws.join("modules").join(n).exists())
        .expect("a free name");
    let ident = name.replace('-', "_");

    // `cargo xtask` is the binary of xtask/cli, built outside the workspace.
    let xtask = [
        "run",
        "--quiet",
        "--manifest-path",
        "xtask/cli/Cargo.toml",
        "--",
    ];
    let out = cargo(
        &ws,
        &[
            &xtask[..],
            &["new-module", "view", &name, "--context", "library"],
        ]
        .concat(),
    );
    assert!(
        out.contains(&format!("cargo test -p {name}")),
        "prints what to do next: {out}"
    );
    assert!(ws.join("modules").join(&name).join("src/lib.rs").is_file());
    assert!(
        fs::read_to_string(host_modules_rs(&ws))
            .expect("modules.rs")
            .contains(&format!("{ident}::module()")),
        "the host lists the new module"
    );
    fail_if_stale(&ws, &sync_all(&ws, Mode::Check).expect("check"))
        .expect("fresh after new-module");

    let tests = cargo(&ws, &["test", "-p", &name]);
    assert!(tests.contains("test result: ok. 4 passed"), "{tests}");
    cargo(&ws, &["check", "-p", "fairway"]);

    fs::remove_dir_all(ws.join("modules").join(&name)).expect("delete the module");
    // The host still names the deleted crate: the workspace does not load, yet sync runs.
    assert!(!sync_all(&ws, Mode::Check).expect("check").is_empty());
    cargo(&ws, &[&xtask[..], &["sync"]].concat());
    fail_if_stale(&ws, &sync_all(&ws, Mode::Check).expect("check")).expect("fresh after sync");
    assert!(
        !fs::read_to_string(host_modules_rs(&ws))
            .expect("modules.rs")
            .contains(&ident)
    );
    cargo(&ws, &["check", "-p", "fairway"]);

    let _ = fs::remove_dir_all(&ws);
    assert_eq!(
        tree_state(&real.join("modules")),
        modules_before,
        "the real modules/ is untouched"
    );
    assert_eq!(
        tree_state(&real.join(HOST_DIR)),
        host_before,
        "the real host is untouched"
    );
}

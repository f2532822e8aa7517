//! Process-level probes: I/O counters, peak memory and directory size.

use std::path::Path;

/// The counters of `/proc/self/io` this bench uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Bytes handed to `write`-family syscalls (logical bytes written).
    pub wchar: u64,
    /// Bytes this process caused to be sent to the storage layer (page-cache pages dirtied,
    /// so page-granular: an fsync'd append that touches one page counts 4096).
    pub write_bytes: u64,
    /// `write`-family syscalls.
    pub syscw: u64,
}

impl IoCounters {
    /// Reads `/proc/self/io`.
    pub fn now() -> std::io::Result<IoCounters> {
        let text = std::fs::read_to_string("/proc/self/io")?;
        let mut c = IoCounters::default();
        for line in text.lines() {
            let mut parts = line.split(':');
            let (Some(k), Some(v)) = (parts.next(), parts.next()) else {
                continue;
            };
            let v: u64 = v.trim().parse().unwrap_or(0);
            match k.trim() {
                "wchar" => c.wchar = v,
                "write_bytes" => c.write_bytes = v,
                "syscw" => c.syscw = v,
                _ => {}
            }
        }
        Ok(c)
    }

    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &IoCounters) -> IoCounters {
        IoCounters {
            wchar: self.wchar.saturating_sub(earlier.wchar),
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
            syscw: self.syscw.saturating_sub(earlier.syscw),
        }
    }
}

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(field: &str) -> std::io::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/status")?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let n = rest
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return Ok(n);
        }
    }
    Err(std::io::Error::other(format!(
        "{field} not in /proc/self/status"
    )))
}

/// Resets `VmHWM` to the current RSS (Linux >= 4.0: write "5" to `/proc/self/clear_refs`).
pub fn reset_peak_rss() -> std::io::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5")
}

/// Sizes of the files under `dir`: (apparent bytes, allocated bytes).
///
/// Allocated bytes come from the block count; a store that preallocates its files (Tephra's
/// `fallocate`d segments) shows its full segment size there, so growth is better read from
/// the I/O counters.
pub fn dir_size(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0;
    let mut allocated = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                apparent += meta.len();
                allocated += meta.blocks() * 512;
            }
        }
    }
    Ok((apparent, allocated))
}

/// Makes everything written to the filesystem holding `dir` durable (`syncfs`), and returns once
/// it is: the next store (or phase) starts on a disk with no writeback of the last one pending,
/// so none of them pays for another's flushes or deleted files.
pub fn settle(dir: &Path) -> std::io::Result<()> {
    let d = std::fs::File::open(dir)?;
    rustix::fs::syncfs(&d)?;
    Ok(())
}

/// The 1-, 5- and 15-minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn io_counters_see_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let before = IoCounters::now().unwrap();
        std::fs::write(dir.path().join("f"), vec![7u8; 10_000]).unwrap();
        let d = IoCounters::now().unwrap().since(&before);
        assert!(d.wchar >= 10_000, "{d:?}");
        assert_eq!(dir_size(dir.path()).unwrap().0, 10_000);
        assert!(status_kib("VmRSS").unwrap() > 0);
    }
}

//! What this master process uses of the machine: resident memory and the
//! bytes of its data dir. Reported by `node_report`, so that the soak
//! workload (and an operator) can watch any cluster, not only one it started.

use std::path::Path;

/// Resident set size of this process in bytes (0 where /proc is missing).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Bytes of every file under `dir`, recursively (0 for what cannot be read:
/// sled may remove a segment file while it is being counted).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Bytes of one file, 0 if it does not exist.
pub fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_of_a_running_process_is_reported() {
        assert!(rss_bytes() > 1024 * 1024, "a test process holds more than 1 MiB");
    }

    #[test]
    fn dir_bytes_counts_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 28]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 128);
        assert_eq!(file_bytes(&dir.path().join("a")), 100);
        assert_eq!(file_bytes(&dir.path().join("missing")), 0);
    }
}

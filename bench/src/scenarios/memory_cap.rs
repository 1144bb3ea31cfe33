//! A memory cap on a process the benchmark started: a child memory cgroup of the benchmark's
//! own (cgroup v1 or v2), so that the kernel has to evict that process's page cache (the
//! mapped vector files of a collection with vectors on disk) instead of keeping all of it.
//! Needs write access to the cgroup tree (root on this machine); without it a scenario says
//! so and skips what needs the cap.

use std::fs;
use std::path::PathBuf;

/// A cgroup holding one process, with or without a memory limit; removed when dropped (the
/// process goes back to the benchmark's cgroup).
pub struct MemoryCap {
    dir: PathBuf,
    /// The file the limit is written to (`memory.limit_in_bytes` or `memory.max`).
    limit_file: &'static str,
    /// The cgroup the process came from, which it goes back to.
    parent: PathBuf,
    pid: u32,
}

impl MemoryCap {
    /// Moves `pid` into a new memory cgroup without a limit yet. Call it as soon as the
    /// process starts: what it allocates before stays charged to the benchmark's cgroup.
    pub fn adopt(pid: u32) -> Result<MemoryCap, String> {
        let cgroups = fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let v1 = cgroups.lines().find_map(|l| l.split_once(":memory:").map(|(_, path)| path.to_string()));
        let (parent, limit_file) = match v1 {
            Some(path) => (PathBuf::from(format!("/sys/fs/cgroup/memory{path}")), "memory.limit_in_bytes"),
            None => {
                let path = cgroups.lines().find_map(|l| l.strip_prefix("0::")).ok_or("no memory cgroup")?;
                (PathBuf::from(format!("/sys/fs/cgroup{path}")), "memory.max")
            }
        };
        let dir = parent.join(format!("grape-bench-{pid}"));
        fs::create_dir_all(&dir).map_err(|e| format!("create the cgroup {}: {e}", dir.display()))?;
        let cap = MemoryCap { dir, limit_file, parent, pid };
        fs::write(cap.dir.join("cgroup.procs"), pid.to_string()).map_err(|e| format!("move process {pid} into {}: {e}", cap.dir.display()))?;
        Ok(cap)
    }

    /// Limits the process's memory (heap and page cache together) to `bytes`.
    pub fn limit(&self, bytes: u64) -> Result<(), String> {
        fs::write(self.dir.join(self.limit_file), bytes.to_string()).map_err(|e| format!("limit {} to {bytes} bytes: {e}", self.dir.display()))
    }

    /// Bytes charged to the cgroup since the process moved in, by kind: `(anonymous, page
    /// cache)` (the heap it grew since, and the files it read or wrote since, such as
    /// mapped vector files).
    pub fn charged(&self) -> (u64, u64) {
        let stat = fs::read_to_string(self.dir.join("memory.stat")).unwrap_or_default();
        let value = |names: [&str; 2]| {
            stat.lines()
                .find_map(|l| l.split_once(' ').filter(|(name, _)| names.contains(name)).and_then(|(_, v)| v.trim().parse::<u64>().ok()))
                .unwrap_or(0)
        };
        // cgroup v1 says rss and cache, v2 anon and file.
        (value(["rss", "anon"]), value(["cache", "file"]))
    }

    /// Lifts the limit.
    pub fn unlimit(&self) -> Result<(), String> {
        let none = if self.limit_file == "memory.max" { "max" } else { "-1" };
        fs::write(self.dir.join(self.limit_file), none).map_err(|e| format!("lift the limit of {}: {e}", self.dir.display()))
    }
}

impl Drop for MemoryCap {
    fn drop(&mut self) {
        let _ = self.unlimit();
        let _ = fs::write(self.parent.join("cgroup.procs"), self.pid.to_string());
        let _ = fs::remove_dir(&self.dir);
    }
}

//! Faults for the tests: a command killed with SIGKILL at a seeded moment,
//! and a small tmpfs that fills up.
//!
//! A kill point is "once the `n`-th new file has appeared under a folder"
//! (temp files included): it lands inside the work however fast the machine
//! is, and the seed picks which of the command's writes it interrupts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every file path under `dir` (empty when it does not exist yet).
fn files_under(dir: &Path, out: &mut BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.insert(path);
        }
    }
}

/// Runs `command` and SIGKILLs it once `nth` files that were not under
/// `watch` at the start have appeared there. Returns true when it was killed,
/// false when it finished first (its exit status must then be success).
/// Panics when it runs past `timeout`.
pub fn run_killed_after_files(mut command: Command, watch: &Path, nth: usize, timeout: Duration) -> bool {
    let mut before = BTreeSet::new();
    files_under(watch, &mut before);
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let started = Instant::now();
    let mut seen = BTreeSet::new();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            assert!(status.success(), "finished before its kill point, and failed: {stderr}");
            return false;
        }
        let mut now = BTreeSet::new();
        files_under(watch, &mut now);
        seen.extend(now.difference(&before).cloned());
        if seen.len() >= nth {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
            return true;
        }
        assert!(started.elapsed() < timeout, "still running after {timeout:?}");
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Files whose names mark an unfinished atomic write (`.tmp-<pid>`) or a
/// staging folder, under `dir`.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut all = BTreeSet::new();
    files_under(dir, &mut all);
    all.into_iter()
        .filter(|p| p.to_string_lossy().contains(".tmp-") || p.to_string_lossy().contains(".staging"))
        .collect()
}

/// A tmpfs of `megabytes` mounted on `dir` while alive (root only: `None`
/// when the mount is refused, e.g. without CAP_SYS_ADMIN).
pub struct SmallTmpfs {
    dir: PathBuf,
}

impl SmallTmpfs {
    pub fn mount(dir: &Path, megabytes: u32) -> Option<Self> {
        std::fs::create_dir_all(dir).ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Self { dir: dir.to_owned() })
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

//! The database's file system refuses writes mid-sweep, for real, then takes them again: a tmpfs
//! filled to the last byte by a ballast file that is then deleted, and an ext4 file system on a
//! loop device whose database files are made immutable (`chattr +i`: writes through the open
//! files fail with EPERM, as on a read-only disk) and then mutable again. Each time the
//! coordinator must say why (`storage_write_failed`), send nothing meanwhile (no worker starts a
//! trial), keep its state, retry, say it recovered (`storage_recovered`), and finish the sweep
//! with nothing lost or rerun: every trial once, one attempt each, each completed trial's points
//! one per step, the report rebuilt from the database equal to the one written.
//!
//! Root only (mount, loop devices, chattr): skipped with a message otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lrsweep_tests::privileged::{root_with, run, run_quietly};
use lrsweep_tests::sweep_check::finish_without_reruns;
use lrsweep_tests::{start_coordinator, start_retrying_worker, Proc, Setup, FAULT_SPEC};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

/// `--lease-ms`: shorter than the stalls below, so a lease counted through them would expire.
const LEASE_MS: &str = "3000";

/// A file system mounted for one test, unmounted (lazily: a killed process may hold it) on drop.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        run_quietly("umount", &["-l", &self.0.display().to_string()]);
    }
}

fn mount(dir: &Path, args: &[&str]) -> Mounted {
    std::fs::create_dir_all(dir).unwrap();
    let target = dir.display().to_string();
    let mut all = args.to_vec();
    all.push(&target);
    run("mount", &all);
    Mounted(dir.to_path_buf())
}

fn worker(addr: &str, name: &str) -> Proc {
    start_retrying_worker(&[], WORKER, addr, name)
}

/// Trials the workers have started so far.
fn started(workers: &[Proc]) -> usize {
    workers
        .iter()
        .map(|w| w.events("trial_started").len())
        .sum()
}

/// Runs the sweep with its database at `db`; once a trial completed, `refuse` makes the file
/// system refuse writes and `allow` takes that back. Checks what the module says.
fn stall_and_recover(
    s: &Setup,
    db: &Path,
    expected_error: &str,
    refuse: impl FnOnce(),
    allow: impl FnOnce(),
) {
    let db = db.display().to_string();
    let report = s.report.display().to_string();
    let args = [
        "--spec",
        &s.spec,
        "--db",
        &db,
        "--report",
        &report,
        "--lease-ms",
        LEASE_MS,
    ];
    let (mut c, addr) = start_coordinator(COORDINATOR, &args);
    let mut workers = [worker(&addr, "alpha"), worker(&addr, "beta")];
    let minute = Duration::from_secs(60);
    workers[0].wait_for_event("trial_started", minute, |_| true);

    refuse();
    let failed = c.wait_for_event("storage_write_failed", minute, |e| {
        e["retries"].as_u64() >= Some(4)
    });
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains(expected_error), "{failed}");
    // From here the writer has been stalled for over a second: whatever was committed before
    // reached the workers long ago. Over two more retries nothing may start.
    let before = started(&workers);
    c.wait_for_event("storage_write_failed", minute, |e| {
        e["retries"].as_u64() >= Some(6)
    });
    assert_eq!(
        started(&workers),
        before,
        "a trial started while the database refused writes"
    );
    assert!(
        c.child.try_wait().unwrap().is_none(),
        "the coordinator exited: {:#?}",
        c.tail(20)
    );

    allow();
    let recovered = c.wait_for_event("storage_recovered", minute, |_| true);
    assert!(recovered["retries"].as_u64() >= Some(6), "{recovered}");
    let db = Path::new(&db);
    let finished = finish_without_reruns(COORDINATOR, &mut c, &mut workers, db, &s.report);
    eprintln!("{finished:?}; stalled {} ms", recovered["stalled_ms"]);
}

#[test]
fn a_full_disk_stalls_the_sweep_until_space_returns() {
    if !root_with(
        "a_full_disk_stalls_the_sweep_until_space_returns",
        &["mount", "umount"],
    ) {
        return;
    }
    let s = Setup::new("diskfull", FAULT_SPEC);
    let fs = s.path("fs");
    // Room, once the ballast is gone, for the whole sweep: about 10 MB of points and a WAL that
    // grows past 40 MB while checkpoints lag on a loaded machine (64 MB ran out again).
    let _mounted = mount(&fs, &["-t", "tmpfs", "-o", "size=256m", "tmpfs"]);
    let ballast = fs.join("ballast");
    stall_and_recover(
        &s,
        &fs.join("sweep.db"),
        "full",
        || {
            // Every byte left: written until the file system says no.
            let mut file = std::fs::File::create(&ballast).unwrap();
            let chunk = vec![0xa5u8; 64 * 1024];
            while file.write_all(&chunk).is_ok() {}
            let _ = file.write_all(&chunk[..1]);
        },
        || std::fs::remove_file(&ballast).unwrap(),
    );
}

#[test]
fn a_read_only_database_stalls_the_sweep_until_it_is_writable() {
    let test = "a_read_only_database_stalls_the_sweep_until_it_is_writable";
    if !root_with(test, &["mount", "umount", "mkfs.ext4", "chattr"]) {
        return;
    }
    if !Path::new("/dev/loop-control").exists() {
        eprintln!("SKIPPED {test}: no loop devices here (/dev/loop-control)");
        return;
    }
    let s = Setup::new("readonly", FAULT_SPEC);
    let image = s.path("ext4.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(256 << 20)
        .unwrap();
    run("mkfs.ext4", &["-q", &image.display().to_string()]);
    let fs = s.path("fs");
    let _mounted = mount(&fs, &["-o", "loop", &image.display().to_string()]);
    let db = fs.join("sweep.db");
    // The database and its write-ahead log, where every commit goes.
    let files = [db.display().to_string(), format!("{}-wal", db.display())];
    stall_and_recover(
        &s,
        &db,
        "I/O error",
        || run("chattr", &["+i", &files[0], &files[1]]),
        || run("chattr", &["-i", &files[0], &files[1]]),
    );
}

//! Running the system tools that fault tests need as root (mount, ip, chattr), and skipping
//! those tests, with a message saying why, where they cannot run.

use std::process::Command;

/// True when this process is root and every tool in `tools` is on the PATH; otherwise prints
/// why `test` is skipped and returns false.
pub fn root_with(test: &str, tools: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED {test}: needs root (mounts, network namespaces); run as root to check it"
        );
        return false;
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if !missing.is_empty() {
        eprintln!("SKIPPED {test}: {} not installed", missing.join(", "));
        return false;
    }
    true
}

/// Runs `program args`; panics with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {}: {e}", args.join(" ")));
    assert!(
        output.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `program args` for cleaning up: a failure is only printed.
pub fn run_quietly(program: &str, args: &[&str]) {
    match Command::new(program).args(args).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => eprintln!(
            "cleanup: {program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => eprintln!("cleanup: {program} {}: {e}", args.join(" ")),
    }
}

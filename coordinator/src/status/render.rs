//! The status as text for a terminal or a log. Pure.

use std::fmt::Write;

use super::{Eta, Status};
use crate::search::TrialStatus;

pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "sweep    {} ({})", s.sweep_id, s.state.as_str());
    let _ = writeln!(out, "round    {} of {}", s.round + 1, s.rounds);
    let total: u32 = s.trials.iter().map(|(_, n)| n).sum();
    let open = s.count(TrialStatus::Queued) + s.count(TrialStatus::Running);
    let by_status: Vec<String> = s
        .trials
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(status, n)| format!("{n} {}", status.as_str()))
        .collect();
    let _ = writeln!(
        out,
        "trials   {} of {total} done: {}",
        total - open,
        if by_status.is_empty() {
            "none planned".to_string()
        } else {
            by_status.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "         this round: {} of {} done",
        s.round_done.0, s.round_done.1
    );
    let w = &s.workers;
    let mut workers = format!(
        "{} connected, {} busy ({} of {} slots)",
        w.connected, w.busy, w.slots_busy, w.slots
    );
    for (n, what) in [
        (w.disconnected, "disconnected"),
        (w.lost, "lost"),
        (w.left, "left"),
    ] {
        if n > 0 {
            let _ = write!(workers, ", {n} {what}");
        }
    }
    let _ = writeln!(out, "workers  {workers}");
    let best = match s.best {
        Some((lr, loss)) => format!("lr {lr:.3e}, final loss {loss:.4}"),
        None => "none yet (no trial completed)".to_string(),
    };
    let _ = writeln!(out, "best     {best}");
    let _ = writeln!(out, "elapsed  {}", duration(s.elapsed_ms as f64 / 1000.0));
    let _ = writeln!(out, "eta      {}", eta(&s.eta, s.round, s.rounds));
    out
}

fn eta(eta: &Eta, round: u32, rounds: u32) -> String {
    match eta {
        Eta::Unknown(why) => format!("unknown ({why})"),
        Eta::Estimate {
            seconds,
            steps_left,
            steps_per_second,
            whole_sweep,
        } => {
            let scope = if *whole_sweep {
                "the sweep (last round)".to_string()
            } else {
                format!(
                    "round {} of {rounds}; later rounds are planned when it ends",
                    round + 1
                )
            };
            format!(
                "about {} for {scope} ({steps_left} steps left at {steps_per_second:.0} steps/s so far; pruning can only shorten it)",
                duration(*seconds)
            )
        }
    }
}

/// `1h 02m`, `3m 05s`, `42s`, `<1s`.
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, 0) => "<1s".to_string(),
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Workers;
    use super::*;
    use crate::sweep::SweepStatus;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(0.4), "<1s");
        assert_eq!(duration(42.0), "42s");
        assert_eq!(duration(185.0), "3m 05s");
        assert_eq!(duration(3_720.0), "1h 02m");
    }

    #[test]
    fn the_text_says_round_trials_workers_best_and_how_the_eta_is_made() {
        let status = Status {
            sweep_id: "sweep-1".into(),
            state: SweepStatus::Running,
            round: 1,
            rounds: 3,
            trials: TrialStatus::ALL
                .iter()
                .map(|&s| (s, if s == TrialStatus::Failed { 0 } else { 2 }))
                .collect(),
            round_done: (3, 6),
            workers: Workers {
                connected: 2,
                busy: 2,
                slots: 2,
                slots_busy: 2,
                lost: 1,
                ..Workers::default()
            },
            best: Some((0.1, 0.25)),
            elapsed_ms: 65_000,
            eta: Eta::Estimate {
                seconds: 30.0,
                steps_left: 300,
                steps_per_second: 10.0,
                whole_sweep: false,
            },
        };
        let text = render(&status);
        for line in [
            "sweep    sweep-1 (running)",
            "round    2 of 3",
            "trials   6 of 10 done: 2 queued, 2 running, 2 completed, 2 pruned, 2 cancelled",
            "         this round: 3 of 6 done",
            "workers  2 connected, 2 busy (2 of 2 slots), 1 lost",
            "best     lr 1.000e-1, final loss 0.2500",
            "elapsed  1m 05s",
            "eta      about 30s for round 2 of 3; later rounds are planned when it ends (300 steps left at 10 steps/s so far; pruning can only shorten it)",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        let unknown = Status {
            eta: Eta::Unknown("no steps trained yet"),
            best: None,
            ..status
        };
        let text = render(&unknown);
        assert!(
            text.contains("eta      unknown (no steps trained yet)"),
            "{text}"
        );
        assert!(text.contains("best     none yet"), "{text}");
    }
}

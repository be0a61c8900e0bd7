//! What the sweep decided, as it decided it: the durable store writes these and nothing else,
//! so it never has to guess from the sweep's state what happened.

use lrsweep_proto::domain::{TracePoint, TrialId};

use super::WorkerId;

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A round was planned: its trials exist, queued.
    RoundStarted { round: u32, trials: Vec<TrialId> },
    /// A trial was handed to a worker under a new attempt number.
    AttemptStarted {
        trial: TrialId,
        attempt: u32,
        worker: WorkerId,
    },
    /// Points of an attempt were accepted (new steps only).
    PointsAccepted {
        trial: TrialId,
        attempt: u32,
        points: Vec<TracePoint>,
    },
    /// An attempt is over, and how.
    AttemptEnded {
        trial: TrialId,
        attempt: u32,
        outcome: AttemptOutcome,
        error: Option<String>,
    },
    /// Something of the trial's own state changed (status, steps, worker, error, loss).
    TrialChanged(TrialId),
}

/// How one attempt of a trial ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Completed,
    Pruned,
    Cancelled,
    /// The worker reported that training failed.
    Failed,
    /// Its worker left, went silent past its lease, or came back without it.
    Lost,
    /// The coordinator stopped (Ctrl-C, SIGTERM, a crash) while it ran; it runs again on resume.
    Interrupted,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 6] = [
        AttemptOutcome::Completed,
        AttemptOutcome::Pruned,
        AttemptOutcome::Cancelled,
        AttemptOutcome::Failed,
        AttemptOutcome::Lost,
        AttemptOutcome::Interrupted,
    ];

    pub const fn as_str(&self) -> &'static str {
        match self {
            AttemptOutcome::Completed => "completed",
            AttemptOutcome::Pruned => "pruned",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Lost => "lost",
            AttemptOutcome::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<AttemptOutcome> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// Where a sweep stands, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SweepStatus {
    Running,
    Completed,
    /// Stopped before its search ended (Ctrl-C, SIGTERM); resumable.
    Interrupted,
}

impl SweepStatus {
    pub const ALL: [SweepStatus; 3] = [
        SweepStatus::Running,
        SweepStatus::Completed,
        SweepStatus::Interrupted,
    ];

    pub const fn as_str(&self) -> &'static str {
        match self {
            SweepStatus::Running => "running",
            SweepStatus::Completed => "completed",
            SweepStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<SweepStatus> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

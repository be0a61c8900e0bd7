//! Why a trial was stopped.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneReason {
    Nan,
    Diverged,
    Rung,
    Median,
    /// A smaller rate of the round did better at a rung.
    Dominated,
    /// A smaller rate diverged, so by monotone stability this one would too.
    CancelledByMonotonicity,
    /// Clearly behind the round's incumbent (a finished earlier trial) at the same step, with
    /// too little left to catch up even if its current rate of improvement fades only like 1/step.
    BehindIncumbent,
}

impl PruneReason {
    pub const ALL: [PruneReason; 7] = [
        PruneReason::Nan,
        PruneReason::Diverged,
        PruneReason::Rung,
        PruneReason::Median,
        PruneReason::Dominated,
        PruneReason::CancelledByMonotonicity,
        PruneReason::BehindIncumbent,
    ];

    pub const fn as_str(&self) -> &'static str {
        match self {
            PruneReason::Nan => "nan",
            PruneReason::Diverged => "diverged",
            PruneReason::Rung => "rung",
            PruneReason::Median => "median",
            PruneReason::Dominated => "dominated",
            PruneReason::CancelledByMonotonicity => "cancelled-by-monotonicity",
            PruneReason::BehindIncumbent => "behind-incumbent",
        }
    }

    pub fn parse(s: &str) -> Option<PruneReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The trial's own rate is unstable (as opposed to merely worse than its peers).
    pub fn is_divergence(&self) -> bool {
        matches!(self, PruneReason::Nan | PruneReason::Diverged)
    }

    /// The rate is known to be unstable: it diverged, or a smaller rate of its round did.
    pub fn shows_instability(&self) -> bool {
        self.is_divergence() || *self == PruneReason::CancelledByMonotonicity
    }
}

impl std::fmt::Display for PruneReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_stable_names() {
        assert_eq!(PruneReason::Nan.to_string(), "nan");
        assert_eq!(PruneReason::Diverged.as_str(), "diverged");
        assert_eq!(PruneReason::Rung.as_str(), "rung");
        assert_eq!(PruneReason::Median.as_str(), "median");
        assert_eq!(PruneReason::Dominated.as_str(), "dominated");
        assert_eq!(
            PruneReason::parse("dominated"),
            Some(PruneReason::Dominated)
        );
        assert_eq!(
            PruneReason::CancelledByMonotonicity.to_string(),
            "cancelled-by-monotonicity"
        );
        assert!(PruneReason::Nan.is_divergence() && PruneReason::Diverged.is_divergence());
        assert!(!PruneReason::Rung.is_divergence());
        assert!(!PruneReason::Median.is_divergence());
        assert!(!PruneReason::Dominated.is_divergence());
        assert!(!PruneReason::CancelledByMonotonicity.is_divergence());
        assert!(PruneReason::CancelledByMonotonicity.shows_instability());
        assert!(PruneReason::Diverged.shows_instability());
        assert!(!PruneReason::Dominated.shows_instability());
        assert_eq!(
            PruneReason::parse("behind-incumbent"),
            Some(PruneReason::BehindIncumbent)
        );
        assert!(!PruneReason::BehindIncumbent.shows_instability());
    }
}

//! How long the sweep still has to run, estimated from what it has done so far. Pure.
//!
//! The fleet's throughput so far (training steps run by all attempts, over the wall time since
//! the first attempt started) divides the steps still planned: the budgets of the current
//! round's trials not yet done, less the steps their attempts have reported. Pruning only
//! shortens a trial, so that is an upper bound for the round. Later rounds are not planned until
//! this one ends, so before the last round the estimate covers this round only.

/// What the estimate is made from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EtaInput {
    /// Steps run by every attempt so far.
    pub steps_run: u64,
    /// Steps left of the current round's trials still queued or running.
    pub steps_left: u64,
    /// When the first attempt started, ms since the epoch; None before any did.
    pub first_start_ms: Option<i64>,
    pub now_ms: i64,
    /// The current round is the last the spec plans.
    pub last_round: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Eta {
    /// `seconds` until the current round (or, in the last round, the sweep) ends.
    Estimate {
        seconds: f64,
        steps_left: u64,
        steps_per_second: f64,
        whole_sweep: bool,
    },
    /// No honest number: why.
    Unknown(&'static str),
}

pub fn estimate(input: EtaInput) -> Eta {
    let Some(start) = input.first_start_ms else {
        return Eta::Unknown("no trial has started yet");
    };
    let window = (input.now_ms - start) as f64 / 1000.0;
    if input.steps_run == 0 || window <= 0.0 {
        return Eta::Unknown("no steps trained yet");
    }
    if input.steps_left == 0 {
        return Eta::Unknown("no trial queued or running: the next round is being planned");
    }
    let steps_per_second = input.steps_run as f64 / window;
    Eta::Estimate {
        seconds: input.steps_left as f64 / steps_per_second,
        steps_left: input.steps_left,
        steps_per_second,
        whole_sweep: input.last_round,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> EtaInput {
        EtaInput {
            steps_run: 6_000,
            steps_left: 3_000,
            first_start_ms: Some(1_000_000),
            now_ms: 1_060_000,
            last_round: false,
        }
    }

    #[test]
    fn steps_left_divided_by_the_throughput_so_far() {
        // 6,000 steps in 60 s: 100 steps/s; 3,000 left: 30 s.
        assert_eq!(
            estimate(input()),
            Eta::Estimate {
                seconds: 30.0,
                steps_left: 3_000,
                steps_per_second: 100.0,
                whole_sweep: false
            }
        );
        let last = estimate(EtaInput {
            last_round: true,
            ..input()
        });
        assert!(matches!(
            last,
            Eta::Estimate {
                whole_sweep: true,
                ..
            }
        ));
    }

    #[test]
    fn unknown_rather_than_a_made_up_number() {
        for (input, why) in [
            (
                EtaInput {
                    first_start_ms: None,
                    ..input()
                },
                "no trial has started yet",
            ),
            (
                EtaInput {
                    steps_run: 0,
                    ..input()
                },
                "no steps trained yet",
            ),
            (
                EtaInput {
                    now_ms: 1_000_000,
                    ..input()
                },
                "no steps trained yet",
            ),
            (
                EtaInput {
                    steps_left: 0,
                    ..input()
                },
                "no trial queued or running: the next round is being planned",
            ),
        ] {
            assert_eq!(estimate(input), Eta::Unknown(why));
        }
    }
}

use super::*;

fn spec(rule: RungRule) -> SweepSpec {
    let mut spec = crate::search::test_support::c2f_spec();
    spec.search.min_lr = 1e-3;
    spec.search.max_lr = 1.0;
    spec.search.rounds = 2;
    crate::search::test_support::coarse(&mut spec).candidates_per_round = 3;
    spec.search.steps = vec![100, 200];
    spec.search.data_fraction = vec![0.5, 1.0];
    spec.search.replicates = 2;
    spec.search.eval_every = 10;
    spec.pruning.rule = rule;
    spec
}

fn assignments(commands: &[Command]) -> Vec<(WorkerId, TrialAssignment)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Assign { worker, assignment } => {
                Some((worker.clone(), TrialAssignment::clone(assignment)))
            }
            Command::Stop { .. } => None,
        })
        .collect()
}

fn stops(commands: &[Command]) -> Vec<(TrialId, StopKind, PruneReason)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Stop {
                trial,
                kind,
                reason,
                ..
            } => Some((*trial, *kind, *reason)),
            Command::Assign { .. } => None,
        })
        .collect()
}

/// A full trace for `a` whose losses depend only on the distance of lr from 0.1 (decades).
fn trace(a: &TrialAssignment, from: u64, to: u64) -> Vec<TracePoint> {
    let level = 0.1 + (a.lr.log10() + 1.0).powi(2);
    (from..=to)
        .map(|step| TracePoint {
            step,
            train_loss: level + 1.0 / step as f64,
            lr: a.lr,
            val_loss: (step % a.eval_every == 0 || step == a.steps).then_some(level),
        })
        .collect()
}

#[test]
fn dispatch_fills_free_slots_largest_rate_first() {
    let mut sweep = Sweep::new(spec(RungRule::None));
    assert!(
        sweep.dispatch().is_empty(),
        "no workers, nothing dispatched"
    );
    sweep.add_worker("w1".into(), "alpha".into(), 2);
    let given = assignments(&sweep.dispatch());
    assert_eq!(given.len(), 2);
    for (i, (worker, a)) in given.iter().enumerate() {
        assert_eq!(worker, "w1");
        assert_eq!(a.lr, 1.0);
        assert_eq!(a.attempt, 1);
        assert_eq!(a.steps, 100);
        assert_eq!(a.subset.replicate, i as u32);
        assert_eq!(a.subset.fraction, 0.5);
    }
    assert!(sweep.dispatch().is_empty(), "both slots are busy");
    // The report names the worker each trial ran on.
    let dispatched = &sweep.trials()[given[0].1.trial_id as usize];
    assert_eq!(dispatched.worker_name.as_deref(), Some("alpha"));
}

#[test]
fn divergence_prunes_and_cancels_every_rate_at_or_above_it() {
    let mut sweep = Sweep::new(spec(RungRule::None));
    sweep.add_worker("w1".into(), "a".into(), 3);
    let given = assignments(&sweep.dispatch());
    // Running: lr 1 (both replicates) and lr 0.1 replicate 0; lr 0.1 replicate 1 is queued.
    let (_, small) = given.iter().find(|(_, a)| a.lr == 0.1).unwrap().clone();
    let mut bad = trace(&small, 1, 3);
    bad[2].train_loss = f64::NAN;
    let commands = sweep
        .on_trace("w1", small.trial_id, 1, &bad)
        .expect("valid trace");
    let stopped = stops(&commands);
    assert!(stopped.contains(&(small.trial_id, StopKind::Prune, PruneReason::Nan)));
    let cancelled: Vec<_> = stopped.iter().filter(|s| s.1 == StopKind::Cancel).collect();
    assert_eq!(cancelled.len(), 2, "both replicates of lr 1: {stopped:?}");
    let t = |lr: f64, rep: u32| {
        sweep
            .trials()
            .iter()
            .find(|t| t.lr == lr && t.subset.replicate == rep)
            .unwrap()
            .clone()
    };
    assert_eq!(t(0.1, 1).status, TrialStatus::Cancelled);
    assert_eq!(
        t(0.1, 1).prune_reason,
        Some(PruneReason::CancelledByMonotonicity)
    );
    assert_eq!(t(0.1, 0).steps, 3);
    // The search sees the cancelled rates as unstable as the one that diverged.
    assert!([t(0.1, 0), t(0.1, 1), t(1.0, 0), t(1.0, 1)]
        .iter()
        .all(|t| t.result().diverged));
    // The freed slots go to the smaller rates.
    let next = assignments(&commands);
    assert_eq!(next.len(), 3);
    assert!(next.iter().all(|(_, a)| a.lr < 0.1));
}

#[test]
fn a_lost_worker_hands_its_trials_back_under_a_new_attempt() {
    let mut sweep = Sweep::new(spec(RungRule::None));
    sweep.add_worker("w1".into(), "a".into(), 1);
    let (_, first) = assignments(&sweep.dispatch()).remove(0);
    sweep
        .on_trace("w1", first.trial_id, 1, &trace(&first, 1, 5))
        .unwrap();
    assert!(sweep.remove_worker("w1", "vanished").is_empty());
    sweep.add_worker("w2".into(), "b".into(), 1);
    let (worker, again) = assignments(&sweep.dispatch()).remove(0);
    assert_eq!((worker.as_str(), again.trial_id), ("w2", first.trial_id));
    assert_eq!(again.attempt, 2);
    // The lost attempt's late points are dropped, not mixed into the new attempt's trace.
    let late = trace(&first, 6, 8);
    sweep.take_changes();
    let commands = sweep.on_trace("w1", first.trial_id, 1, &late).unwrap();
    assert!(commands.is_empty() && sweep.take_changes().is_empty());
    let trial = &sweep.trials()[first.trial_id as usize];
    assert_eq!((trial.steps, trial.steps_run), (0, 5));
    sweep
        .on_trace("w2", again.trial_id, 2, &trace(&again, 1, 4))
        .unwrap();
    assert_eq!(sweep.total_steps(), 9);
}

#[test]
fn a_trial_lost_or_failed_max_attempts_times_is_failed_with_the_last_error() {
    let mut sweep = Sweep::new(spec(RungRule::None));
    sweep.set_max_attempts(2);
    sweep.add_worker("w1".into(), "a".into(), 1);
    let (_, a) = assignments(&sweep.dispatch()).remove(0);
    let next = sweep
        .on_failed("w1", a.trial_id, 1, "out of memory", false)
        .unwrap();
    let (_, again) = assignments(&next).remove(0);
    assert_eq!((again.trial_id, again.attempt), (a.trial_id, 2));
    sweep.remove_worker("w1", "lease expired");
    let trial = &sweep.trials()[a.trial_id as usize];
    assert_eq!(trial.status, TrialStatus::Failed);
    assert_eq!(trial.error.as_deref(), Some("worker w1 lease expired"));
}

#[test]
fn a_reconnecting_worker_keeps_what_it_still_runs_and_resends_idempotently() {
    let mut sweep = Sweep::new(spec(RungRule::None));
    sweep.add_worker("w1".into(), "a".into(), 2);
    let given = assignments(&sweep.dispatch());
    let (a, b) = (given[0].1.clone(), given[1].1.clone());
    sweep
        .on_trace("w1", a.trial_id, 1, &trace(&a, 1, 10))
        .unwrap();
    // Back with only `a`: it resumes after step 10; `b` goes back to the queue.
    let kept = sweep.reattach_worker("w1", &[(a.trial_id, 1)]);
    assert_eq!(kept, vec![(a.trial_id, 1, 10)]);
    assert_eq!(
        sweep.trials()[b.trial_id as usize].status,
        TrialStatus::Queued
    );
    // Resent points overlap what arrived before: counted once.
    sweep
        .on_trace("w1", a.trial_id, 1, &trace(&a, 5, 12))
        .unwrap();
    let trial = &sweep.trials()[a.trial_id as usize];
    assert_eq!((trial.steps, trial.steps_run), (12, 12));
}

#[test]
fn impossible_reports_are_rejected() {
    let mut sweep = Sweep::new(spec(RungRule::None));
    sweep.add_worker("w1".into(), "a".into(), 1);
    let (_, a) = assignments(&sweep.dispatch()).remove(0);
    fn invalid<T>(r: Result<T, CoordinatorError>) -> bool {
        matches!(r, Err(CoordinatorError::InvalidRequest(_)))
    }
    assert!(invalid(sweep.on_trace("w1", 999, 1, &trace(&a, 1, 2))));
    assert!(invalid(sweep.on_trace(
        "w1",
        a.trial_id,
        2,
        &trace(&a, 1, 2)
    )));
    assert!(invalid(sweep.on_trace(
        "w1",
        a.trial_id,
        0,
        &trace(&a, 1, 2)
    )));
    assert!(invalid(sweep.on_trace(
        "w1",
        a.trial_id,
        1,
        &trace(&a, 1, 101)
    )));
    sweep
        .on_trace("w1", a.trial_id, 1, &trace(&a, 1, 5))
        .unwrap();
    let mut backwards = trace(&a, 6, 8);
    backwards.swap(0, 2);
    assert!(invalid(sweep.on_trace("w1", a.trial_id, 1, &backwards)));
    assert!(invalid(sweep.on_completed("w1", a.trial_id, 1, 100)));
    // Another worker's word on this trial is stale, not valid.
    assert!(sweep
        .on_completed("w9", a.trial_id, 1, 5)
        .unwrap()
        .is_empty());
    assert_eq!(
        sweep.trials()[a.trial_id as usize].status,
        TrialStatus::Running
    );
}

/// Plays every assignment to completion on two workers until the sweep ends.
fn run_to_end(sweep: &mut Sweep) -> usize {
    sweep.add_worker("w1".into(), "a".into(), 1);
    sweep.add_worker("w2".into(), "b".into(), 1);
    let mut pending = assignments(&sweep.dispatch());
    let mut trials_run = 0;
    while let Some((worker, a)) = pending.pop() {
        trials_run += 1;
        // Stream in batches of 10 points, as a worker would, until the trial is stopped.
        let mut commands = Vec::new();
        let mut from = 1;
        while from <= a.steps && sweep.trials()[a.trial_id as usize].status == TrialStatus::Running
        {
            let to = (from + 9).min(a.steps);
            let points = trace(&a, from, to);
            commands.extend(
                sweep
                    .on_trace(&worker, a.trial_id, a.attempt, &points)
                    .unwrap(),
            );
            from = to + 1;
        }
        if sweep.trials()[a.trial_id as usize].status == TrialStatus::Running {
            commands.extend(
                sweep
                    .on_completed(&worker, a.trial_id, a.attempt, a.steps)
                    .unwrap(),
            );
        }
        pending.extend(assignments(&commands));
    }
    trials_run
}

#[test]
fn rounds_advance_until_the_search_ends_with_a_recommendation() {
    let mut sweep = Sweep::new(spec(RungRule::None));
    let trials_run = run_to_end(&mut sweep);
    assert!(sweep.is_finished());
    assert_eq!(sweep.current_round(), 1);
    // Round 0: 4 decades, round 1 (the last): the 1.25 lattice from 3 below 0.1 to 1 above;
    // 2 replicates each.
    assert_eq!(trials_run, (4 + 5) * 2);
    assert!(sweep
        .trials()
        .iter()
        .all(|t| t.status == TrialStatus::Completed));
    let rec = sweep.recommendation().expect("a recommendation");
    // The traces are best at 0.1, which lies between two lattice points.
    assert!(
        (rec.best_lr / 0.1).ln().abs() < 1.25f64.ln(),
        "{}",
        rec.best_lr
    );
    assert_eq!(rec.max_stable_lr, 1.0);
    assert_eq!(sweep.total_steps(), 4 * 2 * 100 + 5 * 2 * 200);
    let round1: Vec<f64> = sweep
        .trials()
        .iter()
        .filter(|t| t.round == 1)
        .map(|t| t.lr)
        .collect();
    assert!(round1.iter().all(|&lr| lr > 0.01 && lr < 1.0), "{round1:?}");
}

#[test]
fn rung_rule_stops_trials_far_behind_their_peers() {
    let mut sweep = Sweep::new(spec(RungRule::Asha));
    run_to_end(&mut sweep);
    assert!(sweep.is_finished());
    let rung_pruned: Vec<&Trial> = sweep
        .trials()
        .iter()
        .filter(|t| t.prune_reason == Some(PruneReason::Rung))
        .collect();
    assert!(!rung_pruned.is_empty());
    // Only rates far from the optimum (0.1, between lattice points) are cut, and before their
    // budget: a cut trial's round always had a rate closer to 0.1 than its own.
    let distance = |lr: f64| (lr / 0.1).ln().abs();
    for t in &rung_pruned {
        let closest = sweep
            .trials()
            .iter()
            .filter(|o| o.round == t.round)
            .map(|o| distance(o.lr))
            .fold(f64::INFINITY, f64::min);
        assert!(
            distance(t.lr) > closest * (1.0 + 1e-9) && t.steps < t.budget,
            "rate {} cut at step {} of round {}, whose closest rate is {closest} from 0.1",
            t.lr,
            t.steps,
            t.round
        );
    }
    assert!(sweep.total_steps() < 4 * 2 * 100 + 3 * 2 * 200);
}

#[test]
fn a_permanent_failure_fails_the_trial_at_once() {
    let mut sweep = Sweep::new(spec(RungRule::None));
    sweep.add_worker("w1".into(), "a".into(), 1);
    let (_, a) = assignments(&sweep.dispatch()).remove(0);
    sweep.take_changes();
    let next = sweep
        .on_failed(
            "w1",
            a.trial_id,
            1,
            "x.csv: cannot read: No such file",
            true,
        )
        .unwrap();
    // The slot goes to another trial, not to this one again.
    assert!(assignments(&next)
        .iter()
        .all(|(_, n)| n.trial_id != a.trial_id));
    let trial = &sweep.trials()[a.trial_id as usize];
    assert_eq!((trial.status, trial.attempt), (TrialStatus::Failed, 1));
    assert!(sweep.take_changes().contains(&Change::AttemptEnded {
        trial: a.trial_id,
        attempt: 1,
        outcome: AttemptOutcome::Failed,
        error: Some("x.csv: cannot read: No such file".into()),
    }));
}

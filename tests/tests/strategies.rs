//! Strategy options end to end with the real trainer, in-process (tests/src/local.rs).

use lrsweep_proto::spec::SweepSpec;
use lrsweep_tests::local::run_in_process;

#[test]
fn the_hypergradient_stage_reports_where_the_rate_went() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("examples/coarse-then-hypergradient.toml"))
        .expect("the example");
    let spec = SweepSpec::from_toml_str(&text).expect("a valid example");
    let (sweep, report) = run_in_process(&spec, 2);
    assert!(sweep.is_finished());
    let rec = report.recommendation.as_ref().expect("a recommendation");
    let hd = rec.hypergradient.expect("the stage ran");
    assert_eq!(hd.start_lr, rec.best_lr);
    assert!(!hd.diverged);
    assert!(
        hd.final_lr.is_finite() && hd.final_lr != hd.start_lr,
        "{hd:?}"
    );
    let loss = hd.final_loss.expect("both replicates completed");
    assert!(loss.is_finite() && loss < 2.3, "{loss}");
    // The stage's trials carry the rate's trajectory, starting at the best fixed rate.
    let last_round = report.trials.iter().map(|t| t.round).max().unwrap();
    let stage: Vec<_> = report
        .trials
        .iter()
        .filter(|t| t.round == last_round)
        .collect();
    assert_eq!(stage.len(), spec.search.replicates as usize);
    for t in stage {
        let trajectory = t.lr_trajectory.as_ref().expect("a trajectory");
        assert!(trajectory.len() > 10);
        assert_eq!(trajectory[0].1, hd.start_lr);
    }
    // Fixed-rate trials carry none.
    assert!(report
        .trials
        .iter()
        .filter(|t| t.round < last_round)
        .all(|t| t.lr_trajectory.is_none()));
}

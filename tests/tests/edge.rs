//! The stability edge (issue 10): edge descent's `max_stable_lr` lies within one lattice step
//! below the true edge, 0.8–1.0 × 2/λ_max, on full-batch least squares for 20 random problems
//! with λ_max from 1e-3 to 1e3. Whole sweeps in process (`lrsweep_tests::local`): the product's
//! own `Sweep` and the worker's real trainer.
//!
//! Each problem is a CSV of random features with scales log-spaced over a decade, times
//! √λ so that λ_max of XᵀX/n is near λ; the exact λ_max of the training split comes from
//! `PreparedData::lambda_max`. The search range is the default's width (8 decades) placed
//! around the edge at a random offset, so the lattice falls differently on every problem.

use lrsweep_proto::rng::{Rng, Stream};
use lrsweep_proto::spec::SweepSpec;
use lrsweep_tests::local::run_in_process;
use lrsweep_tests::TempDir;
use lrsweep_worker::trainer::PreparedData;

const PROBLEMS: u32 = 20;

/// A least-squares CSV with λ_max of XᵀX/n near `lambda`, drawn from `seed`.
fn write_problem(path: &std::path::Path, lambda: f64, seed: u64) {
    let (n, d) = (120, 4);
    let mut rng = Rng::new(seed, Stream::Synthetic, 0);
    let w: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
    let mut text = String::from("x0,x1,x2,x3,label\n");
    for _ in 0..n {
        let x: Vec<f64> = (0..d)
            .map(|j| lambda.sqrt() * 10f64.powf(-(j as f64) / (d - 1) as f64) * rng.normal())
            .collect();
        let y: f64 = x.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() + 0.1 * rng.normal();
        let cells: Vec<String> = x.iter().map(|v| format!("{v:e}")).collect();
        text += &format!("{},{y:e}\n", cells.join(","));
    }
    std::fs::write(path, text).expect("write the problem");
}

#[test]
fn max_stable_lr_is_within_one_lattice_step_below_the_edge_on_20_problems() {
    let dir = TempDir::new("edge");
    let mut ratios = Vec::new();
    let mut failures = Vec::new();
    for k in 0..PROBLEMS {
        let lambda = 10f64.powf(-3.0 + 6.0 * f64::from(k) / f64::from(PROBLEMS - 1));
        let path = dir.path().join(format!("ls{k}.csv"));
        write_problem(&path, lambda, u64::from(k));
        let trainer = format!(
            "[trainer]\ndataset = {{ kind = \"csv\", path = \"{}\", label = \"label\", task = \"regression\" }}\n\
             model = {{ kind = \"linear\", intercept = false }}\noptimizer = {{ kind = \"sgd\" }}\n\
             full_batch = true\nstandardize = false\nseed = {k}\n",
            path.display()
        );
        let probe = SweepSpec::from_toml_str(&trainer).expect("the trainer table is valid");
        let data = PreparedData::prepare(probe.trainer.built_in().expect("built-in"))
            .expect("the problem loads");
        let edge = 2.0 / data.lambda_max();
        // The range spans 8 decades with the edge at a random depth in its upper half.
        let offset = Rng::new(u64::from(k), Stream::Synthetic, 1).uniform();
        let max_lr = edge * 10f64.powf(0.5 + 3.0 * offset);
        let text = format!(
            "[search]\nstrategy = \"edge-descent\"\nmin_lr = {:e}\nmax_lr = {max_lr:e}\n\
             rounds = 3\nsteps = [200, 250, 300]\neval_every = 20\n\n{trainer}",
            max_lr * 1e-8
        );
        let spec = SweepSpec::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let (_, report) = run_in_process(&spec, 2);
        let rec = report.recommendation.expect("a recommendation");
        let ratio = rec.max_stable_lr / edge;
        ratios.push(ratio);
        if !(0.8..=1.0).contains(&ratio) {
            failures.push(format!(
                "λ_max {:.3e}: max_stable_lr {:.4e} = {ratio:.3} × 2/λ_max",
                data.lambda_max(),
                rec.max_stable_lr
            ));
        }
    }
    eprintln!("max_stable_lr / (2/λ_max) over {PROBLEMS} problems: {ratios:.3?}");
    assert!(failures.is_empty(), "{failures:#?}");
}

//! Seeing a sweep, end to end: real sweeps (a coordinator and a worker process on loopback),
//! then the `plot` and `report --html` subcommands as processes on their databases.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lrsweep_coordinator::view::{self, label};
use lrsweep_tests::{start_worker, Setup};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

/// Two short coarse-to-fine rounds on the digits: the top decades diverge.
const SWEEP: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-3
max_lr = 100.0
rounds = 2
candidates_per_round = 3
steps = [60, 150]
eval_every = 25

[trainer]
model = { kind = "mlp", hidden = [16] }
seed = 3
"#;

const RANGE_TEST: &str = r#"
[search]
strategy = "range-test"
min_lr = 1e-5
max_lr = 100.0
range_steps = 120
shards = 2

[trainer]
model = { kind = "mlp", hidden = [16] }
"#;

/// Runs the setup's spec to the end on one worker (a second could find the sweep over before it
/// connects); returns whether the coordinator succeeded.
fn run_sweep(setup: &Setup, extra: &[&str]) -> bool {
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, extra);
    let mut worker = start_worker(WORKER, &addr, "w1");
    let (status, _) = coordinator.wait_output(Duration::from_secs(300));
    let (worker_status, _) = worker.wait_output(Duration::from_secs(30));
    assert!(
        worker_status.success(),
        "worker failed: {:#?}",
        worker.tail(20)
    );
    status.success()
}

/// Runs a coordinator subcommand to success; returns its stdout.
fn subcommand(args: &[&str]) -> String {
    let out = Command::new(COORDINATOR)
        .args(args)
        .output()
        .expect("start the coordinator");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

fn plot(setup: &Setup, dir: &Path) -> String {
    subcommand(&["plot", "--db", &setup.db, "--out", dir.to_str().unwrap()])
}

/// `report --html`: the page, after checking that it is self-contained.
fn html_report(setup: &Setup) -> String {
    let json = setup.path("again.json");
    let page = setup.path("report.html");
    subcommand(&[
        "report",
        "--db",
        &setup.db,
        "--report",
        json.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
    ]);
    assert!(json.is_file(), "the JSON report is still written");
    let html = std::fs::read_to_string(&page).expect("the page");
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..100]);
    assert!(html.trim_end().ends_with("</html>"));
    for scheme in ["http://", "https://", "//cdn", "src=", "<link", "<script"] {
        assert!(!html.contains(scheme), "the page names `{scheme}`");
    }
    assert!(html.contains("<table id=\"trials\">"));
    assert!(html.contains("<table id=\"rounds\">"));
    html
}

/// The text of every `<text>` element of an SVG file, which must parse as XML.
fn svg_texts(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{} is no XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect()
}

/// Decodes a PNG; checks its size and that it holds a drawing, not a blank page.
fn check_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder
        .read_info()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut pixels = vec![0; reader.output_buffer_size().expect("a sane size")];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), view::SIZE, "{}", path.display());
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let rgb: Vec<&[u8]> = pixels[..info.buffer_size()].chunks(3).collect();
    let ink = rgb.iter().filter(|p| **p != [255, 255, 255]).count();
    let colours: HashSet<&[u8]> = rgb.iter().copied().collect();
    assert!(
        ink > rgb.len() / 50 && colours.len() > 20,
        "{}: {ink} drawn pixels in {} colours",
        path.display(),
        colours.len()
    );
}

fn names(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| {
            Path::new(l)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn same_bytes(a: &Path, b: &Path, files: &[String]) {
    for f in files {
        let (x, y) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
        );
        assert!(x == y, "{f} differs between two runs on the same database");
    }
}

#[test]
fn a_sweep_is_plotted_and_rendered_as_a_page_from_its_database() {
    let setup = Setup::new("view", SWEEP);
    assert!(run_sweep(&setup, &[]), "the sweep failed");
    let report = setup.report();
    let best = report["best_lr"].as_f64().expect("a recommendation");
    let max_stable = report["max_stable_lr"].as_f64().unwrap();
    let (lo, hi) = (
        report["suggested_min_lr"].as_f64().unwrap(),
        report["suggested_max_lr"].as_f64().unwrap(),
    );

    let dir = setup.path("plots");
    let files = names(&plot(&setup, &dir));
    assert_eq!(
        files,
        ["sweep.svg", "sweep.png", "traces.svg", "traces.png"],
        "no range-test plot for a coarse-to-fine sweep"
    );
    let sweep = svg_texts(&dir.join("sweep.svg"));
    for label in [
        format!("best {}", label::number(best)),
        format!("max stable {}", label::number(max_stable)),
        format!("cyclical {}", label::range(lo, hi)),
        "round 1: 150 steps".to_string(),
    ] {
        assert!(
            sweep.contains(&label),
            "`{label}` not in sweep.svg: {sweep:?}"
        );
    }
    let traces = svg_texts(&dir.join("traces.svg"));
    assert!(traces.iter().any(|t| t == "validation loss"), "{traces:?}");
    assert!(traces.iter().any(|t| t == "learning rate"), "{traces:?}");
    check_png(&dir.join("sweep.png"));
    check_png(&dir.join("traces.png"));

    let again = setup.path("plots-again");
    assert_eq!(names(&plot(&setup, &again)), files);
    same_bytes(&dir, &again, &files);

    let html = html_report(&setup);
    assert_eq!(html.matches("<svg").count(), 2, "sweep and traces inline");
    let sentence = format!("Use lr = {} (the best of", label::number(best));
    assert!(html.contains(&sentence), "no `{sentence}`");
    // A header and a row a round, a header and a row a trial.
    let trials = report["trials"].as_array().unwrap();
    let rounds: HashSet<u64> = trials
        .iter()
        .map(|t| t["round"].as_u64().unwrap())
        .collect();
    assert_eq!(
        html.matches("<tr>").count(),
        1 + rounds.len() + 1 + trials.len()
    );
}

#[test]
fn a_range_test_gets_its_own_plot_with_the_rates_read_from_its_curve() {
    let setup = Setup::new("view-range", RANGE_TEST);
    assert!(run_sweep(&setup, &[]), "the range test failed");
    let report = setup.report();
    let suggestions = &report["search"]["suggestions"];
    let max_stable = suggestions["max_stable_lr"].as_f64().expect("suggestions");

    let dir = setup.path("plots");
    let files = names(&plot(&setup, &dir));
    assert!(files.contains(&"range-test.svg".to_string()), "{files:?}");
    assert!(files.contains(&"range-test.png".to_string()), "{files:?}");
    assert!(files.contains(&"sweep.svg".to_string()) && files.contains(&"traces.svg".to_string()));
    let texts = svg_texts(&dir.join("range-test.svg"));
    let mut wanted = vec![format!("max stable {}", label::number(max_stable))];
    for name in ["steep", "valley"] {
        if let Some(lr) = suggestions[name]["lr"].as_f64() {
            wanted.push(format!("{name} {}", label::number(lr)));
        }
    }
    for label in wanted {
        assert!(
            texts.contains(&label),
            "`{label}` not in range-test.svg: {texts:?}"
        );
    }
    for f in &files {
        if f.ends_with(".png") {
            check_png(&dir.join(f));
        } else {
            svg_texts(&dir.join(f));
        }
    }
    let again = setup.path("plots-again");
    plot(&setup, &again);
    same_bytes(&dir, &again, &files);

    let html = html_report(&setup);
    assert!(
        html.contains("the valley of the range test"),
        "the sentence"
    );
    assert_eq!(
        html.matches("<svg").count(),
        2,
        "range test and traces inline"
    );
}

#[test]
fn a_sweep_whose_trials_all_failed_still_draws_and_shows_the_errors_escaped() {
    let setup = Setup::new("view-failed", "");
    // A file name with markup in it: the trials' errors name it, and the page must escape it.
    let missing: PathBuf = setup.path("<b>missing</b>&.csv");
    std::fs::write(
        &setup.spec,
        format!(
            r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-2
max_lr = 1.0
rounds = 1
steps = [50]

[trainer]
dataset = {{ kind = "csv", path = "{}", label = "y" }}
model = {{ kind = "softmax" }}
"#,
            missing.display()
        ),
    )
    .unwrap();
    assert!(
        !run_sweep(&setup, &["--max-attempts", "1"]),
        "nothing can be recommended"
    );

    let dir = setup.path("plots");
    let files = names(&plot(&setup, &dir));
    assert_eq!(files.len(), 4, "{files:?}");
    for f in &files {
        if f.ends_with(".svg") {
            let texts = svg_texts(&dir.join(f));
            assert!(!texts.iter().any(|t| t.starts_with("best ")), "{texts:?}");
        } else {
            check_png(&dir.join(f));
        }
    }

    let html = html_report(&setup);
    assert!(html.contains("No learning rate can be recommended"));
    assert!(html.contains("<table id=\"errors\">"));
    assert!(
        html.contains("&lt;b&gt;missing&lt;/b&gt;&amp;.csv"),
        "escaped"
    );
    assert!(!html.contains("<b>missing"), "unescaped database text");
    assert_eq!(html.matches("<svg").count(), 0, "empty plots are left out");
}

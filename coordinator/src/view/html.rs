//! The report as one self-contained HTML page: the recommendation in a sentence, the plots
//! inline as SVG, the rounds and the trials, the errors of failed trials. Nothing is fetched:
//! no script, no stylesheet, no font, no image from anywhere else, and no URL at all, so the
//! page reads the same offline. Every text from the database is escaped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::label::{number, range};
use super::source::StoredSweep;
use crate::report::{Report, TrialReport};
use crate::search::TrialStatus;
use crate::sweep::SweepStatus;

/// A plot as the page shows it.
pub struct Figure {
    pub caption: &'static str,
    pub svg: String,
}

const STYLE: &str = "
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
p.recommendation { font-size: 1.2em; background: #eef6ee; border-left: 4px solid #3a3; padding: 0.6em 1em; }
p.warning { background: #fbeeee; border-left: 4px solid #c33; padding: 0.6em 1em; }
figure { margin: 1em 0; }
figure svg { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; text-align: left; }
td.text { text-align: left; }
pre { white-space: pre-wrap; margin: 0; font-size: 0.9em; }
";

pub fn page(sweep: &StoredSweep, figures: &[Figure]) -> String {
    let report = &sweep.report;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>lrsweep {id}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>lrsweep: {id}</h1>\n",
        id = escape(&report.sweep_id)
    );
    let class = if report.recommendation.is_some() {
        "recommendation"
    } else {
        "warning"
    };
    let _ = writeln!(
        out,
        "<p class=\"{class}\">{}</p>",
        escape(&sentence(report, rates_tried(sweep)))
    );
    let _ = writeln!(
        out,
        "<p>Strategy {}; {} round{}; {} trials; {} training steps in all; outcome {}.</p>",
        escape(&strategy_name(sweep)),
        report.rounds,
        if report.rounds == 1 { "" } else { "s" },
        report.trials.len(),
        report.total_steps,
        report.outcome.as_str()
    );
    for figure in figures {
        let _ = writeln!(
            out,
            "<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>",
            inline_svg(&figure.svg),
            escape(figure.caption)
        );
    }
    rounds_table(&mut out, report);
    errors(&mut out, report);
    trials_table(&mut out, report);
    out.push_str("</body>\n</html>\n");
    out
}

/// The recommendation in one sentence, or why there is none.
pub fn sentence(report: &Report, rates: usize) -> String {
    let interrupted = report.outcome == SweepStatus::Interrupted;
    let Some(rec) = &report.recommendation else {
        return if interrupted {
            "The sweep was interrupted before any rate could be recommended.".to_string()
        } else {
            "No learning rate can be recommended: no trial trained without diverging or failing."
                .to_string()
        };
    };
    let why = if rec.valley_lr == Some(rec.best_lr) {
        "the valley of the range test's merged loss curve".to_string()
    } else {
        format!(
            "the best of {rates} rates, score {}",
            number(rec.best_score)
        )
    };
    let mut text = format!(
        "{}Use lr = {} ({why}); it trains stably up to {}; for a cyclical schedule use {}.",
        if interrupted {
            "The sweep was interrupted; so far: "
        } else {
            ""
        },
        number(rec.best_lr),
        number(rec.max_stable_lr),
        range(rec.suggested_min_lr, rec.suggested_max_lr)
    );
    if let Some(confidence) = &rec.confidence {
        let _ = write!(text, " Confidence: {}.", confidence.sentence());
    }
    if let Some(hd) = &rec.hypergradient {
        let _ = write!(
            text,
            " Started there, hypergradient descent {} the rate to {}.",
            if hd.diverged {
                "diverged, taking"
            } else {
                "took"
            },
            number(hd.final_lr)
        );
    }
    text
}

/// Distinct rates of the trials that have one (not a range test's ramps).
fn rates_tried(sweep: &StoredSweep) -> usize {
    let trials = sweep.report.trials.iter().filter(|t| !sweep.is_ramp(t));
    trials
        .map(|t| t.lr.to_bits())
        .collect::<BTreeSet<_>>()
        .len()
}

fn strategy_name(sweep: &StoredSweep) -> String {
    sweep.spec.search.strategy.name().to_string()
}

fn rounds_table(out: &mut String, report: &Report) {
    let mut rounds: BTreeMap<u32, Vec<&TrialReport>> = BTreeMap::new();
    for t in &report.trials {
        rounds.entry(t.round).or_default().push(t);
    }
    out.push_str(
        "<h2>Rounds</h2>\n<table id=\"rounds\">\n<tr><th>round</th><th>rates</th><th>trials</th>\
         <th>completed</th><th>pruned</th><th>cancelled</th><th>failed</th><th>steps</th>\
         <th>budget per trial</th></tr>\n",
    );
    for (round, trials) in rounds {
        let count = |s: TrialStatus| trials.iter().filter(|t| t.status == s).count();
        let rates: BTreeSet<u64> = trials.iter().map(|t| t.lr.to_bits()).collect();
        let budgets: BTreeSet<u64> = trials.iter().map(|t| t.budget).collect();
        let budgets: Vec<String> = budgets.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "<tr><td>{round}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            rates.len(),
            trials.len(),
            count(TrialStatus::Completed),
            count(TrialStatus::Pruned),
            count(TrialStatus::Cancelled),
            count(TrialStatus::Failed),
            trials.iter().map(|t| t.steps).sum::<u64>(),
            budgets.join(", ")
        );
    }
    out.push_str("</table>\n");
}

fn errors(out: &mut String, report: &Report) {
    let failed: Vec<&TrialReport> = report
        .trials
        .iter()
        .filter(|t| t.status == TrialStatus::Failed)
        .collect();
    if failed.is_empty() {
        return;
    }
    out.push_str(
        "<h2>Failed trials</h2>\n<table id=\"errors\">\n<tr><th>trial</th><th>round</th>\
         <th>lr</th><th>attempts</th><th>worker</th><th>error</th></tr>\n",
    );
    for t in failed {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"text\">{}</td>\
             <td class=\"text\"><pre>{}</pre></td></tr>",
            t.id,
            t.round,
            number(t.lr),
            t.attempts,
            escape(t.worker.as_deref().unwrap_or("")),
            escape(t.error.as_deref().unwrap_or("(no message)"))
        );
    }
    out.push_str("</table>\n");
}

fn trials_table(out: &mut String, report: &Report) {
    out.push_str(
        "<h2>Trials</h2>\n<table id=\"trials\">\n<tr><th>trial</th><th>round</th><th>lr</th>\
         <th>replicate</th><th>status</th><th>reason</th><th>steps</th><th>budget</th>\
         <th>final loss</th><th>worker</th><th>attempts</th></tr>\n",
    );
    for t in &report.trials {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td><td class=\"text\">{}</td>\
             <td class=\"text\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"text\">{}</td>\
             <td>{}</td></tr>",
            t.id,
            t.round,
            number(t.lr),
            t.subset.replicate + 1,
            t.subset.replicates,
            t.status.as_str(),
            t.prune_reason.unwrap_or(""),
            t.steps,
            t.budget,
            t.final_loss
                .map_or_else(|| "–".to_string(), |l| format!("{l:.4}")),
            escape(t.worker.as_deref().unwrap_or("")),
            t.attempts
        );
    }
    out.push_str("</table>\n");
}

/// An SVG file's text as an element of the page: HTML needs no namespace declaration, and the
/// page holds no URL.
fn inline_svg(svg: &str) -> String {
    svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
        .replacen("<svg ", "<svg role=\"img\" ", 1)
}

/// Text as HTML content or attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{HypergradientOutcome, Recommendation};

    fn report(recommendation: Option<Recommendation>, outcome: &str) -> Report {
        Report {
            sweep_id: "s".to_string(),
            outcome: SweepStatus::parse(outcome).expect("a sweep status"),
            recommendation,
            rounds: 1,
            total_steps: 0,
            trials: Vec::new(),
            search: serde_json::Value::Null,
        }
    }

    fn recommendation() -> Recommendation {
        Recommendation {
            best_lr: 0.012345,
            best_score: 0.08642,
            max_stable_lr: 0.31,
            suggested_min_lr: 0.0775,
            suggested_max_lr: 0.31,
            steep_lr: None,
            valley_lr: None,
            hypergradient: None,
            confidence: None,
        }
    }

    #[test]
    fn the_recommendation_in_a_sentence() {
        let text = sentence(&report(Some(recommendation()), "completed"), 27);
        assert_eq!(
            text,
            "Use lr = 0.0123 (the best of 27 rates, score 0.0864); it trains stably up to 0.31; \
             for a cyclical schedule use 0.0775–0.31."
        );
        let mut range_test = recommendation();
        range_test.valley_lr = Some(range_test.best_lr);
        let text = sentence(&report(Some(range_test), "completed"), 0);
        assert!(
            text.contains("(the valley of the range test's merged loss curve)"),
            "{text}"
        );
        let mut hd = recommendation();
        hd.hypergradient = Some(HypergradientOutcome {
            start_lr: hd.best_lr,
            final_lr: 0.05,
            final_loss: None,
            diverged: false,
        });
        let text = sentence(&report(Some(hd), "interrupted"), 3);
        assert!(text.starts_with("The sweep was interrupted; so far: Use lr = 0.0123"));
        assert!(
            text.ends_with("hypergradient descent took the rate to 0.05."),
            "{text}"
        );
    }

    #[test]
    fn no_recommendation_says_why() {
        assert!(sentence(&report(None, "completed"), 3).starts_with("No learning rate"));
        assert!(sentence(&report(None, "interrupted"), 3).contains("interrupted"));
    }

    #[test]
    fn database_text_is_escaped() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn an_inlined_svg_loses_its_namespace_url() {
        let svg = r#"<svg width="10" height="10" viewBox="0 0 10 10" xmlns="http://www.w3.org/2000/svg"><text>a</text></svg>"#;
        let inline = inline_svg(svg);
        assert!(!inline.contains("http"), "{inline}");
        assert!(
            inline.starts_with(r#"<svg role="img" width="10""#),
            "{inline}"
        );
    }
}

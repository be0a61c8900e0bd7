//! `sweep.svg`: the funnel. Every trial's score against its rate (log-log), a colour per round,
//! its mark telling how it ended (marks.rs); the best rate, the edge of stability and the
//! cyclical range drawn over it. Unstable rates sit on the top edge: their loss is no score.

use std::collections::BTreeMap;

use lrsweep_proto::domain::TracePoint;
use plotters::coord::Shift;
use plotters::element::{EmptyElement, Text};
use plotters::prelude::{DrawingArea, DrawingBackend};
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::annotate::{cyclical_band, rate_line, Place, Row, BEST, EDGE};
use super::canvas::{DrawResult, Plot};
use super::frame::{axes, chart, legend, legend_entry, text_style, GREY};
use super::label;
use super::marks::{marker, Ending};
use super::scale::{clamp, log_axis, log_range, round_colour};
use super::source::StoredSweep;
use crate::search::Recommendation;
use crate::CoordinatorError;

/// One trial's point.
struct Dot {
    lr: f64,
    score: Option<f64>,
    round: u32,
    ending: Ending,
}

pub struct SweepPlot {
    title: String,
    dots: Vec<Dot>,
    /// Each round's step budget, for the legend.
    budgets: BTreeMap<u32, u64>,
    recommendation: Option<Recommendation>,
    /// Said on the plot when no trial has a rate of its own (a range test alone).
    note: Option<&'static str>,
}

impl SweepPlot {
    pub fn new(sweep: &StoredSweep) -> Result<SweepPlot, CoordinatorError> {
        let report = &sweep.report;
        let trials = || report.trials.iter().filter(|t| !sweep.is_ramp(t));
        let mut dots = Vec::new();
        for t in trials() {
            let Some(ending) = Ending::of(t) else {
                continue;
            };
            // A stopped trial's final loss is its training loss, which would sit below every
            // validation score: it is shown at the validation loss it was judged on.
            let score = match ending {
                Ending::Stopped => last_validation_loss(&sweep.trace(t)?).or(t.final_loss),
                Ending::Completed | Ending::Unstable => t.final_loss,
            };
            dots.push(Dot {
                lr: t.lr,
                score,
                round: t.round,
                ending,
            });
        }
        let note = (dots.is_empty() && sweep.is_range_test())
            .then_some("a range test alone: its ramped runs are in range-test.svg");
        Ok(SweepPlot {
            title: format!("{}: score against learning rate", report.sweep_id),
            budgets: trials().map(|t| (t.round, t.budget)).collect(),
            dots,
            recommendation: report.recommendation,
            note,
        })
    }

    pub fn has_trials(&self) -> bool {
        !self.dots.is_empty()
    }

    fn marked_rates(&self) -> Vec<f64> {
        self.recommendation.map_or_else(Vec::new, |r| {
            vec![
                r.best_lr,
                r.max_stable_lr,
                r.suggested_min_lr,
                r.suggested_max_lr,
            ]
        })
    }
}

fn last_validation_loss(points: &[TracePoint]) -> Option<f64> {
    points.iter().rev().find_map(|p| p.val_loss)
}

impl Plot for SweepPlot {
    const NAME: &'static str = "sweep";

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let rates = self.dots.iter().map(|d| d.lr).chain(self.marked_rates());
        let (x0, x1) = log_range(rates, 1.6).unwrap_or((1e-7, 10.0));
        let scores = self
            .dots
            .iter()
            .filter(|d| d.ending != Ending::Unstable)
            .filter_map(|d| d.score);
        let y = log_range(scores, 1.15).unwrap_or((0.1, 10.0));
        let mut chart = chart(area, &self.title, log_axis((x0, x1)), log_axis(y))?;
        axes(&mut chart, "learning rate", "score (validation loss)")?;
        if let Some(rec) = &self.recommendation {
            // All labels at the top: the bottom is where the best scores are.
            cyclical_band(
                &mut chart,
                rec.suggested_min_lr,
                rec.suggested_max_lr,
                Row::Top(1),
            )?;
            rate_line(
                &mut chart,
                rec.max_stable_lr,
                format!("max stable {}", label::number(rec.max_stable_lr)),
                EDGE,
                Place {
                    row: Row::Top(2),
                    right: true,
                },
            )?;
            rate_line(
                &mut chart,
                rec.best_lr,
                format!("best {}", label::number(rec.best_lr)),
                BEST,
                Place {
                    row: Row::Top(0),
                    right: false,
                },
            )?;
        }
        for (&round, &budget) in &self.budgets {
            let colour = round_colour(round);
            let dots = self.dots.iter().filter(|d| d.round == round).map(|d| {
                // Unstable rates have no score to show: they go on the top edge.
                let score = match d.ending {
                    Ending::Unstable => f64::NAN,
                    _ => d.score.unwrap_or(f64::NAN),
                };
                (d.lr, clamp(score, y), d.ending)
            });
            chart
                .draw_series(dots.map(|(lr, s, ending)| marker(ending, (lr, s), colour)))?
                .label(format!("round {round}: {budget} steps"))
                .legend(move |at| marker(Ending::Completed, at, colour));
        }
        for ending in [Ending::Completed, Ending::Stopped, Ending::Unstable] {
            legend_entry(&mut chart, ending.legend().to_string(), move |at| {
                marker(ending, at, GREY)
            })?;
        }
        if let Some(note) = self.note {
            let pos = Pos::new(HPos::Center, VPos::Center);
            chart.draw_series(std::iter::once(
                EmptyElement::at(((x0 * x1).sqrt(), (y.0 * y.1).sqrt()))
                    + Text::new(note, (0, 0), text_style(16, GREY, pos)),
            ))?;
        }
        let placed: Vec<(f64, f64)> = self
            .dots
            .iter()
            .map(|d| (d.lr, clamp(d.score.unwrap_or(f64::NAN), y)))
            .collect();
        legend(&mut chart, placed.into_iter())
    }
}

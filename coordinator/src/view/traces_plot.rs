//! `traces.svg`: every trial's loss against step, coloured by its rate on one log scale (the
//! bar on the right). The line is the smoothed training loss the pruner judges (the same
//! debiased EMA), the dots the validation loss; a pruned trace ends in its mark (marks.rs).

use plotters::coord::Shift;
use plotters::element::{Circle, PathElement, Rectangle};
use plotters::prelude::{ChartBuilder, DrawingArea, DrawingBackend, LineSeries};
use plotters::style::{Color, RGBColor};

use super::canvas::{DrawResult, Plot, SIZE};
use super::font::FAMILY;
use super::frame::{axes, chart, legend, legend_entry, GREY};
use super::label;
use super::marks::{marker, Ending};
use super::scale::{clamp, log_axis, log_position, log_range, viridis};
use super::source::StoredSweep;
use super::thin::{thin, LINE_POINTS};
use crate::prune::TraceMonitor;
use crate::CoordinatorError;

/// A range test's ramped runs have no rate of their own on the colour scale.
const RAMP: RGBColor = RGBColor(31, 100, 180);
/// Width of the colour bar's area.
const BAR_WIDTH: u32 = 130;
/// The y axis ends at this multiple of the largest initial loss: a diverging trace would
/// otherwise squash every other into the bottom.
const TOP_OVER_INITIAL: f64 = 2.0;

struct Line {
    /// None for a range test's ramped run, whose rate rises every step.
    lr: Option<f64>,
    /// (step, smoothed training loss), thinned.
    train: Vec<(f64, f64)>,
    /// (step, validation loss), thinned.
    val: Vec<(f64, f64)>,
    /// How the trial ended; None for a trial without a result (failed, or unfinished).
    ending: Option<Ending>,
}

pub struct TracesPlot {
    title: String,
    lines: Vec<Line>,
    beta: f64,
}

impl TracesPlot {
    pub fn new(sweep: &StoredSweep) -> Result<TracesPlot, CoordinatorError> {
        let mut lines = Vec::new();
        for trial in &sweep.report.trials {
            let points = sweep.trace(trial)?;
            if points.is_empty() {
                continue;
            }
            let mut monitor = TraceMonitor::new(&sweep.spec.pruning);
            let mut train = Vec::with_capacity(points.len());
            for p in &points {
                monitor.observe(p);
                if let Some(s) = monitor.smoothed() {
                    train.push((p.step as f64, s));
                }
            }
            let val: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|p| Some((p.step as f64, p.val_loss?)))
                .collect();
            lines.push(Line {
                lr: (!sweep.is_ramp(trial)).then_some(trial.lr),
                train: thin(&train, LINE_POINTS),
                val: thin(&val, LINE_POINTS),
                ending: Ending::of(trial),
            });
        }
        Ok(TracesPlot {
            title: format!("{}: loss against step", sweep.report.sweep_id),
            lines,
            beta: sweep.spec.pruning.smoothing,
        })
    }

    pub fn has_lines(&self) -> bool {
        !self.lines.is_empty()
    }

    /// The loss axis: around every finite loss up to `TOP_OVER_INITIAL` × the largest first one.
    fn loss_range(&self) -> (f64, f64) {
        let initial = self
            .lines
            .iter()
            .filter_map(|l| l.train.first().map(|p| p.1))
            .filter(|v| v.is_finite())
            .fold(f64::NEG_INFINITY, f64::max);
        let cap = if initial > 0.0 {
            TOP_OVER_INITIAL * initial
        } else {
            f64::INFINITY
        };
        let losses = self
            .lines
            .iter()
            .flat_map(|l| l.train.iter().chain(&l.val).map(|p| p.1))
            .filter(|v| *v <= cap);
        log_range(losses, 1.1).unwrap_or((0.1, 10.0))
    }
}

impl Plot for TracesPlot {
    const NAME: &'static str = "traces";

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (main, bar) = area.split_horizontally(SIZE.0 - BAR_WIDTH);
        let rates = log_range(self.lines.iter().filter_map(|l| l.lr), 1.0);
        let colour = |lr: Option<f64>| match (lr, rates) {
            (Some(lr), Some(rates)) => viridis(log_position(lr, rates)),
            _ => RAMP,
        };
        let last_step = self
            .lines
            .iter()
            .filter_map(|l| l.train.last().map(|p| p.0))
            .fold(1.0, f64::max);
        let y = self.loss_range();
        let mut chart = chart(&main, &self.title, 0f64..last_step, log_axis(y))?;
        axes(&mut chart, "step", "loss")?;
        for line in &self.lines {
            let c = colour(line.lr);
            chart.draw_series(LineSeries::new(
                line.train.iter().map(|&(s, l)| (s, clamp(l, y))),
                c.mix(0.85).stroke_width(1),
            ))?;
            chart.draw_series(
                line.val
                    .iter()
                    .map(|&(s, l)| Circle::new((s, clamp(l, y)), 2, c.filled())),
            )?;
            let end = match (line.ending, line.train.last()) {
                (Some(Ending::Unstable), Some(&(s, _))) => Some((s, y.1, Ending::Unstable)),
                (Some(Ending::Stopped), Some(&(s, l))) => Some((s, clamp(l, y), Ending::Stopped)),
                _ => None,
            };
            if let Some((s, l, ending)) = end {
                chart.draw_series(std::iter::once(marker(ending, (s, l), c)))?;
            }
        }
        legend_entry(
            &mut chart,
            format!("smoothed training loss (EMA β = {})", self.beta),
            |(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], GREY),
        )?;
        legend_entry(&mut chart, "validation loss".to_string(), |at| {
            Circle::new(at, 2, GREY.filled())
        })?;
        for ending in [Ending::Stopped, Ending::Unstable] {
            legend_entry(&mut chart, ending.legend().to_string(), move |at| {
                marker(ending, at, GREY)
            })?;
        }
        if self.lines.iter().any(|l| l.lr.is_none()) {
            legend_entry(
                &mut chart,
                "range-test run (rate rising)".to_string(),
                |(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], RAMP),
            )?;
        }
        let drawn = self.lines.iter().flat_map(|l| l.train.iter().chain(&l.val));
        legend(&mut chart, drawn.map(|&(s, l)| (s, clamp(l, y))))?;
        match rates {
            Some(rates) => colour_bar(&bar, rates),
            None => Ok(()),
        }
    }
}

/// The rate scale: viridis from the smallest rate (bottom) to the largest (top).
fn colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rates: (f64, f64),
) -> DrawResult<DB> {
    const BANDS: usize = 100;
    let area = area.titled("learning rate", (FAMILY, 15))?;
    let mut chart = ChartBuilder::on(&area)
        .margin_top(16)
        .margin_bottom(60)
        .margin_left(10)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0f64..1f64, log_axis(rates))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_y_mesh()
        .disable_x_axis()
        .set_all_tick_mark_size(-6)
        .y_label_formatter(&|v| label::number(*v))
        .label_style((FAMILY, 13))
        .draw()?;
    let (lo, hi) = (rates.0.ln(), rates.1.ln());
    let at = |i: usize| (lo + (hi - lo) * i as f64 / BANDS as f64).exp();
    chart.draw_series((0..BANDS).map(|i| {
        let t = (i as f64 + 0.5) / BANDS as f64;
        Rectangle::new([(0.0, at(i)), (1.0, at(i + 1))], viridis(t).filled())
    }))?;
    Ok(())
}

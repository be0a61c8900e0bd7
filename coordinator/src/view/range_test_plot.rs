//! `range-test.svg`: fastai's lr_find plot for several shards. The merged smoothed loss against
//! the rate, the band between the shards' lowest and highest loss at each step, each shard's
//! run with a cross where it stopped, the steep, valley and max-stable rates and the cyclical
//! range. Read from the report's `search` value, as documented in the README.

use plotters::coord::Shift;
use plotters::element::{Circle, Cross, EmptyElement, PathElement, Polygon, Text};
use plotters::prelude::{DrawingArea, DrawingBackend, LineSeries};
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{Color, RGBColor};
use serde::Deserialize;

use super::annotate::{cyclical_band, rate_line, Place, Row, EDGE};
use super::canvas::{DrawResult, Plot};
use super::frame::{axes, chart, legend, legend_entry, text_style, GREY};
use super::label;
use super::scale::{clamp, linear_range, log_axis, log_range};
use super::source::StoredSweep;
use super::thin::{thin, LINE_POINTS};
use crate::CoordinatorError;

const MEAN: RGBColor = RGBColor(31, 100, 180);
const STEEP: RGBColor = RGBColor(230, 120, 20);
const VALLEY: RGBColor = RGBColor(40, 140, 60);
/// The loss axis ends at this multiple of the highest starting loss: the blow-up at the end of
/// the ramp would otherwise flatten the curve.
const TOP_OVER_START: f64 = 1.5;

#[derive(Deserialize)]
struct Search {
    merged: Vec<Merged>,
    shards: Vec<Vec<ShardPoint>>,
    suggestions: Option<Suggestions>,
}

#[derive(Clone, Deserialize)]
struct Merged {
    lr: f64,
    mean: f64,
    min: f64,
    max: f64,
}

/// A shard's smoothed loss is null in JSON where it was not finite.
#[derive(Clone, Deserialize)]
struct ShardPoint {
    lr: f64,
    smoothed: Option<f64>,
}

#[derive(Deserialize)]
struct Suggestions {
    steep: Option<At>,
    valley: Option<At>,
    max_stable_lr: f64,
    instability_reached: bool,
    suggested_min_lr: f64,
    suggested_max_lr: f64,
}

#[derive(Deserialize)]
struct At {
    lr: f64,
    loss: f64,
}

pub struct RangeTestPlot {
    title: String,
    search: Search,
}

impl RangeTestPlot {
    /// None for a sweep that is no range test or whose range test has not finished.
    pub fn new(sweep: &StoredSweep) -> Result<Option<RangeTestPlot>, CoordinatorError> {
        if !sweep.is_range_test() || sweep.report.search.is_null() {
            return Ok(None);
        }
        let mut search =
            Search::deserialize(&sweep.report.search).map_err(|e| CoordinatorError::Plot {
                plot: Self::NAME,
                reason: format!("the report's range test: {e}"),
            })?;
        search.merged = thin(&search.merged, LINE_POINTS);
        for shard in &mut search.shards {
            *shard = thin(shard, LINE_POINTS);
        }
        Ok(Some(RangeTestPlot {
            title: format!(
                "LR range test: {} shards, merged loss against learning rate",
                search.shards.len()
            ),
            search,
        }))
    }

    /// Around the band, up to `TOP_OVER_START` × the highest starting loss.
    fn loss_range(&self) -> (f64, f64) {
        let s = &self.search;
        let cap = s
            .merged
            .first()
            .map_or(f64::INFINITY, |p| TOP_OVER_START * p.max);
        let band = s.merged.iter().flat_map(|p| [p.min, p.max]);
        let shards = s.shards.iter().flatten().filter_map(|p| p.smoothed);
        let (lo, hi) =
            linear_range(band.chain(shards).filter(|v| *v <= cap), 0.04).unwrap_or((0.0, 1.0));
        (lo, hi)
    }
}

impl Plot for RangeTestPlot {
    const NAME: &'static str = "range-test";

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let s = &self.search;
        let rates = s
            .merged
            .iter()
            .map(|p| p.lr)
            .chain(s.shards.iter().flatten().map(|p| p.lr))
            .chain(
                s.suggestions
                    .iter()
                    .flat_map(|g| [g.max_stable_lr, g.suggested_min_lr, g.suggested_max_lr]),
            );
        let (x0, x1) = log_range(rates, 1.3).unwrap_or((1e-7, 10.0));
        let y = self.loss_range();
        let mut chart = chart(area, &self.title, log_axis((x0, x1)), y.0..y.1)?;
        axes(&mut chart, "learning rate", "smoothed training loss")?;

        if let Some(g) = &s.suggestions {
            cyclical_band(
                &mut chart,
                g.suggested_min_lr,
                g.suggested_max_lr,
                Row::Top(0),
            )?;
        }
        let band: Vec<(f64, f64)> = s
            .merged
            .iter()
            .map(|p| (p.lr, clamp(p.min, y)))
            .chain(s.merged.iter().rev().map(|p| (p.lr, clamp(p.max, y))))
            .collect();
        chart
            .draw_series(std::iter::once(Polygon::new(band, MEAN.mix(0.2).filled())))?
            .label("shards' min–max")
            .legend(|(x, y)| {
                plotters::element::Rectangle::new(
                    [(x - 8, y - 5), (x + 8, y + 5)],
                    MEAN.mix(0.2).filled(),
                )
            });
        for shard in &s.shards {
            let line = shard
                .iter()
                .map(|p| (p.lr, clamp(p.smoothed.unwrap_or(f64::NAN), y)));
            chart.draw_series(LineSeries::new(line, GREY.mix(0.5).stroke_width(1)))?;
            if let Some(end) = shard.last() {
                let at = (end.lr, clamp(end.smoothed.unwrap_or(f64::NAN), y));
                chart.draw_series(std::iter::once(Cross::new(at, 6, GREY.stroke_width(2))))?;
            }
        }
        legend_entry(&mut chart, "a shard's run".to_string(), |(x, y)| {
            PathElement::new(vec![(x - 8, y), (x + 8, y)], GREY.mix(0.5))
        })?;
        legend_entry(&mut chart, "where a run stopped".to_string(), |at| {
            Cross::new(at, 6, GREY.stroke_width(2))
        })?;
        chart
            .draw_series(LineSeries::new(
                s.merged.iter().map(|p| (p.lr, clamp(p.mean, y))),
                MEAN.stroke_width(3),
            ))?
            .label("merged smoothed loss (mean over shards)")
            .legend(|(x, y)| PathElement::new(vec![(x - 8, y), (x + 8, y)], MEAN.stroke_width(3)));

        let curve: Vec<(f64, f64)> = s
            .merged
            .iter()
            .flat_map(|p| [(p.lr, clamp(p.min, y)), (p.lr, clamp(p.max, y))])
            .collect();
        let Some(g) = &s.suggestions else {
            return legend(&mut chart, curve.into_iter());
        };
        rate_line(
            &mut chart,
            g.max_stable_lr,
            format!("max stable {}", label::number(g.max_stable_lr)),
            EDGE,
            Place {
                row: Row::Bottom,
                right: true,
            },
        )?;
        // Labels below and left of their point: under a falling curve nothing else is drawn.
        let pos = Pos::new(HPos::Right, VPos::Top);
        for (name, at, colour) in [("steep", &g.steep, STEEP), ("valley", &g.valley, VALLEY)] {
            let Some(at) = at else { continue };
            let point = (at.lr, clamp(at.loss, y));
            chart.draw_series(std::iter::once(
                EmptyElement::at(point)
                    + Circle::new((0, 0), 6, colour.filled())
                    + Text::new(
                        format!("{name} {}", label::number(at.lr)),
                        (-8, 8),
                        text_style(15, colour, pos),
                    ),
            ))?;
        }
        if !g.instability_reached {
            let note = "no run blew up within the ramp: max stable is only a lower bound";
            chart.draw_series(std::iter::once(
                EmptyElement::at((x0, y.1))
                    + Text::new(
                        note,
                        (10, 10),
                        text_style(15, EDGE, Pos::new(HPos::Left, VPos::Top)),
                    ),
            ))?;
        }
        legend(&mut chart, curve.into_iter())
    }
}

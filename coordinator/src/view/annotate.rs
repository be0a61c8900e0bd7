//! What the sweep and range-test plots both mark on a learning-rate axis: a rate as a
//! labelled vertical line, and the cyclical range as a labelled shaded band. Each label sits
//! beside its line in a row of its own, so that close rates do not print over each other.

use std::ops::Range;

use plotters::chart::ChartContext;
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::ranged1d::Ranged;
use plotters::element::{EmptyElement, Rectangle, Text};
use plotters::prelude::{DrawingBackend, LineSeries};
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{Color, RGBColor};

use super::canvas::DrawResult;
use super::frame::text_style;
use super::label;

/// Line colours: the best rate, the edge of stability, the cyclical range.
pub const BEST: RGBColor = RGBColor(20, 20, 20);
pub const EDGE: RGBColor = RGBColor(200, 30, 30);
pub const CYCLICAL: RGBColor = RGBColor(60, 160, 60);

/// Where a label goes: the `n`th text row from the top of the plot, or the bottom row; right
/// or left of its line, unless the text would run off the plot there.
#[derive(Clone, Copy)]
pub struct Place {
    pub row: Row,
    pub right: bool,
}

#[derive(Clone, Copy)]
pub enum Row {
    Top(i32),
    Bottom,
}

/// Pixels between a line and its label.
const GAP: i32 = 5;
const ROW_HEIGHT: i32 = 20;

/// A vertical line at rate `lr` labelled `text`.
pub fn rate_line<DB, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    lr: f64,
    text: String,
    colour: RGBColor,
    place: Place,
) -> DrawResult<DB>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let Range {
        start: bottom,
        end: top,
    } = chart.y_range();
    chart.draw_series(LineSeries::new(
        [(lr, bottom), (lr, top)],
        colour.stroke_width(2),
    ))?;
    label_line(chart, lr, text, colour, place)
}

/// The cyclical range `lo..hi` shaded across the plot, labelled beside `hi`.
pub fn cyclical_band<DB, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    lo: f64,
    hi: f64,
    row: Row,
) -> DrawResult<DB>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let Range {
        start: bottom,
        end: top,
    } = chart.y_range();
    chart.draw_series(std::iter::once(Rectangle::new(
        [(lo, bottom), (hi, top)],
        CYCLICAL.mix(0.12).filled(),
    )))?;
    let text = format!("cyclical {}", label::range(lo, hi));
    label_line(chart, hi, text, CYCLICAL, Place { row, right: false })
}

fn label_line<DB, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    lr: f64,
    text: String,
    colour: RGBColor,
    place: Place,
) -> DrawResult<DB>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let Range {
        start: bottom,
        end: top,
    } = chart.y_range();
    // The text's width in pixels against the room beside the line.
    let style = text_style(15, colour, Pos::new(HPos::Left, VPos::Top));
    let width = style.font.box_size(&text).map_or(0, |(w, _)| w as i32) + GAP;
    let x = chart.backend_coord(&(lr, top)).0;
    let Range {
        start: left,
        end: right,
    } = chart.plotting_area().get_pixel_range().0;
    let rightwards = if place.right {
        x + width <= right
    } else {
        x - width < left
    };
    let (dx, h) = if rightwards {
        (GAP, HPos::Left)
    } else {
        (-GAP, HPos::Right)
    };
    let (y, dy, v) = match place.row {
        Row::Top(n) => (top, GAP + ROW_HEIGHT * n, VPos::Top),
        Row::Bottom => (bottom, -GAP, VPos::Bottom),
    };
    chart.draw_series(std::iter::once(
        EmptyElement::at((lr, y)) + Text::new(text, (dx, dy), style.pos(Pos::new(h, v))),
    ))?;
    Ok(())
}

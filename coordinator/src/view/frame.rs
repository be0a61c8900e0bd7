//! The look every plot shares: title and margins, the axes with their labels, the legend box
//! and legend entries for marks that are not a series of their own.

use std::ops::Range;

use plotters::chart::{ChartContext, SeriesLabelPosition};
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::{CoordTranslate, Shift};
use plotters::drawing::DrawingAreaErrorKind;
use plotters::element::{Circle, IntoDynElement};
use plotters::prelude::{ChartBuilder, DrawingArea, DrawingBackend};
use plotters::style::text_anchor::Pos;
use plotters::style::{Color, IntoFont, RGBColor, TextStyle, BLACK, WHITE};

use super::canvas::DrawResult;
use super::font::FAMILY;
use super::label;

/// Marks in the legend that stand for no colour in particular.
pub const GREY: RGBColor = RGBColor(90, 90, 90);

/// The chart `chart` builds for axes `X` and `Y`.
pub type Chart<'a, DB, X, Y> = ChartContext<
    'a,
    DB,
    Cartesian2d<<X as AsRangedCoord>::CoordDescType, <Y as AsRangedCoord>::CoordDescType>,
>;

/// A titled chart on `area` with room for the axis labels.
pub fn chart<'a, DB: DrawingBackend, X: AsRangedCoord, Y: AsRangedCoord>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: X,
    y: Y,
) -> Result<Chart<'a, DB, X, Y>, DrawingAreaErrorKind<DB::ErrorType>> {
    ChartBuilder::on(area)
        .caption(title, (FAMILY, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
}

/// Axes, their descriptions and a faint grid at the labelled values.
pub fn axes<DB, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    x_desc: &str,
    y_desc: &str,
) -> DrawResult<DB>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|v| label::number(*v))
        .y_label_formatter(&|v| label::number(*v))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.08))
        .draw()
}

/// An entry in the legend drawn by `legend`, for a mark drawn outside any labelled series.
pub fn legend_entry<'a, DB, CT, E>(
    chart: &mut ChartContext<'a, DB, CT>,
    text: String,
    legend: impl Fn((i32, i32)) -> E + 'a,
) -> DrawResult<DB>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate<From = (f64, f64)>,
    E: IntoDynElement<'a, DB, (i32, i32)>,
{
    chart
        .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
        .label(text)
        .legend(legend);
    Ok(())
}

/// The legend of every labelled series, in the corner of the plot that covers the fewest of
/// `points` (data coordinates).
pub fn legend<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    points: impl Iterator<Item = (f64, f64)>,
) -> DrawResult<DB>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let pixels: Vec<(i32, i32)> = points.map(|p| chart.backend_coord(&p)).collect();
    let corner = emptiest_corner(&pixels, chart.plotting_area().get_pixel_range());
    chart
        .configure_series_labels()
        .position(corner)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
}

/// About the legend box's size in pixels, to count what it would cover.
const LEGEND_BOX: (i32, i32) = (330, 120);

/// The corner, of those the legend may take, whose legend-sized box holds the fewest `pixels`;
/// the first of equals in the order lower left, lower right, upper left. Not upper right: that
/// is where diverged rates and the labels of marked rates go.
fn emptiest_corner(pixels: &[(i32, i32)], (x, y): (Range<i32>, Range<i32>)) -> SeriesLabelPosition {
    let (w, h) = LEGEND_BOX;
    let corners = [
        (SeriesLabelPosition::LowerLeft, x.start, y.end - h),
        (SeriesLabelPosition::LowerRight, x.end - w, y.end - h),
        (SeriesLabelPosition::UpperLeft, x.start, y.start),
    ];
    let covered = |(left, top): (i32, i32)| {
        pixels
            .iter()
            .filter(|(px, py)| (left..left + w).contains(px) && (top..top + h).contains(py))
            .count()
    };
    corners
        .into_iter()
        .min_by_key(|&(_, left, top)| covered((left, top)))
        .map_or(SeriesLabelPosition::LowerLeft, |(corner, _, _)| corner)
}

pub fn text_style(size: u32, colour: RGBColor, pos: Pos) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&colour).pos(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corner(pixels: &[(i32, i32)]) -> SeriesLabelPosition {
        emptiest_corner(pixels, (0..1000, 0..600))
    }

    #[test]
    fn the_legend_goes_where_it_covers_the_fewest_points() {
        assert!(matches!(corner(&[]), SeriesLabelPosition::LowerLeft));
        let lower_left = [(10, 590), (100, 500)];
        assert!(matches!(
            corner(&lower_left),
            SeriesLabelPosition::LowerRight
        ));
        let both_lower = [(10, 590), (990, 590), (980, 500)];
        assert!(matches!(
            corner(&both_lower),
            SeriesLabelPosition::UpperLeft
        ));
        // Upper right is never chosen, even when every other corner is crowded.
        let crowded = [(10, 590), (990, 590), (10, 10)];
        assert!(!matches!(corner(&crowded), SeriesLabelPosition::UpperRight));
    }
}

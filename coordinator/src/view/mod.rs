//! Seeing a sweep, from the database alone: its plots as SVG and PNG files (`plot`), and the
//! report as one self-contained HTML page (`report --html`). The same database gives the same
//! bytes: nothing here reads a clock, and every order is the database's.

mod annotate;
mod canvas;
mod font;
mod frame;
pub mod html;
pub mod label;
mod marks;
mod range_test_plot;
mod scale;
pub mod source;
mod sweep_plot;
mod thin;
mod traces_plot;

use std::path::{Path, PathBuf};

use canvas::Plot;
use html::Figure;
use range_test_plot::RangeTestPlot;
use source::StoredSweep;
use sweep_plot::SweepPlot;
use traces_plot::TracesPlot;

use crate::CoordinatorError;

pub use canvas::SIZE;

/// Writes `sweep.svg/.png`, `traces.svg/.png` and, for a range test, `range-test.svg/.png`
/// into `dir` (created if missing); returns the files written.
pub fn write_plots(sweep: &StoredSweep, dir: &Path) -> Result<Vec<PathBuf>, CoordinatorError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CoordinatorError::io(format!("creating {}", dir.display()), e))?;
    let mut written = plot_files(&SweepPlot::new(sweep)?, dir)?;
    written.extend(plot_files(&TracesPlot::new(sweep)?, dir)?);
    if let Some(range_test) = RangeTestPlot::new(sweep)? {
        written.extend(plot_files(&range_test, dir)?);
    }
    Ok(written)
}

/// Writes the report of `sweep` as an HTML page to `path`.
pub fn write_html(sweep: &StoredSweep, path: &Path) -> Result<(), CoordinatorError> {
    let mut figures = Vec::new();
    if let Some(range_test) = RangeTestPlot::new(sweep)? {
        figures.push(figure(
            &range_test,
            "The range test: the merged smoothed loss against the rate, the shards' spread, \
             where each run stopped, and the rates read from the curve.",
        )?);
    }
    let sweep_plot = SweepPlot::new(sweep)?;
    // Empty plots are left out: a range test alone has no trial at a rate of its own (its plot
    // says it all), a sweep whose trials all failed has no trace.
    if sweep_plot.has_trials() {
        figures.push(figure(
            &sweep_plot,
            "Every trial's score against its rate, a colour per round: filled trained its \
             budget, hollow was stopped at a rung, crosses are unstable rates.",
        )?);
    }
    let traces = TracesPlot::new(sweep)?;
    if traces.has_lines() {
        figures.push(figure(
            &traces,
            "Every trial's loss against step, coloured by its rate.",
        )?);
    }
    write(path, html::page(sweep, &figures).as_bytes())
}

fn plot_files<P: Plot>(plot: &P, dir: &Path) -> Result<Vec<PathBuf>, CoordinatorError> {
    let svg = dir.join(format!("{}.svg", P::NAME));
    write(&svg, canvas::svg(plot)?.as_bytes())?;
    let png = dir.join(format!("{}.png", P::NAME));
    write(&png, &canvas::png(plot)?)?;
    Ok(vec![svg, png])
}

fn figure<P: Plot>(plot: &P, caption: &'static str) -> Result<Figure, CoordinatorError> {
    Ok(Figure {
        caption,
        svg: canvas::svg(plot)?,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CoordinatorError> {
    std::fs::write(path, bytes)
        .map_err(|e| CoordinatorError::io(format!("writing {}", path.display()), e))
}

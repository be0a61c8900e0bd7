//! Renders a plot twice, as SVG text and as a PNG, from one drawing routine generic over the
//! backend; encodes the PNG with fixed settings so the same plot gives the same bytes.

use plotters::coord::Shift;
use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::{BitMapBackend, DrawingArea, DrawingBackend, IntoDrawingArea, SVGBackend};
use plotters::style::WHITE;

use crate::CoordinatorError;

/// Width and height of every plot, in pixels.
pub const SIZE: (u32, u32) = (1000, 600);

/// What a drawing routine returns on any backend.
pub type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A plot: its file stem and how to draw it on a white `SIZE` area.
pub trait Plot {
    /// `sweep`, `traces`, `range-test`: the files are `NAME.svg` and `NAME.png`.
    const NAME: &'static str;
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

pub fn svg<P: Plot>(plot: &P) -> Result<String, CoordinatorError> {
    super::font::ensure_registered()?;
    let mut text = String::new();
    {
        let area = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        paint(plot, &area)?;
    }
    Ok(text)
}

pub fn png<P: Plot>(plot: &P) -> Result<Vec<u8>, CoordinatorError> {
    super::font::ensure_registered()?;
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        paint(plot, &area)?;
    }
    let mut bytes = Vec::new();
    let failed = |e: png::EncodingError| failed(P::NAME, e);
    let mut encoder = png::Encoder::new(&mut bytes, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(&rgb).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(bytes)
}

fn paint<P: Plot, DB: DrawingBackend>(
    plot: &P,
    area: &DrawingArea<DB, Shift>,
) -> Result<(), CoordinatorError> {
    area.fill(&WHITE)
        .and_then(|()| plot.draw(area))
        .and_then(|()| area.present())
        .map_err(|e| failed(P::NAME, e))
}

fn failed(plot: &'static str, e: impl std::fmt::Display) -> CoordinatorError {
    CoordinatorError::Plot {
        plot,
        reason: e.to_string(),
    }
}

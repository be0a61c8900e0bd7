//! The font every plot draws its text with, compiled into the binary: a server without
//! fontconfig or any installed font still gets labelled PNGs, and every machine draws the same
//! pixels. In SVG the text stays text (`<text>` elements), set in the viewer's sans-serif.

use std::sync::OnceLock;

use plotters::style::{register_font, FontStyle};

use crate::CoordinatorError;

/// DejaVu Sans (Bitstream Vera license: assets/fonts/LICENSE-DejaVu.txt).
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family the plots name; plotters' default for labels, so axes use it too.
pub const FAMILY: &str = "sans-serif";

/// Registers the bundled font under `FAMILY` (once per process; plotters keeps it globally).
pub fn ensure_registered() -> Result<(), CoordinatorError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    if *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, DEJAVU_SANS).is_ok()) {
        Ok(())
    } else {
        Err(CoordinatorError::Plot {
            plot: "font",
            reason: "the bundled font does not parse".to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_font_registers_and_measures_text() {
        ensure_registered().unwrap();
        let style = plotters::style::TextStyle::from((FAMILY, 20));
        let (w, h) = plotters::style::FontDesc::from((FAMILY, 20.0))
            .box_size("best 0.0123")
            .unwrap();
        assert!(w > 60 && h > 10, "{w}x{h}");
        assert_eq!(style.font.get_name(), FAMILY);
    }
}

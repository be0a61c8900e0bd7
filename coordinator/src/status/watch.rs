//! `status [--watch]`: prints the status once, or on a terminal redraws it every second until
//! the sweep is over (or Ctrl-C, which ends the process as usual).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use super::{open, read, render};
use crate::CoordinatorError;

const REDRAW_EVERY: Duration = Duration::from_secs(1);

/// Clears the screen and puts the cursor top left.
const CLEAR: &str = "\x1b[2J\x1b[H";

/// Prints the status of `sweep_id` (or the latest sweep) in `db`. With `redraw` and stdout a
/// terminal, keeps redrawing it until the sweep is over; otherwise prints it once.
pub fn watch(db: &Path, sweep_id: Option<&str>, redraw: bool) -> Result<(), CoordinatorError> {
    let store = open(db)?;
    let mut stdout = std::io::stdout();
    let redraw = redraw && stdout.is_terminal();
    loop {
        let status = read(&store, sweep_id)?;
        let text = render(&status);
        let shown = if redraw {
            write!(stdout, "{CLEAR}{text}")
        } else {
            write!(stdout, "{text}")
        };
        shown
            .and_then(|()| stdout.flush())
            .map_err(|e| CoordinatorError::io("writing the status", e))?;
        if !redraw || status.is_over() {
            return Ok(());
        }
        std::thread::sleep(REDRAW_EVERY);
    }
}

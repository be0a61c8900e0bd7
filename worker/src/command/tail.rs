//! The last lines a program wrote on one stream, kept for the message of a failed attempt so
//! that "CUDA out of memory" reaches the coordinator's log and report.

use std::collections::VecDeque;

/// Characters kept of one line.
const LINE_CHARS: usize = 300;

pub struct Tail {
    lines: VecDeque<String>,
    keep: usize,
}

impl Tail {
    pub fn new(keep: usize) -> Tail {
        Tail {
            lines: VecDeque::with_capacity(keep),
            keep,
        }
    }

    pub fn push(&mut self, line: &str) {
        if self.lines.len() == self.keep {
            self.lines.pop_front();
        }
        let mut kept: String = line.chars().take(LINE_CHARS).collect();
        if kept.len() < line.len() {
            kept.push('…');
        }
        self.lines.push_back(kept);
    }

    /// `; last lines of NAME:` and the lines, indented; empty when nothing was written.
    pub fn render(&self, name: &str) -> String {
        if self.lines.is_empty() {
            return String::new();
        }
        let mut out = format!("; last lines of {name}:");
        for line in &self.lines {
            out.push_str("\n  | ");
            out.push_str(line);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_cut_to_length() {
        let mut tail = Tail::new(2);
        assert_eq!(tail.render("stderr"), "");
        tail.push("one");
        tail.push("two");
        tail.push(&"é".repeat(400));
        let text = tail.render("stderr");
        assert!(
            text.starts_with("; last lines of stderr:\n  | two\n  | é"),
            "{text}"
        );
        assert!(!text.contains("one"));
        assert_eq!(
            text.lines().last().unwrap().chars().count(),
            4 + LINE_CHARS + 1
        );
    }
}

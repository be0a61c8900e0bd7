//! Lines from a program's stdout or stderr, each at most `max` bytes: a program that writes
//! without newlines (a progress bar, binary garbage) cannot make the worker buffer without
//! bound. A longer line keeps its first `max` bytes and is marked truncated.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// The line without its newline (and a trailing `\r`), invalid UTF-8 replaced.
    pub text: String,
    pub truncated: bool,
}

pub struct Lines<R> {
    reader: R,
    buf: Vec<u8>,
    max: usize,
    truncated: bool,
}

impl<R: AsyncBufRead + Unpin> Lines<R> {
    pub fn new(reader: R, max: usize) -> Lines<R> {
        Lines {
            reader,
            buf: Vec::new(),
            max,
            truncated: false,
        }
    }

    /// The next line; None at the end of the stream. Cancel-safe: a partial line stays
    /// buffered for the next call.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let chunk = self.reader.fill_buf().await?;
            if chunk.is_empty() {
                return Ok((!self.buf.is_empty() || self.truncated).then(|| self.take()));
            }
            let newline = chunk.iter().position(|&b| b == b'\n');
            let used = newline.map_or(chunk.len(), |i| i + 1);
            let content = &chunk[..newline.unwrap_or(chunk.len())];
            let room = self.max.saturating_sub(self.buf.len());
            self.truncated |= content.len() > room;
            self.buf
                .extend_from_slice(&content[..content.len().min(room)]);
            self.reader.consume(used);
            if newline.is_some() {
                return Ok(Some(self.take()));
            }
        }
    }

    fn take(&mut self) -> Line {
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let line = Line {
            text: String::from_utf8_lossy(&self.buf).into_owned(),
            truncated: self.truncated,
        };
        self.buf.clear();
        self.truncated = false;
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(input: &[u8], max: usize) -> Vec<Line> {
        // A tiny buffer: lines arrive split over many reads.
        let reader = tokio::io::BufReader::with_capacity(3, input);
        let mut lines = Lines::new(reader, max);
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            out.push(line);
        }
        out
    }

    fn line(text: &str, truncated: bool) -> Line {
        Line {
            text: text.into(),
            truncated,
        }
    }

    #[tokio::test]
    async fn splits_on_newlines_and_keeps_a_last_unterminated_line() {
        let got = all(b"one\r\ntwo\n\nthree", 100).await;
        assert_eq!(
            got,
            [
                line("one", false),
                line("two", false),
                line("", false),
                line("three", false)
            ]
        );
        assert!(all(b"", 100).await.is_empty());
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_marked() {
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\nshort\n\xff\xfe\n");
        let got = all(&input, 8).await;
        assert_eq!(got[0], line("xxxxxxxx", true));
        assert_eq!(got[1], line("short", false));
        assert_eq!(got[2], line("\u{fffd}\u{fffd}", false));
        assert_eq!(got.len(), 3);
    }
}

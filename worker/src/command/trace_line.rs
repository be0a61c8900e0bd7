//! One stdout line of a command trial: a trace point, or the program's own output.
//!
//! A trace point is a JSON object with a numeric `step` and `loss` (training loss), optionally
//! `val_loss` and `lr`; other keys are ignored. Numbers may use exponents, and `NaN`,
//! `Infinity` and `-Infinity` are accepted bare (as Python's json module writes them) or as
//! strings. Anything else is output. A JSON object whose `step`, `loss`, `val_loss` or `lr`
//! cannot be read is output too, but `Malformed` says why, so the user learns why a line they
//! meant as a point did not count.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinePoint {
    pub step: u64,
    pub loss: f64,
    pub val_loss: Option<f64>,
    /// The rate the program actually used, when it reports one.
    pub lr: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TraceLine {
    Point(LinePoint),
    Output,
    Malformed(String),
}

/// A JSON number, or a string holding one (`"NaN"`, `"Infinity"`, `"1e-3"`).
struct Num(f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
                Ok(Num(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                v.trim()
                    .parse()
                    .map(Num)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct Raw {
    step: Option<Num>,
    loss: Option<Num>,
    val_loss: Option<Num>,
    lr: Option<Num>,
}

/// Reads one line (without its newline).
pub fn parse(line: &str) -> TraceLine {
    let line = line.trim();
    if !line.starts_with('{') {
        return TraceLine::Output;
    }
    let first = match serde_json::from_str::<Raw>(line) {
        Ok(raw) => return classify(raw),
        Err(e) => e,
    };
    // Python's json module writes non-finite floats as bare NaN / Infinity, which JSON lacks.
    let quoted = quote_non_finite(line);
    let (text, error) = match &quoted {
        Some(text) => match serde_json::from_str::<Raw>(text) {
            Ok(raw) => return classify(raw),
            Err(e) => (text.as_str(), e),
        },
        None => (line, first),
    };
    match serde_json::from_str::<de::IgnoredAny>(text) {
        // A well-formed object whose fields have the wrong type.
        Ok(_) => TraceLine::Malformed(error.to_string()),
        Err(_) => TraceLine::Output,
    }
}

fn classify(raw: Raw) -> TraceLine {
    let (step, loss) = match (raw.step, raw.loss) {
        (Some(step), Some(loss)) => (step.0, loss.0),
        (None, None) => return TraceLine::Output,
        (Some(_), None) => return TraceLine::Malformed("has `step` but no `loss`".into()),
        (None, Some(_)) => return TraceLine::Malformed("has `loss` but no `step`".into()),
    };
    // Exactly representable whole numbers only: 2^53 steps is beyond any budget.
    if !(step >= 0.0 && step.fract() == 0.0 && step <= 9.0e15) {
        return TraceLine::Malformed(format!("`step` must be a whole number ≥ 0, not {step}"));
    }
    TraceLine::Point(LinePoint {
        step: step as u64,
        loss,
        val_loss: raw.val_loss.map(|v| v.0),
        lr: raw.lr.map(|v| v.0),
    })
}

/// The line with bare `NaN`, `Infinity` and `-Infinity` outside strings put in quotes; None if
/// it has none.
fn quote_non_finite(line: &str) -> Option<String> {
    const TOKENS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];
    let bytes = line.as_bytes();
    let mut out = String::new();
    let (mut i, mut copied) = (0, 0);
    let (mut in_string, mut escaped) = (false, false);
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        // Tokens start with an ASCII byte, so `i` is a char boundary whenever one matches.
        match TOKENS.iter().find(|t| bytes[i..].starts_with(t.as_bytes())) {
            Some(token) => {
                out.push_str(&line[copied..i]);
                out.push('"');
                out.push_str(token);
                out.push('"');
                i += token.len();
                copied = i;
            }
            None => i += 1,
        }
    }
    (copied > 0).then(|| {
        out.push_str(&line[copied..]);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(line: &str) -> LinePoint {
        match parse(line) {
            TraceLine::Point(p) => p,
            other => panic!("{line:?} is not a point: {other:?}"),
        }
    }

    #[test]
    fn points_with_every_number_form() {
        assert_eq!(
            point(r#"{"step": 3, "loss": 0.5}"#),
            LinePoint {
                step: 3,
                loss: 0.5,
                val_loss: None,
                lr: None
            }
        );
        let p = point(
            r#"  {"epoch": 1, "step": 10.0, "loss": 2.5E-3, "val_loss": 1e2, "lr": 3e-4, "extra": {"a": [1, "}"]}}  "#,
        );
        assert_eq!(
            (p.step, p.loss, p.val_loss, p.lr),
            (10, 2.5e-3, Some(100.0), Some(3e-4))
        );
        assert_eq!(point(r#"{"step": 1, "loss": 7}"#).loss, 7.0);
        assert_eq!(point(r#"{"step": 1, "loss": -7}"#).loss, -7.0);
        assert_eq!(
            point(r#"{"step": 1, "loss": 1, "val_loss": null}"#).val_loss,
            None
        );
    }

    #[test]
    fn non_finite_numbers_as_python_writes_them() {
        assert!(point(r#"{"step": 4, "loss": NaN}"#).loss.is_nan());
        assert_eq!(
            point(r#"{"step": 4, "loss": Infinity}"#).loss,
            f64::INFINITY
        );
        let p = point(r#"{"step": 4, "loss": -Infinity, "val_loss": NaN, "lr": 0.1}"#);
        assert_eq!(p.loss, f64::NEG_INFINITY);
        assert!(p.val_loss.unwrap().is_nan());
        assert!(point(r#"{"step": 4, "loss": "NaN"}"#).loss.is_nan());
        assert_eq!(point(r#"{"step": 4, "loss": "inf"}"#).loss, f64::INFINITY);
        // Inside strings the tokens are text, not numbers.
        let p = point(r#"{"note": "NaN Infinity \" NaN", "step": 5, "loss": NaN}"#);
        assert_eq!(p.step, 5);
    }

    #[test]
    fn everything_else_is_output() {
        for line in [
            "",
            "Epoch 1/10",
            "100%|██████████| 50/50 [00:01<00:00]",
            "{not json",
            "{\"step\": 1, \"loss\": 0.5",
            r#"{"epoch": 1, "acc": 0.9}"#,
            "[1, 2]",
            "\u{0}\u{1}garbage\u{fffd}",
            r#"{"msg": "NaN"}"#,
        ] {
            assert_eq!(parse(line), TraceLine::Output, "{line:?}");
        }
    }

    #[test]
    fn objects_meant_as_points_say_what_is_wrong() {
        let malformed = |line: &str| match parse(line) {
            TraceLine::Malformed(why) => why,
            other => panic!("{line:?}: {other:?}"),
        };
        assert!(malformed(r#"{"step": 1, "loss": "low"}"#).contains("low"));
        assert!(malformed(r#"{"step": 1}"#).contains("no `loss`"));
        assert!(malformed(r#"{"loss": 0.3}"#).contains("no `step`"));
        assert!(malformed(r#"{"step": 1.5, "loss": 0.3}"#).contains("whole number"));
        assert!(malformed(r#"{"step": -1, "loss": 0.3}"#).contains("whole number"));
        assert!(malformed(r#"{"step": 1, "loss": NaN, "val_loss": []}"#).contains("invalid type"));
    }
}

//! Placeholders in a command trainer's arguments and environment: `{lr}`, `{steps}`, … stand for
//! the trial's values; `{{` and `}}` are literal braces. Any other brace is literal too, so JSON
//! in an argument needs no escaping; but `{word}` must name a known placeholder, so a typo is a
//! spec error rather than a silently passed `{lerning_rate}`.

/// A value a trial hands its program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Placeholder {
    Lr,
    Steps,
    Seed,
    Trial,
    Attempt,
    Round,
    Replicate,
    Replicates,
    DataFraction,
    EvalEvery,
    Slot,
}

impl Placeholder {
    pub const ALL: [Placeholder; 11] = [
        Placeholder::Lr,
        Placeholder::Steps,
        Placeholder::Seed,
        Placeholder::Trial,
        Placeholder::Attempt,
        Placeholder::Round,
        Placeholder::Replicate,
        Placeholder::Replicates,
        Placeholder::DataFraction,
        Placeholder::EvalEvery,
        Placeholder::Slot,
    ];

    /// The name between the braces, and the key in the trial file.
    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Lr => "lr",
            Placeholder::Steps => "steps",
            Placeholder::Seed => "seed",
            Placeholder::Trial => "trial",
            Placeholder::Attempt => "attempt",
            Placeholder::Round => "round",
            Placeholder::Replicate => "replicate",
            Placeholder::Replicates => "replicates",
            Placeholder::DataFraction => "data_fraction",
            Placeholder::EvalEvery => "eval_every",
            Placeholder::Slot => "slot",
        }
    }

    /// The environment variable carrying the same value: `LRSWEEP_` and the name in capitals.
    pub fn env_var(self) -> String {
        format!("LRSWEEP_{}", self.name().to_ascii_uppercase())
    }

    pub fn from_name(name: &str) -> Option<Placeholder> {
        Placeholder::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A piece of a parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Value(Placeholder),
}

/// Splits `template` into literal text and placeholders; an unknown `{word}` is an error that
/// lists the known ones.
fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        out.push(Piece::Text(&rest[..open]));
        let tail = &rest[open..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push(Piece::Text(&tail[..1]));
            rest = &tail[2..];
            continue;
        }
        let word = tail[1..]
            .find('}')
            .map(|close| &tail[1..=close])
            .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        match (tail.starts_with('{'), word) {
            (true, Some(word)) => {
                let p = Placeholder::from_name(word).ok_or_else(|| {
                    let known: Vec<String> = Placeholder::ALL
                        .iter()
                        .map(|p| format!("{{{}}}", p.name()))
                        .collect();
                    format!(
                        "has an unknown placeholder `{{{word}}}` (known: {}; write {{{{ and }}}} \
                         for literal braces)",
                        known.join(", ")
                    )
                })?;
                out.push(Piece::Value(p));
                rest = &tail[word.len() + 2..];
            }
            _ => {
                out.push(Piece::Text(&tail[..1]));
                rest = &tail[1..];
            }
        }
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// Checks that every placeholder in `template` is known.
pub fn check_template(template: &str) -> Result<(), String> {
    pieces(template).map(|_| ())
}

/// `template` with every placeholder replaced by `value(placeholder)`.
pub fn expand(template: &str, value: &dyn Fn(Placeholder) -> String) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    for piece in pieces(template)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Value(p) => out.push_str(&value(p)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(p: Placeholder) -> String {
        match p {
            Placeholder::Lr => "0.001".into(),
            Placeholder::Steps => "300".into(),
            other => format!("<{}>", other.name()),
        }
    }

    #[test]
    fn placeholders_are_replaced_and_the_rest_kept() {
        let cases = [
            ("--lr={lr}", "--lr=0.001"),
            ("{lr}{steps}", "0.001300"),
            ("plain", "plain"),
            ("", ""),
            ("{{lr}}", "{lr}"),
            ("{{{lr}}}", "{0.001}"),
            (r#"{"a": 1}"#, r#"{"a": 1}"#),
            ("{", "{"),
            ("}", "}"),
            ("a{}b", "a{}b"),
            ("{lr", "{lr"),
            (
                "{data_fraction}/{eval_every}/{slot}",
                "<data_fraction>/<eval_every>/<slot>",
            ),
            ("é{lr}ü", "é0.001ü"),
        ];
        for (template, want) in cases {
            assert_eq!(expand(template, &values).unwrap(), want, "{template}");
        }
    }

    #[test]
    fn unknown_placeholders_are_refused_by_name() {
        let err = check_template("--lr {learning_rate}").unwrap_err();
        assert!(err.contains("`{learning_rate}`"), "{err}");
        assert!(err.contains("{lr}") && err.contains("{slot}"), "{err}");
        assert!(check_template("{LR}").is_err());
        for p in Placeholder::ALL {
            check_template(&format!("{{{}}}", p.name())).unwrap();
            assert_eq!(Placeholder::from_name(p.name()), Some(p));
        }
        assert_eq!(Placeholder::DataFraction.env_var(), "LRSWEEP_DATA_FRACTION");
    }
}

//! Numbers as the plots and the page print them: three significant digits, plain decimals
//! between 0.001 and 100,000 and scientific notation outside, trailing zeros dropped. The same
//! value always prints the same, so a label can be searched for in the files.

/// `0.0123`, `0.31`, `12.5`, `1.2e-5`, `3e-7`.
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN"
        } else if x > 0.0 {
            "inf"
        } else {
            "-inf"
        }
        .to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    // Round to three significant digits first, so 0.009999 is placed in the decade of 0.01.
    let rounded: f64 = format!("{x:.2e}").parse().unwrap_or(x);
    let exponent = rounded.abs().log10().floor() as i32;
    if (-3..5).contains(&exponent) {
        let decimals = (2 - exponent).max(0) as usize;
        trim_zeros(&format!("{rounded:.decimals$}")).to_string()
    } else {
        let text = format!("{rounded:.2e}");
        match text.split_once('e') {
            Some((mantissa, exp)) => format!("{}e{exp}", trim_zeros(mantissa)),
            None => text,
        }
    }
}

/// A range of rates: `0.078–0.31`.
pub fn range(lo: f64, hi: f64) -> String {
    format!("{}–{}", number(lo), number(hi))
}

fn trim_zeros(decimal: &str) -> &str {
    if decimal.contains('.') {
        decimal.trim_end_matches('0').trim_end_matches('.')
    } else {
        decimal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_significant_digits_plain_in_the_middle_scientific_outside() {
        let cases = [
            (0.0123456, "0.0123"),
            (0.31, "0.31"),
            (0.078125, "0.0781"),
            (12.5, "12.5"),
            (1.0, "1"),
            (1000.0, "1000"),
            (0.001, "0.001"),
            (0.009999, "0.01"),
            (1.234e-5, "1.23e-5"),
            (3e-7, "3e-7"),
            (12345.0, "12300"),
            (123456.0, "1.23e5"),
            (-0.5, "-0.5"),
            (0.0, "0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "inf"),
        ];
        for (x, want) in cases {
            assert_eq!(number(x), want, "{x}");
        }
    }

    #[test]
    fn a_range_joins_two_numbers_with_a_dash() {
        assert_eq!(range(0.078, 0.31), "0.078–0.31");
    }
}

//! Exact USD amounts: parsed from a JSON number's text, never through `f64`.
//!
//! An amount is an `i128` count of 10⁻¹⁸ dollars, which is exactly the value a
//! Parquet `DECIMAL(38,18)` column stores, so nothing is rounded between the API
//! answer and the file.

use std::fmt;

/// Digits after the decimal point that an amount keeps.
pub const SCALE: u32 = 18;
/// Total significant digits an amount may have (`DECIMAL(38,18)`).
pub const PRECISION: u32 = 38;

const ONE: i128 = 10i128.pow(SCALE);
const LIMIT: i128 = 10i128.pow(PRECISION);

/// An exact amount of money in units of 10⁻¹⁸.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i128);

/// Why a number's text is not an exact amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("`{0}` is not a decimal number")]
    NotANumber(String),
    #[error("`{0}` has non-zero digits beyond 18 decimal places")]
    TooPrecise(String),
    #[error("`{0}` does not fit in 38 digits")]
    TooLarge(String),
}

impl Money {
    pub const ZERO: Money = Money(0);

    /// The raw count of 10⁻¹⁸ units (the unscaled value of a `DECIMAL(38,18)`).
    pub fn units(self) -> i128 {
        self.0
    }

    pub fn from_units(units: i128) -> Option<Money> {
        (units.abs() < LIMIT).then_some(Money(units))
    }

    /// Parses JSON number text (`0.8106725`, `3e-7`, `-1.5E+2`) exactly.
    pub fn parse(text: &str) -> Result<Money, MoneyError> {
        let bad = || MoneyError::NotANumber(text.to_owned());
        let (negative, rest) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(at) => {
                let exp: i64 = rest[at + 1..].parse().map_err(|_| bad())?;
                (&rest[..at], exp)
            }
            None => (rest, 0),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int_part.is_empty() && frac_part.is_empty()
            || !all_digits(int_part)
            || !all_digits(frac_part)
        {
            return Err(bad());
        }
        // value = digits × 10^(exponent - frac_len); we want value × 10^SCALE.
        let shift = exponent
            .checked_sub(frac_part.len() as i64)
            .and_then(|e| e.checked_add(i64::from(SCALE)))
            .ok_or_else(|| MoneyError::TooLarge(text.to_owned()))?;
        let digits = int_part.bytes().chain(frac_part.bytes());
        let digits: Vec<u8> = digits
            .skip_while(|&b| b == b'0')
            .map(|b| b - b'0')
            .collect();
        let kept = if shift >= 0 {
            digits.as_slice()
        } else {
            let cut = digits.len().saturating_sub(shift.unsigned_abs() as usize);
            if digits[cut..].iter().any(|&d| d != 0) {
                return Err(MoneyError::TooPrecise(text.to_owned()));
            }
            &digits[..cut]
        };
        let too_large = || MoneyError::TooLarge(text.to_owned());
        let mut units: i128 = 0;
        for &d in kept {
            units = units
                .checked_mul(10)
                .and_then(|u| u.checked_add(i128::from(d)))
                .ok_or_else(too_large)?;
        }
        if shift > 0 && units != 0 {
            let power = u32::try_from(shift).map_err(|_| too_large())?;
            let factor = 10i128.checked_pow(power).ok_or_else(too_large)?;
            units = units.checked_mul(factor).ok_or_else(too_large)?;
        }
        if units >= LIMIT {
            return Err(too_large());
        }
        Ok(Money(if negative { -units } else { units }))
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).and_then(Money::from_units)
    }

    /// The nearest `f64`, for the `output.money = "float64"` mode.
    pub fn to_f64(self) -> f64 {
        // Parsing the exact decimal text gives the correctly rounded double.
        self.to_string().parse().unwrap_or(f64::NAN)
    }
}

/// Plain decimal text without exponent or trailing zeros: `0.0000003`, `12`, `-0.5`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let magnitude = self.0.unsigned_abs();
        let one = ONE.unsigned_abs();
        let (whole, frac) = (magnitude / one, magnitude % one);
        if frac == 0 {
            return write!(f, "{sign}{whole}");
        }
        let frac = format!("{frac:018}");
        write!(f, "{sign}{whole}.{}", frac.trim_end_matches('0'))
    }
}

/// Serialised as its exact decimal text, so JSON readers never see a float.
impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        Money::parse(s).unwrap().to_string()
    }

    #[test]
    fn keeps_every_digit_of_awkward_values() {
        assert_eq!(text("0.30000000000000004"), "0.30000000000000004");
        assert_eq!(text("3e-7"), "0.0000003");
        assert_eq!(text("2.5E-5"), "0.000025");
        assert_eq!(text("1.2345678901234567"), "1.2345678901234567");
        assert_eq!(text("0.8106725"), "0.8106725");
        assert_eq!(text("-1.5e+2"), "-150");
        assert_eq!(text("0"), "0");
        assert_eq!(text("0.000"), "0");
        assert_eq!(text("1e-18"), "0.000000000000000001");
        assert_eq!(Money::parse("3e-7").unwrap().units(), 300_000_000_000);
    }

    #[test]
    fn refuses_what_cannot_be_exact() {
        assert!(matches!(
            Money::parse("1e-19"),
            Err(MoneyError::TooPrecise(_))
        ));
        assert!(matches!(Money::parse("1e20"), Err(MoneyError::TooLarge(_))));
        assert!(matches!(
            Money::parse("1e999999999999"),
            Err(MoneyError::TooLarge(_))
        ));
        for bad in ["", "-", ".", "1.2.3", "abc", "1e", "0x10", "1,5", " 1"] {
            assert!(
                matches!(Money::parse(bad), Err(MoneyError::NotANumber(_))),
                "{bad:?}"
            );
        }
        // Trailing zeros beyond the scale are not precision.
        assert_eq!(text("1.0000000000000000000000"), "1");
    }

    #[test]
    fn sums_exactly_and_converts_to_nearest_double() {
        let a = Money::parse("0.1").unwrap();
        let b = Money::parse("0.2").unwrap();
        assert_eq!(a.checked_add(b).unwrap().to_string(), "0.3");
        assert_eq!(
            Money::parse("0.30000000000000004").unwrap().to_f64(),
            0.1 + 0.2
        );
    }
}

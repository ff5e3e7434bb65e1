//! Byte sizes written for people: `"512MiB"`, `"2GiB"`, `"1.5GB"`, `"4096"`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

/// Why a byte size could not be parsed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ByteSizeError {
    /// Nothing was given.
    #[error("empty size: expected e.g. \"512MiB\", \"2GiB\" or a number of bytes")]
    Empty,
    /// The number part was not a non-negative decimal number.
    #[error(
        "invalid size {0:?}: expected a number followed by B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
    )]
    BadNumber(String),
    /// The unit was not one of the known ones.
    #[error(
        "invalid size {input:?}: unknown unit {unit:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
    )]
    UnknownUnit {
        /// The whole text given.
        input: String,
        /// The unit part.
        unit: String,
    },
    /// The size does not fit in 64 bits.
    #[error("invalid size {0:?}: too large")]
    Overflow(String),
    /// The size works out to a fraction of a byte.
    #[error("invalid size {0:?}: not a whole number of bytes")]
    Fractional(String),
}

fn unit_factor(unit: &str) -> Option<u128> {
    const K: u128 = 1000;
    const KI: u128 = 1024;
    Some(match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => K,
        "mb" | "m" => K * K,
        "gb" | "g" => K * K * K,
        "tb" | "t" => K * K * K * K,
        "kib" => KI,
        "mib" => KI * KI,
        "gib" => KI * KI * KI,
        "tib" => KI * KI * KI * KI,
        _ => return None,
    })
}

/// Parses a byte size: a decimal number, optional spaces, and an optional
/// unit (case-insensitive). `KB`/`MB`/`GB`/`TB` are powers of 1000,
/// `KiB`/`MiB`/`GiB`/`TiB` powers of 1024, no unit or `B` is bytes.
///
/// Exact integer arithmetic: `"1.5GB"` is 1 500 000 000 and `"1.5KiB"` 1536;
/// a result with a fractional byte (`"0.5B"`) is rejected.
pub fn parse_bytes(text: &str) -> Result<u64, ByteSizeError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(ByteSizeError::Empty);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..split], s[split..].trim());
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits_ok = |d: &str| d.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || !digits_ok(whole) || !digits_ok(frac) || frac.len() > 18 {
        return Err(ByteSizeError::BadNumber(text.to_string()));
    }
    let factor = unit_factor(unit).ok_or_else(|| ByteSizeError::UnknownUnit {
        input: text.to_string(),
        unit: unit.to_string(),
    })?;
    let overflow = || ByteSizeError::Overflow(text.to_string());
    let whole: u128 = whole.parse().map_err(|_| overflow())?;
    let scale = 10u128.pow(frac.len() as u32);
    let frac: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| overflow())?
    };
    let frac_bytes = frac * factor;
    if !frac_bytes.is_multiple_of(scale) {
        return Err(ByteSizeError::Fractional(text.to_string()));
    }
    let total = whole
        .checked_mul(factor)
        .and_then(|w| w.checked_add(frac_bytes / scale))
        .ok_or_else(overflow)?;
    u64::try_from(total).map_err(|_| overflow())
}

/// Formats a byte count with the largest binary unit that divides it
/// exactly (`536870912` → `"512MiB"`, `1500` → `"1500B"`).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, size) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{name}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// Serde helper for `Option<u64>` byte sizes: accepts an integer number of
/// bytes or a string for [`parse_bytes`]; serializes as an integer.
pub mod opt_bytes {
    use super::*;

    /// Serializes `Some(n)` as the integer `n`.
    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_u64(*n),
            None => s.serialize_none(),
        }
    }

    /// Accepts an integer, or a string such as `"512MiB"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        d.deserialize_any(BytesVisitor).map(Some)
    }
}

struct BytesVisitor;

impl Visitor<'_> for BytesVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte size such as \"512MiB\", \"2GiB\" or a number of bytes")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        if v >= 0.0 && v.fract() == 0.0 && v < u64::MAX as f64 {
            Ok(v as u64)
        } else {
            Err(E::custom(format!(
                "invalid size {v}: expected a whole, non-negative number of bytes"
            )))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse_bytes(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_exactly() {
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("1.5KiB"), Ok(1536));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes(" 10 kb "), Ok(10_000));
        assert_eq!(parse_bytes("7B"), Ok(7));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes(""), Err(ByteSizeError::Empty));
        assert!(matches!(
            parse_bytes("12 parsecs"),
            Err(ByteSizeError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_bytes("-1MB"),
            Err(ByteSizeError::BadNumber(_))
        ));
        assert!(matches!(
            parse_bytes("1.2.3MB"),
            Err(ByteSizeError::BadNumber(_))
        ));
        assert!(matches!(
            parse_bytes("MB"),
            Err(ByteSizeError::BadNumber(_))
        ));
        assert!(matches!(
            parse_bytes("0.5B"),
            Err(ByteSizeError::Fractional(_))
        ));
        assert!(matches!(
            parse_bytes("99999999TiB"),
            Err(ByteSizeError::Overflow(_))
        ));
        assert_eq!(parse_bytes("16383TiB").map(|_| ()), Ok(()));
    }

    #[test]
    fn formats_with_the_largest_exact_unit() {
        assert_eq!(format_bytes(512 << 20), "512MiB");
        assert_eq!(format_bytes(3 << 30), "3GiB");
        assert_eq!(format_bytes(1536), "1536B");
        assert_eq!(format_bytes(0), "0B");
        for n in [1u64, 1024, 1 << 20, 5 << 40, 123_456_789] {
            assert_eq!(parse_bytes(&format_bytes(n)), Ok(n));
        }
    }
}

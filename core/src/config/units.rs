//! Value types with units that the config accepts as text: sizes (`8MiB`), durations
//! (`250ms`, `30s`) and prices (`0.15` USD, kept as integer micro-USD).

use std::{borrow::Cow, fmt, time::Duration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, de};

/// A size in bytes: an integer, or a number with a unit (`B`, `KB`, `KiB`, `MB`, `MiB`, `GB`, `GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let number: u64 = digits
            .parse()
            .map_err(|_| format!("invalid size {text:?}: expected e.g. 8MiB or 65536"))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            other => return Err(format!("invalid size unit {other:?} in {text:?}")),
        };
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match NumberOrText::deserialize(deserializer)? {
            NumberOrText::Integer(n) => Ok(ByteSize(n)),
            NumberOrText::Float(_) => Err(de::Error::custom("a size must be a whole number")),
            NumberOrText::Text(text) => ByteSize::parse(&text).map_err(de::Error::custom),
        }
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Bytes, or a number with a unit: B, KB, KiB, MB, MiB, GB, GiB.",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+\\s*(B|KB|kB|KiB|MB|MiB|GB|GiB)?\\s*$" }
            ]
        })
    }
}

/// A duration written as text: `250ms`, `30s`, `2m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationText(pub Duration);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim())
            .map(DurationText)
            .map_err(|e| {
                de::Error::custom(format!(
                    "invalid duration {text:?} ({e}): expected e.g. 500ms, 30s, 2m"
                ))
            })
    }
}

impl JsonSchema for DurationText {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration such as 500ms, 30s, 2m or 1h 30m.",
            "type": "string"
        })
    }
}

/// A price in USD written as a decimal number, held as integer micro-USD so that cost
/// arithmetic never rounds through floating point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub micro_usd: u64,
}

impl Price {
    /// Parses a non-negative decimal with at most six fractional digits.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || format!("invalid price {text:?}: expected a USD amount such as 0.15");
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        if whole.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > 6 {
            return Err(format!(
                "price {text:?} has more than six decimal places (the unit is one micro-USD)"
            ));
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let frac_micro: u64 = if frac.is_empty() {
            0
        } else {
            frac.parse::<u64>().map_err(|_| bad())? * 10u64.pow(6 - frac.len() as u32)
        };
        whole
            .checked_mul(1_000_000)
            .and_then(|w| w.checked_add(frac_micro))
            .map(|micro_usd| Price { micro_usd })
            .ok_or_else(|| format!("price {text:?} is too large"))
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}",
            self.micro_usd / 1_000_000,
            self.micro_usd % 1_000_000
        )
    }
}

impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = match NumberOrText::deserialize(deserializer)? {
            NumberOrText::Integer(n) => n.to_string(),
            // Rust prints the shortest text that reads back as the same f64, so 0.15 stays "0.15".
            NumberOrText::Float(x) if x.is_finite() && x >= 0.0 => x.to_string(),
            NumberOrText::Float(x) => return Err(de::Error::custom(format!("invalid price {x}"))),
            NumberOrText::Text(text) => text,
        };
        Price::parse(&text).map_err(de::Error::custom)
    }
}

impl JsonSchema for Price {
    fn schema_name() -> Cow<'static, str> {
        "PriceUsd".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "USD with at most six decimal places, e.g. 0.15.",
            "oneOf": [
                { "type": "number", "minimum": 0 },
                { "type": "string", "pattern": "^[0-9]*(\\.[0-9]{0,6})?$" }
            ]
        })
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Integer(u64),
    Float(f64),
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("8MiB"), Ok(ByteSize(8 << 20)));
        assert_eq!(ByteSize::parse("65536"), Ok(ByteSize(65536)));
        assert_eq!(ByteSize::parse("10 KB"), Ok(ByteSize(10_000)));
        assert!(ByteSize::parse("8 parsecs").is_err());
        assert!(ByteSize::parse("MiB").is_err());
    }

    #[test]
    fn prices_are_exact_micro_usd() {
        assert_eq!(Price::parse("0.15").map(|p| p.micro_usd), Ok(150_000));
        assert_eq!(Price::parse("2.5").map(|p| p.micro_usd), Ok(2_500_000));
        assert_eq!(Price::parse("10").map(|p| p.micro_usd), Ok(10_000_000));
        assert_eq!(Price::parse("0.000001").map(|p| p.micro_usd), Ok(1));
        assert!(Price::parse("0.0000001").is_err());
        assert!(Price::parse("-1").is_err());
        assert!(Price::parse(".").is_err());
        let p: Price = yaml_serde::from_str("0.15").unwrap();
        assert_eq!(p.micro_usd, 150_000);
        assert_eq!(p.to_string(), "0.150000");
    }
}

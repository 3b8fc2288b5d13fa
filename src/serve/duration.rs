//! The one duration grammar of every flag (`--deadline`, `--registry-timeout`,
//! `--reconcile-interval`, `--signature-cache-ttl`, `--shutdown-delay`, ...): `500ms`, `8s`,
//! `5m`, `1h`, or a bare number of seconds. One parser so that a value valid for one flag is
//! valid for all, and one printer so that messages show durations the way flags take them.
//!
//! Pure: no I/O and no other module of the crate, so that any layer (the registry's error
//! messages included) may use it.

use std::time::Duration;

/// Why a duration flag could not be read. The message names the text and the grammar.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number followed by a unit.
    #[error("{0:?} is not a duration (e.g. 500ms, 8s, 2m, 1h)")]
    Malformed(String),
    /// A unit other than `ms`, `s`, `m`, `h`.
    #[error("{text:?}: unknown unit {unit:?} (use ms, s, m or h)")]
    UnknownUnit {
        /// The whole text.
        text: String,
        /// The unit found.
        unit: String,
    },
    /// The value does not fit in a `Duration` of whole seconds (checked arithmetic).
    #[error("{0:?} is too long a duration")]
    Overflow(String),
}

/// Parses `500ms`, `8s`, `2m`, `1h`, or plain seconds (`45`). Surrounding white space is
/// ignored; signs, fractions and other units are refused; a value that overflows is refused.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| DurationError::Malformed(text.to_string()))?;
    let seconds_per: u64 = match unit {
        "ms" => return Ok(Duration::from_millis(value)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => {
            return Err(DurationError::UnknownUnit {
                text: text.to_string(),
                unit: unit.to_string(),
            });
        }
    };
    value
        .checked_mul(seconds_per)
        .map(Duration::from_secs)
        .ok_or_else(|| DurationError::Overflow(text.to_string()))
}

/// Prints a duration the way the flags take it: `8s` for whole seconds, else `1500ms`
/// (and `0ms` for zero).
pub fn format_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("8s"), Ok(Duration::from_secs(8)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration(" 45 "), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "m", "5x", "8d", "-1s", "1.5s", "soon"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("18446744073709551615h")
                .err()
                .map(|e| e.to_string()),
            Some("\"18446744073709551615h\" is too long a duration".to_string())
        );
    }

    #[test]
    fn durations_print_as_flags_take_them() {
        assert_eq!(format_duration(Duration::from_secs(8)), "8s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
        for text in ["8s", "1500ms", "250ms", "60s"] {
            assert_eq!(
                parse_duration(text).map(format_duration).as_deref(),
                Ok(text)
            );
        }
    }
}

//! Durations as users write them in manifests: Go/Kubernetes style (`90s`, `15m`, `1h30m`),
//! plus `d` for days, since key lifetimes are counted in days.

use std::time::Duration;

use thiserror::Error;

/// Why a duration string was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error(
    "'{input}' is not a duration: write a number and a unit (s, m, h, d), e.g. 30s, 15m, 1h30m or 90d"
)]
pub struct DurationError {
    pub input: String,
}

/// Parses `1h30m`, `90d`, `45s` into a [`Duration`]. Every component needs a unit; the total
/// must be positive.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: input.to_owned(),
    };
    let mut total: u64 = 0;
    let mut digits = String::new();
    for ch in input.trim().chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(err()),
        };
        let n: u64 = digits.parse().map_err(|_| err())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(err)?;
    }
    if !digits.is_empty() || total == 0 {
        return Err(err());
    }
    Ok(Duration::from_secs(total))
}

/// The shortest string [`parse_duration`] reads back as `d` (whole seconds).
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_and_days() {
        for (input, secs) in [
            ("30s", 30),
            ("15m", 900),
            ("1h30m", 5400),
            ("90d", 90 * 86_400),
            ("1d2h3m4s", 86_400 + 7200 + 180 + 4),
            (" 5m ", 300),
        ] {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_secs(secs)),
                "{input}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_positive_duration() {
        for input in [
            "",
            "0s",
            "10",
            "h",
            "1.5h",
            "-1h",
            "1w",
            "1h30",
            "99999999999999999999d",
        ] {
            assert_eq!(
                parse_duration(input),
                Err(DurationError {
                    input: input.to_owned()
                }),
                "{input:?}"
            );
        }
    }

    #[test]
    fn format_round_trips() {
        for secs in [1, 59, 60, 3600, 5400, 86_400, 90 * 86_400 + 1] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}

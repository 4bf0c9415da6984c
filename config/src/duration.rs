//! Signed durations such as `-3d`, `+90m`, `1y2d`, `1500ms`, as `--time-offset`
//! and `CAPSULE_TIME_OFFSET` take them.

const NS_PER_SEC: i128 = 1_000_000_000;

/// Units in the order a user would look for them; the longest suffix is tried first
/// so that `ms` is not read as `m` followed by garbage.
const UNITS: &[(&str, i128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", NS_PER_SEC),
    ("m", 60 * NS_PER_SEC),
    ("h", 3_600 * NS_PER_SEC),
    ("d", 86_400 * NS_PER_SEC),
    ("w", 7 * 86_400 * NS_PER_SEC),
    ("y", 365 * 86_400 * NS_PER_SEC),
];

/// Parses a signed duration into nanoseconds.
///
/// Grammar: an optional sign, then one or more `NUMBER UNIT` groups (`1d12h`), where
/// UNIT is one of `ns us ms s m h d w y` (a year is 365 days). A bare number means seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    let (negative, body) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    if body.is_empty() {
        return Err("empty duration".into());
    }
    if body.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i128 = body.parse().map_err(|_| "number too large".to_string())?;
        return finish(negative, secs * NS_PER_SEC);
    }
    let mut total: i128 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!("expected a number at '{rest}'"));
        }
        let value: i128 = rest[..digits]
            .parse()
            .map_err(|_| "number too large".to_string())?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..letters];
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| {
                if unit.is_empty() {
                    format!("missing unit after {value}")
                } else {
                    format!("unknown unit '{unit}'")
                }
            })?;
        total = value
            .checked_mul(scale)
            .and_then(|v| v.checked_add(total))
            .ok_or_else(|| "duration too large".to_string())?;
        rest = &rest[letters..];
    }
    finish(negative, total)
}

fn finish(negative: bool, magnitude: i128) -> Result<i64, String> {
    let signed = if negative { -magnitude } else { magnitude };
    i64::try_from(signed).map_err(|_| "duration too large".to_string())
}

/// Renders nanoseconds back in the form `parse_duration` reads exactly.
pub fn format_duration_ns(ns: i64) -> String {
    format!("{ns}ns")
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000_000;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("-3d"), Ok(-72 * H));
        assert_eq!(parse_duration("+90m"), Ok(90 * 60 * 1_000_000_000));
        assert_eq!(parse_duration("-1y"), Ok(-365 * 24 * H));
        assert_eq!(parse_duration("1d12h"), Ok(36 * H));
        assert_eq!(parse_duration("1500ms"), Ok(1_500_000_000));
        assert_eq!(parse_duration("42"), Ok(42_000_000_000));
        assert_eq!(parse_duration("2w"), Ok(14 * 24 * H));
        assert_eq!(parse_duration("-5ns"), Ok(-5));
    }

    #[test]
    fn refuses_malformed_durations() {
        for bad in [
            "",
            "-",
            "d",
            "3x",
            "3 d",
            "1d-2h",
            "abc",
            "1.5h",
            "99999999999y",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn format_round_trips() {
        for ns in [0, -1, 123_456_789_012, i64::MIN + 1, i64::MAX] {
            assert_eq!(parse_duration(&format_duration_ns(ns)), Ok(ns));
        }
    }
}

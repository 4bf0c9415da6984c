//! RFC 3339 timestamps (`2030-01-01T00:00:00Z`, `1999-12-31T23:59:59.5+02:00`) as
//! `--time-at` and `CAPSULE_TIME_AT` take them.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn number(text: &str, at: usize, len: usize, what: &str) -> Result<i64, String> {
    text.get(at..at + len)
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("expected {len}-digit {what} at position {}", at + 1))
}

fn expect(text: &str, at: usize, wanted: &[u8]) -> Result<(), String> {
    match text.as_bytes().get(at) {
        Some(b) if wanted.contains(b) => Ok(()),
        _ => Err(format!(
            "expected '{}' at position {}",
            wanted[0] as char,
            at + 1
        )),
    }
}

/// Parses an RFC 3339 date-time into nanoseconds since the Unix epoch.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let year = number(t, 0, 4, "year")?;
    expect(t, 4, b"-")?;
    let month = number(t, 5, 2, "month")?;
    expect(t, 7, b"-")?;
    let day = number(t, 8, 2, "day")?;
    expect(t, 10, b"Tt ")?;
    let hour = number(t, 11, 2, "hour")?;
    expect(t, 13, b":")?;
    let minute = number(t, 14, 2, "minute")?;
    expect(t, 16, b":")?;
    let second = number(t, 17, 2, "second")?;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} out of range"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(format!("day {day} out of range for {year}-{month:02}"));
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err("time of day out of range".into());
    }
    let mut pos = 19;
    let mut nanos: i64 = 0;
    if t.as_bytes().get(pos) == Some(&b'.') {
        let digits = t[pos + 1..]
            .bytes()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return Err("expected digits after '.'".into());
        }
        for (i, b) in t[pos + 1..pos + 1 + digits].bytes().enumerate() {
            if i < 9 {
                nanos = nanos * 10 + i64::from(b - b'0');
            }
        }
        for _ in digits..9 {
            nanos *= 10;
        }
        pos += 1 + digits;
    }
    let offset_secs = match t.as_bytes().get(pos) {
        Some(b'Z' | b'z') if pos + 1 == t.len() => 0,
        Some(&sign @ (b'+' | b'-')) if pos + 6 == t.len() => {
            let oh = number(t, pos + 1, 2, "offset hour")?;
            expect(t, pos + 3, b":")?;
            let om = number(t, pos + 4, 2, "offset minute")?;
            if oh > 23 || om > 59 {
                return Err("time zone offset out of range".into());
            }
            let secs = oh * 3600 + om * 60;
            if sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        _ => {
            return Err(format!(
                "expected 'Z' or a '+HH:MM' offset at position {}",
                pos + 1
            ))
        }
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    secs.checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(nanos))
        .ok_or_else(|| "date out of range".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339("2030-01-01T00:00:00Z"),
            Ok(1_893_456_000_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T12:00:00.5+02:00"),
            Ok((951_825_600 - 7_200) * 1_000_000_000 + 500_000_000)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Ok(-1_000_000_000));
        assert_eq!(
            parse_rfc3339("2024-06-01 10:00:00-05:30"),
            Ok((1_717_236_000 + 19_800) * 1_000_000_000)
        );
    }

    #[test]
    fn refuses_malformed_dates() {
        for bad in [
            "",
            "2030-01-01",
            "2030-13-01T00:00:00Z",
            "2031-02-29T00:00:00Z",
            "2030-01-01T25:00:00Z",
            "2030-01-01T00:00:00",
            "2030-01-01T00:00:00+0200",
            "2030-01-01T00:00:00.Z",
            "yesterday",
            "2030-01-01T00:00:00Zjunk",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} was accepted");
        }
    }
}

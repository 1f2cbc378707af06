//! A small parser for the timestamps Windows event exports print.

/// Parses a timestamp to milliseconds since the Unix epoch (UTC).
///
/// Accepts RFC 3339 (`2025-10-24T23:34:34.640670Z`, `2025-10-24T23:34:34+02:00`) and the forms Sysmon
/// and evtx tools print (`2025-10-24 23:34:34.634`, `2025-10-24 23:34:34.640670 UTC`): a date, `T` or
/// a space, `HH:MM`, optional `:SS`, an optional fraction (`.` or `,`, any number of digits, cut to
/// milliseconds), then an optional zone: `Z`, `UTC`, `+HH:MM`, `-HH:MM`, `+HHMM` or `+HH`. A time
/// without a zone is taken as UTC. Returns `None` for anything else, for impossible dates (February
/// 30th) and for times before 1970.
pub fn parse_timestamp_ms(text: &str) -> Option<u64> {
    let mut c = Cursor {
        s: text.trim().as_bytes(),
        i: 0,
    };
    let year = c.digits(4)?;
    c.expect(b'-')?;
    let month = c.digits(2)?;
    c.expect(b'-')?;
    let day = c.digits(2)?;
    if !matches!(c.next()?, b'T' | b't' | b' ') {
        return None;
    }
    let hour = c.digits(2)?;
    c.expect(b':')?;
    let minute = c.digits(2)?;
    let mut second = 0;
    let mut millis = 0;
    if c.peek() == Some(b':') {
        c.i += 1;
        second = c.digits(2)?;
        if matches!(c.peek(), Some(b'.' | b',')) {
            c.i += 1;
            let mut n = 0;
            while let Some(d) = c.peek().filter(u8::is_ascii_digit) {
                if n < 3 {
                    millis = millis * 10 + i64::from(d - b'0');
                }
                n += 1;
                c.i += 1;
            }
            if n == 0 {
                return None;
            }
            for _ in n..3 {
                millis *= 10;
            }
        }
    }
    let offset_minutes = zone(&mut c)?;
    if c.i != c.s.len() {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    u64::try_from(seconds * 1_000 + millis).ok()
}

/// The zone suffix, as minutes east of UTC.
fn zone(c: &mut Cursor<'_>) -> Option<i64> {
    // `2025-10-24 23:34:34 UTC`
    if c.peek() == Some(b' ') {
        c.i += 1;
    }
    match c.peek() {
        None => Some(0),
        Some(b'Z' | b'z') => {
            c.i += 1;
            Some(0)
        }
        Some(b'U') => {
            c.expect(b'U')?;
            c.expect(b'T')?;
            c.expect(b'C')?;
            Some(0)
        }
        Some(sign @ (b'+' | b'-')) => {
            c.i += 1;
            let hours = c.digits(2)?;
            let minutes = match c.peek() {
                Some(b':') => {
                    c.i += 1;
                    c.digits(2)?
                }
                Some(_) => c.digits(2)?,
                None => 0,
            };
            if hours > 23 || minutes > 59 {
                return None;
            }
            let total = hours * 60 + minutes;
            Some(if sign == b'-' { -total } else { total })
        }
        Some(_) => None,
    }
}

/// Days in `month` of `year` (proleptic Gregorian).
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A position in the text being parsed.
struct Cursor<'s> {
    s: &'s [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// Exactly `n` ASCII digits, as a number.
    fn digits(&mut self, n: usize) -> Option<i64> {
        let mut value = 0;
        for _ in 0..n {
            let d = self.next().filter(u8::is_ascii_digit)?;
            value = value * 10 + i64::from(d - b'0');
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse_timestamp_ms("1970-01-01T00:00:00Z"), Some(0));
        // date -u -d '2025-10-24T23:34:34.640670Z' +%s%3N
        assert_eq!(
            parse_timestamp_ms("2025-10-24T23:34:34.640670Z"),
            Some(1_761_348_874_640)
        );
        assert_eq!(
            parse_timestamp_ms("2025-10-24 23:34:34.640"),
            Some(1_761_348_874_640)
        );
        assert_eq!(
            parse_timestamp_ms("2025-10-24 23:34:34.640670 UTC"),
            Some(1_761_348_874_640)
        );
        assert_eq!(
            parse_timestamp_ms("2025-10-25T01:34:34.64+02:00"),
            Some(1_761_348_874_640)
        );
        assert_eq!(
            parse_timestamp_ms("2025-10-24T18:34:34,6-0500"),
            Some(1_761_348_874_600)
        );
        assert_eq!(
            parse_timestamp_ms("2025-10-24T23:34"),
            Some(1_761_348_840_000)
        );
        // Leap day, and the end of a leap year.
        assert_eq!(
            parse_timestamp_ms("2024-02-29T12:00:00Z"),
            Some(1_709_208_000_000)
        );
        assert_eq!(
            parse_timestamp_ms("2000-12-31T23:59:59.999Z"),
            Some(978_307_199_999)
        );
    }

    #[test]
    fn rejects_garbage_and_impossible_dates() {
        for bad in [
            "",
            "yesterday",
            "2025-10-24",
            "2025-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2025-04-31T00:00:00Z",
            "2025-10-24T24:00:00Z",
            "2025-10-24T23:60:00Z",
            "2025-10-24T23:34:34.Z",
            "2025-10-24T23:34:34Zjunk",
            "2025-10-24T23:34:34+2",
            "1969-12-31T23:59:59Z",
            "20251024T233434Z",
        ] {
            assert_eq!(parse_timestamp_ms(bad), None, "{bad:?} must not parse");
        }
    }
}

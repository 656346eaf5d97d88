//! Loan date parsing: a hand-written ISO 8601 fast path and jiff's strptime.
//!
//! A loan counts on a calendar day. A field without a UTC offset (a plain
//! date, `2024-05-03 14:22:10` as Koha writes it) is already on the
//! circulation system's local calendar and keeps its day as written. A field
//! with an offset (`2024-05-03T14:22:10.123+02:00` as FOLIO writes it,
//! `2024-05-03 14:22:10-04` as PostgreSQL prints an Evergreen `timestamptz`)
//! names an instant, which counts on its day in the configured time zone.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{Offset, TimeZone};

/// How loan dates are written in the source, and the zone instants count in.
#[derive(Debug, Clone)]
pub(crate) struct DateParser {
    kind: Kind,
    zone: TimeZone,
}

#[derive(Debug, Clone)]
enum Kind {
    /// `YYYY-MM-DD`, optionally followed by a time and a UTC offset.
    Iso,
    /// A jiff strptime pattern such as `%d.%m.%Y`.
    Pattern(String),
}

impl DateParser {
    /// The parser for a configured `date_format` (`"iso"` or a pattern);
    /// instants count on their day in `zone`.
    pub(crate) fn new(format: &str, zone: TimeZone) -> Self {
        let kind = if format.trim().eq_ignore_ascii_case("iso") {
            Kind::Iso
        } else {
            Kind::Pattern(format.to_owned())
        };
        DateParser { kind, zone }
    }

    /// The calendar day of a trimmed, non-empty field, if it is one.
    pub(crate) fn parse(&self, field: &str) -> Option<Date> {
        match &self.kind {
            Kind::Iso => match parse_iso(field.as_bytes())? {
                Iso::Day(day) => Some(day),
                Iso::Instant(dt, offset) => Some(self.day_of(offset.to_timestamp(dt).ok()?)),
            },
            Kind::Pattern(pattern) => {
                let tm = jiff::fmt::strtime::parse(pattern, field).ok()?;
                if (tm.offset().is_some() || tm.timestamp().is_some())
                    && let Ok(ts) = tm.to_timestamp()
                {
                    return Some(self.day_of(ts));
                }
                tm.to_date().ok()
            }
        }
    }

    /// The local day of an instant.
    pub(crate) fn day_of(&self, ts: jiff::Timestamp) -> Date {
        self.zone.to_datetime(ts).date()
    }
}

/// What an ISO field names.
enum Iso {
    /// A day on the local calendar.
    Day(Date),
    /// A local date-time at a UTC offset.
    Instant(DateTime, Offset),
}

fn digits(d: &[u8]) -> Option<i32> {
    d.iter().try_fold(0i32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i32::from(b - b'0'))
    })
}

/// `YYYY-MM-DD`, then optionally `T`, `t` or a space, `HH:MM`, optional
/// `:SS`, an optional fraction of 1 to 9 digits, and an optional offset (`Z`,
/// `±HH`, `±HHMM` or `±HH:MM`).
fn parse_iso(b: &[u8]) -> Option<Iso> {
    let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1, rest @ ..] = b else {
        return None;
    };
    let date = Date::new(
        i16::try_from(digits(&[*y0, *y1, *y2, *y3])?).ok()?,
        i8::try_from(digits(&[*m0, *m1])?).ok()?,
        i8::try_from(digits(&[*d0, *d1])?).ok()?,
    )
    .ok()?;
    let [sep, h0, h1, b':', n0, n1, rest @ ..] = rest else {
        return rest.is_empty().then_some(Iso::Day(date));
    };
    if !matches!(sep, b'T' | b't' | b' ') {
        return None;
    }
    let hour = digits(&[*h0, *h1])?;
    let minute = digits(&[*n0, *n1])?;
    let (second, rest) = match rest {
        [b':', s0, s1, rest @ ..] => (digits(&[*s0, *s1])?, rest),
        _ => (0, rest),
    };
    let (nanos, rest) = match rest {
        [b'.' | b',', rest @ ..] => {
            let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if !(1..=9).contains(&n) {
                return None;
            }
            let (frac, rest) = rest.split_at(n);
            (digits(frac)? * 10i32.pow(9 - n as u32), rest)
        }
        _ => (0, rest),
    };
    // A leap second counts on the day it ends.
    let time = Time::new(
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second.min(59)).ok()?,
        nanos,
    )
    .ok()?;
    let dt = date.to_datetime(time);
    let seconds = match rest {
        [] => return Some(Iso::Day(date)),
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), offset @ ..] => {
            let (h, m) = match offset {
                [h0, h1] => (digits(&[*h0, *h1])?, 0),
                [h0, h1, m0, m1] | [h0, h1, b':', m0, m1] => {
                    (digits(&[*h0, *h1])?, digits(&[*m0, *m1])?)
                }
                _ => return None,
            };
            if h > 23 || m > 59 {
                return None;
            }
            let s = h * 3600 + m * 60;
            if *sign == b'-' { -s } else { s }
        }
        _ => return None,
    };
    Some(Iso::Instant(dt, Offset::from_seconds(seconds).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn iso(tz: &str) -> DateParser {
        DateParser::new("iso", zone(tz))
    }

    #[test]
    fn iso_accepts_dates_and_local_date_times_as_written() {
        let p = iso("Europe/Copenhagen");
        assert_eq!(p.parse("2024-02-29"), Some(date(2024, 2, 29)));
        assert_eq!(p.parse("2024-02-29 10:00"), Some(date(2024, 2, 29)));
        assert_eq!(p.parse("2024-02-29T23:59:59"), Some(date(2024, 2, 29)));
        assert_eq!(
            p.parse("2024-02-29 23:59:59.999999"),
            Some(date(2024, 2, 29))
        );
        assert_eq!(p.parse("2016-12-31T23:59:60"), Some(date(2016, 12, 31)));
    }

    #[test]
    fn iso_instants_count_on_their_local_day() {
        let cph = iso("Europe/Copenhagen");
        // 22:30 UTC is 00:30 the next day in Copenhagen (summer time, +02:00).
        assert_eq!(cph.parse("2024-05-31T22:30:00Z"), Some(date(2024, 6, 1)));
        assert_eq!(
            cph.parse("2024-05-31T22:30:00Z"),
            cph.parse("2024-06-01T00:30:00+02:00")
        );
        assert_eq!(
            cph.parse("2024-05-03T14:22:10.123+02:00"),
            Some(date(2024, 5, 3))
        );
        assert_eq!(cph.parse("2024-02-29t10:00+02:00"), Some(date(2024, 2, 29)));
        let utc = iso("UTC");
        assert_eq!(utc.parse("2024-05-31T22:30:00Z"), Some(date(2024, 5, 31)));
        assert_eq!(
            utc.parse("2024-06-01T00:30:00+0200"),
            Some(date(2024, 5, 31))
        );
        let ny = iso("America/New_York");
        assert_eq!(ny.parse("2024-06-01T01:00:00Z"), Some(date(2024, 5, 31)));
    }

    #[test]
    fn koha_evergreen_and_folio_timestamps() {
        let p = iso("Europe/Copenhagen");
        // Koha: MySQL DATETIME columns (issuedate, timestamp), local time.
        assert_eq!(p.parse("2024-05-31 23:59:59"), Some(date(2024, 5, 31)));
        // Evergreen: PostgreSQL timestamptz as psql prints it, offset in hours.
        assert_eq!(p.parse("2024-05-31 18:30:00-04"), Some(date(2024, 6, 1)));
        assert_eq!(
            p.parse("2024-05-31 16:30:00.123456-04"),
            Some(date(2024, 5, 31))
        );
        assert_eq!(p.parse("2024-05-31 22:30:00+00"), Some(date(2024, 6, 1)));
        // FOLIO: loan dates in UTC, milliseconds and +00:00 or Z.
        assert_eq!(
            p.parse("2024-05-31T22:30:00.000+00:00"),
            Some(date(2024, 6, 1))
        );
        assert_eq!(p.parse("2024-05-31T21:59:59.999Z"), Some(date(2024, 5, 31)));
    }

    #[test]
    fn iso_rejects_malformed_and_impossible_dates() {
        let p = iso("UTC");
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-01-32",
            "2024-1-05",
            "2024/01/05",
            "24-01-05",
            "2024-01-05X",
            "2024-01-05T",
            "2024-01-05 garbage",
            "2024-01-05T25:00",
            "2024-01-05T10:60",
            "2024-01-05T10:00:00.",
            "2024-01-05T10:00:00.1234567891",
            "2024-01-05T10:00:00+2",
            "2024-01-05T10:00:00+24:00",
            "2024-01-05T10:00:00 +02:00",
            "2024-01-05T10:00:00Zx",
            "2024-01-0",
            "２０２４-01-05",
            "",
        ] {
            assert_eq!(p.parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn pattern_uses_strptime_and_needs_the_whole_field() {
        let p = DateParser::new("%d.%m.%Y", TimeZone::UTC);
        assert_eq!(p.parse("05.01.2024"), Some(date(2024, 1, 5)));
        assert_eq!(p.parse("31.02.2024"), None);
        assert_eq!(p.parse("05.01.2024 extra"), None);
        assert_eq!(p.parse("2024-01-05"), None);
    }

    #[test]
    fn patterns_with_an_offset_count_in_the_zone() {
        let p = DateParser::new("%d/%m/%Y %H:%M:%S %z", zone("Europe/Copenhagen"));
        assert_eq!(p.parse("31/12/2023 23:30:00 +0000"), Some(date(2024, 1, 1)));
        let local = DateParser::new("%m/%d/%Y %I:%M %p", zone("Europe/Copenhagen"));
        assert_eq!(local.parse("12/31/2023 11:30 PM"), Some(date(2023, 12, 31)));
        let unix = DateParser::new("%s", zone("Europe/Copenhagen"));
        assert_eq!(unix.parse("1717194600"), Some(date(2024, 6, 1)));
    }
}

//! Loan date parsing: a hand-written ISO fast path and jiff's strptime.

use jiff::civil::Date;

/// How loan dates are written in the source.
#[derive(Debug, Clone)]
pub(crate) enum DateParser {
    /// `YYYY-MM-DD`, optionally followed by `T` or a space and anything.
    Iso,
    /// A jiff strptime pattern such as `%d.%m.%Y`.
    Pattern(String),
}

impl DateParser {
    /// The parser for a configured `date_format` (`"iso"` or a pattern).
    pub(crate) fn new(format: &str) -> Self {
        if format.trim().eq_ignore_ascii_case("iso") {
            DateParser::Iso
        } else {
            DateParser::Pattern(format.to_owned())
        }
    }

    /// The calendar date of a trimmed, non-empty field, if it is one.
    pub(crate) fn parse(&self, field: &str) -> Option<Date> {
        match self {
            DateParser::Iso => parse_iso(field.as_bytes()),
            DateParser::Pattern(pattern) => Date::strptime(pattern, field).ok(),
        }
    }
}

fn digits<const N: usize>(d: [u8; N]) -> Option<i32> {
    d.iter().try_fold(0i32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + i32::from(b - b'0'))
    })
}

/// `YYYY-MM-DD` with an optional `T`/space-separated tail whose content is
/// ignored: only the day is kept, and it is coarsened to a month anyway.
fn parse_iso(b: &[u8]) -> Option<Date> {
    let [y0, y1, y2, y3, b'-', m0, m1, b'-', d0, d1, rest @ ..] = b else {
        return None;
    };
    if let [sep, ..] = rest
        && !matches!(sep, b'T' | b't' | b' ')
    {
        return None;
    }
    let year = digits([*y0, *y1, *y2, *y3])?;
    let month = digits([*m0, *m1])?;
    let day = digits([*d0, *d1])?;
    Date::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn iso_accepts_date_with_optional_time() {
        let p = DateParser::new("iso");
        assert_eq!(p.parse("2024-02-29"), Some(date(2024, 2, 29)));
        assert_eq!(p.parse("2024-02-29T23:59:59Z"), Some(date(2024, 2, 29)));
        assert_eq!(p.parse("2024-02-29 10:00"), Some(date(2024, 2, 29)));
        assert_eq!(p.parse("2024-02-29t10:00+02:00"), Some(date(2024, 2, 29)));
    }

    #[test]
    fn iso_rejects_malformed_and_impossible_dates() {
        let p = DateParser::Iso;
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-01-32",
            "2024-1-05",
            "2024/01/05",
            "24-01-05",
            "2024-01-05X",
            "2024-01-0",
            "２０２４-01-05",
            "",
        ] {
            assert_eq!(p.parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn pattern_uses_strptime_and_needs_the_whole_field() {
        let p = DateParser::new("%d.%m.%Y");
        assert_eq!(p.parse("05.01.2024"), Some(date(2024, 1, 5)));
        assert_eq!(p.parse("31.02.2024"), None);
        assert_eq!(p.parse("05.01.2024 extra"), None);
        assert_eq!(p.parse("2024-01-05"), None);
    }
}

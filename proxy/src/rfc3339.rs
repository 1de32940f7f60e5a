//! RFC 3339 timestamps in UTC written straight into a buffer, as `tracing`'s JSON formatter
//! and chrono's serde form write them, without `fmt`'s machinery: the access log and the
//! usage journal write one per request.

/// How many fractional-second digits follow the seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fraction {
    /// Always six (`tracing`'s JSON log).
    Micros,
    /// None, three, six or nine, the fewest that hold the value (chrono's serde form).
    Shortest,
}

/// Writes `secs` (since 1970) and `nanos` as `YYYY-MM-DDTHH:MM:SS[.fff…]Z`; years past
/// 9999 are not written (`false`): the caller falls back to a general formatter.
pub fn write(out: &mut Vec<u8>, secs: u64, nanos: u32, fraction: Fraction) -> bool {
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    if year > 9999 || nanos >= 1_000_000_000 {
        return false;
    }
    two(out, year / 100);
    two(out, year % 100);
    out.push(b'-');
    two(out, month);
    out.push(b'-');
    two(out, day);
    out.push(b'T');
    two(out, of_day / 3600);
    out.push(b':');
    two(out, of_day / 60 % 60);
    out.push(b':');
    two(out, of_day % 60);
    let digits = match fraction {
        Fraction::Micros => 6,
        Fraction::Shortest if nanos == 0 => 0,
        Fraction::Shortest if nanos.is_multiple_of(1_000_000) => 3,
        Fraction::Shortest if nanos.is_multiple_of(1_000) => 6,
        Fraction::Shortest => 9,
    };
    if digits > 0 {
        out.push(b'.');
        let mut scaled = u64::from(nanos) / 10u64.pow(9 - digits);
        let at = out.len();
        out.resize(at + digits as usize, b'0');
        for slot in out[at..].iter_mut().rev() {
            *slot = b'0' + (scaled % 10) as u8;
            scaled /= 10;
        }
    }
    out.push(b'Z');
    true
}

fn two(out: &mut Vec<u8>, n: u64) {
    out.push(b'0' + (n / 10 % 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

/// Year, month, day of a count of days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, SecondsFormat, Utc};

    fn text(secs: u64, nanos: u32, fraction: Fraction) -> String {
        let mut out = Vec::new();
        assert!(write(&mut out, secs, nanos, fraction));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dates_are_civil_dates() {
        // Every day of 1970 to 2400 (leap years, centuries, 2000 and 2400 included).
        for days in 0..157_000u64 {
            let secs = days * 86_400 + 45_296;
            let expected = DateTime::<Utc>::from_timestamp(secs as i64, 0).unwrap();
            assert_eq!(
                text(secs, 0, Fraction::Shortest),
                expected.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            );
        }
    }

    #[test]
    fn fractions_are_written_as_chrono_and_tracing_write_them() {
        let secs = 1_796_000_000;
        for nanos in [
            0,
            1,
            7_000,
            120_000_000,
            123_456_000,
            999_999_999,
            5_000_000,
        ] {
            let expected = DateTime::<Utc>::from_timestamp(secs as i64, nanos).unwrap();
            assert_eq!(
                text(secs, nanos, Fraction::Shortest),
                expected.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                "{nanos}"
            );
            assert_eq!(
                text(secs, nanos, Fraction::Micros),
                expected.to_rfc3339_opts(SecondsFormat::Micros, true),
                "{nanos}"
            );
        }
        assert!(!write(
            &mut Vec::new(),
            300_000_000_000,
            0,
            Fraction::Micros
        ));
    }
}

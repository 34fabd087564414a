//! Legacy timestamps of every type, normalised to a BSON Date: epoch numbers (milliseconds; a
//! value too small to be milliseconds since 1973 is taken as seconds), BSON Dates, ISO-8601
//! strings (with `T` or a space, with or without fraction and offset; no offset means UTC),
//! Python's `str(datetime)` ("2024-05-24 17:03:12.345000+00:00"), dates alone, and numbers
//! written as strings.

use bson::{Bson, DateTime};
use chrono::{NaiveDate, NaiveDateTime};
use serde::Serialize;

/// Which form a legacy time value had (the inventory's histogram keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeKind {
    /// A number of milliseconds (or seconds) since 1970.
    EpochNumber,
    /// A BSON Date.
    BsonDate,
    /// An ISO-8601 / RFC 3339 string (`T` between date and time, or a date alone).
    Iso8601,
    /// Python's `str(datetime)`: a space between date and time, microseconds.
    PythonStr,
    /// A number written as a string.
    EpochString,
    /// No value (absent or null): the record's `_id` creation time is used.
    Missing,
}

impl TimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeKind::EpochNumber => "epoch_number",
            TimeKind::BsonDate => "bson_date",
            TimeKind::Iso8601 => "iso8601",
            TimeKind::PythonStr => "python_str",
            TimeKind::EpochString => "epoch_string",
            TimeKind::Missing => "missing",
        }
    }
}

/// Below this an epoch number is read as seconds (1e11 ms is March 1973).
const SECONDS_BELOW: f64 = 1e11;

fn from_epoch(n: f64) -> Option<DateTime> {
    if !n.is_finite() {
        return None;
    }
    let ms = if n.abs() < SECONDS_BELOW {
        n * 1000.0
    } else {
        n
    };
    if ms.abs() > 8.64e15 {
        return None;
    }
    Some(DateTime::from_millis(ms.round() as i64))
}

fn naive_utc(n: NaiveDateTime) -> DateTime {
    DateTime::from_millis(n.and_utc().timestamp_millis())
}

/// Parses a time string; `None` when no known format fits.
pub fn parse_time_str(s: &str) -> Option<(DateTime, TimeKind)> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && !s.contains("--")
    {
        if let Ok(n) = s.parse::<f64>() {
            if s.len() >= 9 {
                return from_epoch(n).map(|d| (d, TimeKind::EpochString));
            }
        }
    }
    let python = s.len() > 10 && s.as_bytes()[10] == b' ';
    let kind = if python {
        TimeKind::PythonStr
    } else {
        TimeKind::Iso8601
    };
    let t = s.replacen(' ', "T", 1);
    let t = t.strip_suffix("UTC").map(str::trim_end).unwrap_or(&t);
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some((DateTime::from_millis(d.timestamp_millis()), kind));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%:z",
    ] {
        if let Ok(d) = chrono::DateTime::parse_from_str(t, fmt) {
            return Some((DateTime::from_millis(d.timestamp_millis()), kind));
        }
    }
    let t = t.strip_suffix('Z').unwrap_or(t);
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some((naive_utc(n), kind));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some((naive_utc(d.and_hms_opt(0, 0, 0)?), TimeKind::Iso8601));
    }
    None
}

/// Parses a legacy time value. `Ok(None)` for no value (absent or null); `Err` with a short
/// description of the value when no known format fits.
pub fn parse_time(v: Option<&Bson>) -> Result<Option<(DateTime, TimeKind)>, String> {
    let bad = |what: String| Err(format!("unknown time format: {what}"));
    match v {
        None | Some(Bson::Null) | Some(Bson::Undefined) => Ok(None),
        Some(Bson::DateTime(d)) => Ok(Some((*d, TimeKind::BsonDate))),
        Some(Bson::Int32(n)) => Ok(from_epoch(f64::from(*n)).map(|d| (d, TimeKind::EpochNumber))),
        Some(Bson::Int64(n)) => match from_epoch(*n as f64) {
            Some(d) => Ok(Some((d, TimeKind::EpochNumber))),
            None => bad(format!("number {n} is out of range")),
        },
        Some(Bson::Double(n)) => match from_epoch(*n) {
            Some(d) => Ok(Some((d, TimeKind::EpochNumber))),
            None => bad(format!("number {n} is out of range")),
        },
        Some(Bson::Timestamp(t)) => Ok(Some((
            DateTime::from_millis(i64::from(t.time) * 1000),
            TimeKind::EpochNumber,
        ))),
        Some(Bson::String(s)) => match parse_time_str(s) {
            Some(p) => Ok(Some(p)),
            None => bad(format!(
                "string {:?}",
                s.chars().take(40).collect::<String>()
            )),
        },
        Some(other) => bad(format!("a value of BSON type {:?}", other.element_type())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        parse_time_str(s).expect(s).0.timestamp_millis()
    }

    const T: i64 = 1_716_570_192_345; // 2024-05-24T17:03:12.345Z

    #[test]
    fn python_str_datetime_with_micros_and_offset() {
        assert_eq!(ms("2024-05-24 17:03:12.345000+00:00"), T);
        assert_eq!(
            parse_time_str("2024-05-24 17:03:12.345000+00:00")
                .unwrap()
                .1,
            TimeKind::PythonStr
        );
        assert_eq!(ms("2024-05-24 19:03:12.345000+02:00"), T);
    }

    #[test]
    fn python_str_naive_is_utc() {
        assert_eq!(ms("2024-05-24 17:03:12.345000"), T);
        assert_eq!(ms("2024-05-24 17:03:12"), T - 345);
    }

    #[test]
    fn iso_forms() {
        assert_eq!(ms("2024-05-24T17:03:12.345Z"), T);
        assert_eq!(ms("2024-05-24T17:03:12.345+00:00"), T);
        assert_eq!(ms("2024-05-24T17:03:12.345"), T);
        assert_eq!(ms("2024-05-24T17:03:12Z"), T - 345);
        assert_eq!(ms("2024-05-24T17:03:12.345+0000"), T);
        assert_eq!(ms("2024-05-24T17:03Z"), T - 12_345);
        assert_eq!(ms("  2024-05-24T17:03:12.345Z "), T);
        assert_eq!(
            parse_time_str("2024-05-24T17:03:12Z").unwrap().1,
            TimeKind::Iso8601
        );
    }

    #[test]
    fn date_alone_is_midnight_utc() {
        assert_eq!(ms("2024-05-24"), 1_716_508_800_000);
    }

    #[test]
    fn epoch_numbers_ms_and_seconds() {
        let p = |b: Bson| parse_time(Some(&b)).unwrap().unwrap();
        assert_eq!(p(Bson::Int64(T)).0.timestamp_millis(), T);
        assert_eq!(p(Bson::Int64(T)).1, TimeKind::EpochNumber);
        assert_eq!(p(Bson::Double(T as f64)).0.timestamp_millis(), T);
        assert_eq!(p(Bson::Double(1_716_570_192.345)).0.timestamp_millis(), T);
        assert_eq!(p(Bson::Int32(1_716_570_192)).0.timestamp_millis(), T - 345);
        assert_eq!(ms("1716570192345"), T);
        assert_eq!(
            parse_time_str("1716570192345").unwrap().1,
            TimeKind::EpochString
        );
    }

    #[test]
    fn bson_date_passes_through() {
        let d = DateTime::from_millis(T);
        assert_eq!(
            parse_time(Some(&Bson::DateTime(d))).unwrap(),
            Some((d, TimeKind::BsonDate))
        );
    }

    #[test]
    fn missing_values() {
        assert_eq!(parse_time(None).unwrap(), None);
        assert_eq!(parse_time(Some(&Bson::Null)).unwrap(), None);
    }

    #[test]
    fn unknown_formats_say_what_they_saw() {
        let e = parse_time(Some(&Bson::String("yesterday noon".into()))).unwrap_err();
        assert!(e.contains("yesterday noon"), "{e}");
        assert!(parse_time(Some(&Bson::String("24/05/2024".into()))).is_err());
        assert!(parse_time(Some(&Bson::Boolean(true))).is_err());
        assert!(parse_time(Some(&Bson::Double(f64::NAN))).is_err());
        assert!(parse_time(Some(&Bson::String("".into()))).is_err());
        assert!(parse_time(Some(&Bson::String("12".into()))).is_err());
    }
}

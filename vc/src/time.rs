//! `xsd:dateTimeStamp` text for credential validity and proof creation times, from and to
//! milliseconds since the Unix epoch: UTC (`Z`), whole seconds unless the instant has
//! milliseconds (`.123`). Parsing accepts exactly what formatting writes, so a time has one
//! spelling and a credential maps back to its attestation's window without loss.

use roam_identity_core::Millis;

use crate::error::VcError;

/// Formats `ms` as `2027-01-15T08:00:00Z` or `2027-01-15T08:00:00.999Z`.
pub fn format(ms: Millis) -> String {
    let secs = ms / 1000;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let hms = format!("{:02}:{:02}:{:02}", rem / 3600, (rem / 60) % 60, rem % 60);
    match ms % 1000 {
        0 => format!("{y:04}-{m:02}-{d:02}T{hms}Z"),
        frac => format!("{y:04}-{m:02}-{d:02}T{hms}.{frac:03}Z"),
    }
}

/// Parses what [`format`] writes; anything else (another zone, other precision, an
/// out-of-range field) is malformed.
pub fn parse(s: &str) -> Result<Millis, VcError> {
    let bad = || {
        VcError::malformed(format!(
            "{s:?} is not a UTC date-time (YYYY-MM-DDThh:mm:ssZ)"
        ))
    };
    let b = s.as_bytes();
    if !(b.len() == 20 || b.len() == 24) || !s.is_ascii() {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u64>().map_err(|_| bad());
    let seps = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if seps.iter().any(|&(i, c)| b[i] != c) || b[b.len() - 1] != b'Z' {
        return Err(bad());
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac = if b.len() == 24 {
        if b[19] != b'.' {
            return Err(bad());
        }
        num(20..23)?
    } else {
        0
    };
    if !(1..=12).contains(&mo) || d == 0 || d > 31 || h > 23 || mi > 59 || sec > 59 {
        return Err(bad());
    }
    let days = days_from_civil(y as i64, mo as u32, d as u32);
    if days < 0 || civil_from_days(days) != (y as i64, mo as u32, d as u32) {
        return Err(bad());
    }
    let ms = ((days as u64 * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + frac;
    if format(ms) != s {
        return Err(bad());
    }
    Ok(ms)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_known_instants() {
        for (ms, s) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400_000, "2000-02-29T00:00:00Z"),
            (1_800_000_000_999, "2027-01-15T08:00:00.999Z"),
            (1_800_000_000_050, "2027-01-15T08:00:00.050Z"),
            (4_102_444_799_000, "2099-12-31T23:59:59Z"),
        ] {
            assert_eq!(format(ms), s);
            assert_eq!(parse(s).unwrap(), ms);
        }
    }

    #[test]
    fn refuses_other_spellings() {
        for s in [
            "2027-01-15T08:00:00+00:00",
            "2027-01-15T08:00:00.000Z",
            "2027-01-15T08:00:00.5Z",
            "2027-02-30T08:00:00Z",
            "2027-01-15 08:00:00Z",
            "2027-01-15T24:00:00Z",
            "",
        ] {
            assert_eq!(parse(s).unwrap_err().class(), "malformed", "{s}");
        }
    }
}

//! Unix seconds to and from X.509 times.

use core::time::Duration;
use der::DateTime;
use der::asn1::{GeneralizedTime, UtcTime};
use x509_cert::time::Time;

/// RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050 on.
pub(crate) fn to_x509(unix_secs: u64) -> Option<Time> {
    let date = DateTime::from_unix_duration(Duration::from_secs(unix_secs)).ok()?;
    if date.year() < 2050 {
        UtcTime::from_date_time(date).ok().map(Time::UtcTime)
    } else {
        Some(Time::GeneralTime(GeneralizedTime::from_date_time(date)))
    }
}

/// Unix seconds of an X.509 time (der only decodes times from 1970 on).
pub(crate) fn from_x509(time: Time) -> u64 {
    time.to_unix_duration().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_rfc5280_encoding() {
        assert!(matches!(to_x509(0), Some(Time::UtcTime(_))));
        let end_of_2049 = 2_524_607_999;
        assert!(matches!(to_x509(end_of_2049), Some(Time::UtcTime(_))));
        assert!(matches!(
            to_x509(end_of_2049 + 1),
            Some(Time::GeneralTime(_))
        ));
        for t in [
            0,
            1_767_225_600,
            end_of_2049,
            end_of_2049 + 1,
            253_402_300_799,
        ] {
            assert_eq!(to_x509(t).map(from_x509), Some(t));
        }
        assert_eq!(to_x509(253_402_300_800), None); // year 10000
        assert_eq!(to_x509(u64::MAX), None);
    }
}

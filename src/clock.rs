//! Time, for every layer: a cheap monotonic clock for deadlines and durations, the wall
//! clock, and the calendar that turns it into dates (the `Date` header, `created_at`, the
//! access log's timestamps). Pure arithmetic and vDSO reads; nothing here knows HTTP or SQL.
//!
//! CLOCK_MONOTONIC_COARSE is a vDSO read of the last tick (1–4 ms resolution): plenty for
//! deadlines counted in seconds, and cheap enough to stamp every read and write.

/// Milliseconds on a monotonic clock with an arbitrary origin.
pub(crate) fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec; the coarse monotonic clock cannot fail for it.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Nanoseconds on CLOCK_MONOTONIC (a vDSO read, ~20 ns): for measuring durations.
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec; the monotonic clock cannot fail for it.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The wall clock (CLOCK_REALTIME_COARSE, a vDSO read of the last tick): seconds since
/// the Unix epoch and the nanoseconds past them.
pub(crate) fn wall() -> (i64, u32) {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec; the coarse realtime clock cannot fail for it.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    (ts.tv_sec, ts.tv_nsec as u32)
}

/// Seconds since the Unix epoch, serialized as RFC 3339 UTC: `2026-01-02T03:04:05Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub(crate) fn rfc3339(self) -> [u8; 20] {
        let (days, secs) = (self.0.div_euclid(86_400), self.0.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        let mut out = *b"0000-00-00T00:00:00Z";
        let y = y.clamp(0, 9999);
        for (i, n) in [
            (0, y / 100),
            (2, y % 100),
            (5, m as i64),
            (8, d as i64),
            (11, secs / 3600),
            (14, secs / 60 % 60),
            (17, secs % 60),
        ] {
            out[i] = b'0' + (n / 10) as u8;
            out[i + 1] = b'0' + (n % 10) as u8;
        }
        out
    }
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31). Howard Hinnant's algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

#[cfg(test)]
mod tests {
    #[test]
    fn it_moves_forward() {
        let a = super::now_ms();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = super::now_ms();
        assert!(b >= a + 10, "{a} → {b}");
    }

    #[test]
    fn calendar() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(&super::Timestamp(1_767_323_045).rfc3339(), b"2026-01-02T03:04:05Z");
    }
}

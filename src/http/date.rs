//! The `Date` header (IMF-fixdate, RFC 9110 §5.6.7), formatted at most once a second.
//!
//! Each worker owns its [`DateCache`]: no atomics, no sharing, no data race (may_minihttp
//! shares one across threads behind `unsafe impl Sync`). Checking the clock costs one
//! vDSO call of CLOCK_REALTIME_COARSE per response batch.

use std::cell::{Cell, RefCell};

use crate::clock::{self, civil_from_days};

/// `Sun, 06 Nov 1994 08:49:37 GMT`
pub(crate) const DATE_LEN: usize = 29;

pub struct DateCache {
    second: Cell<i64>,
    text: RefCell<[u8; DATE_LEN]>,
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache { second: Cell::new(i64::MIN), text: RefCell::new([b' '; DATE_LEN]) }
    }
}

impl DateCache {
    /// The current date, reformatted only when the second has changed.
    pub fn get(&self) -> [u8; DATE_LEN] {
        let now = clock::wall().0;
        if now != self.second.get() {
            self.second.set(now);
            *self.text.borrow_mut() = imf_fixdate(now);
        }
        *self.text.borrow()
    }
}

/// Formats seconds since the Unix epoch as an IMF-fixdate.
pub fn imf_fixdate(secs: i64) -> [u8; DATE_LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] =
        [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[days.rem_euclid(7) as usize]);
    two(&mut out[5..7], day as i64);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    let y = year.clamp(0, 9999);
    two(&mut out[12..14], y / 100);
    two(&mut out[14..16], y % 100);
    two(&mut out[17..19], rem / 3600);
    two(&mut out[20..22], rem / 60 % 60);
    two(&mut out[23..25], rem % 60);
    out
}

fn two(out: &mut [u8], n: i64) {
    out[0] = b'0' + (n / 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(&imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&imf_fixdate(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&imf_fixdate(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&imf_fixdate(1_798_761_599), b"Thu, 31 Dec 2026 23:59:59 GMT");
        assert_eq!(&imf_fixdate(4_107_542_400), b"Mon, 01 Mar 2100 00:00:00 GMT");
    }

    #[test]
    fn the_cache_tracks_the_clock() {
        let cache = DateCache::default();
        let got = cache.get();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        assert!(got == imf_fixdate(now) || got == imf_fixdate(now - 1), "{}", String::from_utf8_lossy(&got));
    }
}

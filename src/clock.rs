//! A cheap monotonic clock in milliseconds for timeouts.
//!
//! CLOCK_MONOTONIC_COARSE is a vDSO read of the last tick (1–4 ms resolution): plenty for
//! deadlines counted in seconds, and cheap enough to stamp every read and write.

/// Milliseconds on a monotonic clock with an arbitrary origin.
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec; the coarse monotonic clock cannot fail for it.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Nanoseconds on CLOCK_MONOTONIC (a vDSO read, ~20 ns): for measuring durations.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid timespec; the monotonic clock cannot fail for it.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
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
}

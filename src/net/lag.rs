//! How late a worker's loop runs: the second door in front of requests for the store.
//!
//! Past its cores' capacity, with many connections, a worker's requests do not wait in
//! any queue of percore's: they wait in socket buffers until the loop comes round to them,
//! and the store's queue stays short because the loop feeds it slowly. The wait is the
//! loop's turn — every connection that became readable meanwhile is served in it — and a
//! timer that should fire every [`PERIOD`] fires that late. The lateness goes to the same
//! CoDel rule as the store's queue ([`crate::codel`]): late by more than ADMISSION_TARGET
//! for a whole ADMISSION_INTERVAL, and the worker refuses requests for the store at the
//! door (a 503 costs a fraction of a database answer), so its turns shorten and the
//! requests it admits are answered in time.
//!
//! The door is opt-in (ADMISSION_LOOP_LAG=on): at twice capacity it shortened the admitted
//! requests' wait a little and cost goodput (perf/README.md, 2026-12-06), because each
//! refusal still costs the loop a read, a parse and a write, and a refused client that
//! sends again at once keeps as many requests waiting. Since a refused connection is read
//! again only an interval later (`Conn::hold_off`), it refuses 2.5–5x fewer at twice
//! capacity, and its goodput against the door off was level on users by id and 0.90x on
//! /db (perf/README.md, 2026-12-07, later), so it stays opt-in. The lateness is measured
//! either way, for the metric.
//!
//! With the door on, a worker looks every [`PERIOD`] while requests that wait (the store's)
//! arrive, so that it closes within an interval of the loop falling behind. With the door
//! off, the lateness feeds only the metric, and a look every [`QUIET_PERIOD`] samples it
//! as well: a timer every millisecond woke a worker that was otherwise asleep between
//! requests up to a thousand times a second: 4–5 µs of a worker's CPU a /db request at a
//! fixed 6k or 12k a second (perf/README.md, 2026-12-06, "the crossing's own costs"). A
//! worker serving in-core routes alone, or nothing, is not woken for it either way.

use std::rc::Rc;
use std::time::Duration;

use super::core::Core;
use crate::clock;
use crate::http::service::Service;

/// How often a busy worker checks its lateness while the door is on.
pub(crate) const PERIOD: Duration = Duration::from_millis(1);
/// How often a worker without waiting requests looks whether some have come, and how
/// often a busy one samples its lateness while the door is off.
const QUIET_PERIOD: Duration = Duration::from_millis(50);

/// Measures the loop's lateness for as long as the worker runs.
pub(crate) async fn watch<S: Service>(core: Rc<Core<S>>) {
    let mut last_seen = core.seen.get();
    let busy_period = if core.lag.is_enabled() { PERIOD } else { QUIET_PERIOD };
    loop {
        let seen = core.seen.get();
        let busy = seen != last_seen;
        last_seen = seen;
        let period = if busy { busy_period } else { QUIET_PERIOD };
        let asked = clock::now_ns();
        monoio::time::sleep(period).await;
        let now = clock::now_ns();
        if busy {
            let late = now.saturating_sub(asked).saturating_sub(period.as_nanos() as u64);
            core.lag.observe(late, now);
            core.metrics.loop_lag(late);
        }
    }
}

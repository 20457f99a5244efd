//! The crossing to the pool under load (db/queue.rs): with more requests in flight than the
//! pool has threads, and jobs submitted in bursts, every request gets its own answer —
//! nothing lost, nothing given to the wrong request, in order on each connection — on both
//! workers, on both drivers and both stores; and a burst costs at most one wake per job.

use std::time::Duration;

use crate::common::{each_store, Client, Server};
use simd_json::prelude::*;

fn metric(metrics: &str, name: &str) -> u64 {
    metrics.lines().filter_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok()).sum()
}

fn worker_requests(metrics: &str) -> Vec<u64> {
    (0..2).map(|w| metric(metrics, &format!("percore_worker_requests_total{{worker=\"{w}\"}}"))).collect()
}

/// Creates `n` users named for their index; returns their ids in order.
fn create_users(s: &Server, n: usize) -> Vec<i64> {
    (0..n)
        .map(|i| {
            let body = format!(r#"{{"name":"crossing {i}","email":"crossing{i}@example.com"}}"#);
            let r = s.call("POST", "/api/v1/users", Some(&body));
            assert_eq!(r.status, 201, "{}", r.text());
            r.json()["id"].as_i64().unwrap()
        })
        .collect()
}

/// `rounds` times, `depth` reads written at once on one connection (the jobs of one loop
/// turn), then their answers read in order: each must be the user it asked for.
fn pipelined_reads(mut c: Client, ids: &[i64], seed: usize, rounds: usize, depth: usize) -> usize {
    let mut answered = 0;
    for round in 0..rounds {
        let asked: Vec<usize> = (0..depth).map(|k| (seed * 7 + round * 13 + k * 5) % ids.len()).collect();
        let batch: String =
            asked.iter().map(|&i| format!("GET /api/v1/users/{} HTTP/1.1\r\nHost: t\r\n\r\n", ids[i])).collect();
        c.send(batch.as_bytes());
        for &i in &asked {
            let r = c.response().expect("an answer for every request");
            assert_eq!(r.status, 200, "{}", r.text());
            let user = r.json();
            assert_eq!(user["id"].as_i64(), Some(ids[i]), "the answer of another request: {}", r.text());
            assert_eq!(user["name"].as_str(), Some(format!("crossing {i}").as_str()));
            answered += 1;
        }
    }
    answered
}

#[test]
fn every_request_gets_its_own_answer_while_the_pool_is_busy() {
    // One pool thread and one job at a time on its connection, so the queue is never empty
    // under this load; the door is off, so nothing is refused and every request must wait
    // its turn rather than be lost.
    let env = [("WORKERS", "2"), ("DB_POOL_SIZE", "1"), ("DB_PIPELINE_JOBS", "1"), ("ADMISSION_TARGET", "off")];
    each_store(&env, |s, store| {
        let ids = create_users(s, 50);
        let before = s.get("/metrics").text();
        let (clients, rounds, depth) = (24, 20, 8);
        let answered: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..clients)
                .map(|seed| {
                    let c = s.connect();
                    c.stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let ids = &ids;
                    scope.spawn(move || pipelined_reads(c, ids, seed, rounds, depth))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a client saw a wrong or missing answer")).sum()
        });
        assert_eq!(answered, clients * rounds * depth, "{}", store.name());
        let after = s.get("/metrics").text();
        // Both workers were served while the one pool thread was busy with the other's jobs.
        let served: Vec<u64> =
            worker_requests(&after).iter().zip(worker_requests(&before)).map(|(a, b)| a - b).collect();
        assert!(served.iter().all(|&n| n > 0), "{}: a worker was starved: {served:?}", store.name());
        let jobs = (clients * rounds * depth) as u64;
        let wakes = metric(&after, "db_pool_wakeups_total") - metric(&before, "db_pool_wakeups_total");
        assert!(wakes <= jobs, "{}: {wakes} wakes for {jobs} jobs", store.name());
        assert_eq!(metric(&after, "db_pool_queue_depth"), 0, "{}: jobs left queued", store.name());
    });
}

#[test]
fn a_pool_of_several_threads_spreads_a_burst_and_loses_nothing() {
    // Three threads, pipelines of up to 16: the burst from one connection wakes one thread,
    // which takes what it has room for and wakes the next for the rest.
    let env = [("WORKERS", "2"), ("DB_POOL_SIZE", "3"), ("ADMISSION_TARGET", "off")];
    each_store(&env, |s, store| {
        let ids = create_users(s, 50);
        let answered: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|seed| {
                    let c = s.connect();
                    let ids = &ids;
                    scope.spawn(move || pipelined_reads(c, ids, seed, 10, 40))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a client saw a wrong or missing answer")).sum()
        });
        assert_eq!(answered, 8 * 10 * 40, "{}", store.name());
    });
}

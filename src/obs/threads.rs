//! Which thread is which. Every thread percore starts registers itself, on that thread, as
//! it begins: its kernel thread id and its role go into a process-wide list, and its stack
//! bounds into a thread-local that the profiler's signal handler reads
//! ([`stack_of_this_thread`]).
//!
//! The list lets /metrics and the debug pages read each worker's and each database thread's
//! own CPU clock from outside it (`clock_gettime` on the thread's CPU clock id), so per-core
//! CPU costs nothing on the request path. The profiler also uses the list to name the
//! threads in a profile.

use std::cell::Cell;
use std::sync::Mutex;

/// What a thread is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Main,
    Worker(usize),
    Db(usize),
    Debug,
    Log,
}

impl Role {
    /// The name a profile gives the thread's samples.
    pub(crate) fn name(self) -> String {
        match self {
            Role::Main => "main".to_owned(),
            Role::Worker(i) => format!("worker {i}"),
            Role::Db(i) => format!("db {i}"),
            Role::Debug => "debug".to_owned(),
            Role::Log => "access log".to_owned(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Registered {
    pub(crate) role: Role,
    pub(crate) tid: i32,
}

static THREADS: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

/// Removes the thread from the list when it ends.
pub(crate) struct Registration {
    tid: i32,
}

impl Drop for Registration {
    fn drop(&mut self) {
        THREADS.lock().unwrap_or_else(|p| p.into_inner()).retain(|t| t.tid != self.tid);
    }
}

/// Registers the calling thread. Keep the result alive for as long as the thread runs.
#[must_use = "the thread leaves the list when this is dropped"]
pub(crate) fn register(role: Role) -> Registration {
    let tid = current_tid();
    note_stack_of_this_thread();
    THREADS.lock().unwrap_or_else(|p| p.into_inner()).push(Registered { role, tid });
    Registration { tid }
}

std::thread_local! {
    /// This thread's stack, [low, high), or (0, 0) if it never registered. Const-initialised
    /// and without a destructor, so reading it from a signal handler is a plain TLS load.
    static STACK: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// The calling thread's stack bounds, (0, 0) if it never registered. Async-signal-safe: the
/// profiler's signal handler reads it to keep its stack walk on mapped memory.
#[inline]
pub(crate) fn stack_of_this_thread() -> (usize, usize) {
    STACK.with(Cell::get)
}

fn note_stack_of_this_thread() {
    // SAFETY: pthread_getattr_np fills an attribute object we own and destroy below;
    // pthread_attr_getstack reads it into two locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return;
        }
        let (mut addr, mut size) = (std::ptr::null_mut(), 0usize);
        if libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0 {
            STACK.with(|s| s.set((addr as usize, addr as usize + size)));
        }
        libc::pthread_attr_destroy(&mut attr);
    }
}

/// The threads registered now.
pub(crate) fn all() -> Vec<Registered> {
    THREADS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// CPU seconds of the thread registered as `role`, if it is running.
pub(crate) fn cpu_seconds_of(role: Role) -> Option<f64> {
    all().iter().find(|t| t.role == role).and_then(|t| cpu_seconds(t.tid))
}

/// Each running database pool thread's CPU seconds, by pool thread number.
pub(crate) fn db_threads_cpu() -> Vec<(usize, f64)> {
    let mut cpu: Vec<(usize, f64)> = all()
        .into_iter()
        .filter_map(|t| match t.role {
            Role::Db(i) => Some((i, cpu_seconds(t.tid)?)),
            _ => None,
        })
        .collect();
    cpu.sort_by_key(|&(i, _)| i);
    cpu
}

/// The calling thread's kernel id.
pub(crate) fn current_tid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// CPU time (user + system) thread `tid` of this process has used, or `None` once it has
/// ended.
pub(crate) fn cpu_seconds(tid: i32) -> Option<f64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own; the clock id is the thread's CPU clock.
    let ok = unsafe { libc::clock_gettime(thread_cpu_clock(tid), &mut ts) } == 0;
    ok.then(|| ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

/// The clock id of a thread's CPU time (the kernel's MAKE_THREAD_CPUCLOCK(tid,
/// CPUCLOCK_SCHED), which glibc's `pthread_getcpuclockid` also builds): readable, and usable
/// for timers, from any thread of the process.
pub(crate) fn thread_cpu_clock(tid: i32) -> libc::clockid_t {
    ((!tid) << 3) | 6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_reads_its_own_cpu_and_leaves_the_list_when_done() {
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let _registered = register(Role::Db(7));
            // Until it has used 50 ms of CPU, however long that takes on a busy machine.
            let mut x = 0u64;
            while cpu_seconds(current_tid()).unwrap_or(0.0) < 0.05 {
                for _ in 0..10_000 {
                    x = x.wrapping_mul(31).wrapping_add(1);
                }
            }
            std::hint::black_box(x);
            tx.send(current_tid()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
        });
        let tid = rx.recv().unwrap();
        assert!(all().iter().any(|t| t.tid == tid && t.role == Role::Db(7)));
        let used = cpu_seconds(tid).expect("the thread is alive");
        assert!(used >= 0.03, "{used}");
        t.join().unwrap();
        assert!(!all().iter().any(|t| t.tid == tid));
        assert_eq!(cpu_seconds(tid), None, "a thread that ended has no clock");
    }
}

//! The CPU sampler behind /debug/pprof/profile: per-thread CPU timers, a signal handler that
//! records the interrupted stack, nothing thrown away.
//!
//! Why not the pprof crate's sampler, which this replaced. It ran one process-wide
//! ITIMER_PROF, and it skipped every sample whose instruction was in libc or the vDSO. On
//! this server most CPU time is in system calls made through libc, so its profiles held 17%
//! of the CPU the process used. It also dropped samples when two threads' signals met on
//! its lock, and it wrote samples to a temporary file, which a read-only scratch image does
//! not have. perf_event_open would let the kernel do the walk, but container seccomp
//! profiles and `perf_event_paranoid` refuse it where percore ships.
//!
//! So this module works as Go's runtime does:
//! - Every thread gets its own timer on its own CPU clock (`timer_create` with the thread's
//!   CPU clock id and SIGEV_THREAD_ID). A thread that burns 1 s of CPU gets `hz` samples,
//!   however busy the others are.
//! - A sample carries `1 + si_overrun` ticks, so expirations the kernel merged still count.
//! - The handler writes into a buffer allocated before the timers start: one slot per
//!   sample, claimed with one atomic add. It takes no lock and does no allocation, so it is
//!   async-signal-safe.
//!
//! How the handler walks the stack:
//! - The release build keeps frame pointers, so it follows the frame-pointer chain.
//! - Every read is checked against the bounds of the thread's own stack first. The thread
//!   recorded those bounds when it registered ([`crate::obs::threads::register`]). A thread
//!   that never registered gets its sample recorded with the interrupted instruction alone.
//! - When the interrupted instruction is outside percore's own code (a libc system-call
//!   wrapper, the vDSO), the Rust caller's return address lies between the stack pointer
//!   and the frame pointer. The handler scans that span for the first word that points
//!   just after a call instruction in percore's code, so the sample is charged to the
//!   caller that made the call.

use std::cell::UnsafeCell;
use std::io;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Once;

/// Frames kept per sample (the interrupted instruction, then return addresses).
pub(crate) const MAX_FRAMES: usize = 96;
/// Executable mappings remembered per profile.
const MAX_OBJECTS: usize = 32;
/// How far above the stack pointer a libc leaf's caller is looked for.
const SCAN_BYTES: usize = 512;

/// One sample: where a thread was when its CPU clock ticked.
#[derive(Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) tid: i32,
    /// Timer periods this sample stands for: 1, plus the expirations the kernel merged.
    pub(crate) ticks: u32,
    pub(crate) depth: u16,
    /// `frames[0]` is the interrupted instruction; the rest are return addresses, innermost
    /// first.
    pub(crate) frames: [usize; MAX_FRAMES],
}

const EMPTY: Sample = Sample { tid: 0, ticks: 0, depth: 0, frames: [0; MAX_FRAMES] };

/// Executable address ranges at the start of the profile: percore's own and the shared
/// objects' (libc, the vDSO).
#[derive(Clone, Copy, Default)]
pub(crate) struct Code {
    pub(crate) own: (usize, usize),
    pub(crate) others: [(usize, usize); MAX_OBJECTS],
    pub(crate) count: usize,
}

impl Code {
    /// Percore's own executable segment and every loaded object's, from `dl_iterate_phdr`.
    pub(crate) fn of_this_process() -> Code {
        let mut code = Code::default();
        for object in super::objects::loaded() {
            for &(start, end) in &object.exec {
                if object.is_main {
                    // One executable segment in practice; keep the union if a linker splits it.
                    code.own =
                        if code.own.1 == 0 { (start, end) } else { (code.own.0.min(start), code.own.1.max(end)) };
                } else if code.count < MAX_OBJECTS {
                    code.others[code.count] = (start, end);
                    code.count += 1;
                }
            }
        }
        code
    }

    pub(crate) fn is_own(&self, addr: usize) -> bool {
        addr >= self.own.0 && addr < self.own.1
    }

    pub(crate) fn contains(&self, addr: usize) -> bool {
        self.is_own(addr) || self.others[..self.count].iter().any(|&(s, e)| addr >= s && addr < e)
    }
}

struct Buffer {
    slots: Box<[UnsafeCell<Sample>]>,
    next: AtomicUsize,
    dropped: AtomicUsize,
    code: Code,
}

// SAFETY: each slot is written by exactly one handler (the one whose fetch_add claimed its
// index) and read only after `stop` has seen every handler leave.
unsafe impl Sync for Buffer {}

/// The buffer of the profile being taken, or null.
static ACTIVE: AtomicPtr<Buffer> = AtomicPtr::new(std::ptr::null_mut());
/// Handlers running now; `stop` waits for zero before it reads or frees the buffer.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// A profile being taken: the timers armed on every thread so far.
pub(crate) struct Session {
    hz: u32,
    timers: Vec<(i32, libc::timer_t)>,
    buffer: *mut Buffer,
}

/// What a finished profile holds.
pub(crate) struct Taken {
    pub(crate) samples: Vec<Sample>,
    /// Samples that found the buffer full.
    pub(crate) dropped: usize,
    pub(crate) code: Code,
}

impl Session {
    /// Starts sampling every thread of the process `hz` times per CPU second, with room for
    /// `capacity` samples. Fails if a profile is already being taken.
    pub(crate) fn start(hz: u32, capacity: usize) -> io::Result<Session> {
        install_handler()?;
        let buffer = Box::into_raw(Box::new(Buffer {
            slots: (0..capacity).map(|_| UnsafeCell::new(EMPTY)).collect(),
            next: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            code: Code::of_this_process(),
        }));
        if ACTIVE.compare_exchange(std::ptr::null_mut(), buffer, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            // SAFETY: the buffer was never published, so this is its only owner.
            drop(unsafe { Box::from_raw(buffer) });
            return Err(io::Error::other("a profile is already being taken"));
        }
        let mut session = Session { hz, timers: Vec::new(), buffer };
        session.cover_new_threads();
        Ok(session)
    }

    /// Arms a timer on every thread that has none yet (threads started since the last
    /// look). Threads come from /proc/self/task, and from percore's own list where /proc is
    /// not mounted.
    pub(crate) fn cover_new_threads(&mut self) {
        for tid in thread_ids() {
            if self.timers.iter().any(|&(t, _)| t == tid) {
                continue;
            }
            if let Some(timer) = arm(tid, self.hz) {
                self.timers.push((tid, timer));
            }
        }
    }

    /// Threads sampled so far.
    pub(crate) fn threads(&self) -> usize {
        self.timers.len()
    }

    /// Stops every timer, waits for running handlers, and hands back the samples.
    pub(crate) fn stop(mut self) -> Taken {
        let buffer = self.release().expect("a running session holds its buffer");
        let used = buffer.next.load(Ordering::SeqCst).min(buffer.slots.len());
        let samples = buffer.slots[..used].iter().map(|s| *unsafe_read(s)).collect();
        Taken { samples, dropped: buffer.dropped.load(Ordering::SeqCst), code: buffer.code }
    }

    /// Deletes the timers, unpublishes the buffer, waits until no handler is inside it, and
    /// returns it (once: `None` after that).
    fn release(&mut self) -> Option<Box<Buffer>> {
        if self.buffer.is_null() {
            return None;
        }
        for (_, timer) in self.timers.drain(..) {
            // SAFETY: a timer this session created and has not deleted.
            unsafe { libc::timer_delete(timer) };
        }
        ACTIVE.store(std::ptr::null_mut(), Ordering::SeqCst);
        while IN_HANDLER.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        // SAFETY: unpublished above and no handler is inside it any more, so we own it.
        Some(unsafe { Box::from_raw(std::mem::replace(&mut self.buffer, std::ptr::null_mut())) })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        drop(self.release());
    }
}

fn unsafe_read(slot: &UnsafeCell<Sample>) -> &Sample {
    // SAFETY: called only after every handler has left (see `stop`), so nothing writes it.
    unsafe { &*slot.get() }
}

/// The process's threads: /proc/self/task, or percore's own list without /proc.
fn thread_ids() -> Vec<i32> {
    match std::fs::read_dir("/proc/self/task") {
        Ok(dir) => dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect(),
        Err(_) => crate::obs::threads::all().iter().map(|t| t.tid).collect(),
    }
}

/// A timer on `tid`'s CPU clock that sends that thread SIGPROF every 1/hz CPU seconds.
fn arm(tid: i32, hz: u32) -> Option<libc::timer_t> {
    // SAFETY: sigevent is plain data; zeroed is a valid starting value.
    let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
    event.sigev_notify = libc::SIGEV_THREAD_ID;
    event.sigev_signo = libc::SIGPROF;
    event.sigev_notify_thread_id = tid;
    let mut timer: libc::timer_t = std::ptr::null_mut();
    let clock = crate::obs::threads::thread_cpu_clock(tid);
    // SAFETY: both pointers are to locals that outlive the call.
    if unsafe { libc::timer_create(clock, &mut event, &mut timer) } != 0 {
        return None; // the thread ended meanwhile
    }
    let period = libc::timespec { tv_sec: 0, tv_nsec: 1_000_000_000 / hz.max(1) as i64 };
    let spec = libc::itimerspec { it_interval: period, it_value: period };
    // SAFETY: `timer` was just created; `spec` is a local.
    if unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) } != 0 {
        // SAFETY: as above.
        unsafe { libc::timer_delete(timer) };
        return None;
    }
    Some(timer)
}

fn install_handler() -> io::Result<()> {
    static INSTALL: Once = Once::new();
    static RESULT: AtomicI32 = AtomicI32::new(0);
    INSTALL.call_once(|| {
        // SAFETY: sigaction with a zeroed-then-filled struct; the handler is async-signal-safe
        // (see `on_sigprof`). It stays installed: a SIGPROF still in flight after a profile
        // ends must not meet the default action, which ends the process.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigprof as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGPROF, &action, std::ptr::null_mut()) != 0 {
                RESULT.store(*libc::__errno_location(), Ordering::SeqCst);
            }
        }
    });
    match RESULT.load(Ordering::SeqCst) {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

extern "C" fn on_sigprof(_: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: errno is thread-local; the handler puts back what the interrupted code had.
    let errno = unsafe { *libc::__errno_location() };
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    let buffer = ACTIVE.load(Ordering::SeqCst);
    if !buffer.is_null() && !context.is_null() {
        // SAFETY: a published buffer stays alive while IN_HANDLER is above zero (see `stop`);
        // the kernel passes a valid ucontext and siginfo to an SA_SIGINFO handler.
        unsafe { record(&*buffer, &*(context as *const libc::ucontext_t), overrun(info)) };
    }
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// `si_overrun` of a POSIX timer's signal: expirations merged into this one.
///
/// # Safety
/// `info` is the siginfo the kernel passed to an SA_SIGINFO handler.
unsafe fn overrun(info: *const libc::siginfo_t) -> u32 {
    if info.is_null() || (*info).si_code != libc::SI_TIMER {
        return 0;
    }
    // The kernel's layout: three ints, padding to 8 bytes on 64-bit, then the timer union
    // { int tid; int overrun; sigval }.
    let base = info as *const u8;
    let at = if cfg!(target_pointer_width = "64") { 20 } else { 16 };
    (base.add(at) as *const i32).read().max(0) as u32
}

struct Registers {
    pc: usize,
    sp: usize,
    fp: usize,
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn registers(context: &libc::ucontext_t) -> Option<Registers> {
    let g = &context.uc_mcontext.gregs;
    Some(Registers {
        pc: g[libc::REG_RIP as usize] as usize,
        sp: g[libc::REG_RSP as usize] as usize,
        fp: g[libc::REG_RBP as usize] as usize,
    })
}

#[cfg(all(target_arch = "aarch64", target_os = "linux"))]
fn registers(context: &libc::ucontext_t) -> Option<Registers> {
    let m = &context.uc_mcontext;
    Some(Registers { pc: m.pc as usize, sp: m.sp as usize, fp: m.regs[29] as usize })
}

#[cfg(not(any(all(target_arch = "x86_64", target_os = "linux"), all(target_arch = "aarch64", target_os = "linux"))))]
fn registers(_: &libc::ucontext_t) -> Option<Registers> {
    None
}

/// Writes one sample.
///
/// # Safety
/// Runs in a signal handler on the interrupted thread; `buffer` is the published buffer.
unsafe fn record(buffer: &Buffer, context: &libc::ucontext_t, overrun: u32) {
    let index = buffer.next.fetch_add(1, Ordering::Relaxed);
    let Some(slot) = buffer.slots.get(index) else {
        buffer.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let sample = &mut *slot.get();
    sample.tid = libc::syscall(libc::SYS_gettid) as i32;
    sample.ticks = 1 + overrun;
    sample.depth = 0;
    let Some(regs) = registers(context) else { return };
    sample.frames[0] = regs.pc;
    let (_, high) = crate::obs::threads::stack_of_this_thread();
    let depth = if high != 0 && regs.sp < high { walk(&buffer.code, &regs, high, &mut sample.frames) } else { 1 };
    sample.depth = depth as u16;
}

/// Fills `frames[1..]` with return addresses; returns how many frames `frames` holds.
/// Reads only words inside [sp, high), the live part of this thread's stack.
///
/// # Safety
/// [regs.sp, high) is mapped: the thread's own stack, above the point it was interrupted at.
unsafe fn walk(code: &Code, regs: &Registers, high: usize, frames: &mut [usize; MAX_FRAMES]) -> usize {
    let readable = |addr: usize| addr >= regs.sp && addr % 8 == 0 && addr + 16 <= high;
    let mut n = 1;
    let mut fp = regs.fp;
    if !code.is_own(regs.pc) {
        // A leaf outside percore's code: find the return address into its Rust caller.
        let end = if readable(fp) { fp } else { high.min(regs.sp + SCAN_BYTES) }.min(regs.sp + SCAN_BYTES);
        let mut at = regs.sp;
        while at + 8 <= end {
            let word = (at as *const usize).read();
            if code.is_own(word) && follows_call(code, word) {
                frames[n] = word;
                n += 1;
                break;
            }
            at += 8;
        }
    }
    while n < MAX_FRAMES && readable(fp) {
        let next = (fp as *const usize).read();
        let ret = ((fp + 8) as *const usize).read();
        if !code.contains(ret) {
            break;
        }
        // A leaf that kept a frame of its own points at the caller the scan found already.
        if !(n == 2 && frames[1] == ret) {
            frames[n] = ret;
            n += 1;
        }
        if next <= fp {
            break;
        }
        fp = next;
    }
    n
}

/// Whether `ret` (inside percore's code) is preceded by a call instruction, so is a return
/// address rather than some other pointer into code.
///
/// # Safety
/// `ret` is inside `code.own`, which is mapped.
#[cfg(target_arch = "x86_64")]
unsafe fn follows_call(code: &Code, ret: usize) -> bool {
    if ret < code.own.0 + 7 {
        return false;
    }
    let byte = |back: usize| ((ret - back) as *const u8).read();
    // `call rel32`.
    if byte(5) == 0xE8 {
        return true;
    }
    // `call r/m64` is FF /2: the ModRM byte's reg field is 2. Its length depends on the
    // addressing mode (ModRM's top two bits): a register or [reg] (2 bytes), [reg+disp8] or
    // a SIB (3), a SIB with disp8 (4), [reg+disp32] or [rip+disp32] (6), a SIB with disp32
    // (7). A REX prefix before it changes nothing here.
    let call_modrm = |opcode_back: usize, modes: &[u8]| {
        byte(opcode_back) == 0xFF && {
            let modrm = byte(opcode_back - 1);
            (modrm >> 3) & 7 == 2 && modes.contains(&(modrm >> 6))
        }
    };
    call_modrm(2, &[3, 0])
        || call_modrm(3, &[1, 0])
        || call_modrm(4, &[1])
        || call_modrm(6, &[2, 0])
        || call_modrm(7, &[2])
}

/// # Safety
/// `ret` is inside `code.own`, which is mapped.
#[cfg(target_arch = "aarch64")]
unsafe fn follows_call(code: &Code, ret: usize) -> bool {
    if ret < code.own.0 + 4 || ret % 4 != 0 {
        return false;
    }
    let ins = ((ret - 4) as *const u32).read();
    ins & 0xFC00_0000 == 0x9400_0000 || ins & 0xFFFF_FC1F == 0xD63F_0000
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn follows_call(_: &Code, _: usize) -> bool {
    false
}

//! Turns sampled addresses into named frames: full Rust paths, inlined frames included, with
//! file and line where the binary knows them.
//!
//! Names come from two places in percore's own executable, read with `addr2line`:
//! - The symbol table. It is always there, the stripped image included. It gives the full,
//!   demangled path of the function the address is in (`percore::net::conn::Conn<S>::answer_now`).
//! - The DWARF, where the build kept it (`cargo build --release`; the image strips it to
//!   stay small). It gives the chain of inlined calls at the address, each with a file and
//!   a line.
//!
//! The outermost frame takes the symbol table's full name. The inlined frames keep DWARF's
//! names, which are full paths when the build's debug info has them.
//!
//! Addresses outside the executable belong to a shared object (libc, the vDSO) and are
//! named after it: `[libc.so.6]`. [`Symbolizer::follows_syscall`] tells a sample that was
//! interrupted right after a `syscall` instruction: its time went to the kernel, and the
//! profile gives it a `[syscall]` leaf.

use std::collections::HashMap;

use super::objects::{self, Object};

/// One frame of a resolved address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Frame {
    pub(crate) function: String,
    pub(crate) file: String,
    pub(crate) line: u32,
}

impl Frame {
    fn named(function: impl Into<String>) -> Frame {
        Frame { function: function.into(), file: String::new(), line: 0 }
    }
}

/// What a profile's frames are resolved with. Building one maps the executable's file, so it
/// is built once, when the first profile is taken, and kept.
pub(crate) struct Symbolizer {
    exe: Option<addr2line::Loader>,
    objects: Vec<Object>,
    cache: HashMap<(usize, bool), Vec<Frame>>,
}

impl Symbolizer {
    pub(crate) fn new() -> Symbolizer {
        let exe = executable_path().and_then(|path| addr2line::Loader::new(path).ok());
        Symbolizer { exe, objects: objects::loaded(), cache: HashMap::new() }
    }

    /// Whether the executable's file could be read (names come only from it).
    pub(crate) fn has_names(&self) -> bool {
        self.exe.is_some()
    }

    /// The frames at `addr`, innermost first. `leaf` says it is the interrupted instruction
    /// itself; otherwise it is a return address, and the call before it is what is looked up.
    pub(crate) fn frames(&mut self, addr: usize, leaf: bool) -> &[Frame] {
        if !self.cache.contains_key(&(addr, leaf)) {
            let frames = self.resolve(addr, leaf);
            self.cache.insert((addr, leaf), frames);
        }
        &self.cache[&(addr, leaf)]
    }

    fn resolve(&self, addr: usize, leaf: bool) -> Vec<Frame> {
        let mut frames = Vec::new();
        match self.objects.iter().find(|o| o.contains(addr)) {
            Some(object) if object.is_main => {
                let probe = (addr - object.bias - usize::from(!leaf)) as u64;
                self.name_in_executable(probe, &mut frames);
            }
            Some(object) => frames.push(Frame::named(format!("[{}]", object.short_name()))),
            None => frames.push(Frame::named(format!("[unknown 0x{addr:x}]"))),
        }
        frames
    }

    fn name_in_executable(&self, probe: u64, frames: &mut Vec<Frame>) {
        let Some(exe) = &self.exe else {
            frames.push(Frame::named(format!("[percore 0x{probe:x}]")));
            return;
        };
        let first = frames.len();
        if let Ok(mut iter) = exe.find_frames(probe) {
            while let Ok(Some(frame)) = iter.next() {
                let function = frame
                    .function
                    .as_ref()
                    .and_then(|f| f.demangle().ok())
                    .map(|name| name.into_owned())
                    .unwrap_or_default();
                let (file, line) = frame
                    .location
                    .map(|l| (l.file.unwrap_or_default().to_owned(), l.line.unwrap_or(0)))
                    .unwrap_or_default();
                frames.push(Frame { function, file, line });
            }
        }
        let symbol = exe.find_symbol(probe).map(|name| format!("{:#}", rustc_demangle::demangle(name)));
        match (frames.len() > first, symbol) {
            // The outermost frame is the function the symbol table names: take its full path.
            (true, Some(full)) => frames.last_mut().expect("not empty").function = full,
            (true, None) => {}
            (false, Some(full)) => frames.push(Frame::named(full)),
            (false, None) => frames.push(Frame::named(format!("[percore 0x{probe:x}]"))),
        }
        for frame in &mut frames[first..] {
            if frame.function.is_empty() {
                frame.function = format!("[percore 0x{probe:x}]");
            }
        }
    }

    /// Whether the instruction before `pc` is a system call: the thread was in the kernel.
    pub(crate) fn follows_syscall(&self, pc: usize) -> bool {
        let Some(&(start, _)) = self.objects.iter().flat_map(|o| o.exec.iter()).find(|&&(s, e)| pc >= s && pc < e)
        else {
            return false;
        };
        #[cfg(target_arch = "x86_64")]
        if pc >= start + 2 {
            // SAFETY: [start, pc) is inside an executable segment of a loaded object, which
            // stays mapped (nothing percore loads is ever unloaded).
            return unsafe { ((pc - 2) as *const [u8; 2]).read() } == [0x0F, 0x05];
        }
        #[cfg(target_arch = "aarch64")]
        if pc >= start + 4 && pc % 4 == 0 {
            // SAFETY: as above.
            return unsafe { ((pc - 4) as *const u32).read() } == 0xD400_0001;
        }
        let _ = start;
        false
    }
}

/// The running executable: /proc/self/exe, or where /proc is not mounted (an empty chroot)
/// the absolute path it was started by.
fn executable_path() -> Option<std::path::PathBuf> {
    let proc = std::path::Path::new("/proc/self/exe");
    if proc.exists() {
        return Some(proc.to_path_buf());
    }
    let argv0 = std::path::PathBuf::from(std::env::args_os().next()?);
    argv0.is_absolute().then_some(argv0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn a_named_function() -> usize {
        std::hint::black_box(a_named_function as *const () as usize)
    }

    #[test]
    fn a_function_in_this_binary_is_named_with_its_path() {
        let mut s = Symbolizer::new();
        assert!(s.has_names());
        let addr = a_named_function() + 1;
        let frames = s.frames(addr, true).to_vec();
        let outer = frames.last().unwrap();
        assert!(outer.function.contains("symbols::tests::a_named_function"), "{frames:?}");
        assert!(!outer.function.contains("::h"), "no hash: {}", outer.function);
    }

    #[test]
    fn libc_is_named_after_its_object() {
        let mut s = Symbolizer::new();
        let write = libc::write as *const () as usize;
        let frames = s.frames(write, true).to_vec();
        // Statically linked, libc is part of the executable and named by its symbols.
        assert!(!frames.is_empty());
        if !s.objects[0].contains(write) {
            assert!(frames[0].function.starts_with("[libc"), "{frames:?}");
        }
    }
}

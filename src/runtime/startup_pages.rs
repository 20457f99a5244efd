//! Lets go of the code pages start-up touched, once the server is ready — as the Linux kernel
//! frees its `__init` memory after boot.
//!
//! Reading the configuration, opening the store and migrating it, starting threads and rings
//! run code (SQLite's schema work above all) that an idle or busy server never runs again.
//! The kernel maps code 64 KiB at a time around every page touched ("fault-around"), so that
//! start-up leaves about 3.5 MiB of the binary's text and rodata in the resident set, where
//! the serving loop itself needs about half a megabyte. Once the store is ready, percore
//! tells the kernel it no longer needs the pages of its clean, read-only file mappings
//! (`MADV_DONTNEED`); the page cache keeps them, so code that does run again costs a minor
//! fault, never a disk read.
//!
//! Only mappings that are file-backed, not writable and hold no private (anonymous) page are
//! released: for those, "drop and re-read from the file" gives back exactly the same bytes.
//! A read-only mapping with private pages — RELRO, which the dynamic loader wrote before
//! protecting it — would lose its relocations, and is left alone.

use std::fs;

/// A mapping that can be released: start address and length in bytes, and how much of it is
/// resident now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Releasable {
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) resident: usize,
}

/// The mappings of a `/proc/<pid>/smaps` text that are safe to release and hold pages.
pub(crate) fn releasable(smaps: &str) -> Vec<Releasable> {
    let mut found = Vec::new();
    let mut current: Option<(Releasable, bool)> = None;
    let mut finish = |mapping: Option<(Releasable, bool)>| {
        if let Some((m, clean)) = mapping {
            if clean && m.resident > 0 {
                found.push(m);
            }
        }
    };
    for line in smaps.lines() {
        if let Some(mapping) = mapping_line(line) {
            finish(current.take());
            current = Some(mapping);
        } else if let Some((m, clean)) = current.as_mut() {
            match field_kib(line) {
                Some(("Rss", kib)) => m.resident = kib * 1024,
                Some(("Anonymous", kib)) if kib > 0 => *clean = false,
                _ => {}
            }
        }
    }
    finish(current);
    found
}

/// A mapping's header line (`start-end perms offset dev inode path`), as a candidate: the
/// flag says whether it qualifies so far (file-backed, not writable).
fn mapping_line(line: &str) -> Option<(Releasable, bool)> {
    let mut parts = line.split_ascii_whitespace();
    let (start, end) = parts.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = parts.next()?.as_bytes();
    if perms.len() != 4 {
        return None;
    }
    let path = parts.nth(3).unwrap_or("");
    let file_backed = path.starts_with('/');
    let read_only = perms[0] == b'r' && perms[1] == b'-';
    Some((Releasable { start, len: end.checked_sub(start)?, resident: 0 }, file_backed && read_only))
}

/// `Name:   123 kB` → ("Name", 123).
fn field_kib(line: &str) -> Option<(&str, usize)> {
    let (name, rest) = line.split_once(':')?;
    let kib = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some((name, kib))
}

/// Releases the start-up pages of this process's clean read-only file mappings. Returns the
/// bytes that were resident in them (what the resident set shrinks by, until code runs
/// again).
pub(crate) fn release() -> std::io::Result<usize> {
    let smaps = fs::read_to_string("/proc/self/smaps")?;
    let mut released = 0;
    for m in releasable(&smaps) {
        // SAFETY: the range is a whole mapping of this process that is read-only and holds
        // no private page, so dropping its pages loses nothing: the next access maps the
        // same file bytes again. A mapping gone meanwhile makes madvise fail, harmlessly.
        if unsafe { libc::madvise(m.start as *mut libc::c_void, m.len, libc::MADV_DONTNEED) } == 0 {
            released += m.resident;
        }
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a00e2000 r--p 00000000 fe:00 5309144                    /usr/bin/percore
Size:                904 kB
Rss:                 512 kB
Anonymous:             0 kB
55d0a00e2000-55d0a0454000 r-xp 000e2000 fe:00 5309144                    /usr/bin/percore
Size:               3528 kB
Rss:                3092 kB
Anonymous:             0 kB
55d0a0454000-55d0a046a000 r--p 00453000 fe:00 5309144                    /usr/bin/percore
Size:                 88 kB
Rss:                  88 kB
Anonymous:            80 kB
55d0a046a000-55d0a0472000 rw-p 00468000 fe:00 5309144                    /usr/bin/percore
Size:                 32 kB
Rss:                  32 kB
Anonymous:            32 kB
20000000000-200007d0000 rw-p 00000000 00:00 0
Size:               8000 kB
Rss:                 516 kB
Anonymous:           516 kB
7f0000000000-7f0000034000 r--p 00000000 00:00 0                          [vvar]
Rss:                   0 kB
Anonymous:             0 kB
7f0000100000-7f0000134000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
Anonymous:             0 kB
7f0000200000-7f0000201000 r--p 00000000 fe:00 77                         /usr/lib/libm.so.6
Rss:                   0 kB
Anonymous:             0 kB
7f0000300000-7f0000400000 r-xp 00000000 fe:00 78                         /usr/lib/libc.so.6
Rss:                1364 kB
Anonymous:             0 kB
";

    #[test]
    fn only_clean_read_only_file_mappings_with_resident_pages() {
        let found = releasable(SMAPS);
        assert_eq!(
            found,
            vec![
                Releasable { start: 0x55d0a0000000, len: 0xe2000, resident: 512 << 10 },
                Releasable { start: 0x55d0a00e2000, len: 0x372000, resident: 3092 << 10 },
                Releasable { start: 0x7f0000300000, len: 0x100000, resident: 1364 << 10 },
            ],
            "RELRO (private pages), writable data, anonymous memory, [vdso] and mappings \
             with nothing resident are left alone"
        );
    }

    #[test]
    fn nonsense_is_ignored() {
        assert!(releasable("").is_empty());
        assert!(releasable("zz-yy r-xp 0 0 0 /x\nRss: 4 kB\n").is_empty());
        assert!(releasable("1000-0 r-xp 0 0 0 /x\nRss: 4 kB\n").is_empty(), "end before start");
    }

    #[test]
    fn releasing_shrinks_the_resident_set_and_keeps_this_process_working() {
        let expected = std::hint::black_box(format!("{}", 42));
        let before = rss_file_kib();
        let released = release().expect("/proc/self/smaps is readable");
        let after = rss_file_kib();
        assert!(released > 0, "the test binary's own text was resident");
        assert!(after < before, "file-backed RSS {before} KiB -> {after} KiB after releasing {released} bytes");
        // Code and constants fault back in from the page cache.
        assert_eq!(format!("{}", 42), expected);
    }

    fn rss_file_kib() -> usize {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        status.lines().find_map(|l| field_kib(l).filter(|(name, _)| *name == "RssFile")).unwrap().1
    }
}

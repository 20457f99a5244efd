//! A finished profile as pprof's protobuf (what `go tool pprof` reads) and as folded stacks
//! (what the flame graph is drawn from), with the same names in both.
//!
//! Each sampled address is one pprof Location, and its inlined frames are that Location's
//! lines (innermost first, as the format wants). That way `-list` puts time on the right
//! lines and `-top` counts inlined functions on their own. Samples carry the thread's name
//! as a `thread` label. Their values are the sample count and the CPU time it stands for.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use pprof::protos;

use super::sampler::Taken;
use super::symbols::{Frame, Symbolizer};

/// Index of the `[syscall]` pseudo-address.
const SYSCALL: usize = 0;

/// A profile, resolved: each distinct stack with its thread and its ticks.
pub(crate) struct Resolved {
    pub(crate) period_ns: i64,
    pub(crate) started: SystemTime,
    pub(crate) duration: Duration,
    /// (thread name, function names outermost first, ticks).
    pub(crate) stacks: Vec<(String, Vec<String>, u64)>,
    /// Every sampled address with its frames (innermost first), in first-seen order.
    addresses: Vec<(usize, bool, Vec<Frame>)>,
    /// Per stack, indexes into `addresses`, leaf first.
    stack_addresses: Vec<Vec<usize>>,
    exe: (usize, usize),
}

impl Resolved {
    /// Resolves every sample's addresses and merges samples with the same thread and stack.
    pub(crate) fn new(
        taken: &Taken,
        symbols: &mut Symbolizer,
        thread_name: impl Fn(i32) -> String,
        hz: u32,
        started: SystemTime,
        duration: Duration,
    ) -> Resolved {
        // Entry 0 is the `[syscall]` leaf: a frame of its own, not an inlined part of libc.
        let mut address_index: HashMap<(usize, bool), usize> = HashMap::new();
        let mut addresses = vec![(0, true, vec![Frame { function: "[syscall]".into(), file: String::new(), line: 0 }])];
        let mut merged: HashMap<(i32, Vec<usize>), u64> = HashMap::new();
        for sample in &taken.samples {
            let mut ids = Vec::with_capacity(sample.depth as usize + 1);
            if sample.depth > 0 && symbols.follows_syscall(sample.frames[0]) {
                ids.push(SYSCALL);
            }
            for (i, &addr) in sample.frames[..sample.depth as usize].iter().enumerate() {
                let key = (addr, i == 0);
                let id = *address_index.entry(key).or_insert_with(|| {
                    addresses.push((addr, i == 0, symbols.frames(addr, i == 0).to_vec()));
                    addresses.len() - 1
                });
                ids.push(id);
            }
            *merged.entry((sample.tid, ids)).or_default() += u64::from(sample.ticks);
        }
        let mut names: HashMap<i32, String> = HashMap::new();
        let mut stacks = Vec::with_capacity(merged.len());
        let mut stack_addresses = Vec::with_capacity(merged.len());
        let mut merged: Vec<_> = merged.into_iter().collect();
        merged.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        for ((tid, ids), ticks) in merged {
            let thread = names.entry(tid).or_insert_with(|| thread_name(tid)).clone();
            let mut frames: Vec<String> =
                ids.iter().flat_map(|&id| addresses[id].2.iter().map(|f| f.function.clone())).collect();
            frames.reverse();
            if frames.is_empty() {
                frames.push("[no stack]".to_owned());
            }
            stacks.push((thread, frames, ticks));
            stack_addresses.push(ids);
        }
        Resolved {
            period_ns: 1_000_000_000 / i64::from(hz.max(1)),
            started,
            duration,
            stacks,
            addresses,
            stack_addresses,
            exe: taken.code.own,
        }
    }

    /// CPU time the samples stand for.
    pub(crate) fn sampled(&self) -> Duration {
        let ticks: u64 = self.stacks.iter().map(|s| s.2).sum();
        Duration::from_nanos(ticks * self.period_ns as u64)
    }

    /// Folded stacks, `thread;outer;…;leaf ticks`, for the flame graph.
    pub(crate) fn folded(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .stacks
            .iter()
            .map(|(thread, frames, ticks)| {
                let mut line = clean(thread);
                for f in frames {
                    line.push(';');
                    line.push_str(&clean(f));
                }
                format!("{line} {ticks}")
            })
            .collect();
        // inferno merges equal stacks only when they are next to each other.
        lines.sort_unstable();
        lines
    }

    /// pprof's protobuf message.
    pub(crate) fn pprof(&self) -> protos::Profile {
        let mut strings = Strings::default();
        let (samples, count, cpu, nanoseconds, thread) = (
            strings.id("samples"),
            strings.id("count"),
            strings.id("cpu"),
            strings.id("nanoseconds"),
            strings.id("thread"),
        );
        let exe_name = strings.id("percore");
        let mapping = protos::Mapping {
            id: 1,
            memory_start: self.exe.0 as u64,
            memory_limit: self.exe.1 as u64,
            filename: exe_name,
            has_functions: true,
            has_filenames: true,
            has_line_numbers: true,
            has_inline_frames: true,
            ..Default::default()
        };
        let mut functions: HashMap<(String, String), u64> = HashMap::new();
        let mut function_table = Vec::new();
        let mut locations = Vec::with_capacity(self.addresses.len());
        for (i, (addr, _, frames)) in self.addresses.iter().enumerate() {
            let lines = frames
                .iter()
                .map(|f| {
                    let key = (f.function.clone(), f.file.clone());
                    let function_id = *functions.entry(key).or_insert_with(|| {
                        let id = function_table.len() as u64 + 1;
                        let name = strings.id(&f.function);
                        // No system name: pprof takes a function whose system name equals its
                        // name for one still to be demangled, and strips its `<…>`, which
                        // turns `<TcpStream as AsyncWriteRent>::write` into `::write`.
                        function_table.push(protos::Function {
                            id,
                            name,
                            filename: strings.id(&f.file),
                            ..Default::default()
                        });
                        id
                    });
                    protos::Line { function_id, line: i64::from(f.line) }
                })
                .collect();
            let own = *addr >= self.exe.0 && *addr < self.exe.1 && i != SYSCALL;
            locations.push(protos::Location {
                id: i as u64 + 1,
                mapping_id: if own { 1 } else { 0 },
                address: *addr as u64,
                line: lines,
                ..Default::default()
            });
        }
        let empty = locations.len() as u64 + 1;
        let mut no_stack_used = false;
        let sample = self
            .stacks
            .iter()
            .zip(&self.stack_addresses)
            .map(|((name, _, ticks), ids)| {
                let mut location_id: Vec<u64> = ids.iter().map(|&id| id as u64 + 1).collect();
                if location_id.is_empty() {
                    no_stack_used = true;
                    location_id.push(empty);
                }
                protos::Sample {
                    location_id,
                    value: vec![*ticks as i64, *ticks as i64 * self.period_ns],
                    label: vec![protos::Label { key: thread, str: strings.id(name), ..Default::default() }],
                }
            })
            .collect();
        if no_stack_used {
            let id = function_table.len() as u64 + 1;
            function_table.push(protos::Function { id, name: strings.id("[no stack]"), ..Default::default() });
            locations.push(protos::Location {
                id: empty,
                line: vec![protos::Line { function_id: id, line: 0 }],
                ..Default::default()
            });
        }
        let cpu_type = protos::ValueType { ty: cpu, unit: nanoseconds };
        protos::Profile {
            sample_type: vec![protos::ValueType { ty: samples, unit: count }, cpu_type.clone()],
            sample,
            mapping: vec![mapping],
            location: locations,
            function: function_table,
            string_table: strings.table,
            time_nanos: self.started.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos() as i64,
            duration_nanos: self.duration.as_nanos() as i64,
            period_type: Some(cpu_type),
            period: self.period_ns,
            ..Default::default()
        }
    }
}

/// inferno splits folded lines on `;` (the count follows the last space, so spaces may stay):
/// `[u8; 4]` becomes `[u8, 4]`.
fn clean(name: &str) -> String {
    name.replace(';', ",")
}

/// pprof's string table: index 0 is the empty string.
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Default for Strings {
    fn default() -> Self {
        Strings { table: vec![String::new()], index: HashMap::from([(String::new(), 0)]) }
    }
}

impl Strings {
    fn id(&mut self, s: &str) -> i64 {
        if let Some(&id) = self.index.get(s) {
            return id;
        }
        let id = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), id);
        id
    }
}

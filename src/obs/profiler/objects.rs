//! The executable and the shared objects loaded into the process, from `dl_iterate_phdr`:
//! where each one's code sits, so the sampler knows percore's own code from libc's and the
//! symbolizer can turn a run-time address into an address in the file.

use std::ffi::CStr;

/// One loaded object.
#[derive(Clone, Debug)]
pub(crate) struct Object {
    /// The path it was loaded from; empty for the executable itself.
    pub(crate) path: String,
    /// True for the executable (the first object `dl_iterate_phdr` reports).
    pub(crate) is_main: bool,
    /// What to subtract from a run-time address to get the address in the file.
    pub(crate) bias: usize,
    /// Its executable segments, as run-time [start, end) ranges.
    pub(crate) exec: Vec<(usize, usize)>,
}

impl Object {
    /// A short name for a profile: `libc.so.6`, `linux-vdso.so.1`.
    pub(crate) fn short_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    pub(crate) fn contains(&self, addr: usize) -> bool {
        self.exec.iter().any(|&(s, e)| addr >= s && addr < e)
    }
}

/// Every object loaded now, the executable first.
pub(crate) fn loaded() -> Vec<Object> {
    let mut objects: Vec<Object> = Vec::new();
    // SAFETY: the callback only reads the `dl_phdr_info` it is given, during the call.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut objects as *mut Vec<Object> as *mut libc::c_void) };
    objects
}

unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _: libc::size_t, data: *mut libc::c_void) -> libc::c_int {
    let objects = &mut *(data as *mut Vec<Object>);
    let info = &*info;
    let path = if info.dlpi_name.is_null() {
        String::new()
    } else {
        CStr::from_ptr(info.dlpi_name).to_string_lossy().into_owned()
    };
    let bias = info.dlpi_addr as usize;
    let headers = if info.dlpi_phdr.is_null() {
        &[][..]
    } else {
        std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize)
    };
    let exec = headers
        .iter()
        .filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_X != 0)
        .map(|h| (bias + h.p_vaddr as usize, bias + (h.p_vaddr + h.p_memsz) as usize))
        .collect();
    let is_main = objects.is_empty();
    objects.push(Object { path, is_main, bias, exec });
    0
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_function_is_in_the_executables_code() {
        let objects = super::loaded();
        let here = this_function_is_in_the_executables_code as *const () as usize;
        assert!(objects[0].is_main && objects[0].contains(here));
        assert!(!objects[1..].iter().any(|o| o.contains(here)));
    }
}

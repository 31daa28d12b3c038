// SPDX-License-Identifier: GPL-2.0

//! Sysctl directories served by Rust code.
//!
//! A [`SysctlTable`] is one directory under `/proc/sys` (e.g. `kernel/vmfair`) whose files are
//! all served by one shared object implementing [`SysctlFile`]; a `key` chosen per file tells
//! them apart. The table holds a reference on that object ([`Arc`]) for as long as it is
//! registered, so the object outlives every handler call by construction: there is no way to
//! register a table whose data can go away first, and forgetting a table only leaks it.
//!
//! Reads format the whole file into a [`TextBuf`] and return the slice at the file position,
//! so a file may be longer than one read; a write hands the handler the whole input, at
//! position 0 only.
//!
//! Nothing here knows what the files mean.

use core::{fmt, ptr::NonNull};
use kernel::{bindings, prelude::*, str::CString, sync::Arc, types::ForeignOwnable};

/// A text buffer for sysctl reads, on the heap, at most [`TextBuf::MAX`] bytes.
pub(crate) struct TextBuf {
    buf: KVVec<u8>,
}

impl TextBuf {
    /// Largest content: 1 MiB.
    pub(crate) const MAX: usize = 1 << 20;

    /// An empty buffer.
    pub(crate) fn new() -> Self {
        Self { buf: KVVec::new() }
    }

    /// What was written so far.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

impl fmt::Write for TextBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.buf.len() + s.len() > Self::MAX {
            return Err(fmt::Error);
        }
        self.buf
            .extend_from_slice(s.as_bytes(), GFP_KERNEL)
            .map_err(|_| fmt::Error)
    }
}

/// The behaviour of the files of a [`SysctlTable`]; `key` tells the files apart.
///
/// Handlers run in process context, in the task that reads or writes the file, possibly
/// several at once, and may sleep.
pub(crate) trait SysctlFile: Send + Sync + 'static {
    /// Formats the file's whole content into `out`.
    fn show(&self, key: usize, out: &mut TextBuf) -> Result;
    /// Applies a write of `input` (the whole write); an error is returned to the writer.
    fn store(&self, key: usize, input: &[u8]) -> Result;
}

/// One file of a table.
#[derive(Clone, Copy)]
pub(crate) struct SysctlEntry {
    /// File name.
    pub(crate) name: &'static CStr,
    /// Permissions, e.g. `0o644`.
    pub(crate) mode: u16,
    /// Passed to the [`SysctlFile`] handlers.
    pub(crate) key: usize,
}

impl SysctlEntry {
    /// A file `name` with `mode`, served with `key`.
    pub(crate) const fn new(name: &'static CStr, mode: u16, key: usize) -> Self {
        Self { name, mode, key }
    }
}

/// A registered sysctl directory whose files are served by one `T: SysctlFile`; unregistered
/// on drop.
///
/// Dropping it waits for the handlers running on it, so it must not be dropped while holding
/// a lock they take.
///
/// # Invariants
///
/// `header` is the registration of `table` under `path`. Every entry of `table` has
/// `sysctl_handler::<T>` as its handler and, as its `data`, `data`: a pointer from
/// `Arc::<T>::into_foreign()` whose reference this object owns and gives back (`put`) only
/// after unregistering.
pub(crate) struct SysctlTable {
    header: NonNull<bindings::ctl_table_header>,
    data: *mut c_void,
    /// Gives back the reference behind `data`: `Arc::<T>::from_foreign()`, then drop.
    put: unsafe fn(*mut c_void),
    _table: KVec<bindings::ctl_table>,
    _path: CString,
}

// SAFETY: unregistering and dropping the `Arc<T>` (`T: Send + Sync`) may be done from any task.
unsafe impl Send for SysctlTable {}
// SAFETY: `&SysctlTable` gives access to nothing.
unsafe impl Sync for SysctlTable {}

/// Drops the reference behind a pointer from `Arc::<T>::into_foreign()`.
///
/// # Safety
///
/// `p` comes from `Arc::<T>::into_foreign()` and its reference is not used after this.
unsafe fn put_arc<T: SysctlFile>(p: *mut c_void) {
    // SAFETY: as the caller promises.
    drop(unsafe { Arc::<T>::from_foreign(p) });
}

impl SysctlTable {
    /// Registers the directory `path` (e.g. `kernel/vmfair`, parents created as needed) with
    /// `files`, served by `data`. The table keeps `data` alive until it is unregistered.
    pub(crate) fn register<T: SysctlFile>(
        path: CString,
        data: Arc<T>,
        files: &[SysctlEntry],
    ) -> Result<Self> {
        let mut table = KVec::with_capacity(files.len(), GFP_KERNEL)?;
        let data = data.into_foreign();
        // Gives the reference back if anything below fails, before registration.
        let undo = kernel::types::ScopeGuard::new(|| {
            // SAFETY: `data` comes from `into_foreign()` and is not used after this guard runs.
            unsafe { put_arc::<T>(data) }
        });
        for f in files {
            table.push(
                bindings::ctl_table {
                    procname: f.name.as_ptr().cast(),
                    data,
                    maxlen: 0,
                    mode: f.mode,
                    proc_handler: Some(sysctl_handler::<T>),
                    poll: core::ptr::null_mut(),
                    extra1: f.key as *mut c_void,
                    extra2: core::ptr::null_mut(),
                },
                GFP_KERNEL,
            )?;
        }
        // SAFETY: `path` and `table` are valid, and the returned object keeps them (and the
        // reference behind every entry's `data`) alive until it has unregistered the table.
        let header = unsafe {
            bindings::register_sysctl_sz(path.as_ptr().cast(), table.as_ptr(), table.len())
        };
        let header = NonNull::new(header).ok_or(ENOMEM)?;
        undo.dismiss();
        // INVARIANT: `header` registers `table`, whose entries are as described, under `path`.
        Ok(Self {
            header,
            data,
            put: put_arc::<T>,
            _table: table,
            _path: path,
        })
    }
}

impl Drop for SysctlTable {
    fn drop(&mut self) {
        // SAFETY: `header` is our registration (type invariant), unregistered once, here;
        // unregister_sysctl_table() waits for the handlers running on it.
        unsafe { bindings::unregister_sysctl_table(self.header.as_ptr()) };
        // SAFETY: no handler runs or can start any more, so the reference behind `data` (type
        // invariant) is not used after this.
        unsafe { (self.put)(self.data) };
    }
}

/// The `proc_handler` of every file of a [`SysctlTable`] served by a `T`.
///
/// # Safety
///
/// Called by the sysctl core only, for an entry of a registered [`SysctlTable`] served by a
/// `T`, with `lenp` and `ppos` valid and `buf` holding (writes) or having room for (reads)
/// `*lenp` bytes.
unsafe extern "C" fn sysctl_handler<T: SysctlFile>(
    table: *const bindings::ctl_table,
    dir: c_int,
    buf: *mut c_void,
    lenp: *mut usize,
    ppos: *mut bindings::loff_t,
) -> c_int {
    // SAFETY: `table` is an entry of a registered `SysctlTable` served by a `T`, so its `data`
    // comes from `Arc::<T>::into_foreign()` and the table holds that reference until it has
    // unregistered, which waits for this call (type invariant of `SysctlTable`).
    let (file, key) = unsafe { (Arc::<T>::borrow((*table).data), (*table).extra1 as usize) };
    // SAFETY: `lenp` and `ppos` are valid for the call (the caller's promise).
    let (len, pos) = unsafe { (*lenp, *ppos) };
    let Ok(pos) = usize::try_from(pos) else {
        return EINVAL.to_errno();
    };
    if dir != 0 {
        if pos != 0 {
            return EINVAL.to_errno();
        }
        // SAFETY: for writes, `buf` holds `len` bytes copied from user space.
        let input = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) };
        if let Err(e) = file.store(key, input) {
            return e.to_errno();
        }
        // SAFETY: as above.
        unsafe { *ppos += len as bindings::loff_t };
        return 0;
    }
    let mut text = TextBuf::new();
    if let Err(e) = file.show(key, &mut text) {
        return e.to_errno();
    }
    let content = text.as_bytes();
    let n = content.len().saturating_sub(pos).min(len);
    if n > 0 {
        // SAFETY: for reads, `buf` has room for `len` bytes, and `pos + n <= content.len()`.
        unsafe { core::ptr::copy_nonoverlapping(content.as_ptr().add(pos), buf.cast::<u8>(), n) };
    }
    // SAFETY: `lenp` and `ppos` are valid for the call.
    unsafe {
        *lenp = n;
        *ppos += n as bindings::loff_t;
    }
    0
}

//! What the fuzz targets share: an allocation guard, so that a single
//! allocation of an input-controlled size is a finding (libFuzzer without a
//! sanitizer has no malloc limit, only an RSS limit), and a scratch
//! directory for the extraction target.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::OnceLock;

/// Largest single allocation expected: the biggest buffers the library
/// makes are 1 MiB I/O buffers, documents of at most 1 MiB, and sparse maps
/// of at most 8 MiB.
const MAX_ALLOCATION: usize = 64 << 20;

struct Guarded;

fn check(size: usize) {
    if size > MAX_ALLOCATION {
        // No formatting: it could allocate.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"osctl-fuzz: allocation over 64 MiB: input-controlled size?\n",
        );
        std::process::abort();
    }
}

// SAFETY: forwards to the system allocator unchanged after the size check.
unsafe impl GlobalAlloc for Guarded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Guarded = Guarded;

/// Called first by every target (kept for what may need setting up once).
pub fn init() {}

/// A scratch directory for this process, under `$TMPDIR` (`run.sh` points
/// it at a directory it removes afterwards).
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("osctl-fuzz-")
            .tempdir()
            .expect("a scratch directory")
    })
    .path()
}

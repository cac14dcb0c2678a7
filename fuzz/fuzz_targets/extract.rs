//! A root file system tar stream extracted into a scratch directory.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    osctl_fuzz::init();
    osctl_core::inspect::fuzz::extract(data, osctl_fuzz::scratch());
});

//! The outer archive as `osctl archive verify` and `show` read it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    osctl_fuzz::init();
    osctl_core::inspect::fuzz::archive(data);
});

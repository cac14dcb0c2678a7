//! metadata.yml, snapshots.yml, checksums.yml and the user, group and
//! container configs, every parser on the same bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    osctl_fuzz::init();
    osctl_core::inspect::fuzz::documents(data);
});

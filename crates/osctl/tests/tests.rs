//! Integration tests of the `osctl` binary: one test binary, one module per
//! area, each test in its own OSCTL_ROOT (see `support`).

mod it;

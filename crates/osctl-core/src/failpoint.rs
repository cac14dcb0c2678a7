//! Named points where tests make the process die, to check that a crash at
//! any step of an export or import is undone by the next command.
//!
//! `OSCTL_FAILPOINT=<name>` kills the process with SIGKILL when it reaches the
//! point of that name. Without the variable this is one environment lookup.

/// Dies here if `OSCTL_FAILPOINT` names this point.
pub fn hit(name: &str) {
    if std::env::var_os("OSCTL_FAILPOINT").is_some_and(|v| v == name) {
        // SAFETY: kill(2) on our own pid; SIGKILL cannot be caught, which is
        // the point: no destructor or handler runs, as in a real crash.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

//! Named points where tests make the process die, to check that a crash at
//! any step of an export or import is undone by the next command, or pause,
//! to let another command run at a chosen moment of this one.
//!
//! `OSCTL_FAILPOINT=<name>` kills the process with SIGKILL when it reaches the
//! point of that name; `OSCTL_FAILPOINT=<name>:stop` stops it with SIGSTOP
//! there (the test sends SIGCONT); `OSCTL_FAILPOINT=<name>:fail` makes the
//! step at a point checked with [`check`] fail as the real step can (a stop,
//! a receive, a start), to check that the same step then completes. Without
//! the variable this is one environment lookup; without the `failpoints`
//! feature (release builds), nothing.

/// Does nothing: failpoints are a test build's.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// Never fails: failpoints are a test build's.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn check(_name: &str) -> crate::error::Result<()> {
    Ok(())
}

/// Fails where `OSCTL_FAILPOINT` asks the step at this point to fail.
#[cfg(feature = "failpoints")]
pub fn check(name: &str) -> crate::error::Result<()> {
    let wanted = std::env::var_os("OSCTL_FAILPOINT");
    match wanted.is_some_and(|w| w.to_string_lossy().strip_suffix(":fail") == Some(name)) {
        true => Err(crate::error::Error::busy(format!(
            "failpoint '{name}': the step failed on purpose"
        ))),
        false => Ok(()),
    }
}

/// Dies or stops here if `OSCTL_FAILPOINT` names this point.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    let Some(wanted) = std::env::var_os("OSCTL_FAILPOINT") else {
        return;
    };
    let wanted = wanted.to_string_lossy();
    let signal = match wanted.strip_suffix(":stop") {
        Some(point) if point == name => libc::SIGSTOP,
        None if wanted == name => libc::SIGKILL,
        _ => return,
    };
    // SAFETY: kill(2) on our own pid. Neither signal can be caught, which is
    // the point: no destructor or handler runs, as in a real crash or stall.
    unsafe {
        libc::kill(libc::getpid(), signal);
    }
}

//! The few system calls std does not wrap.
#![allow(unsafe_code)]

/// Sends `signal` to process `pid`; errors (the process is gone) are ignored.
pub fn send_signal(pid: u32, signal: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Output into a closed pipe ends the process silently, as git and the coreutils do: the
/// default action of SIGPIPE, which Rust's runtime turns off. Only for commands that write
/// nothing but their output (a recording command must finish its transaction instead); call
/// it before any thread starts.
pub fn default_sigpipe() {
    // SAFETY: signal(2) with a constant disposition touches no memory of ours.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Flushes everything written to the filesystem holding `file` (one call instead of an fsync
/// per file and per directory).
pub fn syncfs(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is valid for as long as `file` is borrowed.
    let rc = unsafe { libc::syncfs(file.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// This machine's host name (a device's default name in the cloud).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".to_owned())
}

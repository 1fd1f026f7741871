//! Running a command on a pseudo-terminal, so an interactive agent or a TUI keeps a real
//! terminal while horde records what it shows (`horde run` in an interactive session).
//!
//! The command gets the pty's slave side as stdin, stdout, stderr and controlling terminal;
//! horde puts its own terminal in raw mode (restored when [`RawMode`] drops), relays keys to
//! the master side and tees the master's output to its stdout and to the recording. Window
//! size follows the real terminal (SIGWINCH). These are the only system calls std lacks.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

fn winsize(fd: i32) -> Option<libc::winsize> {
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some(ws)
}

/// Gives the pty the size of our stdout's terminal.
pub fn follow_size(master: &File) {
    if let Some(ws) = winsize(libc::STDOUT_FILENO) {
        // SAFETY: TIOCSWINSZ reads one winsize from a struct we own; a failure only leaves
        // the old size.
        unsafe {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Opens a pty sized like our terminal and makes its slave side the command's stdio and
/// controlling terminal. Returns the master side. Drop `cmd` after spawning it: the
/// parent's copies of the slave must close for the master to see the end.
pub fn attach(cmd: &mut Command) -> io::Result<File> {
    let (mut master, mut slave): (libc::c_int, libc::c_int) = (-1, -1);
    let ws = winsize(libc::STDOUT_FILENO);
    let ws_ptr = ws
        .as_ref()
        .map_or(std::ptr::null(), |w| w as *const libc::winsize);
    // SAFETY: openpty writes two descriptors into our ints; name and termios are optional.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            ws_ptr,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty succeeded, so both are open descriptors that nobody else owns.
    let (master, slave) = unsafe { (File::from_raw_fd(master), File::from_raw_fd(slave)) };
    // The command must not inherit the master side.
    // SAFETY: F_SETFD on a descriptor we own.
    if unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    cmd.stdin(slave.try_clone()?)
        .stdout(slave.try_clone()?)
        .stderr(slave);
    // SAFETY: between fork and exec only async-signal-safe calls: setsid and ioctl.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::ioctl(libc::STDIN_FILENO, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(master)
}

/// Our terminal in raw mode (keys go to the command untouched, Ctrl-C included) until drop.
pub struct RawMode {
    fd: i32,
    saved: libc::termios,
}

impl RawMode {
    /// Raw mode on stdin, if it is a terminal.
    pub fn enter() -> Option<Self> {
        let fd = libc::STDIN_FILENO;
        // SAFETY: tcgetattr fills a termios we own; cfmakeraw and tcsetattr read it.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(fd, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(Self { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enter`.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

//! `sd_notify(3)` without libsystemd: one datagram to the AF_UNIX socket named by `$NOTIFY_SOCKET`
//! (a filesystem path, or a Linux abstract-namespace name written with a leading `@`).
//! Protocol: <https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html>.
//!
//! Node has no AF_UNIX datagram sockets, which is why this lives in the addon. libc is declared by
//! hand (no `libc` crate offline).

use crate::fail::{Fail, Kind, CODE_NATIVE};

/// Sends `message` to `$NOTIFY_SOCKET`. `Ok(false)` when the variable is unset or empty (not run by
/// systemd with `Type=notify`), `Ok(true)` once the datagram is sent, `Err` when it cannot be.
pub fn sd_notify(message: &[u8]) -> Result<bool, Fail> {
    let target = match std::env::var_os("NOTIFY_SOCKET") {
        Some(v) if !v.is_empty() => v,
        _ => return Ok(false),
    };
    send(target.as_encoded_bytes(), message)
}

#[cfg(target_os = "linux")]
fn send(target: &[u8], message: &[u8]) -> Result<bool, Fail> {
    use std::ffi::{c_int, c_void};

    #[repr(C)]
    struct SockaddrUn {
        sun_family: u16,
        sun_path: [u8; 108],
    }
    extern "C" {
        fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
        fn sendto(
            fd: c_int,
            buf: *const c_void,
            len: usize,
            flags: c_int,
            addr: *const SockaddrUn,
            addrlen: u32,
        ) -> isize;
        fn close(fd: c_int) -> c_int;
    }
    const AF_UNIX: c_int = 1;
    const SOCK_DGRAM: c_int = 2;
    const SOCK_CLOEXEC: c_int = 0o2_000_000;
    // Never block the event loop on a stalled manager; never raise SIGPIPE.
    const MSG_DONTWAIT: c_int = 0x40;
    const MSG_NOSIGNAL: c_int = 0x4000;
    const PATH_OFFSET: usize = 2; // offsetof(struct sockaddr_un, sun_path)

    let shown = String::from_utf8_lossy(target).into_owned();
    let mut addr = SockaddrUn {
        sun_family: AF_UNIX as u16,
        sun_path: [0; 108],
    };
    let addrlen = match target.first() {
        // Abstract namespace: sun_path starts with NUL, the name is not NUL-terminated and the
        // address length says where it ends.
        Some(b'@') if target.len() > 1 && target.len() <= 108 => {
            addr.sun_path[1..target.len()].copy_from_slice(&target[1..]);
            PATH_OFFSET + target.len()
        }
        Some(b'/') if target.len() < 108 => {
            addr.sun_path[..target.len()].copy_from_slice(target);
            PATH_OFFSET + target.len() + 1
        }
        _ => {
            return Err(Fail::new(
                Kind::Error,
                CODE_NATIVE,
                format!(
                "sdNotify: NOTIFY_SOCKET={shown:?} is not an absolute path or an @abstract name of at most 107 bytes"
            ),
            ))
        }
    };

    // SAFETY: plain syscalls on a descriptor this function owns; pointers are valid for the lengths.
    unsafe {
        let fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            return Err(Fail::os(
                "socket",
                err.raw_os_error().unwrap_or(0),
                format!("sdNotify: socket(AF_UNIX, SOCK_DGRAM) failed: {err}"),
            ));
        }
        let sent = sendto(
            fd,
            message.as_ptr().cast(),
            message.len(),
            MSG_DONTWAIT | MSG_NOSIGNAL,
            &addr,
            addrlen as u32,
        );
        let err = std::io::Error::last_os_error();
        close(fd);
        if sent < 0 {
            return Err(Fail::os(
                "sendto",
                err.raw_os_error().unwrap_or(0),
                format!("sdNotify: sending to NOTIFY_SOCKET={shown} failed: {err}"),
            ));
        }
        if sent as usize != message.len() {
            return Err(Fail::new(
                Kind::Error,
                CODE_NATIVE,
                format!(
                    "sdNotify: short send to NOTIFY_SOCKET={shown} ({sent} of {} bytes)",
                    message.len()
                ),
            ));
        }
    }
    Ok(true)
}

#[cfg(not(target_os = "linux"))]
fn send(_target: &[u8], _message: &[u8]) -> Result<bool, Fail> {
    // systemd runs on Linux only; elsewhere there is no service manager to notify.
    Ok(false)
}

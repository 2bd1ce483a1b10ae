//! `waitpid(2)` for processes the case threads started and the pool killed (src/execution/reap.ts):
//! once their thread is gone they are this process's children that no event loop waits for, and
//! each would stay a zombie for the life of the daemon. Node has no `waitpid` for a process it did
//! not start, which is why this lives in the addon. libc is declared by hand.

/// Collects `pid`'s exit status if it has exited: 1 when collected, 0 when it is a child still
/// running, -1 when it is not a child of this process (or `pid` is not a process id).
#[cfg(target_os = "linux")]
pub fn reap_exited(pid: i32) -> i32 {
    use std::ffi::c_int;
    extern "C" {
        fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    }
    const WNOHANG: c_int = 1;
    // Children started by any thread of the process, and of any kind (cloned ones included).
    const WALL: c_int = 0x4000_0000;
    if pid <= 0 {
        return -1;
    }
    let mut status: c_int = 0;
    loop {
        // SAFETY: a plain syscall; `status` is valid for the call.
        let r = unsafe { waitpid(pid, &mut status, WNOHANG | WALL) };
        if r == pid {
            return 1;
        }
        if r == 0 {
            return 0;
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return -1;
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn reap_exited(_pid: i32) -> i32 {
    -1
}

#[cfg(test)]
mod tests {
    use super::reap_exited;

    #[test]
    fn collects_an_exited_child_once_and_refuses_what_is_not_a_child() {
        let child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = child.id() as i32;
        let mut collected = 0;
        for _ in 0..200 {
            collected = reap_exited(pid);
            if collected != 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(collected, 1);
        assert_eq!(reap_exited(pid), -1);
        assert_eq!(reap_exited(1), -1);
        assert_eq!(reap_exited(0), -1);
    }
}

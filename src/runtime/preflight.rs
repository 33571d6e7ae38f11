//! Host checks before any executor starts, each failing with an actionable
//! message: io_uring must be usable, RLIMIT_MEMLOCK must cover the rings of
//! every executor, and RLIMIT_NOFILE should cover the connection limit (the
//! soft limit is raised to the hard limit first; a shortfall is a warning).

use anyhow::bail;

/// Locked memory one executor needs (glommio's rings at the default depth plus headroom).
pub const MEMLOCK_PER_CORE: u64 = 512 << 10;
/// File descriptors kept aside for listeners, the io_uring rings, logs and HTTP clients.
const FD_HEADROOM: u64 = 1024;

pub fn check(cfg: &crate::config::Config, cores: usize) -> anyhow::Result<()> {
    check_io_uring()?;
    check_memlock(cores)?;
    check_nofile(cfg.server.max_connections as u64);
    Ok(())
}

fn check_io_uring() -> anyhow::Result<()> {
    // io_uring_setup(1, &params): a ring of one entry, closed at once.
    let mut params = [0u8; 120];
    // SAFETY: params is a zeroed io_uring_params-sized buffer the kernel fills.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        let hint = match err.raw_os_error() {
            Some(libc::ENOSYS) => "the kernel was built without io_uring (need Linux >= 5.8)",
            Some(libc::EPERM) => "io_uring is disabled: set sysctl kernel.io_uring_disabled=0, or allow it in the seccomp profile of your container",
            Some(libc::ENOMEM) => "not enough locked memory: raise RLIMIT_MEMLOCK (systemd: LimitMEMLOCK=infinity)",
            _ => "io_uring_setup failed",
        };
        bail!("io_uring is unavailable: {hint} ({err})");
    }
    // SAFETY: fd is the ring we just created.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

fn rlimit(resource: libc::__rlimit_resource_t) -> libc::rlimit {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid out-pointer.
    unsafe { libc::getrlimit(resource, &mut r) };
    r
}

fn check_memlock(cores: usize) -> anyhow::Result<()> {
    let r = rlimit(libc::RLIMIT_MEMLOCK);
    let need = MEMLOCK_PER_CORE * cores as u64;
    if r.rlim_cur != libc::RLIM_INFINITY && r.rlim_cur < need {
        bail!(
            "RLIMIT_MEMLOCK is {} KiB but {cores} cores need at least {} KiB for their io_uring rings: \
             raise it (`ulimit -l {}`, systemd `LimitMEMLOCK=`) or configure fewer cores (server.cores)",
            r.rlim_cur >> 10,
            need >> 10,
            need >> 10
        );
    }
    Ok(())
}

fn check_nofile(max_connections: u64) {
    let mut r = rlimit(libc::RLIMIT_NOFILE);
    if r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: raising the soft limit up to the hard limit is always allowed.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
        r = rlimit(libc::RLIMIT_NOFILE);
    }
    let want = max_connections + FD_HEADROOM;
    if r.rlim_cur < want {
        tracing::warn!(
            nofile = r.rlim_cur,
            wanted = want,
            "RLIMIT_NOFILE is below server.max_connections + {FD_HEADROOM}: the node will hit EMFILE before its \
             connection limit. Raise it (systemd LimitNOFILE=1048576, see tuning/) or lower server.max_connections"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_host_passes() {
        super::check_io_uring().expect("io_uring on the test host");
        super::check_memlock(1).expect("memlock for one core");
    }
}

//! The encoder's helper thread, started at once (`EncodeOptions::spawner`).
//! This is the command's business, not the core's: a library linked into
//! servers does not place threads on CPUs.
//!
//! A new thread is queued on a CPU chosen by the scheduler, and Linux often
//! picks the CPU of the thread that created it. When that one is busy (the
//! encoder searching), the helper waits for a time slice, 1–4 ms on the
//! benchmark VM, while the other CPU sits idle. So the helper is moved to
//! the CPUs its creator is not on, right after it is created, and stays off
//! that one CPU for its life (the CLI's helper lives for one command); the
//! creator stays free to move.

use std::thread::{Builder, JoinHandle};

/// A [`hsync_core::Spawner`]: the helper, kept off the creator's CPU.
pub fn helper(f: Box<dyn FnOnce() + Send>) -> std::io::Result<JoinHandle<()>> {
    spawn_beside("hsync-zstd", f)
}

/// Spawns `f` on a thread named `name`, kept off the creator's current CPU
/// when the process may run on another.
pub fn spawn_beside<F, T>(name: &str, f: F) -> std::io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let h = Builder::new().name(name.into()).spawn(f)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::thread::JoinHandleExt;
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: cpu_set_t is plain data; the calls only read and set
        // scheduling masks, of this process and of the thread just created
        // (its handle keeps it joinable, so the pthread_t is valid).
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            let me = libc::sched_getcpu();
            let known = me >= 0 && (me as usize) < libc::CPU_SETSIZE as usize;
            if known && libc::sched_getaffinity(0, size, &mut set) == 0 && libc::CPU_COUNT(&set) >= 2 && libc::CPU_ISSET(me as usize, &set)
            {
                libc::CPU_CLR(me as usize, &mut set);
                libc::pthread_setaffinity_np(h.as_pthread_t(), size, &set);
            }
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_and_returns() {
        let h = super::spawn_beside("hsync-test", || 6 * 7).unwrap();
        assert_eq!(h.join().unwrap(), 42);
    }
}

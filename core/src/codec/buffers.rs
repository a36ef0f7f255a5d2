//! Byte buffers an encoder grows to about a window's size (its input, and
//! the context of a literal chunk), kept between responses. Made and freed
//! for every response, they made glibc serve those sizes from each
//! thread's arena and keep them there (an httpd child of 32 threads kept
//! tens of MB of such free memory); taken from here, a process makes them
//! once. At most [`POOLED_BUFFERS`] of at most [`POOLED_BUFFER_BYTES`] each.

use crate::limits::{POOLED_BUFFERS, POOLED_BUFFER_BYTES};
use std::sync::Mutex;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer, with the capacity a previous response left it.
pub(crate) fn take() -> Vec<u8> {
    POOL.lock().ok().and_then(|mut p| p.pop()).unwrap_or_default()
}

/// Keeps `v` for a later response (emptied), or frees it when it is too
/// large or the pool is full.
pub(crate) fn give(mut v: Vec<u8>) {
    if v.capacity() == 0 || v.capacity() > POOLED_BUFFER_BYTES {
        return;
    }
    v.clear();
    if let Ok(mut p) = POOL.lock() {
        if p.len() < POOLED_BUFFERS {
            p.push(v);
        }
    }
    // Otherwise `v` is freed here, after the lock is released.
}

/// Bytes the pooled buffers hold.
pub fn pooled_bytes() -> usize {
    POOL.lock().map(|p| p.iter().map(|v| v.capacity()).sum()).unwrap_or(0)
}

/// Frees every pooled buffer (a process that wants its memory back; the
/// memory tests, to measure an encoder from nothing).
pub fn release() {
    let all = POOL.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
    drop(all);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_emptied() {
        for _ in 0..3 * POOLED_BUFFERS {
            let mut v = take();
            assert!(v.is_empty());
            v.extend_from_slice(&[7u8; 1000]);
            give(v);
        }
        give(Vec::with_capacity(POOLED_BUFFER_BYTES + 1)); // too large: freed
        let p = POOL.lock().unwrap();
        assert!(p.len() <= POOLED_BUFFERS);
        assert!(p.iter().all(|v| v.is_empty() && v.capacity() <= POOLED_BUFFER_BYTES));
    }
}

//! The live heap of a test binary: bytes allocated and not yet freed. Resident memory is no
//! measure of a leak: glibc keeps freed memory in per-thread arenas, so it moved by 17 % between
//! two identical bursts. A test that counts installs [`Counting`] as its global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The system allocator, counting the bytes it holds for the program in [`LIVE`].
pub struct Counting;

pub static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only the count is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

/// The fewest live heap bytes seen over `window`: polls in flight come and go, and what stays at
/// their lowest point is what the process keeps.
pub async fn kept_heap_bytes(window: Duration) -> usize {
    let until = tokio::time::Instant::now() + window;
    let mut least = usize::MAX;
    while tokio::time::Instant::now() < until {
        least = least.min(LIVE.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    least
}

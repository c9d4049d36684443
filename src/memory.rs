//! Gives freed memory back to the operating system.
//!
//! glibc's allocator keeps what the process freed in its arenas, for reuse. At start-up every
//! target's first poll is in flight at once, each with its SDK request and response, so the heap
//! peaks there, and without trimming the resident size stays at that peak for good: at 5,000
//! pipelines, 275 MiB resident after a poll cycle while far less was in use (docs/sizing.md, "Where
//! the memory goes"). Trimming every few seconds returns the free pages, so the resident size
//! follows what is in use.

use std::time::Duration;

/// How often freed memory is returned. A trim walks the allocator's free lists: a few
/// milliseconds of one core for a heap of hundreds of megabytes.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Allocations from this size up are mapped on their own, and unmapped when freed.
///
/// glibc starts at 128 KiB but raises the threshold to the size of each mapped block freed, up to
/// 32 MiB. The assembler's buffers (the bodies, 12 MB each in gzip at 10,000 pipelines, and the
/// list of every stored entry) are freed and made again on every assembly, so after the first one
/// they came from the arenas, where what they left behind stayed resident between trims: at
/// 10,000 pipelines, 265 MiB resident after a poll cycle against 215 MiB ten seconds later. A
/// fixed threshold keeps them mapped, so they return to the system as they are freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 256 * 1024;

/// Sets the allocator up before anything is allocated in quantity: see [`MMAP_THRESHOLD`].
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn configure() {
    unsafe extern "C" {
        /// glibc's `mallopt(3)`.
        fn mallopt(param: i32, value: i32) -> i32;
    }
    /// `M_MMAP_THRESHOLD` in glibc's malloc.h; setting it turns the dynamic threshold off.
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt takes no pointer and may be called at any time.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Other allocators are left as they are.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn configure() {}

/// Returns the free memory of every arena to the operating system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() {
    unsafe extern "C" {
        /// glibc's `malloc_trim(3)`: releases free memory at the top of the heap and, since glibc
        /// 2.8, every free page inside it too.
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: malloc_trim takes no pointer and is safe to call at any time from any thread.
    unsafe {
        malloc_trim(0);
    }
}

/// Other allocators return memory on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}

/// Trims every [`TRIM_INTERVAL`] for the life of the process.
pub async fn run() {
    loop {
        tokio::time::sleep(TRIM_INTERVAL).await;
        if tokio::task::spawn_blocking(trim).await.is_err() {
            return;
        }
    }
}

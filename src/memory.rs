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

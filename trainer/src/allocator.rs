//! Allocator settings for the trainer process.
//!
//! A training step frees and allocates the same large buffers (activations, gradients,
//! unfolded patches) again and again. glibc's `malloc` serves blocks over its mmap threshold
//! (128 KiB at first, raised as such blocks are freed) with fresh `mmap`s and gives them back
//! on `free`, and returns the top of its heap to the system when more than its trim threshold
//! is free there; every fresh page then costs a page fault that the kernel zeroes. Measured
//! with `trainer bench --models resnet20` (batch 128): 930,000 minor page faults for 10 steps
//! with glibc's defaults against 200,000 with these settings (README, "Speed on the CPU").
//! airbench's activations at batch 1024 are larger than the largest mmap threshold glibc
//! accepts (32 MiB), so mmap is turned off altogether: its step ran 1.05× faster
//! (docs/performance.md).

/// Keeps freed memory in the process for the next step instead of returning it to the system
/// (glibc on Linux: every block from the heap, whose top is trimmed only past 1 GiB free). Elsewhere it does nothing. Call it first thing in `main`.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes malloc's parameters; called before other threads start.
    unsafe {
        // 32 MiB is the largest mmap threshold glibc accepts on 64-bit targets.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        // Larger blocks too: threads' arenas hand those to the main heap.
        libc::mallopt(libc::M_MMAP_MAX, 0);
    }
}

//! Keep freed tensor memory in the process instead of handing it back to the kernel.
//!
//! A training step allocates and frees hundreds of activation and gradient buffers of 0.1–13 MB.
//! glibc's malloc serves blocks above its mmap threshold with fresh `mmap`s and returns them on
//! free (and trims the heap top above its trim threshold), so every step faults the same pages
//! in again and the kernel zeroes them: 4 % page faults, 2 % page clearing and 2 % memset in a
//! perf profile of the MiniLM LoRA step. Raising both thresholds makes freed blocks reusable;
//! measured here: 12–17 % off the step, side by side (docs/performance.md). The
//! cost is that the process keeps its high-water mark of memory until it exits (peak RSS, which
//! run records report, is unchanged).

use std::sync::OnceLock;

/// Blocks below this are carved from the heap (and reused) rather than `mmap`ed: 512 MiB, more
/// than any single tensor of the cpu profiles (the largest, SmolLM2's logits, is ~60 MB).
pub const MMAP_THRESHOLD: i32 = 512 << 20;
/// Free memory at the top of the heap above this is returned to the kernel: 2 GiB (the largest
/// value the key takes; a MiniLM step at B = 32 frees more than 1 GiB at once, and with 1 GiB the
/// step measured ~8 % slower).
pub const TRIM_THRESHOLD: i32 = i32::MAX;

/// Set glibc's malloc thresholds once per process (a no-op on other C libraries). Called by
/// [`crate::Trainer::new`] and the `peftlab` command line; call it yourself when running models
/// from your own code. Returns whether the settings were applied.
pub fn retain_freed_memory() -> bool {
    static APPLIED: OnceLock<bool> = OnceLock::new();
    *APPLIED.get_or_init(apply)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // SAFETY: mallopt only changes allocator parameters; both values are valid for these keys
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}

#[cfg(test)]
mod tests {
    /// On glibc the settings are applied (mallopt returns 1 for both keys), and asking twice is
    /// harmless.
    #[test]
    fn thresholds_apply_on_glibc() {
        let applied = super::retain_freed_memory();
        assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
        assert_eq!(super::retain_freed_memory(), applied);
    }
}

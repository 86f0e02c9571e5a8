//! Giving back start-up code once the supervisor is running.
//!
//! A page of a mapped file counts in RSS once the process touches it, and the kernel maps up
//! to 64 KB around every touched page ("fault-around"). Start-up — argument parsing, config,
//! the AWS SDK fetching secrets — touches code spread across the binary that the supervisor
//! never runs again, so an idle agent would keep megabytes of it in its RSS. After start-up the
//! agent drops its mappings of the binary's read-only pages (`MADV_DONTNEED`). They are clean
//! file pages: nothing is lost, the page cache keeps them, and whatever runs later (the
//! reaper, the health server) faults its few pages back in.
//!
//! Only mappings of the executable that are read-only and lie wholly below `etext` (the end of
//! the code) are touched: RELRO and data come after it, and those were written at start-up.

use std::ffi::c_void;

extern "C" {
    /// End of the executable's code, defined by the linker.
    static etext: u8;
}

/// Drops the agent's mappings of its read-only code and constants; returns the bytes released.
pub fn release_startup_pages() -> usize {
    let end_of_text = std::ptr::addr_of!(etext) as usize;
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else { return 0 };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return 0 };
    let mut released = 0;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else { continue };
        let path = f.nth(3).unwrap_or("");
        if path != exe.as_os_str() || !(perms == "r--p" || perms == "r-xp") {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else { continue };
        if end > end_of_text.next_multiple_of(4096) {
            continue;
        }
        // SAFETY: a whole, read-only, file-backed private mapping of our own executable that was
        // never written (it lies below the end of the code): dropping it only makes the next
        // access re-read the same bytes from the page cache.
        if unsafe { libc::madvise(start as *mut c_void, end - start, libc::MADV_DONTNEED) } == 0 {
            released += end - start;
        }
    }
    released
}

//! Process memory, read from `/proc/self` (Linux); `None` elsewhere; and the fleet
//! process's page size choice.

/// Reads a `kB` field such as `VmHWM` or `VmRSS` of `/proc/self/status`, in bytes.
fn status_field(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_field(&status, field)
}

fn parse_status_field(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// Peak resident set size of this process so far (`VmHWM`), bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    status_field("VmHWM")
}

/// Current resident set size (`VmRSS`), bytes.
pub fn rss_bytes() -> Option<u64> {
    status_field("VmRSS")
}

/// Asks the kernel for no transparent huge pages in this process (Linux
/// `PR_SET_THP_DISABLE`, what mimalloc's own `allow_thp=0` option does; nothing elsewhere),
/// and says whether that took effect.
///
/// `vphone load` calls it first thing, and the fleet benchmark does too, so it measures what
/// users run. A fleet allocates and frees request buffers, histograms and connection
/// buffers in many small heaps; with huge pages on (`/sys/kernel/mm/transparent_hugepage`
/// `always`, common on servers) each first touch of a fresh region makes the kernel zero a
/// whole 2 MiB page: in profiles of 2,000 bindings that was a fifth of the client's CPU,
/// most of its system time. Plain 4 KiB pages zero only what is used.
pub fn use_small_pages() -> bool {
    #[cfg(target_os = "linux")]
    {
        rustix::thread::disable_transparent_huge_pages(true).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kilobyte_fields_are_read_as_bytes() {
        let status = "Name:\tvphone\nVmHWM:\t   12345 kB\nVmRSS:\t  100 kB\n";
        assert_eq!(parse_status_field(status, "VmHWM"), Some(12345 * 1024));
        assert_eq!(parse_status_field(status, "VmRSS"), Some(100 * 1024));
        assert_eq!(parse_status_field(status, "VmSwap"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn small_pages_are_asked_for_and_the_kernel_keeps_the_setting() {
        assert!(use_small_pages());
        assert_eq!(
            rustix::thread::transparent_huge_pages_are_disabled().ok(),
            Some(true)
        );
    }
}

//! Process memory, read from `/proc/self` (Linux); `None` elsewhere.

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
}

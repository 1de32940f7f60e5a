//! Lets go of the code only start-up ran.
//!
//! The binary's code and read-only data are mapped from its file, and the kernel maps a
//! faulting page's whole page-cache folio (often 128 KiB) or its neighbours: start-up
//! (migrations, the config, TLS set-up, the runtimes, the admin API's first calls) leaves
//! about 20 MiB of the file mapped, most of it never run again. Once start-up is over and
//! the gateway has a quiet second, it drops its own mappings of those pages
//! (`MADV_DONTNEED`). What it runs afterwards maps back on first use from the page cache
//! (a minor fault; no disk read while the file is cached), so what stays resident is what
//! serving uses.
//!
//! Only read-only mappings of the executable's own file that hold no private copy of a page
//! (`Anonymous: 0 kB` in smaps) are dropped: every page of those is the file's, so nothing
//! is lost. The relocated read-only data (RELRO) was written before it was made read-only:
//! it holds private copies and is left alone, as is everything writable.

use std::{
    ffi::c_void,
    ops::Range,
    path::{Path, PathBuf},
};

/// What was dropped.
pub struct Released {
    pub mappings: usize,
    /// What of them was resident just before, in KiB.
    pub resident_kib: u64,
}

/// Drops this process's mappings of its executable's read-only, never-written pages.
pub fn release() -> std::io::Result<Released> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = Released {
        mappings: 0,
        resident_kib: 0,
    };
    for (range, resident_kib) in file_only_mappings(&smaps, &exe) {
        let len = range.end - range.start;
        // SAFETY: the range is a whole mapping of the executable's file that is not
        // writable and holds no private (anonymous) page: after MADV_DONTNEED each page
        // reads back from the file exactly as it was, on its next access. Nothing else
        // unmaps or remaps the executable's mappings while the process runs.
        #[allow(unsafe_code)]
        let dropped = unsafe {
            rustix::mm::madvise(
                range.start as *mut c_void,
                len,
                rustix::mm::Advice::LinuxDontNeed,
            )
        };
        if dropped.is_ok() {
            released.mappings += 1;
            released.resident_kib += resident_kib;
        }
    }
    Ok(released)
}

/// The mappings of `exe` in an smaps listing that are read-only and hold no anonymous page,
/// with their resident KiB.
fn file_only_mappings(smaps: &str, exe: &Path) -> Vec<(Range<usize>, u64)> {
    struct Mapping {
        range: Range<usize>,
        anonymous_kb: Option<u64>,
        resident_kb: u64,
    }
    let kib = |value: &str| {
        value
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
    };
    let mut found = Vec::new();
    let mut current: Option<Mapping> = None;
    let mut finish = |m: Option<Mapping>| {
        if let Some(m) = m.filter(|m| m.anonymous_kb == Some(0)) {
            found.push((m.range, m.resident_kb));
        }
    };
    for line in smaps.lines() {
        if let Some((range, perms, path)) = header(line) {
            finish(current.take());
            // Readable, not writable, private: `r-xp` code, `r--p` read-only data. Other
            // mappings' lines are skipped.
            let ours = perms.starts_with("r-") && perms.ends_with('p') && path == exe;
            current = ours.then_some(Mapping {
                range,
                anonymous_kb: None,
                resident_kb: 0,
            });
        } else if let Some(m) = current.as_mut() {
            if let Some(value) = line.strip_prefix("Anonymous:") {
                m.anonymous_kb = kib(value);
            } else if let Some(value) = line.strip_prefix("Rss:") {
                m.resident_kb = kib(value).unwrap_or(0);
            }
        }
    }
    finish(current.take());
    found
}

/// A mapping's header line: `start-end perms offset dev inode [path]`.
fn header(line: &str) -> Option<(Range<usize>, &str, PathBuf)> {
    let mut fields = line.splitn(6, ' ');
    let (start, end) = fields.next()?.split_once('-')?;
    let range = usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    if perms.len() != 4 {
        return None;
    }
    // offset, device, inode
    for _ in 0..3 {
        fields.next()?;
    }
    let path = fields.next().unwrap_or("").trim_start();
    Some((range, perms, PathBuf::from(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55ae8affa000-55ae8bd95000 r--p 00000000 fe:00 5308897                    /opt/tollgate
Size:              13932 kB
Rss:                6144 kB
Anonymous:             0 kB
VmFlags: rd mr mw me sd
55ae8bd95000-55ae8d31b000 r-xp 00d9a000 fe:00 5308897                    /opt/tollgate
Size:              22040 kB
Anonymous:             0 kB
55ae8d31b000-55ae8d41f000 r--p 0231f000 fe:00 5308897                    /opt/tollgate
Size:               1040 kB
Anonymous:          1040 kB
55ae8d41f000-55ae8d431000 rw-p 02422000 fe:00 5308897                    /opt/tollgate
Anonymous:            40 kB
55ae8d431000-55ae8d432000 rw-p 00000000 00:00 0 
Anonymous:             4 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:00 1234                       /usr/lib/libc.so.6
Anonymous:             0 kB
7f0000200000-7f0000300000 r--p 00000000 fe:00 9999                       /opt/tollgate (deleted)
Anonymous:             0 kB
";

    #[test]
    fn only_the_executables_read_only_never_written_mappings_are_chosen() {
        let found = file_only_mappings(SMAPS, Path::new("/opt/tollgate"));
        assert_eq!(
            found,
            vec![
                (0x55ae_8aff_a000..0x55ae_8bd9_5000, 6144),
                (0x55ae_8bd9_5000..0x55ae_8d31_b000, 0)
            ],
            "not the relocated data, the writable data, anonymous memory, another file or a replaced binary"
        );
    }

    #[test]
    fn a_mapping_whose_anonymous_size_is_unknown_is_left_alone() {
        let smaps = "1000-2000 r-xp 00000000 fe:00 1 /opt/tollgate\nRss: 4 kB\n";
        assert!(file_only_mappings(smaps, Path::new("/opt/tollgate")).is_empty());
    }
}

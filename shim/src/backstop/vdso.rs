//! The vDSO clock patcher: makes a process's vDSO clock functions enter the kernel.
//!
//! Static and Go programs read the wall clock through the vDSO, code the kernel maps
//! into every process that reads the time from a shared page without a system call:
//! no seccomp filter sees it, so the backstop could not give them the capsule's clock.
//! [`patch`] rewrites the entry points of `clock_gettime`, `gettimeofday`, `time` and
//! `clock_getres` in one process's vDSO so that each makes the real system call with
//! the same arguments and returns its result, which the filter then catches. The
//! stubs return what the vDSO's own fallback path returns (the raw `-errno` of the
//! call), so every caller (glibc, musl, Go's runtime) handles them as it already does.
//!
//! - The image is found in `/proc/PID/maps` (`[vdso]`) and read and written through
//!   `/proc/PID/mem`, whose writes force their way into the read-only, executable page
//!   the way a debugger's breakpoint does: the kernel gives that process its own copy
//!   of the page, every other process keeps the shared one. `process_vm_writev`
//!   cannot write there. Forked children inherit the patched copy; `exec` maps a fresh
//!   vDSO, so the caller patches again after each exec.
//! - Symbols are found as the dynamic loaders find them (glibc, musl, Go's runtime):
//!   through `PT_DYNAMIC`'s `DT_SYMTAB`, `DT_STRTAB` and `DT_HASH` or `DT_GNU_HASH`,
//!   not the section headers, which nothing at run time needs.
//! - A stub is written only where it fits inside the function (its `st_size`): a
//!   function too small for it, or of unknown size, is left as it is and logged, never
//!   overwritten past its end.
//! - The writes are not atomic: the caller patches a process that cannot run them
//!   meanwhile (stopped in a system call right after `exec`, with one thread).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

/// The vDSO functions to rewrite and the system call each one makes instead. Aliases
/// (`time` and `__vdso_time`) name one function and get one stub.
#[cfg(target_arch = "x86_64")]
const CALLS: &[(&str, libc::c_long)] = &[
    ("__vdso_clock_gettime", libc::SYS_clock_gettime),
    ("clock_gettime", libc::SYS_clock_gettime),
    ("__vdso_gettimeofday", libc::SYS_gettimeofday),
    ("gettimeofday", libc::SYS_gettimeofday),
    ("__vdso_time", libc::SYS_time),
    ("time", libc::SYS_time),
    ("__vdso_clock_getres", libc::SYS_clock_getres),
    ("clock_getres", libc::SYS_clock_getres),
];
#[cfg(target_arch = "aarch64")]
const CALLS: &[(&str, libc::c_long)] = &[
    ("__kernel_clock_gettime", libc::SYS_clock_gettime),
    ("__kernel_gettimeofday", libc::SYS_gettimeofday),
    ("__kernel_clock_getres", libc::SYS_clock_getres),
];

/// Elsewhere there is no stub: `patch` says so.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const CALLS: &[(&str, libc::c_long)] = &[];

#[cfg(target_arch = "x86_64")]
const EM_NATIVE: u16 = 62; // EM_X86_64
#[cfg(target_arch = "aarch64")]
const EM_NATIVE: u16 = 183; // EM_AARCH64
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const EM_NATIVE: u16 = 0;

/// Rewrites the clock entry points of process `pid`'s vDSO so that each makes the
/// real system call. Ok(false): the process has no vDSO (nothing to do).
pub fn patch(pid: libc::pid_t) -> io::Result<bool> {
    if CALLS.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "vDSO clock stubs exist for x86_64 and aarch64 only",
        ));
    }
    let maps_path = format!("/proc/{pid}/maps");
    let maps = fs::read_to_string(&maps_path).map_err(|e| named(&maps_path, e))?;
    let Some((start, end)) = vdso_range(&maps) else {
        return Ok(false);
    };
    let mem_path = format!("/proc/{pid}/mem");
    let mem = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&mem_path)
        .map_err(|e| named(&mem_path, e))?;
    let image = read_image(&mem, start, end).map_err(|e| named(&mem_path, e))?;
    let entries = clock_entries(&image).map_err(|why| invalid(&mem_path, &why))?;
    for entry in entries.values() {
        let Some(stub) = stub_for(entry, &image) else {
            log::warn!(
                "vdso: pid {pid}: {} is {} bytes, too small for a stub: left as it is",
                entry.names.join("/"),
                entry.size
            );
            continue;
        };
        let at = start + entry.offset;
        mem.write_all_at(&stub, at)
            .map_err(|e| named(&mem_path, e))?;
        let mut back = vec![0u8; stub.len()];
        mem.read_exact_at(&mut back, at)
            .map_err(|e| named(&mem_path, e))?;
        if back != stub {
            return Err(invalid(
                &mem_path,
                &format!(
                    "{} at {at:#x} does not read back as written",
                    entry.names.join("/")
                ),
            ));
        }
    }
    Ok(true)
}

fn named(path: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{path}: {e}"))
}

fn invalid(path: &str, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{path}: vDSO: {why}"))
}

/// The `[vdso]` mapping's start and end in a `/proc/PID/maps` text.
fn vdso_range(maps: &str) -> Option<(u64, u64)> {
    let line = maps
        .lines()
        .find(|l| l.split_whitespace().nth(5) == Some("[vdso]"))?;
    let (start, end) = line.split_whitespace().next()?.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    (start < end).then_some((start, end))
}

/// The vDSO is a few pages; anything much larger is not one.
const MAX_IMAGE: u64 = 1 << 20;

fn read_image(mem: &File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    if end - start > MAX_IMAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("[vdso] mapping of {} bytes is too large", end - start),
        ));
    }
    let mut image = vec![0u8; (end - start) as usize];
    mem.read_exact_at(&mut image, start)?;
    Ok(image)
}

/// One function of the vDSO to rewrite.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    /// Offset from the image's start (its load address).
    offset: u64,
    /// `st_size`: how many bytes the function has.
    size: u64,
    nr: libc::c_long,
    /// The names it goes by (aliases).
    names: Vec<&'static str>,
}

/// Little-endian readers over the image, failing on reads past its end. Offsets taken
/// from the image are added with wrapping arithmetic: a wrapped one fails here.
fn bytes<const N: usize>(image: &[u8], at: u64) -> Result<[u8; N], String> {
    usize::try_from(at)
        .ok()
        .and_then(|at| image.get(at..at.checked_add(N)?))
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("read of {N} bytes at {at:#x} is outside the image"))
}
fn u16_at(image: &[u8], at: u64) -> Result<u16, String> {
    bytes(image, at).map(u16::from_le_bytes)
}
fn u32_at(image: &[u8], at: u64) -> Result<u32, String> {
    bytes(image, at).map(u32::from_le_bytes)
}
fn u64_at(image: &[u8], at: u64) -> Result<u64, String> {
    bytes(image, at).map(u64::from_le_bytes)
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PF_X: u32 = 1;
const DT_NULL: u64 = 0;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_STRSZ: u64 = 10;
const DT_GNU_HASH: u64 = 0x6fff_fef5;
const SYM_SIZE: u64 = 24; // sizeof(Elf64_Sym)
const STT_NOTYPE: u8 = 0;
const STT_FUNC: u8 = 2;
const SHN_UNDEF: u16 = 0;

/// Every defined symbol of the image's dynamic symbol table: (name, offset from the
/// image's start, size).
fn dynamic_symbols(image: &[u8]) -> Result<Vec<(String, u64, u64)>, String> {
    if image.get(..4) != Some(b"\x7fELF") {
        return Err("no ELF header".into());
    }
    // EI_CLASS 2: 64-bit; EI_DATA 1: little-endian.
    if image.get(4..6) != Some(&[2, 1]) {
        return Err("not a 64-bit little-endian ELF image".into());
    }
    let machine = u16_at(image, 18)?;
    if machine != EM_NATIVE {
        return Err(format!(
            "ELF machine {machine}, not this architecture's {EM_NATIVE}"
        ));
    }
    let phoff = u64_at(image, 0x20)?;
    let phentsize = u64::from(u16_at(image, 0x36)?);
    let phnum = u64::from(u16_at(image, 0x38)?);
    if phentsize < 0x38 {
        return Err(format!("program header entries of {phentsize} bytes"));
    }
    // Segments: (type, flags, vaddr, memsz).
    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = phoff.wrapping_add(i * phentsize);
        let kind = u32_at(image, ph)?;
        let flags = u32_at(image, ph.wrapping_add(4))?;
        let vaddr = u64_at(image, ph.wrapping_add(0x10))?;
        let memsz = u64_at(image, ph.wrapping_add(0x28))?;
        segments.push((kind, flags, vaddr, memsz));
    }
    let bias = segments
        .iter()
        .filter(|s| s.0 == PT_LOAD)
        .map(|s| s.2)
        .min()
        .ok_or("no PT_LOAD segment")?;
    let dynamic = segments
        .iter()
        .find(|s| s.0 == PT_DYNAMIC)
        .ok_or("no PT_DYNAMIC segment")?;
    // Link-time addresses to offsets in the image.
    let off = |vaddr: u64| {
        vaddr
            .checked_sub(bias)
            .ok_or_else(|| format!("address {vaddr:#x} below the load base {bias:#x}"))
    };

    let (mut hash, mut gnu_hash, mut strtab, mut symtab, mut strsz) =
        (None, None, None, None, None);
    let mut at = off(dynamic.2)?;
    loop {
        let (tag, val) = (u64_at(image, at)?, u64_at(image, at.wrapping_add(8))?);
        match tag {
            DT_NULL => break,
            DT_HASH => hash = Some(off(val)?),
            DT_GNU_HASH => gnu_hash = Some(off(val)?),
            DT_STRTAB => strtab = Some(off(val)?),
            DT_SYMTAB => symtab = Some(off(val)?),
            DT_STRSZ => strsz = Some(val),
            _ => {}
        }
        at = at.wrapping_add(16);
    }
    let strtab = strtab.ok_or("no DT_STRTAB")?;
    let symtab = symtab.ok_or("no DT_SYMTAB")?;
    let strsz = strsz.unwrap_or(image.len() as u64 - strtab.min(image.len() as u64));
    let count = match (hash, gnu_hash) {
        // DT_HASH: nbucket, nchain (one chain entry per symbol), ...
        (Some(hash), _) => u64::from(u32_at(image, hash.wrapping_add(4))?),
        (None, Some(gnu)) => gnu_hash_count(image, gnu)?,
        (None, None) => return Err("neither DT_HASH nor DT_GNU_HASH".into()),
    };
    if count > image.len() as u64 / SYM_SIZE {
        return Err(format!("{count} symbols do not fit in the image"));
    }

    let strings = usize::try_from(strtab)
        .ok()
        .and_then(|s| image.get(s..s.checked_add(usize::try_from(strsz).ok()?)?))
        .ok_or("DT_STRTAB outside the image")?;
    let mut symbols = Vec::new();
    for i in 1..count {
        let sym = symtab.wrapping_add(i * SYM_SIZE);
        let name = u32_at(image, sym)? as usize;
        let kind = bytes::<1>(image, sym.wrapping_add(4))?[0] & 0xf;
        let shndx = u16_at(image, sym.wrapping_add(6))?;
        let value = u64_at(image, sym.wrapping_add(8))?;
        let size = u64_at(image, sym.wrapping_add(16))?;
        if shndx == SHN_UNDEF || !matches!(kind, STT_FUNC | STT_NOTYPE) {
            continue;
        }
        let name = strings
            .get(name..)
            .and_then(|s| s.split(|&b| b == 0).next())
            .ok_or_else(|| format!("symbol {i}'s name is outside DT_STRTAB"))?;
        let offset = off(value)?;
        // The function must lie in an executable segment of the image.
        let inside = segments.iter().any(|&(kind, flags, vaddr, memsz)| {
            kind == PT_LOAD
                && flags & PF_X != 0
                && value >= vaddr
                && value.saturating_add(size) <= vaddr.saturating_add(memsz)
        });
        if inside && offset.saturating_add(size) <= image.len() as u64 {
            symbols.push((String::from_utf8_lossy(name).into_owned(), offset, size));
        }
    }
    Ok(symbols)
}

/// The number of symbols of a `DT_GNU_HASH` table: one past the highest index its
/// chains reach (the last entry of a chain has its low bit set).
fn gnu_hash_count(image: &[u8], gnu: u64) -> Result<u64, String> {
    let nbuckets = u64::from(u32_at(image, gnu)?);
    let symoffset = u64::from(u32_at(image, gnu.wrapping_add(4))?);
    let bloom_size = u64::from(u32_at(image, gnu.wrapping_add(8))?);
    let buckets = gnu.wrapping_add(16 + bloom_size * 8);
    let mut last = 0;
    for b in 0..nbuckets {
        last = last.max(u64::from(u32_at(image, buckets.wrapping_add(b * 4))?));
    }
    if last < symoffset {
        return Ok(symoffset);
    }
    let chains = buckets.wrapping_add(nbuckets * 4);
    while u32_at(image, chains.wrapping_add((last - symoffset) * 4))? & 1 == 0 {
        last += 1;
    }
    Ok(last + 1)
}

/// The clock functions of the image, by offset (aliases merged).
fn clock_entries(image: &[u8]) -> Result<BTreeMap<u64, Entry>, String> {
    let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
    for (name, offset, size) in dynamic_symbols(image)? {
        let Some(&(name, nr)) = CALLS.iter().find(|c| c.0 == name) else {
            continue;
        };
        let entry = entries.entry(offset).or_insert(Entry {
            offset,
            size,
            nr,
            names: Vec::new(),
        });
        if entry.nr != nr {
            return Err(format!(
                "{name} and {} share the address {offset:#x}",
                entry.names.join("/")
            ));
        }
        entry.size = entry.size.min(size);
        entry.names.push(name);
    }
    Ok(entries)
}

/// The stub for `entry`, or None when it does not fit inside the function.
fn stub_for(entry: &Entry, image: &[u8]) -> Option<Vec<u8>> {
    let start = usize::try_from(entry.offset).ok()?;
    let stub = stub(entry.nr, image.get(start..)?);
    (entry.size >= stub.len() as u64).then_some(stub)
}

/// `mov eax, NR; syscall; ret`: the arguments are already in rdi/rsi, and `syscall`
/// clobbers only rcx and r11, which a call may clobber. A function that starts with
/// the indirect-branch landing pad `endbr64` keeps it.
#[cfg(target_arch = "x86_64")]
fn stub(nr: libc::c_long, function: &[u8]) -> Vec<u8> {
    const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
    let mut stub = Vec::with_capacity(12);
    if function.starts_with(&ENDBR64) {
        stub.extend_from_slice(&ENDBR64);
    }
    stub.push(0xb8);
    stub.extend_from_slice(&(nr as u32).to_le_bytes());
    stub.extend_from_slice(&[0x0f, 0x05, 0xc3]);
    stub
}

/// `mov x8, #NR; svc #0; ret`. A function that starts with a branch-target landing
/// pad (`bti c`, `bti jc`, or `paciasp`/`pacibsp`, which also are) starts with `bti c`:
/// the page may be guarded, and the stub must not sign the return address it does not
/// authenticate.
#[cfg(target_arch = "aarch64")]
fn stub(nr: libc::c_long, function: &[u8]) -> Vec<u8> {
    const BTI_C: u32 = 0xd503_245f;
    const LANDING_PADS: [u32; 4] = [BTI_C, 0xd503_24df, 0xd503_233f, 0xd503_237f];
    let first = function
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes);
    let mut words = Vec::with_capacity(4);
    if first.is_some_and(|w| LANDING_PADS.contains(&w)) {
        words.push(BTI_C);
    }
    words.push(0xd280_0008 | ((nr as u32 & 0xffff) << 5)); // movz x8, #nr
    words.push(0xd400_0001); // svc #0
    words.push(0xd65f_03c0); // ret
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn stub(_nr: libc::c_long, _function: &[u8]) -> Vec<u8> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's vDSO: its address and image.
    fn own_image() -> (u64, Vec<u8>) {
        let maps = fs::read_to_string("/proc/self/maps").unwrap();
        let (start, end) = vdso_range(&maps).expect("this process has a [vdso] mapping");
        let mem = File::open("/proc/self/mem").unwrap();
        (start, read_image(&mem, start, end).unwrap())
    }

    #[test]
    fn finds_this_kernels_clock_functions() {
        let (start, image) = own_image();
        // SAFETY: getauxval only reads the auxiliary vector.
        let ehdr = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
        assert_eq!(start, ehdr, "the [vdso] mapping starts at AT_SYSINFO_EHDR");
        let symbols = dynamic_symbols(&image).unwrap();
        let entries = clock_entries(&image).unwrap();
        let mut calls: Vec<_> = CALLS.iter().map(|c| c.1).collect();
        calls.dedup();
        for nr in calls {
            let entry = entries.values().find(|e| e.nr == nr);
            let entry = entry.unwrap_or_else(|| {
                panic!("no vDSO function for system call {nr}; the vDSO has {symbols:?}")
            });
            assert!(
                stub_for(entry, &image).is_some(),
                "{entry:?} is too small for a stub; the vDSO has {symbols:?}"
            );
        }
    }

    #[test]
    fn a_function_too_small_for_the_stub_is_left_alone() {
        let (_, image) = own_image();
        let entries = clock_entries(&image).unwrap();
        let entry = entries.values().next().unwrap();
        let fits = stub_for(entry, &image).unwrap().len() as u64;
        for (size, expected) in [(0, false), (fits - 1, false), (fits, true)] {
            let entry = Entry {
                size,
                ..entry.clone()
            };
            assert_eq!(stub_for(&entry, &image).is_some(), expected, "{entry:?}");
        }
    }

    #[test]
    fn finds_the_vdso_line_of_a_maps_text() {
        let maps = "\
7ffd1c5e0000-7ffd1c601000 rw-p 00000000 00:00 0                          [stack]
7ffd1c7f2000-7ffd1c7f6000 r--p 00000000 00:00 0                          [vvar]
7ffd1c7f6000-7ffd1c7f8000 r-xp 00000000 00:00 0                          [vdso]
";
        assert_eq!(vdso_range(maps), Some((0x7ffd1c7f6000, 0x7ffd1c7f8000)));
        let without: String = maps.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert_eq!(vdso_range(&without), None);
    }

    #[test]
    fn a_process_that_does_not_exist_is_an_error() {
        // pid_max is at most 2^22: no process has this number.
        let err = patch(libc::pid_t::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains("/proc/2147483647/maps"), "{err}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (_, image) = own_image();
        for cut in [0, 3, 20, 63] {
            assert!(clock_entries(&image[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong = image.clone();
        wrong[4] = 1; // ELFCLASS32
        assert!(clock_entries(&wrong).unwrap_err().contains("64-bit"));
        // Every truncation, and every byte of the headers and tables set to 0xff.
        for cut in 0..image.len() {
            let _ = clock_entries(&image[..cut]);
        }
        for i in 0..image.len().min(0x800) {
            let mut bad = image.clone();
            bad[i] = 0xff;
            let _ = clock_entries(&bad);
        }
    }

    /// A real process patched: the filter sees the clock calls afterwards.
    #[cfg(target_arch = "x86_64")]
    mod patched {
        use super::*;

        /// The errno the test's seccomp filter gives the clock system calls.
        const MARK: i32 = 77;

        fn filter() -> Vec<libc::sock_filter> {
            const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
            const LD_W_ABS: u16 = 0x20;
            const JEQ_K: u16 = 0x15;
            const RET_K: u16 = 0x06;
            let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
            let nrs = [
                libc::SYS_clock_gettime,
                libc::SYS_gettimeofday,
                libc::SYS_time,
                libc::SYS_clock_getres,
            ];
            // seccomp_data: nr at 0, arch at 4.
            let mut filter = vec![
                op(LD_W_ABS, 0, 0, 4),
                op(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
                op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
                op(LD_W_ABS, 0, 0, 0),
            ];
            for (i, nr) in nrs.iter().enumerate() {
                // On a match, jump over the other comparisons and the ALLOW.
                filter.push(op(JEQ_K, (nrs.len() - i) as u8, 0, *nr as u32));
            }
            filter.push(op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW));
            filter.push(op(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | MARK as u32));
            filter
        }

        fn pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
            use std::os::fd::FromRawFd;
            let mut fds = [0; 2];
            // SAFETY: pipe2 writes two descriptors into the array.
            assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            // SAFETY: both descriptors are new and owned by nobody else.
            unsafe {
                (
                    FromRawFd::from_raw_fd(fds[0]),
                    FromRawFd::from_raw_fd(fds[1]),
                )
            }
        }

        /// What the child found, one bit per check (exit code 0: all held).
        const CHECKS: [&str; 7] = [
            "libc clock_gettime failed before the patch (not served by the vDSO?)",
            "the filter did not catch the clock_gettime system call",
            "libc clock_gettime after the patch did not give -1/errno 77",
            "libc gettimeofday after the patch did not give -1/errno 77 or -77",
            "the vDSO's clock_gettime after the patch did not return -77",
            "the vDSO's gettimeofday after the patch did not return -77",
            "the vDSO's time or clock_getres after the patch did not return -77",
        ];

        type ClockFn = unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int;
        type TimeOfDayFn =
            unsafe extern "C" fn(*mut libc::timeval, *mut libc::c_void) -> libc::c_int;
        type TimeFn = unsafe extern "C" fn(*mut libc::time_t) -> libc::time_t;

        /// The vDSO's own entry points, called directly after the patch.
        struct Vdso {
            clock_gettime: ClockFn,
            gettimeofday: TimeOfDayFn,
            time: TimeFn,
            clock_getres: ClockFn,
        }

        /// The child: filter, check, tell the parent, wait for the patch, check again.
        /// Only system calls and libc's clock functions after fork: no allocation.
        ///
        /// # Safety
        /// Called in a freshly forked child with the pipe ends given; never returns.
        unsafe fn child(program: &libc::sock_fprog, vdso: &Vdso, ready: i32, go: i32) -> ! {
            // SAFETY: plain system calls and libc's async-signal-safe clock functions on
            // this stack frame's buffers; the vDSO functions are called with the C
            // signatures they have; _exit ends the child without running anything of the
            // parent's.
            unsafe {
                let errno = || *libc::__errno_location();
                let mut failures = 0;
                let mut ts: libc::timespec = std::mem::zeroed();
                let mut tv: libc::timeval = std::mem::zeroed();
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, program)
                        != 0
                {
                    libc::_exit(200);
                }
                if libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) != 0 {
                    failures |= 1;
                }
                if libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, &mut ts) != -1
                    || errno() != MARK
                {
                    failures |= 2;
                }
                let mut byte = b'r';
                if libc::write(ready, (&raw const byte).cast(), 1) != 1 {
                    libc::_exit(201);
                }
                if libc::read(go, (&raw mut byte).cast(), 1) != 1 || byte != b'p' {
                    libc::_exit(202);
                }
                if libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) != -1 || errno() != MARK {
                    failures |= 4;
                }
                // glibc's gettimeofday is the vDSO's function itself (an IFUNC): it gives
                // the raw -errno the vDSO gives.
                let r = libc::gettimeofday(&mut tv, std::ptr::null_mut());
                if !(r == -1 && errno() == MARK || r == -MARK) {
                    failures |= 8;
                }
                if (vdso.clock_gettime)(libc::CLOCK_REALTIME, &mut ts) != -MARK {
                    failures |= 16;
                }
                if (vdso.gettimeofday)(&mut tv, std::ptr::null_mut()) != -MARK {
                    failures |= 32;
                }
                if (vdso.time)(std::ptr::null_mut()) != -i64::from(MARK)
                    || (vdso.clock_getres)(libc::CLOCK_REALTIME, &mut ts) != -MARK
                {
                    failures |= 64;
                }
                libc::_exit(failures);
            }
        }

        #[test]
        fn patched_clock_functions_make_the_system_call() {
            use std::io::{Read, Write};
            use std::os::fd::AsRawFd;

            let (start, image) = own_image();
            let entries = clock_entries(&image).unwrap();
            let at = |nr| {
                let entry = entries.values().find(|e| e.nr == nr).unwrap();
                (start + entry.offset) as usize as *const libc::c_void
            };
            // SAFETY: each address is the entry point of the vDSO function of that
            // system call, whose C signature is the one given.
            let vdso = unsafe {
                Vdso {
                    clock_gettime: std::mem::transmute::<*const libc::c_void, ClockFn>(at(
                        libc::SYS_clock_gettime,
                    )),
                    gettimeofday: std::mem::transmute::<*const libc::c_void, TimeOfDayFn>(at(
                        libc::SYS_gettimeofday,
                    )),
                    time: std::mem::transmute::<*const libc::c_void, TimeFn>(at(libc::SYS_time)),
                    clock_getres: std::mem::transmute::<*const libc::c_void, ClockFn>(at(
                        libc::SYS_clock_getres,
                    )),
                }
            };
            let filter = filter();
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            let (ready_r, ready_w) = pipe();
            let (go_r, go_w) = pipe();

            // SAFETY: the child runs only `child`, which is async-signal-safe.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
            if pid == 0 {
                // SAFETY: a freshly forked child with its pipe ends.
                unsafe { child(&program, &vdso, ready_w.as_raw_fd(), go_r.as_raw_fd()) };
            }
            drop((ready_w, go_r));
            let mut ready = [0u8];
            let patched = match File::from(ready_r).read(&mut ready) {
                Ok(1) => Some(patch(pid)),
                _ => None,
            };
            let answer = if matches!(patched, Some(Ok(true))) {
                b"p"
            } else {
                b"x"
            };
            let _ = File::from(go_w).write_all(answer);
            let mut status = 0;
            // SAFETY: waits for our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(
                libc::WIFEXITED(status),
                "the child ended with status {status:#x}"
            );
            let code = libc::WEXITSTATUS(status);
            let patched = patched.unwrap_or_else(|| panic!("the child exited with {code} early"));
            assert!(matches!(patched, Ok(true)), "patch: {patched:?}");
            let failed: Vec<_> = (0..CHECKS.len())
                .filter(|bit| code & (1 << bit) != 0)
                .map(|bit| CHECKS[bit])
                .collect();
            assert_eq!(code, 0, "the child's checks failed: {failed:?}");
        }

        /// busybox-static's `date +%s` under the filter, stopped at its exec (it is
        /// traced) and patched there or not: what it printed.
        fn busybox_date(patched: bool) -> String {
            use std::io::Read;
            use std::os::fd::AsRawFd;

            let args = [
                c"busybox".as_ptr(),
                c"date".as_ptr(),
                c"+%s".as_ptr(),
                std::ptr::null(),
            ];
            let filter = filter();
            let program = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            let (out_r, out_w) = pipe();
            // SAFETY: the child makes system calls only, then execs or exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
            if pid == 0 {
                let none = std::ptr::null_mut::<libc::c_void>();
                // SAFETY: system calls on data prepared before the fork.
                unsafe {
                    if libc::dup2(out_w.as_raw_fd(), 1) != 1
                        || libc::ptrace(libc::PTRACE_TRACEME, 0, none, none) != 0
                        || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                        || libc::syscall(
                            libc::SYS_seccomp,
                            libc::SECCOMP_SET_MODE_FILTER,
                            0,
                            &program,
                        ) != 0
                    {
                        libc::_exit(126);
                    }
                    libc::execv(c"/bin/busybox".as_ptr(), args.as_ptr());
                    libc::_exit(127);
                }
            }
            drop(out_w);
            let mut status = 0;
            // SAFETY: waits for our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(
                libc::WIFSTOPPED(status) && libc::WSTOPSIG(status) == libc::SIGTRAP,
                "busybox (package busybox-static) did not stop at its exec: status {status:#x}"
            );
            let result = patched.then(|| patch(pid));
            let none = std::ptr::null_mut::<libc::c_void>();
            // SAFETY: lets our stopped tracee go on.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, none, none) };
            // SAFETY: waits for our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "busybox date: status {status:#x}"
            );
            if let Some(result) = result {
                assert!(matches!(result, Ok(true)), "patch: {result:?}");
            }
            let mut out = String::new();
            File::from(out_r).read_to_string(&mut out).unwrap();
            out
        }

        #[test]
        fn busybox_static_date_reads_the_clock_through_the_filter_once_patched() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let near = |out: &str| {
                out.trim()
                    .parse::<i64>()
                    .is_ok_and(|t| (t - now).abs() < 3600)
            };
            let unpatched = busybox_date(false);
            assert!(
                near(&unpatched),
                "unpatched, date reads the vDSO: {unpatched:?}"
            );
            let patched = busybox_date(true);
            assert!(
                !near(&patched),
                "patched, date's clock call meets the filter's errno and gets no time: {patched:?}"
            );
        }
    }
}

//! What a dynamic program that a served (static or Go) process executes takes
//! from the supervisor: the identity that the static program's `set*id` calls
//! changed there. Its environment still names the capsule's first identity, which
//! is what the shim would start from (`busybox su daemon -c /bin/sh`: the shell
//! must be daemon's).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use crate::identity::state::{Snapshot, CREDS};

/// `getcwd(NULL, QUERY_IDENTITY, &snapshot)`: the supervisor writes its identity
/// there and answers `QUERY_ANSWER` plus its size, when the process's program was
/// executed by a served process; else `QUERY_ANSWER` alone. Without a backstop the
/// kernel says `EFAULT` (a null buffer) and writes nothing.
pub const QUERY_IDENTITY: u64 = 0x6361_7073_6964_656e;

const ANSWER: i64 = super::trust::QUERY_ANSWER as i64;

/// Takes the supervisor's identity when it has one for this process.
pub fn identity() {
    let mut snapshot = std::mem::MaybeUninit::<Snapshot>::zeroed();
    // SAFETY: getcwd with a null buffer writes nothing; the supervisor writes at
    // most a `Snapshot` at the third argument, memory of ours.
    let rc = unsafe {
        super::trust::own_syscall(
            libc::SYS_getcwd,
            0,
            QUERY_IDENTITY,
            snapshot.as_mut_ptr() as u64,
        )
    };
    if rc == ANSWER + std::mem::size_of::<Snapshot>() as i64 {
        // SAFETY: zeroed, then written in full by the supervisor (the size says
        // so); every bit pattern is a valid `Snapshot` (integers only).
        CREDS.adopt(unsafe { snapshot.assume_init_ref() });
    }
}

/// The bytes of this process's identity, for a supervisor's answer.
pub fn identity_bytes() -> Vec<u8> {
    let snapshot = CREDS.snapshot();
    // SAFETY: `Snapshot` is `repr(C)` of integers without padding (its one 8-byte
    // field at offset 32, its size a multiple of 8): every byte read is
    // initialised.
    unsafe {
        std::slice::from_raw_parts(
            (&snapshot as *const Snapshot).cast::<u8>(),
            std::mem::size_of::<Snapshot>(),
        )
    }
    .to_vec()
}

// The SAFETY reasoning of `identity_bytes`: no padding anywhere in the struct.
const _: () =
    assert!(std::mem::size_of::<Snapshot>() == 4 * 4 * 2 + 8 + 4 * capsule_config::MAX_GROUPS);

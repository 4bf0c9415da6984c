//! The network replica: the capsule's own ports and names.
//!
//! Invariants:
//! - a bind of capsule port P binds host port H: the published one (`-p H:P`), the one
//!   this capsule already uses for P, or a free one the kernel picks; the pair goes to
//!   the capsule's port table (`$state/ports`), shared by its processes and readable
//!   by its peers and `capsule ps`;
//! - every address the kernel reports back (`getsockname`, `getpeername`, `accept`,
//!   `recvfrom`, `recvmsg`) shows capsule ports, and a peer's host port shows as that
//!   peer's address and capsule port;
//! - `connect`/`sendto`/`sendmsg` to loopback (or the wildcard) port P reach the
//!   capsule's own P when it has bound P, else the host's P; to a peer's address
//!   (127.73.x.y, what the peer's name resolves to) they reach that peer's P or fail
//!   with `ECONNREFUSED`;
//! - the names of the capsules started together, the capsule's own name and host name
//!   resolve to loopback addresses (`getaddrinfo`, `gethostbyname*`), and back
//!   (`getnameinfo`);
//! - abstract unix socket names are private to the capsule; path names go through the
//!   file-system replica;
//! - a process outside any capsule (no state directory, no ports, no peers) sees the
//!   host unchanged: the replica is off.

pub mod addr;
pub mod lookup;
pub mod names;
pub mod ops;
pub mod ports;
pub mod unix;

// The exported symbols stay out of unit-test binaries, whose own libc calls they
// would otherwise intercept.
#[cfg(not(test))]
pub mod hooks;

use capsule_config::Config;

use crate::runtime;

pub struct Net {
    pub ports: ports::Ports,
    /// The capsule's names, lower-case, each with its index in the set (`None`: its
    /// own name when it has no set).
    pub peers: Vec<String>,
    pub name: Option<String>,
    pub abstract_prefix: Option<unix::Prefix>,
}

impl Net {
    /// The replica for `config`, or `None` when it is off.
    pub fn from_config(config: &Config) -> Option<Net> {
        let net = &config.net;
        if net.host || config.state_dir.is_none() && net.ports.is_empty() && net.peers.is_empty() {
            return None;
        }
        let identity = config
            .state_dir
            .as_deref()
            .map(|d| d.trim_end_matches('/'))
            .or(config.name.as_deref());
        Some(Net {
            ports: ports::Ports::new(
                config.state_dir.as_deref(),
                config.name.as_deref(),
                &net.peers,
                &net.ports,
                &net.remote,
            ),
            peers: net.peers.iter().map(|p| p.to_ascii_lowercase()).collect(),
            name: config.name.as_ref().map(|n| n.to_ascii_lowercase()),
            abstract_prefix: identity.map(unix::Prefix::for_capsule),
        })
    }
}

/// The replica, or `None` when it is off.
#[inline]
pub fn get() -> Option<&'static Net> {
    runtime::get().net.as_ref()
}

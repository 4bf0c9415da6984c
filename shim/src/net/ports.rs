//! The capsule's port table and its peers': which host port stands for each capsule
//! port. The own table is mapped shared from the state directory on first use (every
//! process of the capsule records its binds there); a peer's table is mapped
//! read-only the first time the capsule reaches that peer, and stays mapped.

use std::ffi::{c_int, CString};
use std::sync::atomic::{AtomicPtr, Ordering};

use capsule_config::layout::{self, PORTS_FILE};
use capsule_config::net::{PortTable, RemotePeer};
use capsule_config::{PortMap, Proto};

use super::addr::Place;

/// The own table when the capsule has no state directory (one process tree only).
static LOCAL: PortTable = PortTable::new();

/// A table file mapped on first use.
struct Mapped {
    path: Option<CString>,
    writable: bool,
    table: AtomicPtr<PortTable>,
}

impl Mapped {
    fn new(path: Option<CString>, writable: bool) -> Mapped {
        Mapped {
            path,
            writable,
            table: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The table, mapping it now if needed; `None` while a peer's file is missing or
    /// not yet full size (mapping past its end would fault).
    fn get(&self) -> Option<&'static PortTable> {
        let p = self.table.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: only valid, never-unmapped mappings are stored.
            return Some(unsafe { &*p });
        }
        let Some(path) = &self.path else {
            return Some(&LOCAL);
        };
        let mapped = map_table(path, self.writable)?;
        match self.table.compare_exchange(
            std::ptr::null_mut(),
            mapped,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: just mapped, valid for the process's life.
            Ok(_) => Some(unsafe { &*mapped }),
            Err(other) => {
                // Another thread won; ours is not referenced anywhere.
                // SAFETY: `mapped` is our own mapping of SIZE bytes.
                unsafe { libc::munmap(mapped.cast(), PortTable::SIZE) };
                // SAFETY: as above, the winner's mapping.
                Some(unsafe { &*other })
            }
        }
    }
}

fn map_table(path: &CString, writable: bool) -> Option<*mut PortTable> {
    let size = PortTable::SIZE;
    let (flags, prot) = if writable {
        (
            libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    } else {
        (libc::O_RDONLY | libc::O_CLOEXEC, libc::PROT_READ)
    };
    // SAFETY: plain system calls on a NUL-terminated path; the mapping is only
    // returned when the file is at least as large as the table.
    unsafe {
        let fd = libc::open(path.as_ptr(), flags, 0o600);
        if fd < 0 {
            return None;
        }
        let mut st: libc::stat = std::mem::zeroed();
        let mut ok = libc::fstat(fd, &mut st) == 0;
        if ok && (st.st_size as usize) < size {
            ok = writable && libc::ftruncate(fd, size as libc::off_t) == 0;
        }
        let p = if ok {
            libc::mmap(std::ptr::null_mut(), size, prot, libc::MAP_SHARED, fd, 0)
        } else {
            libc::MAP_FAILED
        };
        libc::close(fd);
        if p == libc::MAP_FAILED {
            return None;
        }
        let table = p.cast::<PortTable>();
        if !(*table).is_valid() {
            libc::munmap(p, size);
            return None;
        }
        Some(table)
    }
}

pub struct Ports {
    own: Mapped,
    peers: Box<[Mapped]>,
    own_index: Option<usize>,
    published: Vec<PortMap>,
    /// Per peer index: where it runs when that is another node (`None`: this one).
    remote: Box<[Option<RemotePeer>]>,
}

/// Where a connection to a capsule port goes: the host port, and the address of
/// the peer's node when it runs on another one (`None`: this machine).
pub type Target = (Option<[u8; 4]>, u16);

/// Why a connection to a capsule port cannot be made.
pub struct Refused;

impl Ports {
    pub fn new(
        state_dir: Option<&str>,
        name: Option<&str>,
        peers: &[String],
        published: &[PortMap],
        remote: &[RemotePeer],
    ) -> Ports {
        let table_path = |dir: &str| CString::new(format!("{dir}/{PORTS_FILE}")).ok();
        // `/x/capsules/NAME/` names the same capsule as `/x/capsules/NAME`.
        let state_dir = state_dir.map(|d| d.trim_end_matches('/'));
        let peer_tables = peers
            .iter()
            .map(|peer| {
                let dir = state_dir.and_then(|d| layout::peer_dir(d, peer));
                Mapped::new(dir.as_deref().and_then(table_path), false)
            })
            .collect();
        Ports {
            own: Mapped::new(state_dir.and_then(table_path), true),
            peers: peer_tables,
            own_index: name.and_then(|n| peers.iter().position(|p| p == n)),
            published: published.to_vec(),
            remote: peers
                .iter()
                .map(|peer| remote.iter().find(|r| &r.name == peer).cloned())
                .collect(),
        }
    }

    /// This capsule's index in its set, if it has one.
    pub fn own_index(&self) -> Option<usize> {
        self.own_index
    }

    /// The host port a bind of capsule `port` uses: the one the capsule already has
    /// for it, else the published one, else 0 (the kernel picks a free one).
    pub fn host_port_for_bind(&self, proto: Proto, port: u16) -> u16 {
        if let Some(host) = self.own.get().and_then(|t| t.host_port(proto, port)) {
            return host;
        }
        self.published
            .iter()
            .find(|p| p.proto == proto && p.port == port)
            .and_then(|p| p.host)
            .unwrap_or(0)
    }

    /// The host address a bind of the wildcard address to capsule `port` uses instead
    /// (`-p IP:HOSTPORT:PORT`), if one was published.
    pub fn host_ip_for_bind(&self, proto: Proto, port: u16) -> Option<[u8; 4]> {
        self.published
            .iter()
            .find(|p| p.proto == proto && p.port == port)
            .and_then(|p| p.host_ip)
    }

    /// Records a successful bind.
    pub fn record(&self, proto: Proto, port: u16, host: u16) {
        if let Some(table) = self.own.get() {
            // SAFETY: getpid has no preconditions.
            let pid = unsafe { libc::getpid() } as u32;
            if !table.record(proto, port, host, pid) {
                log::warn!("port table full: capsule port {port} is host port {host}, unrecorded");
            }
        }
    }

    /// The host port to connect to for capsule `port` at `place`, with the address of
    /// the node when the peer runs on another one: `Ok(None)` leaves the address as it
    /// is (a host service the capsule has not shadowed).
    pub fn connect_target(
        &self,
        proto: Proto,
        place: Place,
        port: u16,
    ) -> Result<Option<Target>, Refused> {
        if let Place::Peer(i) = place {
            if let Some(Some(remote)) = self.remote.get(i) {
                return remote
                    .host_port(proto, port)
                    .map(|host| Some((Some(remote.addr), host)))
                    .ok_or(Refused);
            }
        }
        Ok(self
            .local_target(proto, place, port)?
            .map(|host| (None, host)))
    }

    fn local_target(&self, proto: Proto, place: Place, port: u16) -> Result<Option<u16>, Refused> {
        match place {
            Place::Elsewhere => Ok(None),
            Place::Own => Ok(self.own.get().and_then(|t| t.host_port(proto, port))),
            Place::Peer(i) if Some(i) == self.own_index => self
                .own
                .get()
                .and_then(|t| t.host_port(proto, port))
                .map(Some)
                .ok_or(Refused),
            Place::Peer(i) => self
                .peers
                .get(i)
                .and_then(Mapped::get)
                .and_then(|t| t.host_port(proto, port))
                .map(Some)
                .ok_or(Refused),
        }
    }

    /// Which capsule port (and whose) host port `host` stands for: the own table
    /// first, then the peers reached so far.
    pub fn reverse(&self, proto: Proto, host: u16) -> Option<(Place, u16)> {
        if let Some(port) = self.own.get().and_then(|t| t.capsule_port(proto, host)) {
            return Some((Place::Own, port));
        }
        self.peers.iter().enumerate().find_map(|(i, mapped)| {
            let p = mapped.table.load(Ordering::Acquire);
            if p.is_null() || Some(i) == self.own_index {
                return None;
            }
            // SAFETY: stored mappings stay valid for the process's life.
            let table = unsafe { &*p };
            table
                .capsule_port(proto, host)
                .map(|port| (Place::Peer(i), port))
        })
    }
}

/// The protocol of socket `fd`, if the replica maps its ports.
pub fn proto_of(fd: c_int) -> Option<Proto> {
    let mut kind: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `kind` and `len` are valid for getsockopt to fill.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut c_int).cast(),
            &mut len,
        )
    };
    match (rc, kind) {
        (0, libc::SOCK_STREAM) => Some(Proto::Tcp),
        (0, libc::SOCK_DGRAM) => Some(Proto::Udp),
        _ => None,
    }
}

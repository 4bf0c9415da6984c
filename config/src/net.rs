//! The network replica's settings and the one piece of state it shares between
//! processes: published ports (`-p HOSTPORT:PORT[/tcp|/udp]`), the names of the
//! capsules started together (peers), the loopback address each peer answers on, and
//! the layout of a capsule's port table file.
//!
//! The port table (`$CAPSULE_STATE_DIR/ports`) records which host port stands for each
//! capsule port the capsule has bound. Every process of the capsule maps it shared; the
//! processes of peer capsules map it to reach the capsule by name; `capsule ps` reads it.
//! A file of zeros is an empty table, so nobody has to create it first.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The port table's file name inside a capsule's state directory.
pub use crate::layout::PORTS_FILE;

/// How many distinct (protocol, port) pairs one capsule can bind.
pub const PORT_SLOTS: usize = 510;
/// Identifies the table layout; 0 (a fresh file) is accepted as empty.
pub const PORTS_MAGIC: u64 = 0x6361_7073_706f_7201; // "capsport" + layout 1
/// The first two bytes of every peer address: 127.73.0.0/16, inside loopback.
pub const PEER_NET: [u8; 2] = [127, 73];
/// How long an inserter waits for another (an insert takes nanoseconds); after that it
/// takes over from a process that died holding the lock.
const STALE_SPINS: u32 = 1 << 22;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    fn code(self) -> u32 {
        match self {
            Proto::Tcp => 1,
            Proto::Udp => 2,
        }
    }

    fn from_code(code: u32) -> Option<Proto> {
        match code {
            1 => Some(Proto::Tcp),
            2 => Some(Proto::Udp),
            _ => None,
        }
    }
}

/// A published port: capsule `port` is bound on the host as `host` (`None`: a free
/// port the kernel picks when the capsule binds), on `host_ip` when the capsule binds
/// the wildcard address (`None`: the wildcard, every address of the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMap {
    pub host_ip: Option<[u8; 4]>,
    pub host: Option<u16>,
    pub port: u16,
    pub proto: Proto,
}

/// A dotted IPv4 address, `a.b.c.d`, each part 0-255 without a sign.
fn parse_ipv4(text: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = text.split('.');
    for byte in &mut out {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *byte = part.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

impl PortMap {
    /// Parses `[IP:]HOSTPORT:PORT[/tcp|/udp]`, `IP::PORT[/proto]` or `PORT[/tcp|/udp]`
    /// (`docker run -p` syntax; the host address is IPv4).
    pub fn parse(spec: &str) -> Result<PortMap, String> {
        let (ports, proto) = match spec.rsplit_once('/') {
            Some((ports, "tcp")) => (ports, Proto::Tcp),
            Some((ports, "udp")) => (ports, Proto::Udp),
            Some((_, other)) => return Err(format!("unknown protocol '{other}' (tcp or udp)")),
            None => (spec, Proto::Tcp),
        };
        let number = |text: &str, what: &str| -> Result<u16, String> {
            match text.parse::<u16>() {
                Ok(0) | Err(_) => Err(format!("{what} '{text}' is not a port (1-65535)")),
                Ok(p) => Ok(p),
            }
        };
        let address = |text: &str| -> Result<Option<[u8; 4]>, String> {
            match parse_ipv4(text) {
                // The wildcard is what no address means.
                Some([0, 0, 0, 0]) => Ok(None),
                Some(ip) => Ok(Some(ip)),
                None if text.contains(['[', ']']) || text.is_empty() => Err(format!(
                    "host address '{text}' is not an IPv4 address (IPv6 host addresses are not supported)"
                )),
                None => Err(format!("host address '{text}' is not an IPv4 address")),
            }
        };
        match ports.split(':').collect::<Vec<_>>().as_slice() {
            [port] => Ok(PortMap {
                host_ip: None,
                host: None,
                port: number(port, "port")?,
                proto,
            }),
            [host, port] => Ok(PortMap {
                host_ip: None,
                host: Some(number(host, "host port")?),
                port: number(port, "port")?,
                proto,
            }),
            [ip, host, port] => Ok(PortMap {
                host_ip: address(ip)?,
                // `IP::PORT`: a free host port on that address.
                host: if host.is_empty() {
                    None
                } else {
                    Some(number(host, "host port")?)
                },
                port: number(port, "port")?,
                proto,
            }),
            _ => Err(
                "expected [IP:]HOSTPORT:PORT[/tcp|/udp] or PORT[/tcp|/udp] (IPv6 host addresses are not supported)"
                    .into(),
            ),
        }
    }

    /// The host address a bind of the wildcard address uses, as text (`0.0.0.0` when
    /// none was given).
    pub fn host_ip_text(&self) -> String {
        let [a, b, c, d] = self.host_ip.unwrap_or([0; 4]);
        format!("{a}.{b}.{c}.{d}")
    }
}

impl PortMap {
    /// Whether both publish the same capsule port or the same host port.
    pub fn clashes_with(&self, other: &PortMap) -> bool {
        self.proto == other.proto
            && (self.port == other.port || (self.host.is_some() && self.host == other.host))
    }
}

impl fmt::Display for PortMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host_ip.is_some() {
            write!(f, "{}:", self.host_ip_text())?;
            if self.host.is_none() {
                // `IP::PORT`, as parsed.
                f.write_str(":")?;
            }
        }
        match self.host {
            Some(h) => write!(f, "{h}:{}/{}", self.port, self.proto.as_str()),
            None => write!(f, "{}/{}", self.port, self.proto.as_str()),
        }
    }
}

/// The network replica's settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetConfig {
    pub ports: Vec<PortMap>,
    /// The capsules started together, in one order every one of them agrees on; each
    /// resolves by name to [`peer_address`] of its index. Includes this capsule.
    pub peers: Vec<String>,
    /// Peers that run on another machine (`capsule run --peers-from-slurm`): a
    /// connection to such a peer's capsule port goes to its node's address and the
    /// host port it published there, instead of to its port table.
    pub remote: Vec<RemotePeer>,
    /// `--network host`: the capsule uses the host's network as it is (ports, names,
    /// abstract sockets), and the network replica is off.
    pub host: bool,
}

/// A peer on another node: its name (one of [`NetConfig::peers`]), the node's IPv4
/// address, and the ports it publishes there (`HOSTPORT:PORT` with a fixed HOSTPORT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePeer {
    pub name: String,
    pub addr: [u8; 4],
    pub ports: Vec<PortMap>,
}

impl RemotePeer {
    /// `NAME@IP=HOSTPORT:PORT/PROTO+...` (no ports: `NAME@IP=`).
    pub fn to_spec(&self) -> String {
        let [a, b, c, d] = self.addr;
        let ports: Vec<String> = self.ports.iter().map(PortMap::to_string).collect();
        format!("{}@{a}.{b}.{c}.{d}={}", self.name, ports.join("+"))
    }

    /// Parses [`RemotePeer::to_spec`]'s form; every port needs its host port.
    pub fn parse(spec: &str) -> Result<RemotePeer, String> {
        let (name, rest) = spec
            .split_once('@')
            .ok_or_else(|| format!("'{spec}' is not NAME@IP=PORTS"))?;
        let (addr, ports) = rest.split_once('=').unwrap_or((rest, ""));
        let addr = parse_ipv4(addr).ok_or_else(|| format!("'{addr}' is not an IPv4 address"))?;
        let mut maps = Vec::new();
        for port in ports.split('+').filter(|p| !p.is_empty()) {
            let map = PortMap::parse(port)?;
            if map.host.is_none() {
                return Err(format!(
                    "port '{port}' of a remote peer needs its host port"
                ));
            }
            maps.push(map);
        }
        Ok(RemotePeer {
            name: name.to_string(),
            addr,
            ports: maps,
        })
    }

    /// The host port capsule `port` over `proto` is published on, if it is.
    pub fn host_port(&self, proto: Proto, port: u16) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.proto == proto && p.port == port)
            .and_then(|p| p.host)
    }
}

/// The loopback address capsule number `index` of a set answers on (127.73.x.y).
pub fn peer_address(index: usize) -> [u8; 4] {
    let n = index + 1;
    [PEER_NET[0], PEER_NET[1], (n >> 8) as u8, n as u8]
}

/// The index of the peer that answers on `addr`, if it is a peer address.
pub fn peer_index(addr: [u8; 4]) -> Option<usize> {
    if addr[..2] != PEER_NET {
        return None;
    }
    let n = (usize::from(addr[2]) << 8) | usize::from(addr[3]);
    n.checked_sub(1)
}

/// One binding: capsule `port` over `proto` is host port `host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    pub proto: Proto,
    pub port: u16,
    pub host: u16,
}

#[repr(C)]
pub struct PortEntry {
    /// 0: free; else protocol code << 16 | capsule port. Written last.
    key: AtomicU32,
    host: AtomicU32,
}

/// The port table, as it lies in the file (native byte order, fixed size).
#[repr(C)]
pub struct PortTable {
    magic: AtomicU64,
    /// 0, or the pid of the process inserting.
    lock: AtomicU32,
    len: AtomicU32,
    entries: [PortEntry; PORT_SLOTS],
}

fn key_of(proto: Proto, port: u16) -> u32 {
    (proto.code() << 16) | u32::from(port)
}

impl Default for PortTable {
    fn default() -> PortTable {
        PortTable::new()
    }
}

impl PortTable {
    /// The size of the table file.
    pub const SIZE: usize = std::mem::size_of::<PortTable>();

    /// An empty table (for a capsule without a state directory, kept in memory).
    pub const fn new() -> PortTable {
        PortTable {
            magic: AtomicU64::new(0),
            lock: AtomicU32::new(0),
            len: AtomicU32::new(0),
            entries: [const {
                PortEntry {
                    key: AtomicU32::new(0),
                    host: AtomicU32::new(0),
                }
            }; PORT_SLOTS],
        }
    }

    /// Whether the mapped bytes hold this layout (or nothing yet).
    pub fn is_valid(&self) -> bool {
        matches!(self.magic.load(Ordering::Acquire), 0 | PORTS_MAGIC)
    }

    fn live(&self) -> &[PortEntry] {
        let len = (self.len.load(Ordering::Acquire) as usize).min(PORT_SLOTS);
        &self.entries[..len]
    }

    /// The host port standing for capsule `port`, if the capsule has bound it.
    pub fn host_port(&self, proto: Proto, port: u16) -> Option<u16> {
        let key = key_of(proto, port);
        self.live()
            .iter()
            .find(|e| e.key.load(Ordering::Acquire) == key)
            .map(|e| e.host.load(Ordering::Acquire) as u16)
    }

    /// The capsule port that host port `host` stands for.
    pub fn capsule_port(&self, proto: Proto, host: u16) -> Option<u16> {
        self.live().iter().find_map(|e| {
            let key = e.key.load(Ordering::Acquire);
            (key >> 16 == proto.code() && e.host.load(Ordering::Acquire) == u32::from(host))
                .then_some(key as u16)
        })
    }

    /// Records that capsule `port` is host port `host` (replacing an older host port).
    /// `pid` marks the lock holder. Returns false when the table is full.
    pub fn record(&self, proto: Proto, port: u16, host: u16, pid: u32) -> bool {
        let key = key_of(proto, port);
        let mut spins = 0u32;
        while self
            .lock
            .compare_exchange_weak(0, pid.max(1), Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins >= STALE_SPINS {
                // The holder died mid-insert; its entry is either whole or not counted.
                self.lock.store(pid.max(1), Ordering::Relaxed);
                std::sync::atomic::fence(Ordering::Acquire);
                break;
            }
            std::hint::spin_loop();
        }
        self.magic.store(PORTS_MAGIC, Ordering::Release);
        let len = (self.len.load(Ordering::Relaxed) as usize).min(PORT_SLOTS);
        let done = match self.entries[..len]
            .iter()
            .find(|e| e.key.load(Ordering::Relaxed) == key)
        {
            Some(entry) => {
                entry.host.store(u32::from(host), Ordering::Release);
                true
            }
            None if len < PORT_SLOTS => {
                let entry = &self.entries[len];
                entry.host.store(u32::from(host), Ordering::Relaxed);
                entry.key.store(key, Ordering::Release);
                self.len.store(len as u32 + 1, Ordering::Release);
                true
            }
            None => false,
        };
        self.lock.store(0, Ordering::Release);
        done
    }

    /// Every binding in a table file's bytes (for readers that do not map it).
    pub fn parse(bytes: &[u8]) -> Vec<Binding> {
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
        };
        let magic = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_ne_bytes);
        if magic != Some(PORTS_MAGIC) {
            return Vec::new();
        }
        let len = word(12).unwrap_or(0) as usize;
        (0..len.min(PORT_SLOTS))
            .filter_map(|i| {
                let at = 16 + i * 8;
                let key = word(at)?;
                Some(Binding {
                    proto: Proto::from_code(key >> 16)?,
                    port: key as u16,
                    host: word(at + 4)? as u16,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        let p = PortMap::parse("18080:8000").unwrap();
        assert_eq!((p.host, p.port, p.proto), (Some(18080), 8000, Proto::Tcp));
        let p = PortMap::parse("53/udp").unwrap();
        assert_eq!((p.host, p.port, p.proto), (None, 53, Proto::Udp));
        assert_eq!(PortMap::parse("1:2/udp").unwrap().to_string(), "1:2/udp");
        let p = PortMap::parse("127.0.0.1:8080:80").unwrap();
        assert_eq!(
            (p.host_ip, p.host, p.port),
            (Some([127, 0, 0, 1]), Some(8080), 80)
        );
        assert_eq!(p.to_string(), "127.0.0.1:8080:80/tcp");
        let p = PortMap::parse("10.1.2.3::53/udp").unwrap();
        assert_eq!((p.host_ip, p.host, p.port), (Some([10, 1, 2, 3]), None, 53));
        assert_eq!(PortMap::parse(&p.to_string()).unwrap(), p);
        let p = PortMap::parse("0.0.0.0:9000:90").unwrap();
        assert_eq!((p.host_ip, p.to_string().as_str()), (None, "9000:90/tcp"));
        for bad in [
            "",
            "0",
            "70000",
            "a:80",
            "80:",
            "1:2:3",
            "80/sctp",
            "-1",
            "1.2.3:1:2",
            "1.2.3.256:1:2",
            "[::1]:80:80",
            ":80:80",
            "1.2.3.4:1:2:3",
        ] {
            assert!(PortMap::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn remote_peers_round_trip() {
        let peer = RemotePeer::parse("app-1@127.0.0.2=8001:8000/tcp+9001:9000/udp").unwrap();
        assert_eq!(peer.addr, [127, 0, 0, 2]);
        assert_eq!(peer.host_port(Proto::Tcp, 8000), Some(8001));
        assert_eq!(peer.host_port(Proto::Udp, 9000), Some(9001));
        assert_eq!(peer.host_port(Proto::Tcp, 9000), None);
        assert_eq!(RemotePeer::parse(&peer.to_spec()).unwrap(), peer);
        assert!(RemotePeer::parse("app-1@127.0.0.2=")
            .unwrap()
            .ports
            .is_empty());
        assert!(RemotePeer::parse("app-1@127.0.0.2=8000").is_err());
        assert!(RemotePeer::parse("app-1@n2=").is_err());
        assert!(RemotePeer::parse("app-1").is_err());
    }

    #[test]
    fn peer_addresses_round_trip() {
        for i in [0, 1, 254, 255, 256, 1000, 65533] {
            assert_eq!(peer_index(peer_address(i)), Some(i));
        }
        assert_eq!(peer_address(0), [127, 73, 0, 1]);
        assert_eq!(peer_index([127, 0, 0, 1]), None);
        assert_eq!(peer_index([127, 73, 0, 0]), None);
    }

    #[test]
    fn table_records_and_parses() {
        let table = Box::new(PortTable::new());
        assert!(table.is_valid());
        assert_eq!(table.host_port(Proto::Tcp, 8000), None);
        assert!(table.record(Proto::Tcp, 8000, 40001, 7));
        assert!(table.record(Proto::Udp, 8000, 40002, 7));
        assert!(table.record(Proto::Tcp, 8000, 40003, 7));
        assert_eq!(table.host_port(Proto::Tcp, 8000), Some(40003));
        assert_eq!(table.host_port(Proto::Udp, 8000), Some(40002));
        assert_eq!(table.capsule_port(Proto::Tcp, 40003), Some(8000));
        assert_eq!(table.capsule_port(Proto::Tcp, 40002), None);
        // SAFETY: the table is initialised plain memory of SIZE bytes.
        let raw = unsafe {
            std::slice::from_raw_parts(&*table as *const PortTable as *const u8, PortTable::SIZE)
        };
        let all = PortTable::parse(raw);
        assert_eq!(
            all,
            vec![
                Binding {
                    proto: Proto::Tcp,
                    port: 8000,
                    host: 40003
                },
                Binding {
                    proto: Proto::Udp,
                    port: 8000,
                    host: 40002
                },
            ]
        );
        for port in 1..PORT_SLOTS as u16 - 1 {
            assert!(table.record(Proto::Tcp, 10000 + port, port, 7));
        }
        assert!(!table.record(Proto::Tcp, 9, 9, 7), "a full table refuses");
    }
}

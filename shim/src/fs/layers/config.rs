//! The layers and volumes of a capsule, from its configuration, and the host path of
//! a capsule path in each.

use std::ffi::c_int;

use capsule_config::FsConfig;

use super::{zeroed_stat, Layers, Place, PASSTHROUGH, WHITEOUT_PREFIX};
use crate::fs::path::{is_within, PathBuf};
use crate::fs::sys;

/// A bind volume: capsule path `path` is host path `host`.
pub struct Volume {
    pub path: Vec<u8>,
    pub host: Vec<u8>,
    pub read_only: bool,
}

impl Layers {
    pub fn from_config(fs: &FsConfig) -> Layers {
        let mut volumes: Vec<Volume> = fs
            .volumes
            .iter()
            .map(|v| Volume {
                path: v.path.as_bytes().to_vec(),
                host: v.host.as_bytes().to_vec(),
                read_only: v.read_only,
            })
            .collect();
        volumes.sort_by_key(|v| std::cmp::Reverse(v.path.len()));
        Layers {
            root: fs.root.as_ref().map(|r| r.as_bytes().to_vec()),
            upper: fs.upper.as_ref().map(|u| u.as_bytes().to_vec()),
            volumes,
            read_only: fs.read_only,
            members: Vec::new(),
        }
    }

    /// Whether names outside volumes can be changed at all.
    pub fn writable(&self) -> bool {
        self.upper.is_some() && !self.read_only
    }

    pub fn lower_host(&self, capsule: &[u8]) -> Result<PathBuf, c_int> {
        let mut p = PathBuf::new();
        self.lower_host_into(capsule, &mut p)?;
        Ok(p)
    }

    /// `lower_host`, written into `out`.
    pub fn lower_host_into(&self, capsule: &[u8], out: &mut PathBuf) -> Result<(), c_int> {
        match &self.root {
            Some(root) => out.set_prefixed(root, capsule),
            None => out.set(capsule),
        }
    }

    pub fn upper_host(&self, capsule: &[u8]) -> Result<PathBuf, c_int> {
        let mut p = PathBuf::new();
        self.upper_host_into(capsule, &mut p)?;
        Ok(p)
    }

    /// `upper_host`, written into `out`.
    pub fn upper_host_into(&self, capsule: &[u8], out: &mut PathBuf) -> Result<(), c_int> {
        match &self.upper {
            Some(upper) => out.set_prefixed(upper, capsule),
            None => Err(libc::EROFS),
        }
    }

    /// The upper-layer whiteout marker of a capsule path.
    pub fn whiteout_host(&self, capsule: &PathBuf) -> Result<PathBuf, c_int> {
        let mut p = PathBuf::new();
        self.whiteout_host_into(capsule, &mut p)?;
        Ok(p)
    }

    /// `whiteout_host`, written into `out`.
    pub fn whiteout_host_into(&self, capsule: &PathBuf, out: &mut PathBuf) -> Result<(), c_int> {
        self.upper_host_into(capsule.parent_bytes(), out)?;
        out.push_component(WHITEOUT_PREFIX)?;
        out.push_bytes(capsule.file_name())
    }

    /// Whether the upper layer holds a whiteout for capsule path `capsule`.
    pub fn has_whiteout(&self, capsule: &PathBuf) -> Result<bool, c_int> {
        let mut p = PathBuf::new();
        self.whiteout_host_into(capsule, &mut p)?;
        Ok(sys::exists(&p))
    }

    /// Whether capsule path `capsule` is where a volume is mounted: like a mount
    /// point, it cannot be removed or renamed (`EBUSY`).
    pub fn is_volume_root(&self, capsule: &[u8]) -> bool {
        self.volumes.iter().any(|v| v.path == capsule)
    }

    pub(super) fn volume_of(&self, capsule: &[u8]) -> Option<&Volume> {
        self.volumes.iter().find(|v| is_within(capsule, &v.path))
    }

    fn is_passthrough(&self, capsule: &[u8]) -> bool {
        PASSTHROUGH.iter().any(|p| is_within(capsule, p))
    }

    /// The place of a capsule path; for volumes and passthrough, its host path is
    /// written into `host` when given.
    pub(super) fn place_of(
        &self,
        capsule: &[u8],
        host: Option<&mut PathBuf>,
    ) -> Result<Place, c_int> {
        if let Some(v) = self.volume_of(capsule) {
            if let Some(host) = host {
                host.set(&v.host)?;
                host.push_bytes(&capsule[v.path.len()..])?;
            }
            return Ok(Place::Volume {
                read_only: v.read_only,
            });
        }
        if self.is_passthrough(capsule) {
            if let Some(host) = host {
                host.set(capsule)?;
            }
            return Ok(Place::Passthrough);
        }
        Ok(Place::Overlay)
    }

    /// Whether the lower layer has capsule path `capsule` (one `lstat`); `None` when
    /// it cannot tell (no permission to look, say).
    pub fn lower_has(&self, capsule: &[u8]) -> Result<Option<bool>, c_int> {
        let mut lower = PathBuf::new();
        self.lower_host_into(capsule, &mut lower)?;
        let mut st = zeroed_stat();
        if sys::lstat(&lower, &mut st) {
            return Ok(Some(true));
        }
        match crate::hook::errno() {
            libc::ENOENT | libc::ENOTDIR => Ok(Some(false)),
            _ => Ok(None),
        }
    }
}

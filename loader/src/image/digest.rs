//! Content addresses: `sha256:<64 hex>` digests, and readers/writers that hash what
//! passes through them so that a blob is verified while it is being used.

use std::fmt;
use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

/// A sha256 digest (the only algorithm OCI images use in practice).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lower-case hex digits>`.
    pub fn parse(text: &str) -> Result<Digest, String> {
        let hex = text
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("{text:?} is not a sha256 digest"))?;
        Digest::from_hex(hex).ok_or_else(|| format!("{text:?} is not a sha256 digest"))
    }

    /// A digest from its 64 hex digits alone (file names in the store and in archives).
    pub fn from_hex(hex: &str) -> Option<Digest> {
        let valid = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| Digest {
            hex: hex.to_string(),
        })
    }

    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(hasher: Sha256) -> Digest {
        let hex = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Digest { hex }
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, as `docker images` shows ids.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// The OCI chain id of a stack of layers (bottom first): the first diff id, then
    /// `sha256(chain + " " + next diff id)` for each layer above.
    pub fn chain(diff_ids: &[Digest]) -> Option<Digest> {
        let mut chain: Option<Digest> = None;
        for diff in diff_ids {
            chain = Some(match chain {
                None => diff.clone(),
                Some(below) => Digest::of(format!("{below} {diff}").as_bytes()),
            });
        }
        chain
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// A reader that hashes and counts every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    /// `None`: counting only (a stream whose digest another reader checks).
    hasher: Option<Sha256>,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Some(Sha256::new()),
            count: 0,
        }
    }

    /// A reader that only counts: [`HashingReader::finish`] gives no digest.
    pub fn counting(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: None,
            count: 0,
        }
    }

    /// Reads what is left (a tar's end padding, a compressed stream's trailer) so that
    /// the digest covers the whole stream; returns it (`None` for a counting reader)
    /// and the byte count.
    pub fn finish_any(mut self) -> io::Result<(Option<Digest>, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.hasher.map(Digest::from_hasher), self.count))
    }

    /// [`HashingReader::finish_any`] of a hashing reader.
    pub fn finish(self) -> io::Result<(Digest, u64)> {
        let (digest, count) = self.finish_any()?;
        let digest = digest.ok_or_else(|| io::Error::other("a counting reader has no digest"))?;
        Ok((digest, count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts every byte written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    pub fn finish(mut self) -> io::Result<(W, Digest, u64)> {
        self.inner.flush()?;
        Ok((self.inner, Digest::from_hasher(self.hasher), self.count))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_and_chain() {
        let empty = Digest::of(b"");
        assert_eq!(
            empty.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(&empty.to_string()).unwrap(), empty);
        assert!(Digest::parse("sha512:00").is_err());
        assert!(Digest::parse("sha256:E3B0").is_err());
        let a = Digest::of(b"a");
        assert_eq!(Digest::chain(std::slice::from_ref(&a)), Some(a.clone()));
        assert_eq!(
            Digest::chain(&[a.clone(), empty.clone()]),
            Some(Digest::of(format!("{a} {empty}").as_bytes()))
        );
        let mut reader = HashingReader::new(&b"abc"[..]);
        let mut first = [0u8; 1];
        reader.read_exact(&mut first).unwrap();
        assert_eq!(reader.finish().unwrap(), (Digest::of(b"abc"), 3));
    }
}

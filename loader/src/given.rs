//! The typed seam between where a setting is given (a flag, a manifest key) and
//! [`crate::run::RunSpec::prepare`], which checks it against the disk and the other
//! settings: a `-p` or `-v` spec is parsed once, where it is given, and travels as its
//! typed value with the text it was given as (messages quote that text).

use capsule_config::{PortMap, Volume};

/// A spec parsed where it was given: its text, and what it means or why it means
/// nothing. A spec that does not parse is refused by `prepare` in its turn, so that the
/// order in which problems are reported does not depend on where a spec came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given<T> {
    text: String,
    value: Result<T, String>,
}

impl<T> Given<T> {
    /// `text`, already parsed to `value`.
    pub fn parsed(text: impl Into<String>, value: T) -> Given<T> {
        Given {
            text: text.into(),
            value: Ok(value),
        }
    }

    /// The spec as it was given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What the spec means, or why it means nothing.
    pub fn value(&self) -> Result<&T, &str> {
        self.value.as_ref().map_err(String::as_str)
    }
}

/// What a spec's text parses into.
pub trait Spec: Sized {
    fn parse(text: &str) -> Result<Self, String>;
}

/// `[IP:]HOSTPORT:PORT[/tcp|/udp]` or `PORT[/proto]`, as `docker run -p` takes it.
impl Spec for PortMap {
    fn parse(text: &str) -> Result<PortMap, String> {
        PortMap::parse(text)
    }
}

/// `HOST:PATH[:ro|:rw]`, as `docker run -v` takes it.
impl Spec for Volume {
    fn parse(text: &str) -> Result<Volume, String> {
        Volume::parse(text)
    }
}

impl<T: Spec> From<String> for Given<T> {
    fn from(text: String) -> Given<T> {
        let value = T::parse(&text);
        Given { text, value }
    }
}

impl<T: Spec> From<&str> for Given<T> {
    fn from(text: &str) -> Given<T> {
        Given::from(text.to_string())
    }
}

/// A port map given as a value: its text is how it prints.
impl From<PortMap> for Given<PortMap> {
    fn from(map: PortMap) -> Given<PortMap> {
        Given::parsed(map.to_string(), map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_keeps_its_text_and_its_meaning() {
        let port = Given::<PortMap>::from("8080:80");
        assert_eq!(port.text(), "8080:80");
        assert_eq!(port.value().unwrap().host, Some(8080));
        let bad = Given::<PortMap>::from("x:1");
        assert_eq!(bad.value(), Err("host port 'x' is not a port (1-65535)"));
        let volume = Given::<Volume>::from("/tmp:/data/:ro");
        assert_eq!(volume.text(), "/tmp:/data/:ro");
        assert_eq!(volume.value().unwrap().path, "/data");
        let typed = Given::from(*port.value().unwrap());
        assert_eq!(typed.text(), "8080:80/tcp");
    }
}

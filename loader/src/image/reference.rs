//! Image references as Docker writes and normalises them: `[DOMAIN/]PATH[:TAG][@DIGEST]`.
//!
//! The first component is a registry domain when it has a `.` or a `:` or is
//! `localhost`; otherwise the domain is `docker.io`, where a one-component path is
//! in `library/`. No tag and no digest means `:latest`. The store keeps and lists the
//! *familiar* form (`hello:1`, `ghcr.io/org/app:2`, `localhost:5000/app:latest`),
//! so `docker.io/library/hello:1`, `library/hello:1` and `hello:1` name one image.

/// The default registry, and its other spelling.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_INDEX: &str = "index.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `text`; `None` when it is not a reference.
    pub fn parse(text: &str) -> Option<Reference> {
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (text, None),
        };
        if let Some(d) = digest {
            let (algorithm, hex) = d.split_once(':')?;
            let valid = !algorithm.is_empty()
                && algorithm
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+._-".contains(&b))
                && hex.len() >= 32
                && hex.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid {
                return None;
            }
        }
        let (domain, remainder) = match rest.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first, remainder)
            }
            _ => (DOCKER_HUB, rest),
        };
        let (path, tag) = match remainder.rsplit_once(':') {
            Some((path, tag)) if !tag.contains('/') => (path, Some(tag)),
            _ => (remainder, None),
        };
        let path_ok = !path.is_empty()
            && path.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                    && c.as_bytes()[0].is_ascii_alphanumeric()
            });
        let tag_ok = tag.is_none_or(|t| {
            !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                && !t.starts_with(['.', '-'])
        });
        let domain_ok = !domain.is_empty()
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
        if !(path_ok && tag_ok && domain_ok) {
            return None;
        }
        let domain = if domain == DOCKER_HUB_INDEX {
            DOCKER_HUB
        } else {
            domain
        };
        let path = if domain == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        let tag = match (tag, digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Some(Reference {
            domain: domain.to_string(),
            path,
            tag,
            digest: digest.map(str::to_string),
        })
    }

    /// `docker.io/library/hello:1`: the whole name.
    pub fn canonical(&self) -> String {
        format!("{}/{}{}", self.domain, self.path, self.suffix())
    }

    /// `hello:1`: as Docker shows it (the default registry and `library/` left out).
    pub fn familiar(&self) -> String {
        if self.domain != DOCKER_HUB {
            return self.canonical();
        }
        let path = match self.path.strip_prefix("library/") {
            Some(short) if !short.contains('/') => short,
            _ => &self.path,
        };
        format!("{path}{}", self.suffix())
    }

    fn suffix(&self) -> String {
        let mut s = String::new();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

/// The familiar form of `text`, or `text` itself when it is not a reference (an
/// image id, say).
pub fn familiar(text: &str) -> String {
    Reference::parse(text).map_or_else(|| text.to_string(), |r| r.familiar())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalised_as_docker_does() {
        for (given, familiar, canonical) in [
            ("hello", "hello:latest", "docker.io/library/hello:latest"),
            ("hello:1", "hello:1", "docker.io/library/hello:1"),
            ("library/hello:1", "hello:1", "docker.io/library/hello:1"),
            (
                "docker.io/library/hello:1",
                "hello:1",
                "docker.io/library/hello:1",
            ),
            (
                "index.docker.io/library/hello:1",
                "hello:1",
                "docker.io/library/hello:1",
            ),
            ("org/app", "org/app:latest", "docker.io/org/app:latest"),
            (
                "ghcr.io/org/app:tag",
                "ghcr.io/org/app:tag",
                "ghcr.io/org/app:tag",
            ),
            (
                "localhost/app",
                "localhost/app:latest",
                "localhost/app:latest",
            ),
            (
                "localhost:5000/app",
                "localhost:5000/app:latest",
                "localhost:5000/app:latest",
            ),
            (
                "host:5000/a/b:1.2",
                "host:5000/a/b:1.2",
                "host:5000/a/b:1.2",
            ),
        ] {
            let r = Reference::parse(given).unwrap_or_else(|| panic!("{given}"));
            assert_eq!(r.familiar(), familiar, "{given}");
            assert_eq!(r.canonical(), canonical, "{given}");
        }
        let digest = format!("sha256:{}", "ab".repeat(32));
        let r = Reference::parse(&format!("host:5000/app@{digest}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.familiar(), format!("host:5000/app@{digest}"));
    }

    #[test]
    fn what_is_not_a_reference() {
        for bad in [
            "",
            "a b",
            "-x",
            "app:",
            "app:-1",
            "/app",
            "app//x",
            "app@sha256:zz",
            "a/:1",
        ] {
            assert_eq!(Reference::parse(bad), None, "{bad:?}");
        }
        assert_eq!(familiar("0123abcd"), "0123abcd:latest");
    }
}

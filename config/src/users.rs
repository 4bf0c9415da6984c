//! Reading `/etc/passwd` and `/etc/group` text, so that a user name given to the
//! loader (`--user postgres`) or to the shim (`CAPSULE_USER=postgres`) resolves the
//! same way in both.

/// A user as `/etc/passwd` and `/etc/group` describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

fn entries(passwd: &str) -> impl Iterator<Item = PasswdEntry> + '_ {
    passwd.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: fields[0].to_string(),
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
            home: fields[5].to_string(),
            shell: fields[6].to_string(),
        })
    })
}

/// The passwd entry for a user name.
pub fn user_by_name(passwd: &str, name: &str) -> Option<PasswdEntry> {
    entries(passwd).find(|e| e.name == name)
}

/// The passwd entry for a uid (the first one, as `getpwuid` returns).
pub fn user_by_uid(passwd: &str, uid: u32) -> Option<PasswdEntry> {
    entries(passwd).find(|e| e.uid == uid)
}

/// The group id of a group name in `/etc/group` text.
pub fn group_by_name(group: &str, name: &str) -> Option<u32> {
    group.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        fields.nth(1)?.parse().ok()
    })
}

/// The groups `initgroups` would give a user: the primary group first, then every
/// group that lists the user as a member, each once.
pub fn groups_of(group: &str, user: &str, primary: u32) -> Vec<u32> {
    let mut out = vec![primary];
    for line in group.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 4 {
            continue;
        }
        let Ok(gid) = fields[2].parse::<u32>() else {
            continue;
        };
        if fields[3].split(',').any(|m| m == user) && !out.contains(&gid) {
            out.push(gid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n\
        # comment\n\
        postgres:x:105:111:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n\
        broken:x:abc:1::/:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nssl-cert:x:110:postgres\npostgres:x:111:\nadm:x:4:syslog,postgres\n";

    #[test]
    fn finds_users_and_groups() {
        let pg = user_by_name(PASSWD, "postgres").unwrap();
        assert_eq!((pg.uid, pg.gid), (105, 111));
        assert_eq!(pg.home, "/var/lib/postgresql");
        assert_eq!(user_by_uid(PASSWD, 0).unwrap().name, "root");
        assert!(user_by_name(PASSWD, "broken").is_none());
        assert!(user_by_name(PASSWD, "nobody").is_none());
        assert_eq!(group_by_name(GROUP, "postgres"), Some(111));
        assert_eq!(groups_of(GROUP, "postgres", 111), vec![111, 110, 4]);
        assert_eq!(groups_of(GROUP, "root", 0), vec![0]);
    }
}

//! The README's demo listing is what `scripts/demo` prints: the demo runs with the
//! capsule binary built for the tests, and for every capsule (and the host) the lines
//! it printed, in order, must be the README's, once dates and the host machine's own
//! name and user are masked. Capsules interleave freely, so only each one's own order
//! is compared.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The README's demo listing: the first fenced block after the `scripts/demo` one.
fn readme_listing() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let after = readme
        .split_once("```sh\nscripts/demo\n```\n")
        .expect("README.md shows the `scripts/demo` command")
        .1;
    let block = after
        .trim_start()
        .strip_prefix("```\n")
        .expect("the demo's listing follows its command");
    block
        .split_once("```")
        .expect("the listing block ends")
        .0
        .to_string()
}

/// `YYYY-MM-DD HH:MM:SS` becomes `DATE`: the clock moves, the rest must not.
fn mask_dates(line: &str) -> String {
    let pattern = b"dddd-dd-dd dd:dd:dd";
    let bytes = line.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let fits = bytes.len() - i >= pattern.len()
            && pattern.iter().zip(&bytes[i..]).all(|(p, b)| match p {
                b'd' => b.is_ascii_digit(),
                _ => p == b,
            });
        if fits {
            out.push_str("DATE");
            i += pattern.len();
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

/// Splits `NAME | text` (the prefix `capsule up` and the demo script put on each
/// line) and masks what depends on the machine: dates, and the host's own name, user
/// and uid in the host's lines.
fn masked(line: &str) -> (String, String) {
    let line = mask_dates(line.trim_end());
    let (who, text) = match line.split_once("| ") {
        Some((who, text)) => (who.trim().to_string(), text.to_string()),
        None => (String::new(), line.clone()),
    };
    if who == "(host)" && text.starts_with("host ") {
        let fields: Vec<&str> = text.split_whitespace().collect();
        // host NAME user USER uid UID date DATE PATH: VALUE
        if fields.len() >= 6 {
            let rest = fields[6..].join(" ");
            return (who, format!("host * user * uid * {rest}"));
        }
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (who, text)
}

fn by_capsule(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (who, text) = masked(line);
        lines.entry(who).or_default().push(text);
    }
    lines
}

#[test]
fn demo_prints_the_readme_listing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = common::run(
        Command::new(root.join("scripts/demo"))
            .current_dir(&root)
            .env("CAPSULE_BIN", common::capsule_bin()),
    );
    let printed = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "scripts/demo failed:\n{printed}");

    let expected = by_capsule(&readme_listing());
    let got = by_capsule(&printed);
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "the demo's capsules differ from the README's listing; the demo printed:\n{printed}"
    );
    for (who, lines) in &expected {
        assert_eq!(
            lines, &got[who],
            "the lines of {who:?} differ from the README's listing; the demo printed:\n{printed}"
        );
    }
}

#[test]
fn masking_keeps_what_matters() {
    let (who, text) = masked("legacy | host legacy-box   user cloudsdk uid 1000  date 1999-12-31 23:59:58  /srv/app/owner: legacy-box");
    assert_eq!(who, "legacy");
    assert_eq!(
        text,
        "host legacy-box user cloudsdk uid 1000 date DATE /srv/app/owner: legacy-box"
    );
    let (who, text) = masked("(host) | host vm           user root     uid 0     date 2026-12-06 12:59:48  /srv/app/owner: (none)");
    assert_eq!(who, "(host)");
    assert_eq!(text, "host * user * uid * date DATE /srv/app/owner: (none)");
    assert_eq!(
        masked("db exited 0"),
        (String::new(), "db exited 0".to_string())
    );
}

//! A Containerfile (Dockerfile) read into instructions, each with its line number, as
//! Docker's parser reads it: parser directives (`# escape=`), comments, line
//! continuations, case-insensitive keywords, JSON (exec) and shell forms, `--flag=`
//! options. Variables are not expanded here: that needs the build's state at each
//! step (see [`super::words`]). Anything this builder does not support is refused
//! here, with its line, before a step runs.

use std::fmt;

/// A command of RUN, CMD or ENTRYPOINT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `RUN apt-get update`: run by the stage's SHELL.
    Shell(String),
    /// `RUN ["make", "all"]`: run as it is.
    Exec(Vec<String>),
}

impl Command {
    /// As the image configuration holds it (shell forms go through `shell`).
    pub fn argv(&self, shell: &[String]) -> Vec<String> {
        match self {
            Command::Shell(text) => shell.iter().cloned().chain([text.clone()]).collect(),
            Command::Exec(argv) => argv.clone(),
        }
    }
}

/// What COPY and ADD take.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Copy {
    /// ADD: local archives are unpacked.
    pub add: bool,
    /// `--from=STAGE|IMAGE`: sources from that root instead of the context.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    /// Unexpanded, as written.
    pub sources: Vec<String>,
    pub dest: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    From {
        image: String,
        alias: Option<String>,
        platform: Option<String>,
    },
    Run(Command),
    Copy(Copy),
    /// Unexpanded `KEY=VALUE` words, or one `KEY VALUE` pair (the old form).
    Env(EnvForm),
    Arg {
        name: String,
        default: Option<String>,
    },
    Workdir(String),
    User(String),
    Cmd(Command),
    Entrypoint(Command),
    /// Unexpanded words.
    Expose(String),
    Label(EnvForm),
    Shell(Vec<String>),
    /// Paths (JSON form or words), unexpanded.
    Volume(Vec<String>),
    StopSignal(String),
}

/// ENV and LABEL: `K=V K2="v 2"` words, or the old `K some value` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvForm {
    Pairs(String),
    Single { key: String, value: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// As written, continuation lines joined (for history entries and the cache key).
    pub text: String,
    pub kind: Kind,
}

/// A Containerfile that cannot be used: `line` 0 means the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

fn error<T>(line: usize, reason: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        line,
        reason: reason.into(),
    })
}

/// A Containerfile read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Containerfile {
    /// The escape character (`\\`, or `` ` `` by the directive).
    pub escape: char,
    pub instructions: Vec<Instruction>,
}

/// Reads a whole Containerfile.
pub fn parse(text: &str) -> Result<Containerfile, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let (escape, first) = directives(&lines)?;
    let mut out = Vec::new();
    let mut n = first;
    while n < lines.len() {
        let trimmed = lines[n].trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            n += 1;
            continue;
        }
        let start = n;
        let mut logical = String::new();
        loop {
            let line = lines[n].trim_end();
            n += 1;
            match line.strip_suffix(escape) {
                Some(rest) => {
                    logical.push_str(rest);
                    // Comment and empty lines inside a continuation are dropped.
                    while n < lines.len() {
                        let t = lines[n].trim();
                        if t.starts_with('#') || t.is_empty() {
                            n += 1;
                        } else {
                            break;
                        }
                    }
                    if n == lines.len() {
                        break;
                    }
                }
                None => {
                    logical.push_str(line);
                    break;
                }
            }
        }
        out.push(instruction(start + 1, logical.trim())?);
    }
    if out.is_empty() {
        return error(0, "no instructions");
    }
    if !matches!(out[0].kind, Kind::From { .. } | Kind::Arg { .. })
        || !out.iter().any(|i| matches!(i.kind, Kind::From { .. }))
    {
        let line = out[0].line;
        return error(
            line,
            "the first instruction must be FROM (or ARG before FROM)",
        );
    }
    if let Some(bad) = out
        .iter()
        .take_while(|i| !matches!(i.kind, Kind::From { .. }))
        .find(|i| !matches!(i.kind, Kind::Arg { .. }))
    {
        return error(bad.line, "only ARG may come before the first FROM");
    }
    Ok(Containerfile {
        escape,
        instructions: out,
    })
}

/// Parser directives at the very top (`# escape=` and `# syntax=`); returns the escape
/// character and the first line after them.
fn directives(lines: &[&str]) -> Result<(char, usize), ParseError> {
    let mut escape = '\\';
    for (n, line) in lines.iter().enumerate() {
        let Some(body) = line.trim().strip_prefix('#') else {
            return Ok((escape, n));
        };
        let Some((key, value)) = body.split_once('=') else {
            return Ok((escape, n));
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "escape" => match value.trim() {
                "\\" => escape = '\\',
                "`" => escape = '`',
                other => return error(n + 1, format!("escape={other}: must be \\ or `")),
            },
            "syntax" | "check" => {}
            _ => return Ok((escape, n)),
        }
    }
    Ok((escape, lines.len()))
}

fn instruction(line: usize, text: &str) -> Result<Instruction, ParseError> {
    let (keyword, rest) = match text.find(char::is_whitespace) {
        Some(at) => (&text[..at], text[at..].trim_start()),
        None => (text, ""),
    };
    let keyword = keyword.to_ascii_uppercase();
    let kind = match keyword.as_str() {
        "FROM" => from(line, rest)?,
        "RUN" => {
            let (flags, rest) = flags(line, rest)?;
            if let Some((flag, _)) = flags.first() {
                return error(line, format!("RUN --{flag}: not supported"));
            }
            Kind::Run(command(line, "RUN", rest)?)
        }
        "COPY" | "ADD" => copy(line, &keyword, rest)?,
        "ENV" | "LABEL" => {
            let form = env_form(line, &keyword, rest)?;
            if keyword == "ENV" {
                Kind::Env(form)
            } else {
                Kind::Label(form)
            }
        }
        "ARG" => {
            let word = nonempty(line, &keyword, rest)?;
            if word.split_whitespace().count() != 1 {
                return error(line, "ARG takes one NAME or NAME=DEFAULT");
            }
            let (name, default) = match word.split_once('=') {
                Some((n, d)) => (n, Some(unquote(d).to_string())),
                None => (word, None),
            };
            check_variable_name(line, name)?;
            Kind::Arg {
                name: name.to_string(),
                default,
            }
        }
        "WORKDIR" => Kind::Workdir(nonempty(line, &keyword, rest)?.to_string()),
        "USER" => Kind::User(nonempty(line, &keyword, rest)?.to_string()),
        "CMD" => Kind::Cmd(command(line, &keyword, rest)?),
        "ENTRYPOINT" => Kind::Entrypoint(command(line, &keyword, rest)?),
        "EXPOSE" => Kind::Expose(nonempty(line, &keyword, rest)?.to_string()),
        "SHELL" => match json_array(rest) {
            Some(argv) if !argv.is_empty() => Kind::Shell(argv),
            _ => {
                return error(
                    line,
                    "SHELL takes a JSON array, e.g. [\"/bin/bash\", \"-c\"]",
                )
            }
        },
        "VOLUME" => {
            let rest = nonempty(line, &keyword, rest)?;
            Kind::Volume(match json_array(rest) {
                Some(paths) => paths,
                None => rest.split_whitespace().map(str::to_string).collect(),
            })
        }
        "STOPSIGNAL" => Kind::StopSignal(nonempty(line, &keyword, rest)?.to_string()),
        "ONBUILD" | "HEALTHCHECK" | "MAINTAINER" => {
            return error(line, format!("{keyword}: not supported by capsule build"))
        }
        _ => return error(line, format!("unknown instruction {keyword}")),
    };
    Ok(Instruction {
        line,
        text: text.to_string(),
        kind,
    })
}

fn nonempty<'a>(line: usize, keyword: &str, rest: &'a str) -> Result<&'a str, ParseError> {
    if rest.is_empty() {
        return error(line, format!("{keyword} needs an argument"));
    }
    Ok(rest)
}

/// `--name=value` options, as (name, value).
type Flags = Vec<(String, String)>;

/// Leading `--name=value` options, and the rest.
fn flags(line: usize, mut rest: &str) -> Result<(Flags, &str), ParseError> {
    let mut out = Vec::new();
    while let Some(body) = rest.strip_prefix("--") {
        let end = body.find(char::is_whitespace).unwrap_or(body.len());
        let (flag, after) = body.split_at(end);
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n, v),
            None => (flag, ""),
        };
        if name.is_empty() {
            return error(line, "an empty --flag");
        }
        out.push((name.to_string(), unquote(value).to_string()));
        rest = after.trim_start();
    }
    Ok((out, rest))
}

fn from(line: usize, rest: &str) -> Result<Kind, ParseError> {
    let (flags, rest) = flags(line, rest)?;
    let mut platform = None;
    for (name, value) in flags {
        match name.as_str() {
            "platform" => platform = Some(value),
            _ => return error(line, format!("FROM --{name}: unknown option")),
        }
    }
    let words: Vec<&str> = rest.split_whitespace().collect();
    let (image, alias) = match words.as_slice() {
        [image] => (*image, None),
        [image, as_, alias] if as_.eq_ignore_ascii_case("as") => {
            if !alias
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return error(line, format!("FROM … AS {alias}: not a valid stage name"));
            }
            (*image, Some(alias.to_ascii_lowercase()))
        }
        _ => return error(line, "FROM takes IMAGE [AS NAME]"),
    };
    Ok(Kind::From {
        image: image.to_string(),
        alias,
        platform,
    })
}

fn command(line: usize, keyword: &str, rest: &str) -> Result<Command, ParseError> {
    let rest = nonempty(line, keyword, rest)?;
    if rest.contains("<<") && heredoc(rest) {
        return error(
            line,
            format!("{keyword} with a here-document: not supported"),
        );
    }
    match json_array(rest) {
        Some(argv) if argv.is_empty() && keyword == "RUN" => error(line, "RUN [] has no command"),
        Some(argv) => Ok(Command::Exec(argv)),
        None => Ok(Command::Shell(rest.to_string())),
    }
}

/// `<<EOF` or `<<-EOF` as the start of a word (BuildKit's heredocs).
fn heredoc(text: &str) -> bool {
    text.split_whitespace().any(|w| {
        w.strip_prefix("<<")
            .map(|t| t.trim_start_matches('-').trim_matches(['"', '\'']))
            .is_some_and(|t| {
                !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
    })
}

fn json_array(text: &str) -> Option<Vec<String>> {
    let text = text.trim();
    if !text.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(text).ok()
}

fn copy(line: usize, keyword: &str, rest: &str) -> Result<Kind, ParseError> {
    let (flags, rest) = flags(line, rest)?;
    let mut spec = Copy {
        add: keyword == "ADD",
        ..Copy::default()
    };
    for (name, value) in flags {
        match name.as_str() {
            "from" if !spec.add => spec.from = Some(value.to_ascii_lowercase()),
            "chown" => spec.chown = Some(value),
            "chmod" => {
                if u32::from_str_radix(&value, 8).map_or(true, |m| m > 0o7777) {
                    return error(
                        line,
                        format!("{keyword} --chmod={value}: not an octal mode"),
                    );
                }
                spec.chmod = Some(value)
            }
            // Every COPY is its own layer here already.
            "link" => {}
            _ => return error(line, format!("{keyword} --{name}: not supported")),
        }
    }
    let mut words = match json_array(rest) {
        Some(words) => words,
        None => rest.split_whitespace().map(str::to_string).collect(),
    };
    if words.len() < 2 {
        return error(line, format!("{keyword} takes SOURCE... DEST"));
    }
    spec.dest = words.pop().unwrap_or_default();
    for source in &words {
        if spec.add && (source.contains("://") || source.starts_with("git@")) {
            return error(
                line,
                format!("ADD {source}: only local files and archives are supported"),
            );
        }
    }
    spec.sources = words;
    Ok(Kind::Copy(spec))
}

fn env_form(line: usize, keyword: &str, rest: &str) -> Result<EnvForm, ParseError> {
    let rest = nonempty(line, keyword, rest)?;
    let first = rest.split_whitespace().next().unwrap_or("");
    if first.contains('=') {
        return Ok(EnvForm::Pairs(rest.to_string()));
    }
    let value = rest[first.len()..].trim_start();
    if value.is_empty() {
        return error(
            line,
            format!("{keyword} {first}: needs a value (KEY=VALUE)"),
        );
    }
    if keyword == "ENV" {
        check_variable_name(line, first)?;
    }
    Ok(EnvForm::Single {
        key: first.to_string(),
        value: value.to_string(),
    })
}

pub fn check_variable_name(line: usize, name: &str) -> Result<(), ParseError> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        error(line, format!("{name:?}: not a variable name"))
    }
}

fn unquote(text: &str) -> &str {
    for q in ['"', '\''] {
        if text.len() >= 2 && text.starts_with(q) && text.ends_with(q) {
            return &text[1..text.len() - 1];
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Kind> {
        parse(text)
            .unwrap()
            .instructions
            .into_iter()
            .map(|i| i.kind)
            .collect()
    }

    #[test]
    fn continuations_comments_and_case_are_read_as_docker_does() {
        let file = parse(
            "# syntax=docker/dockerfile:1\n\
             from base AS Build\n\
             \n\
             # a comment\n\
             run apt-get update && \\\n\
             # inside a continuation\n\
             \x20   apt-get install -y x\n\
             CMD [\"/bin/app\", \"--serve\"]\n",
        )
        .unwrap()
        .instructions;
        assert_eq!(file.len(), 3);
        assert_eq!(file[0].line, 2);
        assert_eq!(
            file[0].kind,
            Kind::From {
                image: "base".into(),
                alias: Some("build".into()),
                platform: None
            }
        );
        assert_eq!(file[1].line, 5);
        assert_eq!(
            file[1].kind,
            Kind::Run(Command::Shell(
                "apt-get update &&     apt-get install -y x".into()
            ))
        );
        assert_eq!(
            file[2].kind,
            Kind::Cmd(Command::Exec(vec!["/bin/app".into(), "--serve".into()]))
        );
    }

    #[test]
    fn the_escape_directive_changes_the_continuation_character() {
        let k = kinds("# escape=`\nFROM x\nRUN dir `\n  c:\\\n");
        assert_eq!(k[1], Kind::Run(Command::Shell("dir   c:\\".into())));
    }

    #[test]
    fn copy_flags_sources_and_destination() {
        let k = kinds("FROM x\nCOPY --from=Build --chown=1:2 --chmod=0755 a b /dst/\n");
        assert_eq!(
            k[1],
            Kind::Copy(Copy {
                add: false,
                from: Some("build".into()),
                chown: Some("1:2".into()),
                chmod: Some("0755".into()),
                sources: vec!["a".into(), "b".into()],
                dest: "/dst/".into(),
            })
        );
        let k = kinds("FROM x\nADD [\"a b\", \"/c\"]\n");
        let Kind::Copy(c) = &k[1] else { panic!() };
        assert!(c.add && c.sources == ["a b"] && c.dest == "/c");
    }

    #[test]
    fn env_and_arg_forms() {
        let k = kinds("ARG V=1\nFROM x\nENV A=1 B=\"2 3\"\nENV OLD some value\nARG N\n");
        assert_eq!(
            k[0],
            Kind::Arg {
                name: "V".into(),
                default: Some("1".into())
            }
        );
        assert_eq!(k[2], Kind::Env(EnvForm::Pairs("A=1 B=\"2 3\"".into())));
        assert_eq!(
            k[3],
            Kind::Env(EnvForm::Single {
                key: "OLD".into(),
                value: "some value".into()
            })
        );
        assert_eq!(
            k[4],
            Kind::Arg {
                name: "N".into(),
                default: None
            }
        );
    }

    #[test]
    fn what_is_not_supported_is_refused_with_its_line() {
        for (text, line, words) in [
            (
                "FROM x\nFROBNICATE y\n",
                2,
                "unknown instruction FROBNICATE",
            ),
            ("RUN x\n", 1, "first instruction must be FROM"),
            ("FROM x\nADD https://e.org/a /a\n", 2, "only local files"),
            ("FROM x\nRUN <<EOF\necho\nEOF\n", 2, "here-document"),
            ("FROM x\nHEALTHCHECK CMD true\n", 2, "not supported"),
            ("FROM x\nCOPY --chmod=999 a /b\n", 2, "not an octal mode"),
            ("FROM x\nCOPY a\n", 2, "SOURCE... DEST"),
            ("FROM x\nSHELL /bin/sh -c\n", 2, "JSON array"),
            (
                "FROM x\nRUN --mount=type=cache,target=/c true\n",
                2,
                "not supported",
            ),
            ("FROM x\nENV 1A b\n", 2, "not a variable name"),
            ("ENV A=1\nFROM x\n", 1, "first instruction must be FROM"),
            ("# only a comment\n", 0, "no instructions"),
            ("FROM a b\n", 1, "IMAGE [AS NAME]"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.reason.contains(words), "{text:?}: {e}");
        }
    }
}

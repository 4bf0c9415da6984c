//! Variables and quotes in the arguments of ENV, ARG, LABEL, COPY, ADD, WORKDIR, USER,
//! EXPOSE, VOLUME, STOPSIGNAL and FROM, as Docker's word processing reads them:
//! `$NAME`, `${NAME}`, `${NAME:-default}`, `${NAME:+alternative}` (and the forms
//! without `:`, which only look at whether NAME is set); single quotes keep
//! everything, double quotes keep spaces and expand variables, the escape character
//! keeps the next one. RUN, CMD and ENTRYPOINT are not processed: their shell does it.

use std::collections::BTreeMap;

/// The variables a step sees: the stage's ARGs, then its ENV over them.
pub type Vars = BTreeMap<String, String>;

/// `text` as one word (spaces kept).
pub fn expand(text: &str, vars: &Vars, escape: char) -> Result<String, String> {
    let mut words = Lexer::new(text, vars, escape, false).run()?;
    Ok(words.pop().unwrap_or_default())
}

/// `text` split into words at unquoted blanks.
pub fn split(text: &str, vars: &Vars, escape: char) -> Result<Vec<String>, String> {
    Lexer::new(text, vars, escape, true).run()
}

struct Lexer<'a> {
    chars: Vec<char>,
    at: usize,
    vars: &'a Vars,
    escape: char,
    split: bool,
}

impl<'a> Lexer<'a> {
    fn new(text: &str, vars: &'a Vars, escape: char, split: bool) -> Lexer<'a> {
        Lexer {
            chars: text.chars().collect(),
            at: 0,
            vars,
            escape,
            split,
        }
    }

    fn run(mut self) -> Result<Vec<String>, String> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut started = false;
        while let Some(c) = self.next() {
            match c {
                c if self.split && c.is_whitespace() => {
                    if started {
                        words.push(std::mem::take(&mut word));
                        started = false;
                    }
                }
                '\'' => {
                    started = true;
                    loop {
                        match self.next() {
                            Some('\'') => break,
                            Some(c) => word.push(c),
                            None => return Err("a ' quote is not closed".into()),
                        }
                    }
                }
                '"' => {
                    started = true;
                    loop {
                        match self.next() {
                            Some('"') => break,
                            Some(c) if c == self.escape => match self.next() {
                                Some(n @ ('"' | '$')) => word.push(n),
                                Some(n) if n == self.escape => word.push(n),
                                Some(n) => {
                                    word.push(c);
                                    word.push(n);
                                }
                                None => return Err("a \" quote is not closed".into()),
                            },
                            Some('$') => word.push_str(&self.variable()?),
                            Some(c) => word.push(c),
                            None => return Err("a \" quote is not closed".into()),
                        }
                    }
                }
                c if c == self.escape => {
                    started = true;
                    if let Some(n) = self.next() {
                        word.push(n);
                    } else {
                        word.push(c);
                    }
                }
                '$' => {
                    started = true;
                    word.push_str(&self.variable()?);
                }
                c => {
                    started = true;
                    word.push(c);
                }
            }
        }
        if started || !self.split {
            words.push(word);
        }
        Ok(words)
    }

    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.at).copied();
        self.at += c.is_some() as usize;
        c
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    /// After a `$`: the variable's value (or a literal `$`).
    fn variable(&mut self) -> Result<String, String> {
        if self.peek() == Some('{') {
            self.at += 1;
            let name = self.name();
            if name.is_empty() {
                return Err("${}: a variable needs a name".into());
            }
            let value = self.vars.get(&name);
            let mut colon = false;
            let op = match self.next() {
                Some('}') => return Ok(value.cloned().unwrap_or_default()),
                Some(':') => {
                    colon = true;
                    self.next()
                }
                other => other,
            };
            let op = match op {
                Some(c @ ('-' | '+')) => c,
                Some(c) => return Err(format!("${{{name}{c}…}}: only :- and :+ are supported")),
                None => return Err(format!("${{{name}: not closed")),
            };
            let word = self.until_brace()?;
            let set = match value {
                Some(v) => !colon || !v.is_empty(),
                None => false,
            };
            return Ok(match (op, set) {
                ('-', true) => value.cloned().unwrap_or_default(),
                ('-', false) => word,
                (_, true) => word,
                (_, false) => String::new(),
            });
        }
        let name = self.name();
        if name.is_empty() {
            return Ok("$".into());
        }
        Ok(self.vars.get(&name).cloned().unwrap_or_default())
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.at += 1;
            } else {
                break;
            }
        }
        name
    }

    /// The word of `${NAME:-word}`, itself expanded, up to its `}`.
    fn until_brace(&mut self) -> Result<String, String> {
        let mut out = String::new();
        loop {
            match self.next() {
                Some('}') => return Ok(out),
                Some('$') => out.push_str(&self.variable()?),
                Some(c) if c == self.escape => {
                    if let Some(n) = self.next() {
                        out.push(n);
                    }
                }
                Some(c) => out.push(c),
                None => return Err("${…: not closed".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [("A", "1"), ("EMPTY", ""), ("SP", "x y")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn variables_expand_as_docker_expands_them() {
        let v = vars();
        for (text, want) in [
            ("$A", "1"),
            ("${A}b", "1b"),
            ("pre-$A-post", "pre-1-post"),
            ("$UNSET", ""),
            ("${UNSET:-d}", "d"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("${A:+alt}", "alt"),
            ("${UNSET:+alt}", ""),
            ("${UNSET:-$A}", "1"),
            ("\\$A", "$A"),
            ("'$A'", "$A"),
            ("\"$A\"", "1"),
            ("a$", "a$"),
            ("\"say \\\"hi\\\"\"", "say \"hi\""),
        ] {
            assert_eq!(expand(text, &v, '\\').unwrap(), want, "{text}");
        }
    }

    #[test]
    fn words_split_at_unquoted_blanks_only() {
        let v = vars();
        assert_eq!(
            split("K=\"a b\" L=$SP M='c d' N=x\\ y", &v, '\\').unwrap(),
            ["K=a b", "L=x y", "M=c d", "N=x y"]
        );
        assert_eq!(
            split("  80/tcp   443 ", &v, '\\').unwrap(),
            ["80/tcp", "443"]
        );
        assert_eq!(split("a `b", &v, '`').unwrap(), ["a", "b"]);
        assert!(split("\"open", &v, '\\').is_err());
        assert!(split("${A", &v, '\\').is_err());
        assert!(split("${A%x}", &v, '\\').is_err());
    }
}

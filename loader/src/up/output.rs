//! The capsules' output: each line goes to the capsule's `log` file and, in the
//! foreground, to standard output behind a `name | ` prefix (padded to the longest name,
//! coloured per capsule on a terminal), as `docker compose up` prints it.
//!
//! One thread per running program copies its output pipe (standard output and standard
//! error share it, so their lines keep their order). A line is written to standard
//! output with one `write_all` under the stdout lock, so lines of different capsules
//! never mix.

use std::fs::File;
use std::io::{self, BufRead, BufReader, PipeReader, Write};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The colours compose gives its services, in order; the palette repeats.
const COLOURS: &[&str] = &[
    "36", "33", "32", "35", "34", "1;36", "1;33", "1;32", "1;35", "1;34",
];

/// The stack of each output thread.
const OUTPUT_STACK: usize = 64 * 1024;

/// Where output and notices go.
#[derive(Debug, Clone)]
pub struct Console {
    /// Print to standard output (else only the log files get the output).
    foreground: bool,
    colours: bool,
    /// Prefix lines with the capsule's name.
    prefixed: bool,
    width: usize,
}

impl Console {
    /// `names` are every capsule's, to pad the prefixes to the longest.
    pub fn new(foreground: bool, colours: bool, prefixed: bool, names: &[String]) -> Console {
        Console {
            foreground,
            colours,
            prefixed,
            width: names.iter().map(|n| n.chars().count()).max().unwrap_or(0),
        }
    }

    /// The `name | ` prefix of capsule number `index` (empty in the background, and
    /// without prefixes).
    pub fn prefix(&self, index: usize, name: &str) -> Arc<str> {
        if !self.foreground || !self.prefixed {
            return Arc::from("");
        }
        let padded = format!("{name:<width$} |", width = self.width);
        if self.colours {
            let colour = COLOURS[index % COLOURS.len()];
            Arc::from(format!("\x1b[{colour}m{padded}\x1b[0m "))
        } else {
            Arc::from(format!("{padded} "))
        }
    }

    /// A line of the supervisor about one capsule, in the stream of its output.
    /// Without prefixes it goes to standard error, naming the capsule, so that the
    /// standard output is the programs' alone.
    pub fn notice(&self, prefix: &str, name: &str, text: &str) {
        if !self.foreground {
            return;
        }
        if self.prefixed {
            print_line(prefix, format!("capsule: {text}").as_bytes());
        } else {
            eprintln!("capsule: {name}: {text}");
        }
    }

    /// A line of the supervisor about them all (to standard error without prefixes).
    pub fn say(&self, text: &str) {
        if !self.foreground {
            return;
        }
        if self.prefixed {
            print_line("", text.as_bytes());
        } else {
            eprintln!("{text}");
        }
    }

    /// Starts copying `pipe` to `log` (each line's time to `index`) and, in the
    /// foreground, to standard output.
    pub fn relay(
        &self,
        pipe: PipeReader,
        log: File,
        index: File,
        prefix: Arc<str>,
    ) -> io::Result<JoinHandle<()>> {
        let foreground = self.foreground;
        std::thread::Builder::new()
            .name("capsule-output".into())
            // A line buffer and a write: a small stack keeps hundreds of them cheap.
            .stack_size(OUTPUT_STACK)
            .spawn(move || copy_lines(pipe, log, index, foreground.then_some(prefix)))
    }
}

fn copy_lines(pipe: PipeReader, mut log: File, mut index: File, prefix: Option<Arc<str>>) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        // The log keeps what the program wrote; a last line without a newline gets one.
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        // A full disk must not stop the capsule: its output would block on the pipe.
        if log.write_all(&line).is_ok() {
            // Where the line ends in the log (another writer may have appended since
            // this one opened it), and when it came, for `capsule logs -t/--since`.
            if let Ok(meta) = log.metadata() {
                let _ = index.write_all(&crate::state::LogIndexRecord::now(meta.len()).to_bytes());
            }
        }
        if let Some(prefix) = &prefix {
            print_line(prefix, &line);
        }
    }
}

/// Writes `prefix` and `line` (a newline added if missing) as one write.
fn print_line(prefix: &str, line: &[u8]) {
    let mut text = Vec::with_capacity(prefix.len() + line.len() + 1);
    text.extend_from_slice(prefix.as_bytes());
    text.extend_from_slice(line);
    if !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    // Standard output closed (a pager quit): the capsules keep running, unprinted.
    let _ = io::stdout().lock().write_all(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_padded_and_coloured_on_terminals() {
        let names = vec!["web-1".to_string(), "db".to_string()];
        let plain = Console::new(true, false, true, &names);
        assert_eq!(&*plain.prefix(1, "db"), "db    | ");
        assert_eq!(&*plain.prefix(0, "web-1"), "web-1 | ");
        let coloured = Console::new(true, true, true, &names);
        assert_eq!(&*coloured.prefix(1, "db"), "\x1b[33mdb    |\x1b[0m ");
        assert_eq!(
            &*Console::new(false, true, true, &names).prefix(0, "db"),
            ""
        );
        assert_eq!(
            &*Console::new(true, true, false, &names).prefix(0, "db"),
            ""
        );
    }

    #[test]
    fn lines_reach_the_log_whole() {
        let dir = std::env::temp_dir().join(format!("capsule-output-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log_path = dir.join("log");
        let log = File::create(&log_path).unwrap();
        let index = File::create(dir.join("log.index")).unwrap();
        let (reader, mut writer) = io::pipe().unwrap();
        let console = Console::new(false, false, true, &[]);
        let thread = console.relay(reader, log, index, Arc::from("")).unwrap();
        writer.write_all(b"one\ntwo\nno newline").unwrap();
        drop(writer);
        thread.join().unwrap();
        assert_eq!(
            std::fs::read_to_string(&log_path).unwrap(),
            "one\ntwo\nno newline\n"
        );
        let records =
            crate::state::LogIndexRecord::parse(&std::fs::read(dir.join("log.index")).unwrap());
        let ends: Vec<u64> = records.iter().map(|r| r.end).collect();
        assert_eq!(ends, [4, 8, 19]);
        assert!(records.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

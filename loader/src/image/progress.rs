//! A progress bar for long imports and exports, drawn only when standard error is a
//! terminal (scripts and logs get nothing).

use std::io::{IsTerminal, Read};

use indicatif::{ProgressBar, ProgressStyle};

/// Bytes read out of the blobs being imported, against their total.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(total: u64, what: &str) -> Progress {
        let bar = if std::io::stderr().is_terminal() && total > 0 {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what.to_string());
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress { bar }
    }

    /// `reader`, advancing the bar by what is read through it.
    pub fn reader<R: Read>(&self, reader: R) -> impl Read {
        self.bar.wrap_read(reader)
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The layers of a pull: a bar per layer on a terminal, else one line per layer
/// when it is done; nothing with `--quiet`.
pub struct Layers {
    multi: Option<indicatif::MultiProgress>,
    quiet: bool,
}

/// One layer's bar, or its line.
pub struct LayerBar {
    bar: Option<ProgressBar>,
    name: String,
    quiet: bool,
}

impl Layers {
    pub fn new(quiet: bool) -> Layers {
        let multi = (!quiet && std::io::stderr().is_terminal()).then(indicatif::MultiProgress::new);
        Layers { multi, quiet }
    }

    /// A layer (`name`: its short digest) of `size` bytes.
    pub fn layer(&self, name: &str, size: u64) -> LayerBar {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new(size));
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(name.to_string());
            bar
        });
        LayerBar {
            bar,
            name: name.to_string(),
            quiet: self.quiet,
        }
    }
}

impl LayerBar {
    pub fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// The layer failed (the error is reported once, by the command).
    pub fn failed(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }

    /// The layer is done: `what` happened to it ("downloaded 1234 bytes", "already
    /// in the store").
    pub fn done(&self, what: &str) {
        match &self.bar {
            Some(bar) => bar.finish_with_message(format!("{}: {what}", self.name)),
            None if !self.quiet => eprintln!("{}: {what}", self.name),
            None => {}
        }
    }
}

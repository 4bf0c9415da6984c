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

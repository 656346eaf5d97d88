//! Progress on the terminal: a spinner with the elapsed time per stage and
//! what is known of its size (the input file's bytes for extract, "batch 2 of
//! 5" for ingest). All of it
//! goes to stderr and only when stderr is a terminal and `--quiet` is off, so
//! cron mails, pipes and tests see nothing of it. A progress line names a
//! stage, a size or a count, never an id.

use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// How often a spinner redraws.
const TICK: Duration = Duration::from_millis(120);

/// One stage's progress line; drawing nothing when not interactive.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A spinner for a stage whose amount of work is unknown; `detail`
    /// (e.g. the input's size) is shown after the label.
    pub fn spinner(interactive: bool, label: &str, detail: Option<&str>) -> Progress {
        let bar = interactive.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .expect("constant template"),
            );
            bar.set_message(match detail {
                Some(d) => format!("{label} ({d})"),
                None => label.to_owned(),
            });
            bar.enable_steady_tick(TICK);
            bar
        });
        Progress { bar }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// A file's size for a progress line ("1.20 GiB"), if it is a file.
pub(crate) fn file_size(path: &std::path::Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    meta.is_file()
        .then(|| format!("{} input", HumanBytes(meta.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_drawn_when_not_interactive() {
        let p = Progress::spinner(false, "extract", Some("1 KiB input"));
        assert!(p.bar.is_none());
    }

    #[test]
    fn file_size_names_a_size_not_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loans-U1.csv");
        std::fs::write(&path, vec![b'x'; 2048]).unwrap();
        let s = file_size(&path).unwrap();
        assert_eq!(s, "2.00 KiB input");
        assert!(file_size(dir.path()).is_none());
        assert!(file_size(&dir.path().join("missing")).is_none());
    }
}

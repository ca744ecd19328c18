//! Progress of long work: a bar on a terminal, a plain log line every few seconds otherwise.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

const LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    label: &'static str,
    total_bytes: u64,
    mode: Mode,
}

enum Mode {
    Off,
    Bar(ProgressBar),
    Log { start: Instant, last: Instant },
}

impl Progress {
    /// Progress over `total_bytes` of input. `enabled: false` shows nothing (benchmarks, tests).
    pub fn new(label: &'static str, total_bytes: u64, enabled: bool) -> Self {
        let mode = if !enabled {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            let bar =
                ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label);
            Mode::Bar(bar)
        } else {
            let now = Instant::now();
            Mode::Log {
                start: now,
                last: now,
            }
        };
        Progress {
            label,
            total_bytes,
            mode,
        }
    }

    /// `bytes` of input read so far, with a short note (e.g. the document count).
    pub fn update(&mut self, bytes: u64, note: impl FnOnce() -> String) {
        match &mut self.mode {
            Mode::Off => {}
            Mode::Bar(bar) => {
                bar.set_position(bytes);
                bar.set_message(note());
            }
            Mode::Log { start, last } => {
                if last.elapsed() >= LOG_EVERY {
                    *last = Instant::now();
                    let share = 100.0 * bytes as f64 / self.total_bytes.max(1) as f64;
                    eprintln!(
                        "{}: {:.1}/{:.1} MB ({share:.0}%) after {:.0}s, {}",
                        self.label,
                        bytes as f64 / 1e6,
                        self.total_bytes as f64 / 1e6,
                        start.elapsed().as_secs_f64(),
                        note()
                    );
                }
            }
        }
    }

    pub fn finish(self) {
        if let Mode::Bar(bar) = self.mode {
            bar.finish_and_clear();
        }
    }
}

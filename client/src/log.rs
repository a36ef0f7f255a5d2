//! The proxy's log: a tiny leveled logger (no framework). Messages go to
//! stderr as `TIME LEVEL message`; access lines (one per request, at the
//! `info` level) go to stderr or to an access-log file, as
//! `TIME CLIENT METHOD URL STATUS RESULT WIRE DELIVERED MS` (see the README).

use std::io::Write;
use std::sync::Mutex;
use std::time::SystemTime;

/// How much is logged: each level includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Level {
    /// Only errors of the proxy itself.
    Error,
    /// Also origins that cannot be reached, and stale copies served because of it.
    Warn,
    /// Also one access line per request.
    Info,
    /// Also what happened inside a request (bad deltas refetched, dictionaries fetched).
    Debug,
}

impl Level {
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Level, String> {
        <Level as clap::ValueEnum>::from_str(s.trim(), true)
            .map_err(|_| format!("bad log level {s:?}: expected error, warn, info or debug"))
    }
}

/// Where lines go.
#[derive(Debug)]
pub enum Sink {
    Off,
    Stderr,
    /// A file opened for appending: one `write` per line.
    File(Mutex<std::fs::File>),
    /// Kept in memory (tests).
    Memory(Mutex<Vec<String>>),
}

impl Sink {
    fn write(&self, line: &str) {
        match self {
            Sink::Off => {}
            Sink::Stderr => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            Sink::File(f) => {
                let mut l = String::with_capacity(line.len() + 1);
                l.push_str(line);
                l.push('\n');
                let _ = f.lock().unwrap().write_all(l.as_bytes());
            }
            Sink::Memory(v) => v.lock().unwrap().push(line.to_string()),
        }
    }
}

/// The proxy's logger: a level, where messages go, where access lines go.
#[derive(Debug)]
pub struct Logger {
    pub level: Level,
    messages: Sink,
    access: Sink,
}

impl Default for Logger {
    /// Logs nothing (the library's default; `hsync proxy` logs to stderr).
    fn default() -> Self {
        Logger { level: Level::Error, messages: Sink::Off, access: Sink::Off }
    }
}

impl Logger {
    /// Messages to stderr; access lines to `access_log` (appended to) or to stderr.
    pub fn new(level: Level, access_log: Option<&std::path::Path>) -> std::io::Result<Logger> {
        let access = match access_log {
            Some(p) => Sink::File(Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?)),
            None => Sink::Stderr,
        };
        Ok(Logger { level, messages: Sink::Stderr, access })
    }

    /// Everything in memory, in order, messages and access lines together (tests).
    pub fn memory(level: Level) -> Logger {
        Logger { level, messages: Sink::Memory(Mutex::new(Vec::new())), access: Sink::Off }
    }

    /// The lines kept by a [`Logger::memory`] logger.
    pub fn lines(&self) -> Vec<String> {
        match &self.messages {
            Sink::Memory(v) => v.lock().unwrap().clone(),
            _ => Vec::new(),
        }
    }

    pub fn enabled(&self, level: Level) -> bool {
        level <= self.level && !(matches!(self.messages, Sink::Off) && matches!(self.access, Sink::Off))
    }

    /// `TIME LEVEL message`.
    pub fn log(&self, level: Level, msg: impl std::fmt::Display) {
        if level <= self.level {
            self.messages.write(&format!("{} {} {msg}", iso_time(SystemTime::now()), level.as_str()));
        }
    }

    pub fn error(&self, msg: impl std::fmt::Display) {
        self.log(Level::Error, msg)
    }
    pub fn warn(&self, msg: impl std::fmt::Display) {
        self.log(Level::Warn, msg)
    }
    pub fn debug(&self, msg: impl std::fmt::Display) {
        self.log(Level::Debug, msg)
    }

    /// An access line (at the `info` level); `line` is everything after the time.
    pub fn access(&self, at: SystemTime, line: &str) {
        if Level::Info <= self.level {
            let l = format!("{} {line}", iso_time(at));
            match self.access {
                Sink::Off => self.messages.write(&l),
                _ => self.access.write(&l),
            }
        }
    }
}

/// `2026-12-03T01:40:00.123Z`.
pub fn iso_time(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, (rem % 3600) / 60, rem % 60, d.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times() {
        assert_eq!(iso_time(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_261_400_123);
        assert_eq!(iso_time(t), "2026-12-03T01:30:00.123Z");
    }

    #[test]
    fn levels_filter() {
        let l = Logger::memory(Level::Warn);
        l.debug("d");
        l.access(SystemTime::now(), "a");
        l.warn("w");
        l.error("e");
        let lines = l.lines();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with(" WARN w") && lines[1].ends_with(" ERROR e"));
        assert_eq!("Debug".parse::<Level>(), Ok(Level::Debug));
        assert!("loud".parse::<Level>().is_err());
    }
}

//! What medfm tells its user beyond results: one place for notices, warnings and debug lines,
//! and for how numbers look in messages.
//!
//! Levels: `info` (stdout, the run's log), `notice` (stderr, "Notice: ..."): something the user
//! did not ask for but should know (e.g. a trunk with random weights), `warning` (stderr,
//! "warning: ..."), and `debug` (stderr, "debug: ..."), printed only with `--debug` (or
//! `MEDFM_DEBUG=1` for the subcommands): resolved paths, the device, cache decisions.
//! Notices and warnings go to stderr so that they reach a terminal also when the log (stdout)
//! is redirected to a file.
//!
//! Library modules print only through here; `println!` is for the commands (`src/commands/`)
//! and `main`.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

/// Turn debug lines on or off (`--debug`).
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

/// Whether debug lines are printed.
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// `MEDFM_DEBUG` set to anything but "", "0" or "false": debug lines for any command.
pub fn debug_from_env() -> bool {
    std::env::var("MEDFM_DEBUG").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// A line of the run's log (stdout). A closed stdout (`medfm report | head`, a log reader
/// that quit) is not an error: the command goes on and writes its files (`println!` would
/// panic with a backtrace).
pub fn info(args: fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{args}");
}

/// `println!` for the commands' own output, through [`info`], so that a closed stdout
/// (`medfm inspect ... | head`) does not panic.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => {
        $crate::messages::info(format_args!($($arg)*))
    };
}

/// Something the user should know before trusting the results (stderr).
pub fn notice(args: fmt::Arguments) {
    eprintln!("Notice: {args}");
}

/// Something went wrong but the command goes on (stderr).
pub fn warning(args: fmt::Arguments) {
    eprintln!("warning: {args}");
}

/// A detail for finding out why medfm did what it did (stderr, only with `--debug`). The
/// arguments are formatted only when debug lines are on.
pub fn debug(args: fmt::Arguments) {
    if debug_enabled() {
        eprintln!("debug: {args}");
    }
}

/// A number for a log line: the shortest form that reads back to it when that is short (a
/// value the user typed, a metric rounded to 3 decimals), else 6 significant digits, so that
/// float noise such as 0.005000500000000001 (0.005 x 1.0001) or 0.00031622776601683794
/// (10^-3.5) shows as 0.0050005 and 0.000316228. Scientific notation below 1e-4 and from 1e6
/// up; a negative zero (e.g. a kappa of -0.0) prints as 0.
pub fn num(x: f64) -> String {
    sig(x, 6)
}

/// `x` rounded to `digits` significant digits, written as [`num`] writes it (the shortest
/// form of the rounded value). `digits` must be 1..=17.
pub fn sig(x: f64, digits: usize) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if !x.is_finite() {
        return format!("{x}");
    }
    let shortest = format!("{x}");
    let in_fixed_range = (1e-4..1e6).contains(&x.abs());
    if in_fixed_range && shortest.len() <= 10 {
        return shortest;
    }
    // `{:.Ne}` rounds to N+1 significant digits (correctly, from the exact binary value);
    // reading that back and printing it shortest drops the trailing zeros.
    let rounded: f64 = format!("{x:.*e}", digits.clamp(1, 17) - 1)
        .parse()
        .unwrap_or(x);
    if (1e-4..1e6).contains(&rounded.abs()) {
        format!("{rounded}")
    } else {
        format!("{rounded:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_logs_are_short() {
        for (x, want) in [
            (0.003, "0.003"),
            (0.005000500000000001, "0.0050005"),
            (0.00031622776601683794, "0.000316228"),
            (0.1 + 0.2, "0.3"),
            (0.812, "0.812"),
            (-0.0, "0"),
            (0.0, "0"),
            (-0.25, "-0.25"),
            (1e-5, "1e-5"),
            (3.1622776601683795e-5, "3.16228e-5"),
            (12345678.9, "1.23457e7"),
            (5.0, "5"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(num(x), want, "{x:?}");
        }
        assert_eq!(sig(0.005000500000000001, 10), "0.0050005");
        assert_eq!(sig(0.1234567891234, 10), "0.1234567891");
    }

    #[test]
    fn debug_lines_follow_the_switch() {
        // Only the switch is tested here (the lines themselves: tests/it/cli_messages.rs); it is
        // process-wide, so it is put back.
        let before = debug_enabled();
        set_debug(true);
        assert!(debug_enabled());
        set_debug(false);
        assert!(!debug_enabled());
        set_debug(before);
    }
}

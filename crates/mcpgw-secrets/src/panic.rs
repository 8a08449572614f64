//! A panic hook that passes panic messages through the global redactor.

use std::io::Write as _;

use crate::redact::global;

/// Replaces the default panic hook with one that redacts known secret
/// values from the message before writing it to stderr. A backtrace is
/// added when `RUST_BACKTRACE` asks for one, as the default hook does.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "Box<dyn Any>".to_string());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let mut text = format!("thread '{name}' panicked{location}:\n{message}\n");
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            text.push_str(&format!("stack backtrace:\n{backtrace}\n"));
        }
        let text = match global() {
            Some(redactor) => redactor.redact(&text).into_owned(),
            None => text,
        };
        let _ = std::io::stderr().write_all(text.as_bytes());
    }));
}

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

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use crate::{LiveRedactor, Redactor, set_global};

    const VALUE: &str = "panic-canary-7f3e9d2c";
    const CHILD: &str = "MCPGW_PANIC_TEST_CHILD";

    /// Runs itself again as a child that installs the hook and panics with
    /// a secret value in the message; the child's stderr must show the
    /// redaction and not the value.
    #[test]
    fn panic_messages_are_redacted() {
        if std::env::var_os(CHILD).is_some() {
            let value = SecretString::from(VALUE);
            set_global(LiveRedactor::new(Redactor::new([("canary", &value)])));
            super::install_panic_hook();
            panic!("failed while holding {VALUE}");
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "panic::tests::panic_messages_are_redacted",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "the child panicked");
        assert!(
            stderr.contains("failed while holding [REDACTED:canary]"),
            "{stderr}"
        );
        assert!(!stderr.contains(VALUE), "{stderr}");
    }
}

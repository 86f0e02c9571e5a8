//! A secret's value: readable only on purpose.
//!
//! `Debug` prints a placeholder and there is no `Display`, so a value cannot reach a log line,
//! an error or a panic message by accident; the only ways out are `expose` (into the child's
//! environment or a secrets file) and `fingerprint` (8 hex characters of its SHA-256).

use sha2::{Digest, Sha256};

#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }

    /// The value itself: only for the child's environment and `--secrets-dir` files.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first 8 hex characters of the value's SHA-256: enough to compare across tasks.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretValue(<{} bytes, redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_the_value() {
        let v = SecretValue::new("hunter2");
        assert_eq!(format!("{v:?}"), "SecretValue(<7 bytes, redacted>)");
        assert_eq!(v.fingerprint(), "f52fbd32"); // sha256("hunter2") = f52fbd32b2b3b86f...
        assert_eq!(v.expose(), "hunter2");
    }
}

//! Checking what the app got, and that no secret value leaked.
#![allow(unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// Reads a file written by `env -0`.
pub fn read_env0(path: &Path) -> std::collections::HashMap<String, String> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    String::from_utf8(bytes).unwrap().split('\0').filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect()
}

/// Fails if any secret value (longer than 5 characters, so not "5432") appears in `text`.
pub fn assert_no_secret_values<'a>(text: &str, values: impl IntoIterator<Item = &'a String>, what: &str) {
    for v in values {
        if v.len() > 5 {
            assert!(!text.contains(v.as_str()), "a secret value leaked into {what}");
            for line in v.lines().filter(|l| l.len() > 5) {
                assert!(!text.contains(line), "part of a secret value leaked into {what}");
            }
        }
    }
}

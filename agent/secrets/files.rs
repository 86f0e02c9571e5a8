//! `--secrets-dir DIR`: each secret also written to `DIR/NAME`, mode 0400, for apps that read
//! secrets from files. Each file is written beside its final name and renamed into place, so a
//! reader never sees half a value. When the agent exits, the files it wrote are removed (and the
//! directory, if that leaves it empty): a secret should not outlive the app on a laptop's disk
//! or a bind mount. A SIGKILLed agent cannot clean up; a tmpfs (or Fargate's ephemeral storage,
//! discarded with the task) is the place for DIR.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Resolved;

pub struct SecretsDir {
    dir: PathBuf,
    /// Every name written so far (a refresh may add names).
    written: Mutex<BTreeSet<String>>,
}

impl SecretsDir {
    pub fn new(dir: &Path) -> Self {
        SecretsDir { dir: dir.to_owned(), written: Mutex::new(BTreeSet::new()) }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn write_all(&self, resolved: &Resolved) -> std::io::Result<()> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        for var in &resolved.vars {
            let tmp = self.dir.join(format!(".{}.tmp", var.name));
            let _ = std::fs::remove_file(&tmp);
            self.written.lock().unwrap_or_else(|e| e.into_inner()).insert(var.name.clone());
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o400).open(&tmp)?;
            f.write_all(var.value.expose().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.dir.join(&var.name))?;
        }
        tracing::info!(dir = %self.dir.display(), count = resolved.vars.len(), "wrote secrets files");
        Ok(())
    }

    /// Removes every file written (and a leftover temporary one), then the directory if empty.
    pub fn remove_all(&self) {
        let names = std::mem::take(&mut *self.written.lock().unwrap_or_else(|e| e.into_inner()));
        let mut failed = 0;
        for name in &names {
            let _ = std::fs::remove_file(self.dir.join(format!(".{name}.tmp")));
            match std::fs::remove_file(self.dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    failed += 1;
                    tracing::warn!(dir = %self.dir.display(), file = %name, error = %e, "cannot remove a secrets file");
                }
            }
        }
        let dir_removed = std::fs::remove_dir(&self.dir).is_ok();
        tracing::info!(dir = %self.dir.display(), removed = names.len() - failed, dir_removed, "removed the secrets files");
    }
}

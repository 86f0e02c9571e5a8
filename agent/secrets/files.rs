//! `--secrets-dir DIR`: each secret also written to `DIR/NAME`, mode 0400, for apps that read
//! secrets from files. Each file is written beside its final name and renamed into place, so a
//! reader never sees half a value.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use super::Resolved;

pub fn write_all(dir: &Path, resolved: &Resolved) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    for var in &resolved.vars {
        let tmp = dir.join(format!(".{}.tmp", var.name));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o400).open(&tmp)?;
        f.write_all(var.value.expose().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(&var.name))?;
    }
    tracing::info!(dir = %dir.display(), count = resolved.vars.len(), "wrote secrets files");
    Ok(())
}

//! Secrets at rest: directories only their owner can enter (0700) and files only their
//! owner can read (0600), written atomically (temp file, fsync, rename). Used for the
//! data planes' state (node credential, kept snapshots) and by the CLI for `lingjing up`'s
//! data directory. Existing directories and files with looser modes are tightened.

use std::io::{self, Write};
use std::path::Path;

/// Creates `dir` (and its parents) if needed and makes it 0700.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    tighten(dir, 0o700)
}

/// Makes `path` 0600 if it exists and others (or its group) may read it.
pub fn tighten_file(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => tighten(path, 0o600),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if current & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        tracing::info!(path = %path.display(), from = format!("{current:o}"), to = format!("{mode:o}"), "tightened the mode of a private path");
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_: &Path, _: u32) -> io::Result<()> {
    Ok(())
}

/// Writes `bytes` to `path` (mode 0600) so that a crash leaves either the old or the new
/// file: a temp file beside it, fsync, rename, fsync of the directory.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    let tmp = dir.join(name);
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp)?;
        // An old temp file keeps its mode through `create`: set it.
        tighten(&tmp, 0o600)?;
        f.write_all(bytes)?;
        f.flush()?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn directories_and_files_are_private_and_loose_ones_are_tightened() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("a/b");
        ensure_private_dir(&dir).expect("dir");
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        ensure_private_dir(&dir).expect("dir again");
        assert_eq!(mode(&dir), 0o700);

        let file = dir.join("secret");
        write_private(&file, b"one").expect("write");
        assert_eq!(mode(&file), 0o600);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        tighten_file(&file).expect("tighten");
        assert_eq!(mode(&file), 0o600);
        write_private(&file, b"two").expect("rewrite");
        assert_eq!(std::fs::read(&file).expect("read"), b"two");
        assert_eq!(mode(&file), 0o600);
        tighten_file(&dir.join("absent")).expect("absent is fine");
    }
}

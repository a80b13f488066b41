//! Reading the small files voxproxy is configured with (credentials, clients): regular files of
//! at most 1 MiB, refused at once otherwise, so a FIFO or `/dev/zero` never hangs a command and a
//! huge file is never read whole (contract "Hostile and broken peers", Files).

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Largest credentials or clients file read.
pub const MAX_CONFIG_FILE: u64 = 1 << 20;

/// Why a small file could not be read. Messages name no content, only the path's state.
#[derive(Debug)]
pub enum FileError {
    /// Nothing at the path.
    NotFound,
    /// A directory, a FIFO, a device...: not a regular file.
    NotRegular(&'static str),
    /// Larger than the limit.
    TooLarge(u64),
    /// Any other I/O failure (permissions, ...).
    Io(std::io::Error),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::NotFound => f.write_str("not found"),
            FileError::NotRegular(what) => write!(f, "is {what}, not a regular file"),
            FileError::TooLarge(limit) => write!(f, "is larger than {} KiB", limit / 1024),
            FileError::Io(e) => write!(f, "cannot read: {e}"),
        }
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FileError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// What a non-regular file is, in words.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Read a regular file of at most `limit` bytes (symlinks followed). The size is checked before
/// reading and again while reading, so a file growing meanwhile is refused too.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let io = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            FileError::NotFound
        } else {
            FileError::Io(e)
        }
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular(kind_of(&meta)));
    }
    if meta.len() > limit {
        return Err(FileError::TooLarge(limit));
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(FileError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge(limit));
    }
    Ok(bytes)
}

/// `path` as an absolute path for messages: a relative one is joined to the working directory,
/// so "not found" says where voxproxy looked.
pub fn shown(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    std::env::current_dir().map_or_else(|_| path.to_owned(), |cwd| cwd.join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"abc").unwrap();
        assert_eq!(read_regular(&small, 3).unwrap(), b"abc");
        assert!(matches!(
            read_regular(&small, 2),
            Err(FileError::TooLarge(2))
        ));
        assert!(matches!(
            read_regular(&dir.path().join("none"), 10),
            Err(FileError::NotFound)
        ));
        let e = read_regular(dir.path(), 10).unwrap_err();
        assert_eq!(e.to_string(), "is a directory, not a regular file");
        let e = read_regular(Path::new("/dev/zero"), 10).unwrap_err();
        assert_eq!(e.to_string(), "is a device, not a regular file");
        assert!(shown(Path::new("x.json")).is_absolute());
    }
}

//! Random-access byte sources: checkpoint files are read piecewise (headers, then one tensor or
//! storage at a time) so a multi-GB checkpoint is never held in memory twice.

use anyhow::{bail, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;

pub trait ByteSource {
    /// Total length in bytes.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fill `buf` from `offset`; an error if the range is not inside the source.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// Read `len` bytes at `offset` into a new buffer, checking the range first so a hostile
    /// length never turns into a huge allocation.
    fn read_vec(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        let end = offset.checked_add(len);
        if end.is_none_or(|end| end > self.len()) {
            bail!(
                "needs bytes {offset}..{offset}+{len} but the file is only {} bytes (truncated?)",
                self.len()
            );
        }
        let mut buf = vec![0u8; len as usize];
        self.read_at(offset, &mut buf)?;
        Ok(buf)
    }
}

impl ByteSource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(offset).ok();
        let range = start.and_then(|s| Some(s..s.checked_add(buf.len())?));
        match range.and_then(|r| self.get(r)) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => bail!(
                "needs bytes {offset}..{offset}+{} but the data is only {} bytes (truncated?)",
                buf.len(),
                <[u8]>::len(self)
            ),
        }
    }
}

/// A file read with positioned reads (`pread`), its length taken once at open time.
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    pub fn new(file: File) -> Result<FileSource> {
        let len = file.metadata()?.len();
        Ok(FileSource { file, len })
    }
}

impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.len)
        {
            bail!(
                "needs bytes {offset}..{offset}+{} but the file is only {} bytes (truncated?)",
                buf.len(),
                self.len
            );
        }
        self.file.read_exact_at(buf, offset)?;
        Ok(())
    }
}

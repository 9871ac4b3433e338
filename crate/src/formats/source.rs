//! Where a model file's bytes come from: memory, a file on disk, or (in the browser) a buffer
//! the JavaScript side keeps.
//!
//! The weight files are read a tensor at a time through [`ByteSource`], so loading never holds a
//! whole multi-gigabyte file next to the weights made from it (issue #11's streaming load).

use crate::error::{Error, Result};

/// Random access to one file's bytes.
pub trait ByteSource {
    /// The file's length in bytes.
    fn len(&self) -> u64;

    /// True for an empty file.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `len` bytes from `offset`; an error (naming `file`) when the range is outside the file or
    /// reading fails.
    fn read_at(&self, file: &str, offset: u64, len: usize) -> Result<Vec<u8>>;

    /// The bytes when the whole file is already in memory (no copy).
    fn as_slice(&self) -> Option<&[u8]> {
        None
    }
}

/// The range check every source shares.
pub fn check_range(file: &str, offset: u64, len: usize, total: u64) -> Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= total => Ok(()),
        _ => Err(Error::format(file, format!("bytes {offset}..{} are beyond the end of the file ({total} bytes)", offset.saturating_add(len as u64)))),
    }
}

impl ByteSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_at(&self, file: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        check_range(file, offset, len, ByteSource::len(self))?;
        Ok(self[offset as usize..offset as usize + len].to_vec())
    }
    fn as_slice(&self) -> Option<&[u8]> {
        Some(self)
    }
}

/// A file on disk, read with positioned reads (native builds).
#[cfg(not(target_arch = "wasm32"))]
pub struct DiskFile {
    file: std::fs::File,
    len: u64,
}

#[cfg(not(target_arch = "wasm32"))]
impl DiskFile {
    /// Opens `path`.
    pub fn open(path: &std::path::Path) -> Result<Self> {
        let io = |e: std::io::Error| Error::io(path.display().to_string(), e.to_string());
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        Ok(Self { file, len })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl ByteSource for DiskFile {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_at(&self, file: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        check_range(file, offset, len, self.len)?;
        let mut buf = vec![0u8; len];
        read_exact_at(&self.file, &mut buf, offset).map_err(|e| Error::io(file, e.to_string()))?;
        Ok(buf)
    }
}

#[cfg(unix)]
fn read_exact_at(f: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(f: &std::fs::File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match f.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

/// How many leading bytes of `name` a header parse (the loader's, the memory plan's) needs, when `head` (the first
/// bytes of a file of `len` bytes) is not enough yet; `None` when it is. A
/// safetensors file needs 8 bytes, then its header; a GGUF file its header and
/// tensor table, whose length is only known once parsed, so the answer grows
/// (doubling) until it parses. JSON files are needed whole.
pub fn bytes_needed(name: &str, head: &[u8], len: u64) -> Option<u64> {
    let have = head.len() as u64;
    if have >= len {
        return None;
    }
    if name.ends_with(".safetensors") {
        if have < 8 {
            return Some(8.min(len));
        }
        let n = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let want = n.saturating_add(8).min(len);
        return (have < want).then_some(want);
    }
    if name.ends_with(".gguf") {
        return match crate::formats::gguf::parse(head, name) {
            Ok(_) => None,
            Err(_) => Some(have.saturating_mul(2).max(1 << 20).min(len)),
        };
    }
    Some(len)
}

/// The first bytes of `src` that parsing its header needs: a safetensors file's 8-byte length and
/// JSON header, a GGUF's header and tensor table (doubling until it parses), a JSON file whole.
pub fn head<'a>(name: &str, src: &'a dyn ByteSource) -> Result<std::borrow::Cow<'a, [u8]>> {
    if let Some(all) = src.as_slice() {
        return Ok(all.into());
    }
    let mut head = Vec::new();
    while let Some(want) = bytes_needed(name, &head, src.len()) {
        let have = head.len() as u64;
        head.extend(src.read_at(name, have, (want - have) as usize)?);
    }
    Ok(head.into())
}

/// sha256 of the whole source, read in 16 MiB pieces.
pub fn sha256(name: &str, src: &dyn ByteSource) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    if let Some(all) = src.as_slice() {
        h.update(all);
    } else {
        const PIECE: u64 = 16 << 20;
        let mut at = 0;
        while at < src.len() {
            let n = PIECE.min(src.len() - at);
            h.update(src.read_at(name, at, n as usize)?);
            at += n;
        }
    }
    Ok(h.finalize().iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_outside_the_file_are_errors_naming_it() {
        let v = vec![1u8, 2, 3, 4];
        assert_eq!(v.read_at("f", 1, 2).unwrap(), vec![2, 3]);
        let e = v.read_at("f.gguf", 3, 2).unwrap_err();
        assert!(e.to_string().contains("f.gguf") && e.to_string().contains("beyond the end"), "{e}");
        assert!(v.read_at("f", u64::MAX, 2).is_err());
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn a_disk_file_reads_as_the_same_bytes_and_digest() {
        let dir = std::env::temp_dir().join(format!("webpeft-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.bin");
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let d = DiskFile::open(&path).unwrap();
        assert_eq!(d.len(), 100_000);
        assert_eq!(d.read_at("x", 99_990, 10).unwrap(), bytes[99_990..].to_vec());
        assert!(d.read_at("x", 99_995, 10).is_err());
        assert_eq!(sha256("x", &d).unwrap(), sha256("x", &bytes).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

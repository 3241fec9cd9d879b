//! Checking a zip archive's members against their CRC-32s: `torch.save` and TorchScript files
//! are zip archives, and libtorch's reader never checks the CRCs, so a flipped bit in a weight
//! loads as a plausible, wrong model. Members are stored uncompressed by torch; a compressed
//! member (another writer's) is left unchecked.
//!
//! Only the parts of the format those files use are read: the end-of-central-directory record
//! (ZIP64 when the archive needs it), the central directory, and each member's local header.

use crate::files::open_regular;
use crate::{Error, Result};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

const END_OF_CENTRAL_DIRECTORY: u32 = 0x0605_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_END_OF_CENTRAL_DIRECTORY: u32 = 0x0606_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const LOCAL_HEADER: u32 = 0x0403_4b50;
/// A 32-bit field holding this says "see the ZIP64 extra field".
const ZIP64_MARK: u32 = u32::MAX;
/// Central directories of the files we check are kilobytes; this bounds a crafted one.
const MAX_CENTRAL_DIRECTORY: u64 = 256 << 20;

/// Why an archive failed the check.
#[derive(Debug)]
pub enum ArchiveProblem {
    /// No zip end record: another format (a legacy `torch.save` pickle), or a cut-short file.
    NotAnArchive,
    /// A zip archive whose structure is broken (truncated, overwritten).
    Malformed(String),
    /// A member whose bytes do not match the CRC-32 recorded for it.
    Corrupted { member: String },
}

impl std::fmt::Display for ArchiveProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArchiveProblem::NotAnArchive => write!(f, "not a zip archive (no end of central directory; cut short?)"),
            ArchiveProblem::Malformed(why) => write!(f, "a broken zip archive ({why})"),
            ArchiveProblem::Corrupted { member } => {
                write!(f, "{member} fails its CRC check, the file is corrupted (changed after it was written)")
            }
        }
    }
}

/// Checks every stored member of the zip archive at `path` against its CRC-32. I/O failures
/// (a missing file, a FIFO) are errors of their own; a bad archive is an [`ArchiveProblem`].
pub fn check_zip(path: &Path) -> Result<std::result::Result<(), ArchiveProblem>> {
    let file = open_regular(path)?;
    let io = |source: std::io::Error| Error::Io { path: path.to_path_buf(), source };
    let len = file.metadata().map_err(io)?.len();
    match (Archive { file: &file, len }).check() {
        Ok(()) => Ok(Ok(())),
        Err(Failure::Problem(problem)) => Ok(Err(problem)),
        Err(Failure::Io(source)) => Err(io(source)),
    }
}

/// What stops a check: the file could not be read, or the archive is bad.
enum Failure {
    Io(std::io::Error),
    Problem(ArchiveProblem),
}

fn malformed(why: impl Into<String>) -> Failure {
    Failure::Problem(ArchiveProblem::Malformed(why.into()))
}

struct Archive<'a> {
    file: &'a File,
    len: u64,
}

impl Archive<'_> {
    fn read(&self, offset: u64, n: u64) -> std::result::Result<Vec<u8>, Failure> {
        if offset.checked_add(n).is_none_or(|end| end > self.len) {
            return Err(malformed(format!("a record at byte {offset} runs past the end of the file (truncated?)")));
        }
        let mut buf = vec![0u8; n as usize];
        self.file.read_exact_at(&mut buf, offset).map_err(Failure::Io)?;
        Ok(buf)
    }

    fn check(&self) -> std::result::Result<(), Failure> {
        let (entries, directory_offset, directory_size) = self.directory()?;
        let directory = self.read(directory_offset, directory_size)?;
        let mut at = 0usize;
        // Members never overlap, so their data adds up to less than the file: a crafted
        // directory naming one large member many times would otherwise be read without end.
        let mut checked = 0u64;
        for _ in 0..entries {
            let header = Fields(&directory, at);
            if header.u32(0)? != CENTRAL_HEADER {
                return Err(malformed("a central directory entry is overwritten"));
            }
            let (method, crc) = (header.u16(10)?, header.u32(16)?);
            let (mut size, mut offset) = (u64::from(header.u32(20)?), u64::from(header.u32(42)?));
            let (name_len, extra_len, comment_len) =
                (header.u16(28)? as usize, header.u16(30)? as usize, header.u16(32)? as usize);
            let name = header.bytes(46, name_len)?;
            let member = String::from_utf8_lossy(name).into_owned();
            let extra = header.bytes(46 + name_len, extra_len)?;
            zip64_sizes(extra, header.u32(24)?, &mut size, &mut offset)?;
            at += 46 + name_len + extra_len + comment_len;
            if method != 0 {
                continue; // compressed: its CRC is of the inflated bytes, which we do not make
            }
            let local = self.read(offset, 30)?;
            let local = Fields(&local, 0);
            if local.u32(0)? != LOCAL_HEADER {
                return Err(malformed(format!("{member}: its local header is overwritten")));
            }
            let data = offset + 30 + u64::from(local.u16(26)?) + u64::from(local.u16(28)?);
            checked = checked.saturating_add(size);
            if checked > self.len {
                return Err(malformed("its members add up to more than the file (they overlap)"));
            }
            if self.crc_of(data, size)? != crc {
                return Err(Failure::Problem(ArchiveProblem::Corrupted { member }));
            }
        }
        Ok(())
    }

    /// The central directory's entry count, offset and size, from the end record (ZIP64's when
    /// the classic one says so).
    fn directory(&self) -> std::result::Result<(u64, u64, u64), Failure> {
        let tail_len = self.len.min(22 + u64::from(u16::MAX));
        let tail = self.read(self.len - tail_len, tail_len)?;
        let end = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| Fields(&tail, i).u32(0).is_ok_and(|sig| sig == END_OF_CENTRAL_DIRECTORY))
            .ok_or(Failure::Problem(ArchiveProblem::NotAnArchive))?;
        let record = Fields(&tail, end);
        let classic = (u64::from(record.u16(10)?), u64::from(record.u32(16)?), u64::from(record.u32(12)?));
        let needs_zip64 = record.u16(10)? == u16::MAX || record.u32(12)? == ZIP64_MARK || record.u32(16)? == ZIP64_MARK;
        let (entries, offset, size) = if needs_zip64 {
            let locator = end.checked_sub(20).map(|at| Fields(&tail, at));
            let locator = locator.filter(|l| l.u32(0).is_ok_and(|sig| sig == ZIP64_LOCATOR));
            let locator = locator.ok_or_else(|| malformed("the ZIP64 locator is missing"))?;
            let record = self.read(locator.u64(8)?, 56)?;
            let record = Fields(&record, 0);
            if record.u32(0)? != ZIP64_END_OF_CENTRAL_DIRECTORY {
                return Err(malformed("the ZIP64 end record is overwritten"));
            }
            (record.u64(32)?, record.u64(48)?, record.u64(40)?)
        } else {
            classic
        };
        if size > MAX_CENTRAL_DIRECTORY {
            return Err(malformed(format!("a central directory of {size} bytes")));
        }
        Ok((entries, offset, size))
    }

    fn crc_of(&self, offset: u64, size: u64) -> std::result::Result<u32, Failure> {
        if offset.checked_add(size).is_none_or(|end| end > self.len) {
            return Err(malformed("a member runs past the end of the file (truncated?)"));
        }
        let mut hasher = crc32fast::Hasher::new();
        let mut chunk = vec![0u8; size.min(1 << 20) as usize];
        let mut done = 0u64;
        while done < size {
            let n = (size - done).min(chunk.len() as u64) as usize;
            self.file.read_exact_at(&mut chunk[..n], offset + done).map_err(Failure::Io)?;
            hasher.update(&chunk[..n]);
            done += n as u64;
        }
        Ok(hasher.finalize())
    }
}

/// A member's 64-bit sizes and offset from its ZIP64 extra field, for the 32-bit fields that
/// hold [`ZIP64_MARK`] (in the format's order: uncompressed size, compressed size, offset).
fn zip64_sizes(extra: &[u8], uncompressed: u32, size: &mut u64, offset: &mut u64) -> std::result::Result<(), Failure> {
    let mut at = 0;
    while at + 4 <= extra.len() {
        let field = Fields(extra, at);
        let (id, len) = (field.u16(0)?, field.u16(2)? as usize);
        if id == 0x0001 {
            let mut next = at + 4;
            let mut take = || {
                let value = Fields(extra, next).u64(0);
                next += 8;
                value
            };
            if uncompressed == ZIP64_MARK {
                take()?;
            }
            if *size == u64::from(ZIP64_MARK) {
                *size = take()?;
            }
            if *offset == u64::from(ZIP64_MARK) {
                *offset = take()?;
            }
            return Ok(());
        }
        at += 4 + len;
    }
    Ok(())
}

/// Little-endian fields of a record starting at byte `.1` of `.0`, bounds-checked.
struct Fields<'a>(&'a [u8], usize);

impl Fields<'_> {
    fn bytes(&self, at: usize, n: usize) -> std::result::Result<&[u8], Failure> {
        let start = self.1 + at;
        self.0.get(start..start + n).ok_or_else(|| malformed("a record is cut short"))
    }
    fn u16(&self, at: usize) -> std::result::Result<u16, Failure> {
        Ok(u16::from_le_bytes(self.bytes(at, 2)?.try_into().unwrap_or_default()))
    }
    fn u32(&self, at: usize) -> std::result::Result<u32, Failure> {
        Ok(u32::from_le_bytes(self.bytes(at, 4)?.try_into().unwrap_or_default()))
    }
    fn u64(&self, at: usize) -> std::result::Result<u64, Failure> {
        Ok(u64::from_le_bytes(self.bytes(at, 8)?.try_into().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zip archive of stored members, as torch writes them (classic records; `zip64` adds
    /// the ZIP64 end records and extra fields that large archives carry).
    fn archive(members: &[(&str, &[u8])], zip64: bool) -> Vec<u8> {
        let (mut out, mut directory) = (Vec::new(), Vec::new());
        for (name, data) in members {
            let offset = out.len() as u32;
            let crc = crc32fast::hash(data);
            out.extend(LOCAL_HEADER.to_le_bytes());
            out.extend([20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend(crc.to_le_bytes());
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend(0u16.to_le_bytes());
            out.extend(name.as_bytes());
            out.extend(*data);
            let extra: Vec<u8> = if zip64 {
                [
                    1u16.to_le_bytes().as_slice(),
                    &24u16.to_le_bytes(),
                    &(data.len() as u64).to_le_bytes(),
                    &(data.len() as u64).to_le_bytes(),
                    &u64::from(offset).to_le_bytes(),
                ]
                .concat()
            } else {
                Vec::new()
            };
            let (size, at) = if zip64 { (ZIP64_MARK, ZIP64_MARK) } else { (data.len() as u32, offset) };
            directory.extend(CENTRAL_HEADER.to_le_bytes());
            directory.extend([20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            directory.extend(crc.to_le_bytes());
            directory.extend(size.to_le_bytes());
            directory.extend(if zip64 { ZIP64_MARK } else { data.len() as u32 }.to_le_bytes());
            directory.extend((name.len() as u16).to_le_bytes());
            directory.extend((extra.len() as u16).to_le_bytes());
            directory.extend([0u8; 10]); // comment length, disk, attributes
            directory.extend(at.to_le_bytes());
            directory.extend(name.as_bytes());
            directory.extend(extra);
        }
        let directory_offset = out.len() as u64;
        out.extend(&directory);
        let n = members.len() as u64;
        if zip64 {
            let record_at = out.len() as u64;
            out.extend(ZIP64_END_OF_CENTRAL_DIRECTORY.to_le_bytes());
            out.extend(44u64.to_le_bytes());
            out.extend([45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend(n.to_le_bytes());
            out.extend(n.to_le_bytes());
            out.extend((directory.len() as u64).to_le_bytes());
            out.extend(directory_offset.to_le_bytes());
            out.extend(ZIP64_LOCATOR.to_le_bytes());
            out.extend(0u32.to_le_bytes());
            out.extend(record_at.to_le_bytes());
            out.extend(1u32.to_le_bytes());
        }
        out.extend(END_OF_CENTRAL_DIRECTORY.to_le_bytes());
        out.extend([0u8; 4]);
        let count = if zip64 { u16::MAX } else { n as u16 };
        out.extend(count.to_le_bytes());
        out.extend(count.to_le_bytes());
        out.extend(if zip64 { ZIP64_MARK } else { directory.len() as u32 }.to_le_bytes());
        out.extend(if zip64 { ZIP64_MARK } else { directory_offset as u32 }.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out
    }

    fn check_bytes(bytes: &[u8], name: &str) -> std::result::Result<(), ArchiveProblem> {
        let path = std::env::temp_dir().join(format!("ugatit-archive-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let outcome = check_zip(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        outcome
    }

    #[test]
    fn intact_archives_pass_and_every_flipped_data_bit_is_named() {
        let members: [(&str, &[u8]); 2] = [("m/data.pkl", b"pickled"), ("m/data/0", &[7u8; 300])];
        for zip64 in [false, true] {
            let good = archive(&members, zip64);
            assert!(check_bytes(&good, "good").is_ok(), "zip64={zip64}");
            let data_at = good.windows(300).position(|w| w == [7u8; 300]).unwrap();
            for bit in [0, 150 * 8 + 3, 299 * 8 + 7] {
                let mut bad = good.clone();
                bad[data_at + bit / 8] ^= 1 << (bit % 8);
                match check_bytes(&bad, "flipped") {
                    Err(ArchiveProblem::Corrupted { member }) => assert_eq!(member, "m/data/0"),
                    other => panic!("zip64={zip64} bit {bit}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_directory_naming_one_member_many_times_is_refused_before_reading_it_all() {
        let one = archive(&[("big", &[1u8; 4096])], false);
        let entry_at = one.windows(4).position(|w| w == CENTRAL_HEADER.to_le_bytes()).unwrap();
        let end_at = one.windows(4).rposition(|w| w == END_OF_CENTRAL_DIRECTORY.to_le_bytes()).unwrap();
        let entry = one[entry_at..end_at].to_vec();
        let mut crafted = one[..end_at].to_vec();
        for _ in 0..999 {
            crafted.extend(&entry); // 1000 entries, all pointing at the one member
        }
        let mut end = one[end_at..].to_vec();
        end[8..10].copy_from_slice(&1000u16.to_le_bytes());
        end[10..12].copy_from_slice(&1000u16.to_le_bytes());
        end[12..16].copy_from_slice(&((entry.len() * 1000) as u32).to_le_bytes());
        crafted.extend(end);
        match check_bytes(&crafted, "overlapping") {
            Err(ArchiveProblem::Malformed(why)) => assert!(why.contains("overlap"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn broken_structures_are_named_never_a_panic() {
        let good = archive(&[("a", b"hello")], false);
        assert!(matches!(check_bytes(b"not a zip archive", "text"), Err(ArchiveProblem::NotAnArchive)));
        for cut in [1, 10, good.len() / 2, good.len() - 1] {
            assert!(check_bytes(&good[..cut], "cut").is_err(), "cut at {cut}");
        }
        // Every single-byte overwrite: a named problem or (outside what is checked) a pass.
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0xff;
            let _ = check_bytes(&bad, "overwritten");
        }
    }
}

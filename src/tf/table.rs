//! The sorted string table of a bundle's `.index` file (TensorFlow's `lib/io/table`, LevelDB's
//! format): data blocks of prefix-compressed key/value entries, an index block pointing at
//! them, and a 48-byte footer ending in a magic number. Every block carries a 5-byte trailer
//! (compression type, masked CRC-32C). Index files are small (one entry per variable), so the
//! whole table is read into a sorted list.

use super::crc32c;
use super::proto::varint;

/// A table's `(key, value)` pairs.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

const FOOTER_LEN: usize = 48;
const MAGIC: u64 = 0xDB47_7524_8B80_FB57;
const TRAILER_LEN: usize = 5;

fn invalid<T>(message: impl Into<String>) -> Result<T, String> {
    Err(message.into())
}

/// `(offset, size)` of a block, varint-encoded.
fn block_handle(data: &[u8], pos: &mut usize) -> Result<(usize, usize), String> {
    let offset = varint(data, pos).map_err(|e| e.to_string())?;
    let size = varint(data, pos).map_err(|e| e.to_string())?;
    Ok((offset as usize, size as usize))
}

/// A block's contents, after checking its trailer.
fn block(file: &[u8], (offset, size): (usize, usize)) -> Result<&[u8], String> {
    let end = offset.checked_add(size).and_then(|e| e.checked_add(TRAILER_LEN));
    let Some(raw) = end.and_then(|end| file.get(offset..end)) else {
        return invalid(format!("block at {offset} (+{size}) runs past the end of the file (truncated?)"));
    };
    let (contents, trailer) = raw.split_at(size);
    let stored = u32::from_le_bytes(trailer[1..5].try_into().expect("4 bytes"));
    let actual = crc32c::mask(crc32c::extend(crc32c::extend(0, contents), &trailer[..1]));
    if stored != actual {
        return invalid(format!("block at {offset}: checksum mismatch (corrupted file)"));
    }
    match trailer[0] {
        0 => Ok(contents),
        1 => invalid("snappy-compressed index blocks are not supported (TensorFlow writes them uncompressed)"),
        other => invalid(format!("block at {offset}: unknown compression type {other}")),
    }
}

/// Every `(key, value)` of one block, in order. `budget` is what the pairs may still add up to:
/// prefix compression lets each entry repeat the whole previous key for one byte, so a crafted
/// block of a megabyte would otherwise expand into tens of gigabytes of keys.
fn entries(contents: &[u8], budget: &mut usize) -> Result<Pairs, String> {
    if contents.len() < 4 {
        return invalid("block too short");
    }
    let restarts = u32::from_le_bytes(contents[contents.len() - 4..].try_into().expect("4 bytes")) as usize;
    let Some(end) = restarts.checked_mul(4).and_then(|n| (contents.len() - 4).checked_sub(n)) else {
        return invalid("block restart array does not fit the block");
    };
    let data = &contents[..end];
    let (mut pos, mut key, mut out) = (0usize, Vec::new(), Vec::new());
    while pos < data.len() {
        let mut next = || varint(data, &mut pos).map(|v| v as usize).map_err(|e| e.to_string());
        let (shared, unshared, value_len) = (next()?, next()?, next()?);
        if shared > key.len() {
            return invalid("block entry shares more key bytes than the previous key has");
        }
        let Some(rest) = pos.checked_add(unshared).and_then(|k| k.checked_add(value_len)).filter(|&e| e <= data.len())
        else {
            return invalid("block entry runs past the block");
        };
        let Some(left) = budget.checked_sub(shared + unshared + value_len) else {
            return invalid("the index expands far beyond its size (a crafted or corrupted file)");
        };
        *budget = left;
        key.truncate(shared);
        key.extend_from_slice(&data[pos..pos + unshared]);
        out.push((key.clone(), data[pos + unshared..rest].to_vec()));
        pos = rest;
    }
    Ok(out)
}

/// All `(key, value)` pairs of a table file, sorted by key.
pub fn read_table(file: &[u8]) -> Result<Pairs, String> {
    if file.len() < FOOTER_LEN {
        return invalid(format!("{} bytes: too short for a checkpoint index (truncated?)", file.len()));
    }
    let footer = &file[file.len() - FOOTER_LEN..];
    let magic = u64::from_le_bytes(footer[FOOTER_LEN - 8..].try_into().expect("8 bytes"));
    if magic != MAGIC {
        return invalid("not a TensorFlow checkpoint index (bad magic number)");
    }
    let mut pos = 0;
    let _metaindex = block_handle(footer, &mut pos)?;
    let index = block_handle(footer, &mut pos)?;
    // A real index expands a few times (variable names share long scope prefixes).
    let mut budget = file.len().saturating_mul(64).max(64 << 20);
    let mut all = Vec::new();
    for (_, handle) in entries(block(file, index)?, &mut budget)? {
        let mut pos = 0;
        let handle = block_handle(&handle, &mut pos)?;
        all.extend(entries(block(file, handle)?, &mut budget)?);
    }
    if all.windows(2).any(|w| w[0].0 >= w[1].0) {
        return invalid("index keys are not sorted (corrupted file)");
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// Appends `contents` as a block with a valid trailer; returns its handle.
    fn put_block(file: &mut Vec<u8>, contents: &[u8]) -> (u64, u64) {
        let handle = (file.len() as u64, contents.len() as u64);
        file.extend_from_slice(contents);
        file.push(0);
        let crc = crc32c::mask(crc32c::extend(crc32c::extend(0, contents), &[0]));
        file.extend_from_slice(&crc.to_le_bytes());
        handle
    }

    /// A table whose one data block holds `entries` (shared, unshared bytes, value) triples.
    fn table(entries: &[(u64, &[u8], &[u8])]) -> Vec<u8> {
        let mut data = Vec::new();
        for (shared, unshared, value) in entries {
            put_varint(&mut data, *shared);
            put_varint(&mut data, unshared.len() as u64);
            put_varint(&mut data, value.len() as u64);
            data.extend_from_slice(unshared);
            data.extend_from_slice(value);
        }
        data.extend_from_slice(&0u32.to_le_bytes()); // no restart points
        let mut file = Vec::new();
        let (offset, size) = put_block(&mut file, &data);
        let mut handle = Vec::new();
        put_varint(&mut handle, offset);
        put_varint(&mut handle, size);
        let mut index = vec![0, 1, handle.len() as u8, b'k'];
        index.extend_from_slice(&handle);
        index.extend_from_slice(&0u32.to_le_bytes());
        let (index_offset, index_size) = put_block(&mut file, &index);
        let mut footer = Vec::new();
        put_varint(&mut footer, 0);
        put_varint(&mut footer, 0);
        put_varint(&mut footer, index_offset);
        put_varint(&mut footer, index_size);
        footer.resize(FOOTER_LEN - 8, 0);
        footer.extend_from_slice(&MAGIC.to_le_bytes());
        file.extend_from_slice(&footer);
        file
    }

    #[test]
    fn reads_a_table_it_wrote() {
        let file = table(&[(0, b"a/b", b"1"), (2, b"c", b"22"), (0, b"b", b"")]);
        let pairs = read_table(&file).unwrap();
        let keys: Vec<&[u8]> = pairs.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, [b"a/b".as_slice(), b"a/c", b"b"]);
        assert_eq!(pairs[1].1, b"22");
    }

    #[test]
    fn refuses_a_block_that_would_expand_into_gigabytes() {
        // Each entry repeats the whole previous key and adds one byte: 300 KB of entries would
        // have expanded into 11 GB of keys (the process died of memory before).
        let entries: Vec<(u64, &[u8], &[u8])> = (0..150_000u64).map(|n| (n, b"x".as_slice(), b"".as_slice())).collect();
        let file = table(&entries);
        assert!(file.len() < 1 << 20);
        let err = read_table(&file).unwrap_err();
        assert!(err.contains("expands far beyond its size"), "{err}");
    }
}

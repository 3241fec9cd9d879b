//! The two protocol-buffer messages of a tensor bundle's index, decoded by hand (a few fields of
//! the wire format; no protobuf dependency):
//!
//! ```text
//! BundleHeaderProto { int32 num_shards = 1; Endianness endianness = 2; VersionDef version = 3; }
//! BundleEntryProto  { DataType dtype = 1; TensorShapeProto shape = 2; int32 shard_id = 3;
//!                     int64 offset = 4; int64 size = 5; fixed32 crc32c = 6;
//!                     repeated TensorSliceProto slices = 7; }
//! TensorShapeProto  { repeated Dim dim = 2; bool unknown_rank = 3; }   Dim { int64 size = 1; }
//! ```

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

type Result<T> = std::result::Result<T, DecodeError>;

fn err<T>(message: impl Into<String>) -> Result<T> {
    Err(DecodeError(message.into()))
}

/// Reads a base-128 varint at `*pos`.
pub fn varint(data: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = data.get(*pos) else { return err("truncated varint") };
        *pos += 1;
        value |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    err("varint longer than 10 bytes")
}

/// A field's value on the wire.
enum Value<'a> {
    Varint(u64),
    Fixed32(u32),
    /// A fixed64 (no field read here has this type).
    Skipped,
    Bytes(&'a [u8]),
}

/// Calls `f(field number, value)` for every field of a message.
fn fields<'a>(data: &'a [u8], mut f: impl FnMut(u64, Value<'a>) -> Result<()>) -> Result<()> {
    let mut pos = 0;
    while pos < data.len() {
        let key = varint(data, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Value::Varint(varint(data, &mut pos)?),
            1 => {
                if data.len() < pos + 8 {
                    return err("truncated fixed64");
                }
                pos += 8;
                Value::Skipped
            }
            2 => {
                let len = varint(data, &mut pos)? as usize;
                let Some(bytes) = pos.checked_add(len).and_then(|end| data.get(pos..end)) else {
                    return err("truncated length-delimited field");
                };
                pos += len;
                Value::Bytes(bytes)
            }
            5 => {
                let Some(bytes) = data.get(pos..pos + 4) else { return err("truncated fixed32") };
                pos += 4;
                Value::Fixed32(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
            }
            other => return err(format!("unsupported wire type {other}")),
        };
        f(field, value)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BundleHeader {
    pub num_shards: u32,
    /// 0 = little-endian (the only one read here), 1 = big-endian.
    pub endianness: u64,
}

pub fn bundle_header(data: &[u8]) -> Result<BundleHeader> {
    let mut header = BundleHeader::default();
    fields(data, |field, value| {
        match (field, value) {
            (1, Value::Varint(n)) => header.num_shards = n as u32,
            (2, Value::Varint(e)) => header.endianness = e,
            _ => {}
        }
        Ok(())
    })?;
    Ok(header)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BundleEntry {
    /// TensorFlow's `DataType` enum (1 = float32, 2 = float64, 3 = int32, 9 = int64, ...).
    pub dtype: u64,
    pub shape: Vec<i64>,
    pub shard_id: u32,
    pub offset: u64,
    pub size: u64,
    /// The masked CRC-32C of the tensor's bytes.
    pub crc32c: u32,
    /// A partitioned variable (not supported: the release has none).
    pub sliced: bool,
}

fn shape(data: &[u8]) -> Result<Vec<i64>> {
    let mut dims = Vec::new();
    fields(data, |field, value| {
        match (field, value) {
            (2, Value::Bytes(dim)) => {
                let mut size = 0i64;
                fields(dim, |f, v| {
                    if let (1, Value::Varint(n)) = (f, v) {
                        size = n as i64;
                    }
                    Ok(())
                })?;
                dims.push(size);
            }
            (3, Value::Varint(1)) => return err("tensor shape of unknown rank"),
            _ => {}
        }
        Ok(())
    })?;
    Ok(dims)
}

pub fn bundle_entry(data: &[u8]) -> Result<BundleEntry> {
    let mut entry = BundleEntry::default();
    fields(data, |field, value| {
        match (field, value) {
            (1, Value::Varint(d)) => entry.dtype = d,
            (2, Value::Bytes(s)) => entry.shape = shape(s)?,
            (3, Value::Varint(s)) => entry.shard_id = s as u32,
            (4, Value::Varint(o)) => entry.offset = o,
            (5, Value::Varint(s)) => entry.size = s,
            (6, Value::Fixed32(c)) => entry.crc32c = c,
            (7, Value::Bytes(_)) => entry.sliced = true,
            _ => {}
        }
        Ok(())
    })?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_an_entry() {
        // dtype 1, shape [3, 2], shard 0, offset 300, size 24, crc 0xAABBCCDD
        let bytes = [
            0x08, 0x01, 0x12, 0x08, 0x12, 0x02, 0x08, 0x03, 0x12, 0x02, 0x08, 0x02, 0x20, 0xAC, 0x02, 0x28, 0x18, 0x35,
            0xDD, 0xCC, 0xBB, 0xAA,
        ];
        let e = bundle_entry(&bytes).unwrap();
        assert_eq!((e.dtype, e.shape.clone(), e.offset, e.size, e.crc32c), (1, vec![3, 2], 300, 24, 0xAABB_CCDD));
        assert!(bundle_entry(&bytes[..bytes.len() - 2]).is_err());
        assert!(varint(&[0xFF; 11], &mut 0).is_err());
    }
}

//! Converting a large TensorFlow checkpoint holds one tensor at a time: a synthetic bundle of
//! 256 MiB (8 tensors of 32 MiB, written here in the tensor-bundle format) is converted while
//! the process's peak resident memory is watched. Its own test binary, so no other test's
//! allocations count.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use ugatit_rs::tf::convert::{convert, Layout};
use ugatit_rs::tf::{crc32c, TfCheckpoint};

const TENSORS: usize = 8;
const FLOATS: usize = 8 << 20; // 32 MiB each

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint(field << 3 | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// `BundleEntryProto { dtype: float, shape: [n], offset, size, crc32c }`.
fn entry(n: u64, offset: u64, size: u64, crc: u32) -> Vec<u8> {
    let mut dim = Vec::new();
    varint(1 << 3, &mut dim);
    varint(n, &mut dim);
    let mut shape = Vec::new();
    field_bytes(2, &dim, &mut shape);
    let mut out = vec![0x08, 0x01];
    field_bytes(2, &shape, &mut out);
    varint(4 << 3, &mut out);
    varint(offset, &mut out);
    varint(5 << 3, &mut out);
    varint(size, &mut out);
    out.push(6 << 3 | 5);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A table block: entries without shared prefixes, one restart, and its trailer.
fn block(pairs: &[(Vec<u8>, Vec<u8>)], file: &mut Vec<u8>) -> (u64, u64) {
    let mut contents = Vec::new();
    for (key, value) in pairs {
        varint(0, &mut contents);
        varint(key.len() as u64, &mut contents);
        varint(value.len() as u64, &mut contents);
        contents.extend_from_slice(key);
        contents.extend_from_slice(value);
    }
    contents.extend_from_slice(&0u32.to_le_bytes());
    contents.extend_from_slice(&1u32.to_le_bytes());
    let handle = (file.len() as u64, contents.len() as u64);
    let crc = crc32c::mask(crc32c::extend(crc32c::extend(0, &contents), &[0]));
    file.extend_from_slice(&contents);
    file.push(0);
    file.extend_from_slice(&crc.to_le_bytes());
    handle
}

fn write_bundle(prefix: &Path) {
    let mut data = std::fs::File::create(format!("{}.data-00000-of-00001", prefix.display())).unwrap();
    let mut pairs = vec![(Vec::new(), vec![0x08, 0x01])]; // header: num_shards = 1
    for t in 0..TENSORS {
        let bytes: Vec<u8> = (0..FLOATS).flat_map(|i| ((i + t) as f32).to_le_bytes()).collect();
        let crc = crc32c::mask(crc32c::extend(0, &bytes));
        let offset = (t * FLOATS * 4) as u64;
        pairs.push((format!("big/tensor_{t}").into_bytes(), entry(FLOATS as u64, offset, bytes.len() as u64, crc)));
        data.write_all(&bytes).unwrap();
    }
    let mut index = Vec::new();
    let data_block = block(&pairs, &mut index);
    let meta_block = block(&[], &mut index);
    let mut handle = Vec::new();
    varint(data_block.0, &mut handle);
    varint(data_block.1, &mut handle);
    let index_block = block(&[(pairs.last().unwrap().0.clone(), handle)], &mut index);
    let mut footer = Vec::new();
    for (offset, size) in [meta_block, index_block] {
        varint(offset, &mut footer);
        varint(size, &mut footer);
    }
    footer.resize(40, 0);
    footer.extend_from_slice(&0xDB47_7524_8B80_FB57u64.to_le_bytes());
    index.extend_from_slice(&footer);
    std::fs::write(format!("{}.index", prefix.display()), index).unwrap();
}

/// The process's peak resident set so far, in bytes (Linux).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn converting_a_large_checkpoint_holds_one_tensor_at_a_time() {
    let dir = std::env::temp_dir().join(format!("ugatit-tf-mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = dir.join("big.model-1");
    write_bundle(&prefix);
    let ckpt = TfCheckpoint::open(&prefix).unwrap();
    let plan: Vec<_> = (0..TENSORS).map(|t| (format!("big/tensor_{t}"), format!("net.t{t}"), Layout::Same)).collect();
    let before = peak_rss();
    let out = dir.join("big.safetensors");
    convert(&ckpt, &plan, &out, &HashMap::new()).unwrap();
    let grown = peak_rss().saturating_sub(before);
    let file_size = std::fs::metadata(&out).unwrap().len();
    let tensor = (FLOATS * 4) as u64;
    println!(
        "converted {} MiB; peak RSS grew by {} MiB (one tensor: {} MiB)",
        file_size >> 20,
        grown >> 20,
        tensor >> 20
    );
    assert!(grown < 3 * tensor, "peak RSS grew by {grown} bytes converting {file_size} bytes");
    // The output holds every tensor, in order.
    let header_len = u64::from_le_bytes(std::fs::read(&out).unwrap()[..8].try_into().unwrap());
    assert!(file_size >= TENSORS as u64 * tensor + header_len);
    std::fs::remove_dir_all(&dir).unwrap();
}

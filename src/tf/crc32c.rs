//! CRC-32C (Castagnoli), as TensorFlow checksums its checkpoint blocks and tensors, and the
//! "mask" it stores them under.

const POLY: u32 = 0x82F6_3B78; // reflected 0x1EDC6F41

const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ POLY } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// Extends a running CRC-32C (start with 0) over `data`.
pub fn extend(crc: u32, data: &[u8]) -> u32 {
    let mut crc = !crc;
    for &byte in data {
        crc = TABLE[((crc ^ byte as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

const MASK_DELTA: u32 = 0xA282_EAD8;

/// The stored form of a CRC (leveldb's mask: rotate right by 15, add a constant).
pub fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(extend(0, b"123456789"), 0xE306_9283); // the CRC-32C check value
        assert_eq!(extend(0, &[0u8; 32]), 0x8A91_36AA); // RFC 3720 B.4
        assert_eq!(extend(extend(0, b"1234"), b"56789"), 0xE306_9283);
        assert_ne!(mask(1), 1);
    }
}

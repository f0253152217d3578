//! Hostile plists for the tests of the device-face parsers: shapes built to exhaust a recursive
//! parser (issue 23 D2), made here once so the unit, property and attack tests send the same bytes.

/// A binary plist of `levels` arrays, each holding the next (`fan_out` times) and the last
/// empty: object `i` is at offset table entry `i`.
pub fn chained_bplist(levels: usize, fan_out: usize) -> Vec<u8> {
    let mut out = b"bplist00".to_vec();
    let mut offsets = Vec::new();
    for i in 0..levels {
        offsets.push(out.len() as u32);
        if i + 1 == levels {
            out.push(0xA0);
        } else {
            out.push(0xA0 | fan_out as u8);
            for _ in 0..fan_out {
                out.extend_from_slice(&((i + 1) as u32).to_be_bytes());
            }
        }
    }
    let table = out.len() as u64;
    for o in offsets {
        out.extend_from_slice(&o.to_be_bytes());
    }
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&[4, 4]);
    out.extend_from_slice(&(levels as u64).to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&table.to_be_bytes());
    out
}

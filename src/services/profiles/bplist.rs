//! A pre-check of binary property lists, before the plist crate expands them.
//!
//! A binary plist is a graph: an array or dictionary refers to its members by object number,
//! and one object may be referred to many times. Readers expand that graph into a tree, so a
//! few hundred bytes of arrays each holding the next one twice expand to billions of values
//! and exhaust memory. This module walks the graph without expanding it and refuses a file
//! whose expanded size or nesting is beyond what any real profile needs.
//!
//! Format reference: the 32-byte trailer gives the sizes of offsets and object references,
//! the object count, the root object and where the offset table starts; each object starts
//! with a marker byte whose high nibble is its type and low nibble its length (15 meaning an
//! integer object with the real length follows).

use super::ProfileError;

/// Largest expanded size accepted, in rough bytes: 32 per value plus the bytes of strings and
/// data. Sixteen times the input limit leaves room for binary plists' sharing of repeated
/// strings, which is how honest files get smaller than their XML.
pub(super) const MAX_EXPANDED: u64 = 16 * super::inspect::MAX_PROFILE_BYTES as u64;

const TRAILER: usize = 32;
const VALUE_COST: u64 = 32;

/// Refuses a binary plist whose expansion is larger than [`MAX_EXPANDED`], nests deeper than
/// `max_depth` arrays and dictionaries, refers to itself, or is malformed in a way that would
/// stop the walk. Anything else malformed is left to the real parser to report.
pub(super) fn check(bytes: &[u8], max_depth: usize) -> Result<(), ProfileError> {
    let graph = Graph::read(bytes)?;
    // 0 unvisited, 1 on the current path, 2 done.
    let mut state = vec![0u8; graph.count];
    let mut cost = vec![0u64; graph.count];
    let mut depth = vec![0usize; graph.count];
    let mut stack = vec![graph.root];
    while let Some(&object) = stack.last() {
        match state[object] {
            0 => {
                state[object] = 1;
                for child in graph.object(object)?.children {
                    match state[child] {
                        0 => stack.push(child),
                        1 => return Err(malformed("an object contains itself")),
                        _ => {}
                    }
                }
            }
            1 => {
                stack.pop();
                let node = graph.object(object)?;
                let mut total = node.cost;
                let mut deepest = 0;
                for &child in &node.children {
                    total = total.saturating_add(cost[child]);
                    deepest = deepest.max(depth[child]);
                }
                if node.container {
                    deepest += 1;
                }
                if total > MAX_EXPANDED {
                    return Err(ProfileError::NotAProfile(format!("the binary property list expands to more than {MAX_EXPANDED} bytes")));
                }
                if deepest > max_depth {
                    return Err(ProfileError::NotAProfile(format!("arrays and dictionaries nested more than {max_depth} deep")));
                }
                cost[object] = total;
                depth[object] = deepest;
                state[object] = 2;
            }
            _ => {
                // Pushed twice (shared by two parents) and already done.
                stack.pop();
            }
        }
    }
    Ok(())
}

fn malformed(why: &str) -> ProfileError {
    ProfileError::NotAProfile(format!("malformed binary property list: {why}"))
}

/// The trailer's view of the file.
struct Graph<'a> {
    bytes: &'a [u8],
    offset_size: usize,
    ref_size: usize,
    count: usize,
    root: usize,
    table: usize,
    /// Where the trailer starts: objects and the offset table lie before it.
    end: usize,
}

/// One object: its own cost, its members, and whether it is an array or dictionary.
struct Node {
    cost: u64,
    children: Vec<usize>,
    container: bool,
}

impl<'a> Graph<'a> {
    fn read(bytes: &'a [u8]) -> Result<Graph<'a>, ProfileError> {
        let end = bytes.len().checked_sub(TRAILER).filter(|&end| end >= 8).ok_or_else(|| malformed("too short"))?;
        let trailer = &bytes[end..];
        let offset_size = usize::from(trailer[6]);
        let ref_size = usize::from(trailer[7]);
        if !(1..=8).contains(&offset_size) || !(1..=8).contains(&ref_size) {
            return Err(malformed("bad offset or reference size"));
        }
        let number = |range: std::ops::Range<usize>| usize::try_from(be(&trailer[range])).map_err(|_| malformed("number too large"));
        let (count, root, table) = (number(8..16)?, number(16..24)?, number(24..32)?);
        if count == 0 || count > end || root >= count {
            return Err(malformed("bad object count or root object"));
        }
        let table_end =
            count.checked_mul(offset_size).and_then(|len| len.checked_add(table)).ok_or_else(|| malformed("offset table out of range"))?;
        if table_end > end {
            return Err(malformed("offset table out of range"));
        }
        Ok(Graph { bytes, offset_size, ref_size, count, root, table, end })
    }

    /// `len` bytes at `at`, inside the part before the trailer.
    fn slice(&self, at: usize, len: usize) -> Result<&'a [u8], ProfileError> {
        at.checked_add(len)
            .filter(|&stop| stop <= self.end)
            .map(|stop| &self.bytes[at..stop])
            .ok_or_else(|| malformed("object runs past the end"))
    }

    fn object(&self, index: usize) -> Result<Node, ProfileError> {
        let entry = self.slice(self.table + index * self.offset_size, self.offset_size)?;
        let at = usize::try_from(be(entry)).map_err(|_| malformed("offset too large"))?;
        let marker = self.slice(at, 1)?[0];
        let (kind, low) = (marker >> 4, marker & 0x0f);
        let leaf = |bytes: usize| Node { cost: VALUE_COST.saturating_add(bytes as u64), children: Vec::new(), container: false };
        Ok(match kind {
            // Data, ASCII string, UTF-16 string, UTF-8 string: their bytes.
            0x4 | 0x5 | 0x7 => leaf(self.length(at, low)?.0),
            0x6 => leaf(self.length(at, low)?.0.saturating_mul(2)),
            // Array, ordered set, set: one reference per member; dictionary: keys then values.
            0xA..=0xD => {
                let (members, start) = self.length(at, low)?;
                let refs = if kind == 0xD { members.saturating_mul(2) } else { members };
                let len = refs.checked_mul(self.ref_size).ok_or_else(|| malformed("object runs past the end"))?;
                let raw = self.slice(start, len)?;
                let children = raw
                    .chunks(self.ref_size)
                    .map(|r| {
                        usize::try_from(be(r))
                            .ok()
                            .filter(|&child| child < self.count)
                            .ok_or_else(|| malformed("reference to a missing object"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Node { cost: VALUE_COST, children, container: true }
            }
            _ => leaf(0),
        })
    }

    /// A length from a marker's low nibble, or from the integer object after it when the
    /// nibble is 15; and where the object's content starts.
    fn length(&self, at: usize, low: u8) -> Result<(usize, usize), ProfileError> {
        if low != 0x0f {
            return Ok((usize::from(low), at + 1));
        }
        let int_marker = self.slice(at + 1, 1)?[0];
        if int_marker >> 4 != 0x1 || int_marker & 0x0f > 3 {
            return Err(malformed("bad length"));
        }
        let size = 1usize << (int_marker & 0x0f);
        let len = usize::try_from(be(self.slice(at + 2, size)?)).map_err(|_| malformed("length too large"))?;
        Ok((len, at + 2 + size))
    }
}

/// A big-endian unsigned number of up to 8 bytes.
fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |n, &b| (n << 8) | u64::from(b))
}

#[cfg(test)]
mod tests {
    use plist::Value;

    use super::*;

    /// A binary plist of `objects` (encoded object bodies), root 0, 4-byte offsets and refs.
    fn assemble(objects: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"bplist00".to_vec();
        let mut offsets = Vec::new();
        for object in objects {
            offsets.push(out.len() as u32);
            out.extend_from_slice(object);
        }
        let table = out.len() as u64;
        for offset in offsets {
            out.extend_from_slice(&offset.to_be_bytes());
        }
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&[4, 4]);
        out.extend_from_slice(&(objects.len() as u64).to_be_bytes());
        out.extend_from_slice(&0u64.to_be_bytes());
        out.extend_from_slice(&table.to_be_bytes());
        out
    }

    /// An array object holding the given object numbers.
    fn array(members: &[u32]) -> Vec<u8> {
        assert!(members.len() < 15);
        let mut object = vec![0xA0 | members.len() as u8];
        for m in members {
            object.extend_from_slice(&m.to_be_bytes());
        }
        object
    }

    #[test]
    fn accepts_real_binary_profiles() {
        let mut dict = plist::Dictionary::new();
        dict.insert("PayloadContent".into(), Value::Array(vec!["a".into(); 100]));
        dict.insert("Data".into(), Value::Data(vec![7; 300]));
        dict.insert("Name".into(), "a long string, long enough for an extended length".into());
        let mut bytes = Vec::new();
        Value::Dictionary(dict).to_writer_binary(&mut bytes).expect("binary");
        check(&bytes, 64).expect("an ordinary plist passes");
    }

    #[test]
    fn refuses_expansion_bombs() {
        // 40 arrays each holding the next one twice: 2^40 values once expanded.
        let mut objects: Vec<Vec<u8>> = (0..40).map(|i| array(&[i + 1, i + 1])).collect();
        objects.push(vec![0x51, b'x']);
        let bytes = assemble(&objects);
        assert!(bytes.len() < 1000);
        let e = check(&bytes, 64).unwrap_err();
        assert!(e.to_string().contains("expands to more than"), "{e}");
    }

    #[test]
    fn refuses_deep_nesting_and_cycles() {
        // `levels` arrays, each holding the next.
        let chain = |levels: u32| {
            let mut objects: Vec<Vec<u8>> = (1..levels).map(|i| array(&[i])).collect();
            objects.push(array(&[]));
            assemble(&objects)
        };
        check(&chain(64), 64).expect("64 levels are fine");
        let e = check(&chain(65), 64).unwrap_err();
        assert!(e.to_string().contains("nested more than 64"), "{e}");

        let e = check(&assemble(&[array(&[1]), array(&[0])]), 64).unwrap_err();
        assert!(e.to_string().contains("contains itself"), "{e}");
    }

    #[test]
    fn refuses_broken_structure_without_panicking() {
        let good = assemble(&[array(&[1]), vec![0x51, b'x']]);
        check(&good, 64).expect("valid");
        // Every truncation and every single-byte corruption is an error or a pass, never a
        // panic or a hang.
        for len in 0..good.len() {
            let _ = check(&good[..len], 64);
        }
        for at in 0..good.len() {
            for byte in [0x00, 0x0f, 0x7f, 0xaf, 0xdf, 0xff] {
                let mut bad = good.clone();
                bad[at] = byte;
                let _ = check(&bad, 64);
            }
        }
        let e = check(&assemble(&[array(&[9])]), 64).unwrap_err();
        assert!(e.to_string().contains("missing object"), "{e}");
    }
}

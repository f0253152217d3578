//! A small reader for the ASN.1 encodings CMS arrives in (DER, and the BER that Apple's devices
//! use for the outer layers of an `Mdm-Signature`: indefinite lengths on constructed values).
//!
//! Just enough to find the parts of a CMS structure OpenSSL has no getter for, or would decode
//! at length: the parts of a device's SignedData ([`crate::protocol::signers`]) and the cipher of a
//! SCEP client's EnvelopedData ([`crate::protocol::scep`]). It never panics and never guesses: anything
//! it does not read exactly (multi-byte tags, a length past the end, nesting deeper than
//! [`MAX_DEPTH`]) is `None`, and the caller then leaves the message to OpenSSL or refuses it.

pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const OID: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;

/// The tag of a constructed, context-specific `[n]`.
pub const fn context(n: u8) -> u8 {
    0xA0 | n
}

/// How deep indefinite-length values may nest before the reader gives up.
const MAX_DEPTH: usize = 16;

/// One element: its tag, its content octets and the whole encoding (header, content and any
/// end-of-contents octets).
#[derive(Clone, Copy, Debug)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// A reader over this element's children.
    pub fn children(&self) -> Reader<'a> {
        Reader::new(self.content)
    }
}

/// Reads elements one after another from a buffer.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { rest: buf }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element, or None at the end or on anything unreadable.
    pub fn next_tlv(&mut self) -> Option<Tlv<'a>> {
        let (tlv, rest) = read(self.rest, 0)?;
        self.rest = rest;
        Some(tlv)
    }

    /// The next element, which must carry `tag`.
    pub fn expect(&mut self, tag: u8) -> Option<Tlv<'a>> {
        self.next_tlv().filter(|t| t.tag == tag)
    }

    /// The next element if it carries `tag`; otherwise nothing is consumed.
    pub fn optional(&mut self, tag: u8) -> Option<Tlv<'a>> {
        if self.rest.first() == Some(&tag) { self.next_tlv() } else { None }
    }
}

fn read(buf: &[u8], depth: usize) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, after_tag) = buf.split_first()?;
    if tag & 0x1f == 0x1f || tag == 0 {
        // Multi-byte tags do not occur in CMS; a zero tag here is a stray end-of-contents.
        return None;
    }
    let (&first, after_len) = after_tag.split_first()?;
    if first == 0x80 {
        // Indefinite length: constructed values only, children up to the end-of-contents.
        if tag & 0x20 == 0 || depth >= MAX_DEPTH {
            return None;
        }
        let mut rest = after_len;
        loop {
            if rest.starts_with(&[0, 0]) {
                let content_len = after_len.len() - rest.len();
                let header = buf.len() - after_len.len();
                let tlv = Tlv { tag, content: &after_len[..content_len], raw: &buf[..header + content_len + 2] };
                return Some((tlv, &rest[2..]));
            }
            let (_, next) = read(rest, depth + 1)?;
            rest = next;
        }
    }
    let (len, after_len) = if first < 0x80 {
        (first as usize, after_len)
    } else {
        let n = (first & 0x7f) as usize;
        if n > 4 || after_len.len() < n {
            return None;
        }
        let len = after_len[..n].iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &after_len[n..])
    };
    if after_len.len() < len {
        return None;
    }
    let header = buf.len() - after_len.len();
    Some((Tlv { tag, content: &after_len[..len], raw: &buf[..header + len] }, &after_len[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_definite_lengths_short_and_long() {
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend(std::iter::repeat_n(7u8, 256));
        let mut buf = vec![0x02, 0x01, 0x05];
        buf.extend(&long);
        let mut r = Reader::new(&buf);
        let int = r.expect(INTEGER).expect("integer");
        assert_eq!(int.content, &[5]);
        assert_eq!(int.raw, &[0x02, 0x01, 0x05]);
        let os = r.expect(OCTET_STRING).expect("octet string");
        assert_eq!(os.content.len(), 256);
        assert_eq!(os.raw, &long[..]);
        assert!(r.is_empty());
        assert!(r.next_tlv().is_none());
    }

    #[test]
    fn reads_nested_indefinite_lengths() {
        // SEQUENCE (indefinite) { [0] (indefinite) { INTEGER 1 } , NULL } then INTEGER 2
        let buf = [0x30, 0x80, 0xA0, 0x80, 0x02, 0x01, 0x01, 0, 0, 0x05, 0x00, 0, 0, 0x02, 0x01, 0x02];
        let mut r = Reader::new(&buf);
        let seq = r.expect(SEQUENCE).expect("sequence");
        assert_eq!(seq.raw.len(), 13);
        let mut c = seq.children();
        let inner = c.expect(context(0)).expect("[0]");
        assert_eq!(inner.children().expect(INTEGER).expect("int").content, &[1]);
        assert!(c.expect(0x05).is_some());
        assert!(c.is_empty());
        assert_eq!(r.expect(INTEGER).expect("int").content, &[2]);
    }

    #[test]
    fn refuses_what_it_cannot_read_exactly() {
        for bad in [
            &[0x30, 0x05, 0x02, 0x01][..],       // length past the end
            &[0x04, 0x80, 0x01, 0x00, 0x00][..], // indefinite primitive
            &[0x30, 0x80, 0x02, 0x01, 0x01][..], // no end-of-contents
            &[0x1f, 0x81, 0x01, 0x00][..],       // multi-byte tag
            &[0x30, 0x85, 1, 1, 1, 1, 1][..],    // five length octets
            &[0x30][..],
        ] {
            assert!(Reader::new(bad).next_tlv().is_none(), "{bad:02x?}");
        }
        // Deep nesting of indefinite lengths stops at the limit instead of recursing on.
        let mut deep = Vec::new();
        for _ in 0..100 {
            deep.extend([0x30, 0x80]);
        }
        for _ in 0..100 {
            deep.extend([0, 0]);
        }
        assert!(Reader::new(&deep).next_tlv().is_none());
        assert!(Reader::new(&[0x02, 0x01, 0x01]).expect(SEQUENCE).is_none());
        assert!(Reader::new(&[0x02, 0x01, 0x01]).optional(SEQUENCE).is_none());
    }
}

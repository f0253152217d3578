//! A tiny, bounds-checked DER reader: just enough to find which content
//! encryption algorithm a client used in its pkcsPKIEnvelope (OpenSSL has no
//! public getter for an EnvelopedData's contentEncryptionAlgorithm).
//!
//! Only definite-length DER with single-byte tags is understood. Callers feed
//! it OpenSSL's own re-encoding of a structure OpenSSL already parsed, so BER
//! input from clients (indefinite lengths) never reaches it.

/// One tag-length-value element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Tlv<'a> {
    /// The identifier octet (class, constructed bit, tag number < 31).
    pub tag: u8,
    /// The contents octets.
    pub value: &'a [u8],
}

/// Universal SEQUENCE (constructed).
pub(super) const SEQUENCE: u8 = 0x30;
/// Universal SET (constructed).
pub(super) const SET: u8 = 0x31;
/// Universal INTEGER.
pub(super) const INTEGER: u8 = 0x02;
/// Universal OBJECT IDENTIFIER.
pub(super) const OID: u8 = 0x06;
/// Context-specific constructed [0].
pub(super) const CONTEXT_0: u8 = 0xa0;

/// Reads one element from the front of `input`, returning it and the rest.
/// `None` on any malformation (truncation, indefinite or oversized length,
/// multi-byte tags).
pub(super) fn read_tlv(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag number form: not used in the structures we read
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None; // indefinite length, or absurdly long
        }
        if rest.len() < n {
            return None;
        }
        let (len_bytes, after) = rest.split_at(n);
        rest = after;
        len_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((Tlv { tag, value }, rest))
}

/// Reads one element that must have tag `tag`.
pub(super) fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (tlv, rest) = read_tlv(input)?;
    (tlv.tag == tag).then_some((tlv.value, rest))
}

/// DER contents of id-envelopedData, 1.2.840.113549.1.7.3.
const OID_ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];

/// Given the DER of a ContentInfo wrapping an EnvelopedData (RFC 5652 §6.1),
/// returns the contents octets of its contentEncryptionAlgorithm OID.
///
/// ```text
/// ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT EnvelopedData }
/// EnvelopedData ::= SEQUENCE {
///   version INTEGER, originatorInfo [0] IMPLICIT OPTIONAL,
///   recipientInfos SET, encryptedContentInfo SEQUENCE {
///     contentType OID, contentEncryptionAlgorithm AlgorithmIdentifier, ... }, ... }
/// ```
pub(super) fn enveloped_content_cipher_oid(content_info: &[u8]) -> Option<&[u8]> {
    let (ci, _) = expect(content_info, SEQUENCE)?;
    let (content_type, rest) = expect(ci, OID)?;
    if content_type != OID_ENVELOPED_DATA {
        return None;
    }
    let (explicit, _) = expect(rest, CONTEXT_0)?;
    let (env, _) = expect(explicit, SEQUENCE)?;
    let (_version, mut rest) = expect(env, INTEGER)?;
    // Optional originatorInfo [0].
    if let Some((tlv, after)) = read_tlv(rest)
        && tlv.tag == CONTEXT_0
    {
        rest = after;
    }
    let (_recipients, rest) = expect(rest, SET)?;
    let (eci, _) = expect(rest, SEQUENCE)?;
    let (_content_type, rest) = expect(eci, OID)?;
    let (alg_id, _) = expect(rest, SEQUENCE)?;
    let (oid, _) = expect(alg_id, OID)?;
    Some(oid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let (tlv, rest) = read_tlv(&[0x04, 0x02, 0xaa, 0xbb, 0x05]).unwrap();
        assert_eq!(tlv.tag, 0x04);
        assert_eq!(tlv.value, &[0xaa, 0xbb]);
        assert_eq!(rest, &[0x05]);

        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7u8, 0x80));
        let (tlv, rest) = read_tlv(&long).unwrap();
        assert_eq!(tlv.value.len(), 0x80);
        assert!(rest.is_empty());
    }

    #[test]
    fn rejects_malformed_input() {
        assert!(read_tlv(&[]).is_none());
        assert!(read_tlv(&[0x30]).is_none());
        assert!(read_tlv(&[0x30, 0x05, 0x00]).is_none()); // truncated
        assert!(read_tlv(&[0x30, 0x80, 0x00, 0x00]).is_none()); // indefinite
        assert!(read_tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none()); // 5 length bytes
        assert!(read_tlv(&[0x1f, 0x01, 0x00]).is_none()); // high tag form
        assert!(read_tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(enveloped_content_cipher_oid(&[0x30, 0x00]).is_none());
        assert!(enveloped_content_cipher_oid(b"garbage").is_none());
    }

    #[test]
    fn enveloped_data_oid_constant_matches_openssl() {
        let obj = openssl::asn1::Asn1Object::from_str("1.2.840.113549.1.7.3").unwrap();
        assert_eq!(obj.as_slice(), OID_ENVELOPED_DATA);
    }
}

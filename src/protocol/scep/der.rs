//! Which content-encryption algorithm a client used in its pkcsPKIEnvelope: OpenSSL has no
//! public getter for an EnvelopedData's contentEncryptionAlgorithm, so it is read with
//! [`crate::protocol::der`] from OpenSSL's own re-encoding of a structure OpenSSL already parsed.

use crate::protocol::der::{INTEGER, OID, Reader, SEQUENCE, SET, context};

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
    let mut ci = Reader::new(content_info).expect(SEQUENCE)?.children();
    if ci.expect(OID)?.content != OID_ENVELOPED_DATA {
        return None;
    }
    let mut env = ci.expect(context(0))?.children().expect(SEQUENCE)?.children();
    env.expect(INTEGER)?;
    env.optional(context(0)); // originatorInfo
    env.expect(SET)?; // recipientInfos
    let mut eci = env.expect(SEQUENCE)?.children();
    eci.expect(OID)?;
    Some(eci.expect(SEQUENCE)?.children().expect(OID)?.content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed_input() {
        assert!(enveloped_content_cipher_oid(&[0x30, 0x00]).is_none());
        assert!(enveloped_content_cipher_oid(b"garbage").is_none());
    }

    #[test]
    fn enveloped_data_oid_constant_matches_openssl() {
        let obj = openssl::asn1::Asn1Object::from_str("1.2.840.113549.1.7.3").unwrap();
        assert_eq!(obj.as_slice(), OID_ENVELOPED_DATA);
    }
}

//! Minimal, audited FFI over OpenSSL for the parts of SCEP the `openssl`
//! crate has no safe API for: the *signed attributes* of a CMS SignerInfo
//! (RFC 8894 §3.2.1) and the challengePassword attribute of a PKCS#10 request.
//!
//! Design rules of this file:
//!
//! * It never borrows a raw pointer out of an `openssl` crate value (that needs
//!   the `foreign-types` crate, which this module may not depend on). Objects
//!   cross the boundary as DER: certificates and keys are re-parsed here with
//!   `d2i_*` into pointers this file owns, and results go back out as DER.
//! * Every owned OpenSSL object sits in an [`Owned`] guard that frees it with
//!   the matching `*_free` function on every path, error paths included.
//! * Pointers that OpenSSL documents as *borrowed* (`get0`, `CMS_signed_get_attr`,
//!   `OBJ_nid2obj`, the SignerInfo returned by `CMS_add1_signer`) are never freed
//!   and never outlive the object that owns them.
//! * Every `unsafe` block carries a `SAFETY:` comment.
//! * On failure the thread's OpenSSL error queue is drained into the returned
//!   error, so a later, unrelated OpenSSL call does not pick up stale errors.

use std::ffi::{CStr, c_char, c_int, c_long, c_uchar, c_uint, c_void};
use std::ptr;
use std::sync::OnceLock;

use foreign_types::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKeyRef, Private};
use openssl::x509::{X509Ref, X509ReqRef};
use openssl_sys as sys;

use super::ScepError;

/// Opaque `CMS_SignerInfo` (not declared by `openssl-sys`).
#[repr(C)]
struct CmsSignerInfo {
    _private: [u8; 0],
}

// Declarations of the libcrypto functions `openssl-sys` does not bind. The
// signatures are those of OpenSSL 3.x (`const` qualifiers do not change the
// ABI). They resolve against the libcrypto that `openssl-sys` links.
unsafe extern "C" {
    fn CMS_get0_type(cms: *const sys::CMS_ContentInfo) -> *const sys::ASN1_OBJECT;
    fn CMS_get0_eContentType(cms: *mut sys::CMS_ContentInfo) -> *const sys::ASN1_OBJECT;
    fn CMS_get0_SignerInfos(cms: *mut sys::CMS_ContentInfo) -> *mut sys::OPENSSL_STACK;
    fn CMS_SignerInfo_get0_algs(
        si: *mut CmsSignerInfo,
        pk: *mut *mut sys::EVP_PKEY,
        signer: *mut *mut sys::X509,
        pdig: *mut *mut sys::X509_ALGOR,
        psig: *mut *mut sys::X509_ALGOR,
    );
    fn CMS_signed_get_attr_by_OBJ(si: *const CmsSignerInfo, obj: *const sys::ASN1_OBJECT, lastpos: c_int) -> c_int;
    fn CMS_signed_get_attr(si: *const CmsSignerInfo, loc: c_int) -> *mut sys::X509_ATTRIBUTE;
    fn CMS_signed_add1_attr_by_OBJ(
        si: *mut CmsSignerInfo,
        obj: *const sys::ASN1_OBJECT,
        attr_type: c_int,
        bytes: *const c_void,
        len: c_int,
    ) -> c_int;
    fn CMS_add1_signer(
        cms: *mut sys::CMS_ContentInfo,
        signer: *mut sys::X509,
        pk: *mut sys::EVP_PKEY,
        md: *const sys::EVP_MD,
        flags: c_uint,
    ) -> *mut CmsSignerInfo;
    fn CMS_final(cms: *mut sys::CMS_ContentInfo, data: *mut sys::BIO, dcont: *mut sys::BIO, flags: c_uint) -> c_int;
    fn ASN1_TYPE_get(a: *const sys::ASN1_TYPE) -> c_int;
    fn OBJ_txt2nid(s: *const c_char) -> c_int;
}

// ASN.1 universal tag numbers as OpenSSL names them (`V_ASN1_*`).
pub(crate) const V_ASN1_OCTET_STRING: c_int = 4;
pub(crate) const V_ASN1_UTF8STRING: c_int = 12;
pub(crate) const V_ASN1_PRINTABLESTRING: c_int = 19;
const V_ASN1_T61STRING: c_int = 20;
const V_ASN1_IA5STRING: c_int = 22;
const V_ASN1_UNIVERSALSTRING: c_int = 28;
const V_ASN1_BMPSTRING: c_int = 30;

/// Whether an ASN.1 type is one of the character-string types we accept for
/// textual attributes (DirectoryString plus IA5String).
fn is_text_type(t: c_int) -> bool {
    matches!(
        t,
        V_ASN1_PRINTABLESTRING | V_ASN1_UTF8STRING | V_ASN1_IA5STRING | V_ASN1_T61STRING | V_ASN1_BMPSTRING | V_ASN1_UNIVERSALSTRING
    )
}

// ---------------------------------------------------------------------------
// Ownership helpers
// ---------------------------------------------------------------------------

/// RAII owner of one OpenSSL object, freed with `free` on drop.
struct Owned<T> {
    ptr: *mut T,
    free: unsafe extern "C" fn(*mut T),
}

impl<T> Owned<T> {
    /// Takes ownership of `ptr`; a null pointer becomes an error carrying the
    /// OpenSSL error queue.
    fn new(ptr: *mut T, free: unsafe extern "C" fn(*mut T), context: &'static str) -> Result<Self, ScepError> {
        if ptr.is_null() { Err(openssl_error(context)) } else { Ok(Self { ptr, free }) }
    }

    fn as_ptr(&self) -> *mut T {
        self.ptr
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` is non-null (checked in `new`), exclusively owned by
        // this guard, and `free` is the deallocator matching its constructor.
        unsafe { (self.free)(self.ptr) }
    }
}

/// RAII owner of a buffer allocated with `OPENSSL_malloc`.
struct OpensslBuf(*mut c_uchar);

impl Drop for OpensslBuf {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the buffer was allocated by OpenSSL (`ASN1_STRING_to_UTF8`)
            // and is freed exactly once, here. `CRYPTO_free` is what the
            // `OPENSSL_free` macro expands to.
            unsafe { sys::CRYPTO_free(self.0.cast::<c_void>(), concat!(file!(), "\0").as_ptr().cast::<c_char>(), line!() as c_int) }
        }
    }
}

/// Drains the OpenSSL error queue into a [`ScepError::OpenSsl`].
fn openssl_error(context: &'static str) -> ScepError {
    ScepError::OpenSsl { context, source: ErrorStack::get() }
}

/// Drains the OpenSSL error queue into a printable string.
fn drain_errors() -> String {
    let stack = ErrorStack::get();
    if stack.errors().is_empty() { "no detail from OpenSSL".to_owned() } else { stack.to_string() }
}

type D2i<T> = unsafe extern "C" fn(*mut *mut T, *mut *const c_uchar, c_long) -> *mut T;

/// Parses DER with an OpenSSL `d2i_*` function into an owned object; trailing
/// bytes after the object are rejected.
fn d2i_owned<T>(der: &[u8], parse: D2i<T>, free: unsafe extern "C" fn(*mut T), what: &'static str) -> Result<Owned<T>, ScepError> {
    let len = c_long::try_from(der.len()).map_err(|_| ScepError::Malformed(format!("{what} is too large")))?;
    let mut p = der.as_ptr();
    // SAFETY: `p` points at `len` readable bytes that outlive the call; passing
    // a null `a` asks OpenSSL to allocate a fresh object, which we own.
    let obj = unsafe { parse(ptr::null_mut(), &mut p, len) };
    if obj.is_null() {
        return Err(ScepError::Malformed(format!("{what} is not valid DER: {}", drain_errors())));
    }
    let owned = Owned { ptr: obj, free };
    // `d2i` advanced `p` past the bytes it consumed.
    let consumed = (p as usize).wrapping_sub(der.as_ptr() as usize);
    if consumed != der.len() {
        return Err(ScepError::Malformed(format!("{what} has {} trailing bytes", der.len().saturating_sub(consumed))));
    }
    Ok(owned)
}

/// Runs the usual two-call `i2d_*` protocol (size, then encode) into a Vec.
fn i2d_to_vec(context: &'static str, mut encode: impl FnMut(*mut *mut c_uchar) -> c_int) -> Result<Vec<u8>, ScepError> {
    let len = encode(ptr::null_mut());
    let Ok(size) = usize::try_from(len) else {
        return Err(openssl_error(context));
    };
    if size == 0 {
        return Err(openssl_error(context));
    }
    let mut buf = vec![0u8; size];
    let mut p = buf.as_mut_ptr();
    let written = encode(&mut p);
    if written != len {
        return Err(openssl_error(context));
    }
    Ok(buf)
}

fn i2d_cms(cms: *mut sys::CMS_ContentInfo) -> Result<Vec<u8>, ScepError> {
    i2d_to_vec("encoding CMS ContentInfo", |pp| {
        // SAFETY: `cms` is a valid CMS_ContentInfo for the duration of this call; `pp` is
        // either null (size query) or points at a buffer of the queried size.
        unsafe { sys::i2d_CMS_ContentInfo(cms, pp) }
    })
}

/// Copies the contents of a memory BIO.
fn mem_bio_contents(bio: &Owned<sys::BIO>) -> Vec<u8> {
    let mut data: *mut c_char = ptr::null_mut();
    // SAFETY: `bio` is a live memory BIO; BIO_get_mem_data stores a pointer to
    // its internal buffer (borrowed, valid until the BIO is written or freed)
    // and returns the number of readable bytes.
    let len = unsafe { sys::BIO_get_mem_data(bio.as_ptr(), &mut data) };
    match usize::try_from(len) {
        Ok(len) if len > 0 && !data.is_null() => {
            // SAFETY: OpenSSL guarantees `len` readable bytes at `data`; we copy
            // them before the BIO is touched again.
            unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }.to_vec()
        }
        _ => Vec::new(),
    }
}

/// NID of an ASN1_OBJECT (NID_undef for unknown or null).
fn obj_nid(obj: *const sys::ASN1_OBJECT) -> c_int {
    if obj.is_null() {
        return sys::NID_undef;
    }
    // SAFETY: `obj` is a valid, borrowed ASN1_OBJECT.
    unsafe { sys::OBJ_obj2nid(obj) }
}

// ---------------------------------------------------------------------------
// SCEP attribute OIDs
// ---------------------------------------------------------------------------

/// The SCEP signed attributes (RFC 8894 §3.2.1), under Verisign's arc
/// 2.16.840.1.113733.1.9.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScepAttr {
    MessageType,
    PkiStatus,
    FailInfo,
    SenderNonce,
    RecipientNonce,
    TransactionId,
}

impl ScepAttr {
    pub(super) const ALL: [ScepAttr; 6] = [
        ScepAttr::MessageType,
        ScepAttr::PkiStatus,
        ScepAttr::FailInfo,
        ScepAttr::SenderNonce,
        ScepAttr::RecipientNonce,
        ScepAttr::TransactionId,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// Dotted OID.
    pub(super) fn oid(self) -> &'static CStr {
        match self {
            ScepAttr::MessageType => c"2.16.840.1.113733.1.9.2",
            ScepAttr::PkiStatus => c"2.16.840.1.113733.1.9.3",
            ScepAttr::FailInfo => c"2.16.840.1.113733.1.9.4",
            ScepAttr::SenderNonce => c"2.16.840.1.113733.1.9.5",
            ScepAttr::RecipientNonce => c"2.16.840.1.113733.1.9.6",
            ScepAttr::TransactionId => c"2.16.840.1.113733.1.9.7",
        }
    }

    /// Name used when registering the OID, and in error messages.
    pub(super) fn name(self) -> &'static str {
        self.cname().to_str().unwrap_or("scepAttribute")
    }

    fn cname(self) -> &'static CStr {
        match self {
            ScepAttr::MessageType => c"messageType",
            ScepAttr::PkiStatus => c"pkiStatus",
            ScepAttr::FailInfo => c"failInfo",
            ScepAttr::SenderNonce => c"senderNonce",
            ScepAttr::RecipientNonce => c"recipientNonce",
            ScepAttr::TransactionId => c"transactionID",
        }
    }

    /// Fallback names, used only if another component already registered the
    /// plain names for different OIDs.
    fn fallback_cname(self) -> &'static CStr {
        match self {
            ScepAttr::MessageType => c"scep-messageType",
            ScepAttr::PkiStatus => c"scep-pkiStatus",
            ScepAttr::FailInfo => c"scep-failInfo",
            ScepAttr::SenderNonce => c"scep-senderNonce",
            ScepAttr::RecipientNonce => c"scep-recipientNonce",
            ScepAttr::TransactionId => c"scep-transactionID",
        }
    }
}

/// NIDs of the SCEP OIDs, registered once per process.
static SCEP_NIDS: OnceLock<Result<[c_int; 6], String>> = OnceLock::new();

/// Returns the NID of one OID, registering it with `OBJ_create` if OpenSSL
/// does not know it yet. Handles the OID having been registered already (by
/// an earlier call, another library, or an OpenSSL configuration file).
fn register_oid(attr: ScepAttr) -> Result<c_int, String> {
    let oid = attr.oid();
    // SAFETY: `oid` is a NUL-terminated static string. OBJ_txt2nid only reads it.
    let existing = unsafe { OBJ_txt2nid(oid.as_ptr()) };
    if existing != sys::NID_undef {
        return Ok(existing);
    }
    for name in [attr.cname(), attr.fallback_cname()] {
        // SAFETY: all arguments are NUL-terminated static strings; OBJ_create
        // copies them into OpenSSL's (internally locked) object table.
        let nid = unsafe { sys::OBJ_create(oid.as_ptr(), name.as_ptr(), name.as_ptr()) };
        if nid != sys::NID_undef {
            return Ok(nid);
        }
        // OBJ_create fails if the OID *or* one of the names exists already:
        // clear its error and see whether the OID is now known.
        let _ = ErrorStack::get();
        // SAFETY: as above.
        let again = unsafe { OBJ_txt2nid(oid.as_ptr()) };
        if again != sys::NID_undef {
            return Ok(again);
        }
    }
    Err(format!("OBJ_create failed for {} ({:?})", attr.name(), oid))
}

/// Registers the six SCEP OIDs with OpenSSL (idempotent, thread-safe) and
/// returns their NIDs.
fn scep_nids() -> Result<&'static [c_int; 6], ScepError> {
    SCEP_NIDS
        .get_or_init(|| {
            let mut nids = [sys::NID_undef; 6];
            for attr in ScepAttr::ALL {
                nids[attr.index()] = register_oid(attr)?;
            }
            Ok(nids)
        })
        .as_ref()
        .map_err(|e| ScepError::OidRegistration(e.clone()))
}

/// Makes sure the SCEP OIDs are registered. Called by the public entry points
/// so that later look-ups cannot fail half-way through a message.
pub(crate) fn ensure_oids() -> Result<(), ScepError> {
    scep_nids().map(|_| ())
}

/// The NID of one SCEP attribute.
pub(crate) fn scep_nid(attr: ScepAttr) -> Result<c_int, ScepError> {
    Ok(scep_nids()?[attr.index()])
}

/// The ASN1_OBJECT of one SCEP attribute. The pointer is *borrowed* from
/// OpenSSL's global object table (objects added with OBJ_create live until
/// process exit): never free it.
fn scep_obj(attr: ScepAttr) -> Result<*const sys::ASN1_OBJECT, ScepError> {
    let nid = scep_nid(attr)?;
    // SAFETY: `nid` was returned by OBJ_create/OBJ_txt2nid, so it is known.
    let obj = unsafe { sys::OBJ_nid2obj(nid) };
    if obj.is_null() {
        return Err(openssl_error("looking up a SCEP OID"));
    }
    Ok(obj.cast_const())
}

// ---------------------------------------------------------------------------
// Attribute values
// ---------------------------------------------------------------------------

/// The value of a single-valued signed or CSR attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AttrValue {
    /// A character string (PrintableString, UTF8String, IA5String, ...),
    /// converted to UTF-8.
    Text(String),
    /// An OCTET STRING.
    Octets(Vec<u8>),
    /// Any other ASN.1 type, by its universal tag number.
    Other(c_int),
}

/// A value to put in a signed attribute.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AttrToSign<'a> {
    /// Encoded as PrintableString; the caller checks the character set.
    Printable(&'a str),
    /// Encoded as UTF8String.
    Utf8(&'a str),
    /// Encoded as OCTET STRING.
    Octets(&'a [u8]),
}

/// Reads value 0 of an attribute, which must have exactly one value.
///
/// `attr` is borrowed from its owner (SignerInfo or X509_REQ), which must stay
/// alive for the duration of the call.
fn read_single_value(attr: *mut sys::X509_ATTRIBUTE, name: &'static str) -> Result<AttrValue, ScepError> {
    // SAFETY: `attr` is a valid attribute borrowed from a live owner.
    let count = unsafe { sys::X509_ATTRIBUTE_count(attr) };
    if count != 1 {
        return Err(ScepError::InvalidAttribute { name, reason: format!("has {count} values, expected exactly one") });
    }
    // SAFETY: index 0 exists (count == 1); the ASN1_TYPE is borrowed from `attr`.
    let value = unsafe { sys::X509_ATTRIBUTE_get0_type(attr, 0) };
    if value.is_null() {
        return Err(ScepError::InvalidAttribute { name, reason: "has no value".to_owned() });
    }
    // SAFETY: `value` is a valid ASN1_TYPE.
    let asn1_type = unsafe { ASN1_TYPE_get(value) };
    if asn1_type != V_ASN1_OCTET_STRING && !is_text_type(asn1_type) {
        return Ok(AttrValue::Other(asn1_type));
    }
    // SAFETY: for string types (octet string and all character strings), the
    // data of an ASN1_TYPE is an ASN1_STRING; passing the type we just read
    // makes X509_ATTRIBUTE_get0_data return it (borrowed) without error.
    let string = unsafe { sys::X509_ATTRIBUTE_get0_data(attr, 0, asn1_type, ptr::null_mut()) }.cast::<sys::ASN1_STRING>();
    if string.is_null() {
        return Err(ScepError::InvalidAttribute { name, reason: format!("unreadable value: {}", drain_errors()) });
    }
    if asn1_type == V_ASN1_OCTET_STRING {
        // SAFETY: `string` is a valid ASN1_STRING borrowed from `attr`.
        let (data, len) = unsafe { (sys::ASN1_STRING_get0_data(string), sys::ASN1_STRING_length(string)) };
        let len = usize::try_from(len).unwrap_or(0);
        if len == 0 || data.is_null() {
            return Ok(AttrValue::Octets(Vec::new()));
        }
        // SAFETY: ASN1_STRING_length bytes are readable at ASN1_STRING_get0_data.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
        return Ok(AttrValue::Octets(bytes));
    }
    let mut out: *mut c_uchar = ptr::null_mut();
    // SAFETY: `string` is valid; on success OpenSSL allocates `out` (owned by
    // the guard below) holding `len` bytes of UTF-8.
    let len = unsafe { sys::ASN1_STRING_to_UTF8(&mut out, string) };
    let guard = OpensslBuf(out);
    let Ok(len) = usize::try_from(len) else {
        return Err(ScepError::InvalidAttribute { name, reason: format!("not convertible to UTF-8: {}", drain_errors()) });
    };
    let bytes = if len == 0 || guard.0.is_null() {
        Vec::new()
    } else {
        // SAFETY: OpenSSL wrote `len` bytes at `out`, which the guard keeps alive.
        unsafe { std::slice::from_raw_parts(guard.0, len) }.to_vec()
    };
    String::from_utf8(bytes).map(AttrValue::Text).map_err(|_| ScepError::InvalidAttribute { name, reason: "is not valid UTF-8".to_owned() })
}

// ---------------------------------------------------------------------------
// SignedData: verify and read
// ---------------------------------------------------------------------------

/// A CMS SignedData whose signature has been verified.
#[derive(Debug)]
pub(crate) struct VerifiedSignedData {
    /// The encapsulated content (for SCEP: the DER of the pkcsPKIEnvelope).
    pub content: Vec<u8>,
    /// The certificate that produced the (single) signature, shared with the parsed message
    /// rather than re-encoded and parsed again.
    pub signer_cert: openssl::x509::X509,
    /// NID of the SignerInfo's digest algorithm.
    pub digest_nid: c_int,
    /// The SCEP signed attributes that were present, in [`ScepAttr::ALL`] order.
    attributes: [Option<AttrValue>; 6],
}

impl VerifiedSignedData {
    /// The value of a SCEP signed attribute, if present.
    pub(super) fn attribute(&self, attr: ScepAttr) -> Option<&AttrValue> {
        self.attributes[attr.index()].as_ref()
    }
}

/// Parses a DER CMS ContentInfo holding a SignedData with exactly one signer,
/// verifies that signature (signed attributes, message digest) against the
/// signer certificate carried in the message, and reads the SCEP attributes.
///
/// The signer certificate is *not* chain-verified here
/// (`CMS_NO_SIGNER_CERT_VERIFY`): SCEP requests are signed with self-signed or
/// previously issued certificates, and the caller decides what to trust.
pub(crate) fn verify_signed_data(der: &[u8]) -> Result<VerifiedSignedData, ScepError> {
    let nids = scep_nids()?;
    let cms = d2i_owned(der, sys::d2i_CMS_ContentInfo, sys::CMS_ContentInfo_free, "pkiMessage")?;

    // SAFETY: `cms` is valid; the returned object is borrowed from it.
    let content_type = obj_nid(unsafe { CMS_get0_type(cms.as_ptr()) });
    if content_type != sys::NID_pkcs7_signed {
        return Err(ScepError::Malformed(format!("pkiMessage is not a SignedData (content type NID {content_type})")));
    }
    // SAFETY: as above; for SignedData this is the encapContentInfo type.
    let econtent_type = obj_nid(unsafe { CMS_get0_eContentType(cms.as_ptr()) });
    if econtent_type != sys::NID_pkcs7_data {
        return Err(ScepError::Malformed(format!("pkiMessage encapsulates NID {econtent_type}, expected id-data")));
    }

    // SAFETY: `cms` is a SignedData; the stack is borrowed from it.
    let signer_infos = unsafe { CMS_get0_SignerInfos(cms.as_ptr()) };
    if signer_infos.is_null() {
        return Err(ScepError::Malformed("pkiMessage has no signerInfos".into()));
    }
    // SAFETY: `signer_infos` is a valid stack borrowed from `cms`.
    let signer_count = unsafe { sys::OPENSSL_sk_num(signer_infos) };
    if signer_count != 1 {
        return Err(ScepError::Malformed(format!("pkiMessage has {signer_count} signers, expected exactly one")));
    }

    // SAFETY: BIO_s_mem returns a static method table; the new BIO is owned.
    let out = Owned::new(unsafe { sys::BIO_new(sys::BIO_s_mem()) }, sys::BIO_free_all, "allocating a memory BIO")?;
    // SAFETY: `cms` and `out` are valid; null certs/store/dcont are allowed
    // (the signer certificate is taken from the message itself, and no chain
    // is built because of CMS_NO_SIGNER_CERT_VERIFY). CMS_BINARY keeps the
    // content byte-exact.
    let verified = unsafe {
        sys::CMS_verify(
            cms.as_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            out.as_ptr(),
            sys::CMS_NO_SIGNER_CERT_VERIFY | sys::CMS_BINARY,
        )
    };
    if verified != 1 {
        return Err(ScepError::BadSignature(drain_errors()));
    }
    let content = mem_bio_contents(&out);

    // SAFETY: index 0 exists (count checked above); borrowed from `cms`.
    let si = unsafe { sys::OPENSSL_sk_value(signer_infos, 0) }.cast::<CmsSignerInfo>();
    if si.is_null() {
        return Err(ScepError::Malformed("pkiMessage signerInfo is null".into()));
    }
    let mut signer: *mut sys::X509 = ptr::null_mut();
    let mut digest_alg: *mut sys::X509_ALGOR = ptr::null_mut();
    // SAFETY: `si` is valid; CMS_verify attached the signer certificate to it.
    // All out-pointers are borrowed from `si`; null out-params are skipped.
    unsafe { CMS_SignerInfo_get0_algs(si, ptr::null_mut(), &mut signer, &mut digest_alg, ptr::null_mut()) };
    if signer.is_null() {
        return Err(ScepError::BadSignature("signer certificate not found in the pkiMessage".into()));
    }
    // SAFETY: `signer` is a valid X509 borrowed from `cms`; taking a reference of our own
    // (X509_up_ref) lets the wrapper outlive `cms` and free only that reference.
    let signer_cert = unsafe {
        if sys::X509_up_ref(signer) != 1 {
            return Err(openssl_error("referencing the signer certificate"));
        }
        <openssl::x509::X509 as foreign_types::ForeignType>::from_ptr(signer)
    };
    let digest_nid = if digest_alg.is_null() {
        sys::NID_undef
    } else {
        let mut obj: *const sys::ASN1_OBJECT = ptr::null();
        // SAFETY: `digest_alg` is a valid X509_ALGOR borrowed from `si`; the
        // object pointer written to `obj` is borrowed from it as well.
        unsafe { sys::X509_ALGOR_get0(&mut obj, ptr::null_mut(), ptr::null_mut(), digest_alg) };
        obj_nid(obj)
    };

    let mut attributes: [Option<AttrValue>; 6] = Default::default();
    for attr in ScepAttr::ALL {
        // SAFETY: the NID is registered (scep_nids succeeded); the object is
        // borrowed from OpenSSL's object table.
        let obj = unsafe { sys::OBJ_nid2obj(nids[attr.index()]) };
        if obj.is_null() {
            return Err(openssl_error("looking up a SCEP OID"));
        }
        // SAFETY: `si` and `obj` are valid; -1 searches from the start.
        let loc = unsafe { CMS_signed_get_attr_by_OBJ(si, obj, -1) };
        if loc < 0 {
            continue;
        }
        // SAFETY: as above, searching after the first occurrence.
        let duplicate = unsafe { CMS_signed_get_attr_by_OBJ(si, obj, loc) };
        if duplicate >= 0 {
            return Err(ScepError::InvalidAttribute { name: attr.name(), reason: "appears more than once".into() });
        }
        // SAFETY: `loc` is a valid index; the attribute is borrowed from `si`,
        // which lives (inside `cms`) until the end of this function.
        let x509_attr = unsafe { CMS_signed_get_attr(si, loc) };
        if x509_attr.is_null() {
            return Err(openssl_error("reading a signed attribute"));
        }
        attributes[attr.index()] = Some(read_single_value(x509_attr, attr.name())?);
    }

    Ok(VerifiedSignedData { content, signer_cert, digest_nid, attributes })
}

// ---------------------------------------------------------------------------
// SignedData: create
// ---------------------------------------------------------------------------

/// Builds a DER CMS SignedData over `content` (encapsulated as id-data),
/// signed by `signer_cert`/`key` with digest `md`, carrying the
/// standard signed attributes (contentType, messageDigest, signingTime) plus
/// the given SCEP attributes. The signer certificate is included in the
/// `certificates` field. `content` may be empty (CertRep FAILURE/PENDING).
pub(crate) fn sign_signed_data(
    content: &[u8],
    cert: &X509Ref,
    key: &PKeyRef<Private>,
    md: MessageDigest,
    attrs: &[(ScepAttr, AttrToSign<'_>)],
) -> Result<Vec<u8>, ScepError> {
    // The key is used as it is held, never re-read from DER: OpenSSL 3 decodes a private key
    // through its provider machinery and sets the RSA key up afresh, which cost the CA more
    // than the signature itself on every CertRep.
    ensure_oids()?;
    // SAFETY: all-null arguments with CMS_PARTIAL create an empty SignedData
    // (no signer, not finalised), which we own.
    let cms = Owned::new(
        unsafe { sys::CMS_sign(ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), ptr::null_mut(), sys::CMS_PARTIAL | sys::CMS_BINARY) },
        sys::CMS_ContentInfo_free,
        "creating a CMS SignedData",
    )?;
    // SAFETY: `cms`, `cert` and `key` are valid. CMS_add1_signer takes its
    // own references to `cert` and `key` (the caller's stay theirs); the
    // returned SignerInfo is borrowed from `cms`. Without CMS_REUSE_DIGEST
    // nothing is signed yet: that happens in CMS_final, after we have added
    // our attributes. CMS_NOSMIMECAP leaves out the S/MIME capabilities.
    let si = unsafe { CMS_add1_signer(cms.as_ptr(), cert.as_ptr(), key.as_ptr(), md.as_ptr(), sys::CMS_NOSMIMECAP) };
    if si.is_null() {
        return Err(openssl_error("adding the CMS signer (does the key match the certificate?)"));
    }
    for (attr, value) in attrs {
        let obj = scep_obj(*attr)?;
        let (asn1_type, bytes): (c_int, &[u8]) = match value {
            AttrToSign::Printable(s) => (V_ASN1_PRINTABLESTRING, s.as_bytes()),
            AttrToSign::Utf8(s) => (V_ASN1_UTF8STRING, s.as_bytes()),
            AttrToSign::Octets(b) => (V_ASN1_OCTET_STRING, b),
        };
        let len =
            c_int::try_from(bytes.len()).map_err(|_| ScepError::InvalidAttribute { name: attr.name(), reason: "value too long".into() })?;
        // SAFETY: `si` is borrowed from the live `cms`; `obj` is a registered
        // object; `bytes` is readable for `len` bytes and is copied by OpenSSL.
        let ok = unsafe { CMS_signed_add1_attr_by_OBJ(si, obj, asn1_type, bytes.as_ptr().cast::<c_void>(), len) };
        if ok != 1 {
            return Err(openssl_error("adding a SCEP signed attribute"));
        }
    }
    // BIO_new_mem_buf rejects a null pointer; give it a valid one for empty content.
    static EMPTY: [u8; 1] = [0];
    let data_ptr = if content.is_empty() { EMPTY.as_ptr() } else { content.as_ptr() };
    let data_len = c_int::try_from(content.len()).map_err(|_| ScepError::Malformed("content too large to sign".into()))?;
    // SAFETY: `data_ptr` is readable for `data_len` bytes for as long as the
    // read-only BIO lives (it is dropped before `content` goes out of scope).
    let data =
        Owned::new(unsafe { sys::BIO_new_mem_buf(data_ptr.cast::<c_void>(), data_len) }, sys::BIO_free_all, "allocating a memory BIO")?;
    // SAFETY: `cms` is a partial SignedData; CMS_final reads `data`, computes
    // the message digest and signs each SignerInfo. CMS_BINARY: no MIME
    // canonicalisation of the content.
    let ok = unsafe { CMS_final(cms.as_ptr(), data.as_ptr(), ptr::null_mut(), sys::CMS_BINARY) };
    if ok != 1 {
        return Err(openssl_error("signing the CMS SignedData"));
    }
    i2d_cms(cms.as_ptr())
}

// ---------------------------------------------------------------------------
// PKCS#10 challengePassword
// ---------------------------------------------------------------------------

/// Reads the challengePassword attribute (PKCS#9, 1.2.840.113549.1.9.7) of a
/// parsed PKCS#10 request (parsed once by the caller: decoding its public key is the costly
/// part on OpenSSL 3.0). `Ok(None)` if absent.
pub(crate) fn csr_challenge_password(req: &X509ReqRef) -> Result<Option<String>, ScepError> {
    let nid = sys::NID_pkcs9_challengePassword;
    // SAFETY: `req` is valid; -1 searches from the start.
    let loc = unsafe { sys::X509_REQ_get_attr_by_NID(req.as_ptr(), nid, -1) };
    if loc < 0 {
        return Ok(None);
    }
    // SAFETY: as above, searching after the first occurrence.
    if unsafe { sys::X509_REQ_get_attr_by_NID(req.as_ptr(), nid, loc) } >= 0 {
        return Err(ScepError::InvalidCsr("challengePassword appears more than once".into()));
    }
    // SAFETY: `loc` is valid; the attribute is borrowed from `req`, alive
    // until the end of this function.
    let attr = unsafe { sys::X509_REQ_get_attr(req.as_ptr(), loc) };
    if attr.is_null() {
        return Err(openssl_error("reading the challengePassword"));
    }
    match read_single_value(attr, "challengePassword")? {
        AttrValue::Text(s) => Ok(Some(s)),
        AttrValue::Octets(_) => Err(ScepError::InvalidCsr("challengePassword is an OCTET STRING, expected a character string".into())),
        AttrValue::Other(t) => Err(ScepError::InvalidCsr(format!("challengePassword has ASN.1 type {t}, expected a character string"))),
    }
}

/// The requester's side (see [`super::client`]): adds a challengePassword of the given ASN.1
/// string type to a DER CSR and re-signs it with `key_der` and `md`.
pub(crate) fn add_challenge_password(
    csr_der: &[u8],
    key_der: &[u8],
    challenge: &str,
    asn1_type: c_int,
    md: MessageDigest,
) -> Result<Vec<u8>, ScepError> {
    let req = d2i_owned(csr_der, sys::d2i_X509_REQ, sys::X509_REQ_free, "certificate request")?;
    let key = d2i_owned(key_der, sys::d2i_AutoPrivateKey, sys::EVP_PKEY_free, "key")?;
    let len = c_int::try_from(challenge.len()).expect("short challenge");
    // SAFETY: `req` is valid; the name is NUL-terminated; `challenge` is
    // readable for `len` bytes and copied by OpenSSL.
    let ok = unsafe { sys::X509_REQ_add1_attr_by_txt(req.as_ptr(), c"challengePassword".as_ptr(), asn1_type, challenge.as_ptr(), len) };
    if ok != 1 {
        return Err(openssl_error("adding challengePassword"));
    }
    // SAFETY: `req` and `key` are valid; `md` is a static digest.
    if unsafe { sys::X509_REQ_sign(req.as_ptr(), key.as_ptr(), md.as_ptr()) } <= 0 {
        return Err(openssl_error("re-signing the CSR"));
    }
    i2d_to_vec("encoding the CSR", |pp| {
        // SAFETY: `req` is valid; see `i2d_to_vec`.
        unsafe { sys::i2d_X509_REQ(req.as_ptr(), pp) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_register_once_and_resolve() {
        ensure_oids().expect("register");
        for attr in ScepAttr::ALL {
            let nid = scep_nid(attr).expect("nid");
            assert_ne!(nid, sys::NID_undef);
            // Registering again (as another component might) finds the same NID.
            assert_eq!(register_oid(attr).expect("again"), nid);
            let obj = openssl::asn1::Asn1Object::from_str(attr.oid().to_str().unwrap()).unwrap();
            assert_eq!(obj.nid().as_raw(), nid, "{}", attr.name());
        }
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        for input in [&b""[..], &b"\x30"[..], &b"\x30\x03\x02\x01\x00"[..], &b"\x30\x80\x00\x00"[..], &[0xffu8; 64][..]] {
            assert!(verify_signed_data(input).is_err());
        }
        // The error queue was drained: nothing stale is left behind.
        assert!(ErrorStack::get().errors().is_empty());
    }
}

//! Property tests for every parser a device can reach, unauthenticated or with a device
//! identity (issue 16, "Fuzzing and property tests"; issue 23, D2):
//!
//! - check-in and command-result plists, XML and binary (`mdm::checkin::parse`,
//!   `mdm::report::parse`, and through them the event-stream builder of `src/mdm/value.rs`),
//!   and uploaded profiles with their binary-plist pre-check (`profiles::inspect`);
//! - the `Mdm-Signature` header: the full CMS check (`mdm::cms`) and the cached fast path
//!   (`mdm::signers::SignerCache`), with the DER reader under it (`lanyard::protocol::der`);
//! - SCEP: pkiMessages and the PKCS#10 inside them through the OpenSSL FFI
//!   (`scep::parse_pki_message`), and the `GET ?operation=PKIOperation&message=` parameter
//!   (`scep::decode_message_param`);
//! - the device face over HTTP: `/mdm/enroll?token=`, `/scep` by GET and POST, and signed
//!   `/mdm/connect` bodies nested far too deep.
//!
//! The properties: arbitrary bytes never panic and are refused; valid messages built from
//! arbitrary nested values round-trip; mutations of valid messages (bit flips, bytes set,
//! truncation, insertions, splices) never panic, never parse to something the plist crate
//! reads differently, and a mutated signed message never verifies as anything but what its
//! signer signed; nesting beyond the bound is a clear error on a 256 KiB stack, so a recursion
//! regression fails here instead of passing on a big test thread; a length field in a binary
//! plist or DER header never makes a large allocation.
//!
//! Each property runs 512 to 8192 cases (fewer where each case signs or decrypts), so the file
//! takes about a minute in a debug build on two cores. `PROPTEST_CASES=N` sets every property to N cases for a long
//! run (e.g. `PROPTEST_CASES=20000 cargo test --release --test parsers_proptest`). The
//! cargo-fuzz targets under `fuzz/` run the same parsers for hours.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use lanyard::protocol::scep::{self, MessageType, client::Requester};
use lanyard::protocol::{checkin, cms, report, signers::SignerCache};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::symm::Cipher;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509, X509Builder, X509Name};
use plist::{Dictionary, Value};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

// ---------------------------------------------------------------------------------------------
// Harness: case counts, a small stack, and the largest allocation a thread made.

/// `default` cases, or `PROPTEST_CASES` when set.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// The stack a parser must make do with here: far less than a tokio worker's 2 MiB, so that a
/// parser recursing once per nesting level overflows at a few thousand levels, and a deep case
/// that only passed because the test thread's stack was big fails.
const SMALL_STACK: usize = 256 * 1024;

/// Runs `f` on a new thread with [`SMALL_STACK`], returning its result and the largest single
/// allocation it made. A stack overflow aborts the whole test binary: that is the failure.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> (T, usize) {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(move || {
            LARGEST.with(|l| l.set(0));
            let out = f();
            (out, LARGEST.with(Cell::get))
        })
        .expect("spawn a small-stack thread")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The global allocator, recording the largest single allocation of each thread.
struct Measuring;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size);
        }
    });
}

// SAFETY: every call is passed on to the system allocator unchanged; `note` only reads and
// writes a thread-local `Cell` (const-initialised, no destructor), which never allocates.
unsafe impl GlobalAlloc for Measuring {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Measuring = Measuring;

/// The most one allocation may take while parsing a hostile plist of a few KiB: a length field
/// must never be trusted for a buffer size.
const ALLOCATION_BOUND: usize = 4 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Mutations of valid messages.

#[derive(Debug, Clone)]
enum Mutation {
    /// Flip one bit.
    Flip(usize, u8),
    /// Set one byte, often to a value that means something in DER or a binary plist.
    Set(usize, u8),
    /// Cut the message short.
    Truncate(usize),
    /// Insert bytes.
    Insert(usize, Vec<u8>),
    /// Delete a run of bytes.
    Delete(usize, usize),
    /// Copy a run of the message over another place in it (a splice of itself).
    Splice { from: usize, to: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let special = prop_oneof![
        Just(0x00u8),
        Just(0xff),
        Just(0x7f),
        Just(0x80),
        Just(0x81),
        Just(0x84),
        Just(0x0f),
        Just(0x30),
        Just(0x5f),
        Just(0xaf),
        Just(0xdf),
        Just(b'<'),
        Just(b'>'),
        Just(b'/'),
        any::<u8>()
    ];
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        3 => (any::<usize>(), special).prop_map(|(at, b)| Mutation::Set(at, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (any::<usize>(), vec(any::<u8>(), 1..16)).prop_map(|(at, b)| Mutation::Insert(at, b)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(at, n)| Mutation::Delete(at, n)),
        2 => (any::<usize>(), any::<usize>(), 1usize..64).prop_map(|(from, to, len)| Mutation::Splice { from, to, len }),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    vec(mutation(), 1..4)
}

fn apply(original: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = original.to_vec();
    for m in mutations {
        let n = b.len().max(1);
        match m {
            Mutation::Flip(at, bit) => {
                if let Some(byte) = b.get_mut(at % n) {
                    *byte ^= 1 << bit;
                }
            }
            Mutation::Set(at, v) => {
                if let Some(byte) = b.get_mut(at % n) {
                    *byte = *v;
                }
            }
            Mutation::Truncate(at) => b.truncate(at % n),
            Mutation::Insert(at, bytes) => {
                let at = at % (b.len() + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete(at, len) => {
                let at = at % n;
                let end = (at + len).min(b.len());
                if at < end {
                    b.drain(at..end);
                }
            }
            Mutation::Splice { from, to, len } => {
                let (from, to) = (from % n, to % n);
                let chunk: Vec<u8> = b.iter().skip(from).take(*len).copied().collect();
                for (i, byte) in chunk.into_iter().enumerate() {
                    if let Some(slot) = b.get_mut(to + i) {
                        *slot = byte;
                    }
                }
            }
        }
    }
    b
}

/// The mutated message differs from the original.
fn changed(original: &[u8], mutated: &[u8]) -> bool {
    original != mutated
}

// ---------------------------------------------------------------------------------------------
// Plist values.

/// Strings an XML plist can hold exactly: printable characters, tabs, newlines and spaces (XML
/// forbids most control characters and turns `\r` into `\n`).
fn xml_string() -> impl Strategy<Value = String> {
    "[\\PC\t\n ]{0,24}"
}

fn leaf(string: BoxedStrategy<String>) -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Boolean),
        any::<i64>().prop_map(|i| Value::Integer(i.into())),
        any::<u64>().prop_map(|u| Value::Integer(u.into())),
        any::<f64>().prop_filter("NaN is never equal to itself", |f| !f.is_nan()).prop_map(Value::Real),
        vec(any::<u8>(), 0..48).prop_map(Value::Data),
        string.clone().prop_map(Value::String),
        // Whole seconds: XML dates have no fractions.
        (0u64..4_102_444_800).prop_map(|s| Value::Date(plist::Date::from(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s)))),
    ]
}

/// Arbitrary nested values, a few levels deep.
fn value(string: BoxedStrategy<String>) -> impl Strategy<Value = Value> {
    let key = string.clone();
    leaf(string).prop_recursive(6, 96, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((key.clone(), inner), 0..6).prop_map(|kv| Value::Dictionary(kv.into_iter().collect())),
        ]
    })
}

/// A command report (`Status` Acknowledged) carrying an arbitrary answer under `Answer` and
/// arbitrary extra keys: `report::parse` keeps the whole dictionary, so it shows exactly what
/// the plist builder made of the bytes.
fn report_dict(string: BoxedStrategy<String>) -> impl Strategy<Value = Dictionary> {
    (value(string.clone()), vec((string.clone(), value(string)), 0..4)).prop_map(|(answer, extra)| {
        let mut d = Dictionary::new();
        d.insert("Status".into(), "Acknowledged".into());
        d.insert("UDID".into(), "00008030-001A2B3C4D5E6F70".into());
        d.insert("CommandUUID".into(), "B2D3E2B8-6B0E-4A77-9E4C-1B2D3E4F5A6B".into());
        d.insert("Answer".into(), answer);
        for (k, v) in extra {
            d.insert(format!("x-{k}"), v);
        }
        d
    })
}

fn xml(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    value.to_writer_xml(&mut out).expect("no Uid values");
    out
}

fn binary(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    value.to_writer_binary(&mut out).expect("binary plist");
    out
}

/// Values compared through their Debug form, where NaN equals NaN.
fn same(a: &Value, b: &Value) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// What the plist crate itself reads from `body` when it is a dictionary, or None.
fn plist_crate_reads(body: &[u8]) -> Option<Dictionary> {
    let value =
        if body.starts_with(b"bplist") { Value::from_reader(Cursor::new(body)).ok()? } else { Value::from_reader_xml(body).ok()? };
    value.into_dictionary()
}

/// A body nested `levels` deep inside a check-in dictionary: `<array>` or `<dict><key>` opened
/// `levels` times and closed again (or not).
fn nested_xml(open: &str, close: &str, levels: usize) -> Vec<u8> {
    let mut s = String::from(
        "<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>MessageType</key><string>CheckOut</string>\
         <key>Status</key><string>Idle</string><key>UDID</key><string>X</string><key>k</key>",
    );
    s.push_str(&open.repeat(levels));
    s.push_str(&close.repeat(levels));
    s.push_str("</dict></plist>");
    s.into_bytes()
}

use lanyard::protocol::hostile::chained_bplist;

/// Every parser a plist body from a device reaches, on a small stack: whether check-in and
/// command-report parsing succeeded, and the largest allocation made.
fn parse_plist_everywhere(body: Vec<u8>) -> ((bool, bool), usize) {
    on_small_stack(move || {
        let c = checkin::parse(&body).is_ok();
        // And every view the server takes of a report: JSON, inventory, SecurityInfo, errors.
        let r = report::parse(&body)
            .map(|rep| {
                let _ = rep.to_json().to_string();
                let _ = rep.security_info();
                let _ = rep.error_summary();
                let _ = lanyard::services::devices::inventory::device_information_update(&rep, chrono::Utc::now());
            })
            .is_ok();
        let _ = lanyard::services::profiles::inspect(&body);
        (c, r)
    })
}

fn too_deep(e: &lanyard::protocol::ProtocolError) -> bool {
    e.to_string().contains("nested more than 64 deep")
}

// ---------------------------------------------------------------------------------------------
// Plist properties.

proptest! {
    #![proptest_config(cases(8192))]

    /// Arbitrary bytes, and arbitrary bytes behind the markers that pick a parser, are refused
    /// without a panic or a large allocation.
    #[test]
    fn plist_arbitrary_bytes_are_refused(
        prefix in prop_oneof![Just(&b""[..]), Just(&b"bplist00"[..]), Just(&b"<?xml version=\"1.0\"?><plist><dict>"[..]), Just(&b"<dict><key>"[..])],
        tail in vec(any::<u8>(), 0..1024),
    ) {
        let body = [prefix, tail.as_slice()].concat();
        let ((c, r), largest) = parse_plist_everywhere(body);
        prop_assert!(!c && !r);
        prop_assert!(largest < ALLOCATION_BOUND, "allocated {largest} bytes at once");
    }

    /// Any dictionary of nested values, written as XML, is read back exactly.
    #[test]
    fn plist_xml_round_trips(dict in report_dict(xml_string().boxed())) {
        let body = xml(&Value::Dictionary(dict.clone()));
        let parsed = report::parse(&body).map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&body))))?;
        prop_assert!(same(&Value::Dictionary(parsed.raw), &Value::Dictionary(dict)));
    }

    /// Any dictionary of nested values (any strings), written as a binary plist, is read back
    /// exactly.
    #[test]
    fn plist_binary_round_trips(dict in report_dict(any::<String>().boxed())) {
        let body = binary(&Value::Dictionary(dict.clone()));
        let parsed = report::parse(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(same(&Value::Dictionary(parsed.raw), &Value::Dictionary(dict)));
    }

    /// Mutated XML plists never panic, and whatever Lanyard accepts, the plist crate reads as
    /// the same dictionary (nothing accepted that the format forbids, nothing read differently).
    #[test]
    fn plist_xml_mutations_agree_with_the_plist_crate(dict in report_dict(xml_string().boxed()), m in mutations()) {
        let body = apply(&xml(&Value::Dictionary(dict)), &m);
        let (ours, largest) = {
            let body = body.clone();
            on_small_stack(move || report::parse(&body).map(|r| r.raw))
        };
        prop_assert!(largest < ALLOCATION_BOUND);
        if let Ok(ours) = ours {
            let theirs = plist_crate_reads(&body);
            prop_assert!(
                theirs.as_ref().is_some_and(|t| same(&Value::Dictionary(t.clone()), &Value::Dictionary(ours.clone()))),
                "Lanyard read {ours:?}\nthe plist crate read {theirs:?}\nfrom {}", String::from_utf8_lossy(&body)
            );
        }
        let _ = parse_plist_everywhere(body);
    }

    /// Mutated binary plists never panic or allocate much, and what Lanyard accepts the plist
    /// crate reads the same way.
    #[test]
    fn plist_binary_mutations_agree_with_the_plist_crate(dict in report_dict(any::<String>().boxed()), m in mutations()) {
        let body = apply(&binary(&Value::Dictionary(dict)), &m);
        let (ours, largest) = {
            let body = body.clone();
            on_small_stack(move || report::parse(&body).map(|r| r.raw))
        };
        prop_assert!(largest < ALLOCATION_BOUND, "allocated {largest} bytes at once");
        if let Ok(ours) = ours {
            let theirs = plist_crate_reads(&body);
            prop_assert!(theirs.is_some_and(|t| same(&Value::Dictionary(t), &Value::Dictionary(ours))));
        }
        let (_, largest) = parse_plist_everywhere(body);
        prop_assert!(largest < ALLOCATION_BOUND, "allocated {largest} bytes at once");
    }

    /// A binary plist's trailer and object markers with arbitrary sizes (offset and reference
    /// sizes, object count, root, offset table, lengths up to 2^64) are refused, never trusted
    /// for an allocation.
    #[test]
    fn plist_binary_length_fields_are_not_trusted(
        sizes in (0u8..=16, 0u8..=16),
        count in prop_oneof![Just(u64::MAX), Just(1u64 << 62), Just(1u64 << 32), 0u64..64],
        root in prop_oneof![Just(u64::MAX), 0u64..4],
        table in prop_oneof![Just(u64::MAX), Just(1u64 << 40), 0u64..64],
        marker in prop_oneof![Just(0x4Fu8), Just(0x5F), Just(0x6F), Just(0xAF), Just(0xDF), any::<u8>()],
        length in prop_oneof![Just(u64::MAX), Just(1u64 << 40), Just(1u64 << 31), any::<u64>()],
    ) {
        let mut body = b"bplist00".to_vec();
        body.push(marker);
        body.push(0x13);
        body.extend_from_slice(&length.to_be_bytes());
        body.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&[0; 6]);
        body.extend_from_slice(&[sizes.0, sizes.1]);
        body.extend_from_slice(&count.to_be_bytes());
        body.extend_from_slice(&root.to_be_bytes());
        body.extend_from_slice(&table.to_be_bytes());
        let ((c, r), largest) = parse_plist_everywhere(body);
        prop_assert!(!c && !r);
        prop_assert!(largest < ALLOCATION_BOUND, "allocated {largest} bytes at once");
    }

    /// Nesting: up to 64 levels (the root dictionary counts) parse, beyond is the nesting
    /// error, for any mix of arrays and dictionaries, on a 256 KiB stack.
    #[test]
    fn plist_nesting_is_bounded(
        shape in prop_oneof![vec(any::<bool>(), 55..75), vec(any::<bool>(), 1..1500)],
        binary_form in any::<bool>(),
    ) {
        // Each level is an array (true) or a dictionary with one key (false).
        let mut inner = Value::Array(vec![]);
        for &array in shape.iter().skip(1).rev() {
            inner = if array { Value::Array(vec![inner]) } else { Value::Dictionary([("k", inner)].into_iter().collect()) };
        }
        let mut d = Dictionary::new();
        d.insert("Status".into(), "Idle".into());
        d.insert("UDID".into(), "X".into());
        d.insert("k".into(), inner);
        let depth = shape.len() + 1; // the root dictionary and one level per entry
        let body = if binary_form { binary(&Value::Dictionary(d)) } else { xml(&Value::Dictionary(d)) };
        // Dropping the built value recurses once per level: let a plain thread do it.
        let (result, _) = on_small_stack(move || report::parse(&body).map(|_| ()));
        if depth <= 64 {
            prop_assert!(result.is_ok(), "{depth} levels: {result:?}");
        } else {
            prop_assert!(result.as_ref().is_err_and(too_deep), "{depth} levels: {result:?}");
        }
    }
}

/// Check-in messages built field by field parse to the same fields, from XML and binary.
mod checkin_messages {
    use super::*;
    use lanyard::protocol::CheckinMessage;

    #[derive(Debug, Clone)]
    struct Fields {
        udid: String,
        topic: String,
        serial: Option<String>,
        device_name: Option<String>,
        token: Vec<u8>,
        push_magic: String,
        unlock: Option<Vec<u8>>,
        awaiting: Option<bool>,
        extra: Vec<(String, Value)>,
    }

    fn fields() -> impl Strategy<Value = Fields> {
        (
            "[0-9A-F-]{1,128}",
            "com\\.apple\\.mgmt\\.[\\PC]{0,40}",
            proptest::option::of(xml_string()),
            proptest::option::of(xml_string()),
            vec(any::<u8>(), 0..64),
            xml_string(),
            proptest::option::of(vec(any::<u8>(), 0..64)),
            proptest::option::of(any::<bool>()),
            vec(("[a-z]{1,12}", value(xml_string().boxed())), 0..3),
        )
            .prop_map(|(udid, topic, serial, device_name, token, push_magic, unlock, awaiting, extra)| Fields {
                udid,
                topic,
                serial,
                device_name,
                token,
                push_magic,
                unlock,
                awaiting,
                extra,
            })
    }

    fn dict(kind: &str, f: &Fields) -> Dictionary {
        let mut d = Dictionary::new();
        // Unknown keys first: the message's own keys win.
        for (k, v) in &f.extra {
            d.insert(format!("Extra{k}"), v.clone());
        }
        d.insert("MessageType".into(), kind.into());
        d.insert("UDID".into(), f.udid.clone().into());
        d.insert("Topic".into(), f.topic.clone().into());
        if let Some(s) = &f.serial {
            d.insert("SerialNumber".into(), s.clone().into());
        }
        if let Some(s) = &f.device_name {
            d.insert("DeviceName".into(), s.clone().into());
        }
        d.insert("Token".into(), Value::Data(f.token.clone()));
        d.insert("PushMagic".into(), f.push_magic.clone().into());
        if let Some(u) = &f.unlock {
            d.insert("UnlockToken".into(), Value::Data(u.clone()));
        }
        if let Some(a) = f.awaiting {
            d.insert("AwaitingConfiguration".into(), a.into());
        }
        d
    }

    fn check(msg: CheckinMessage, f: &Fields) -> Result<(), TestCaseError> {
        prop_assert_eq!(&msg.ids().device_id, &f.udid);
        match msg {
            CheckinMessage::Authenticate(a) => {
                prop_assert_eq!(&a.topic, &f.topic);
                prop_assert_eq!(&a.serial_number, &f.serial);
                prop_assert_eq!(&a.device_name, &f.device_name);
            }
            CheckinMessage::TokenUpdate(t) => {
                prop_assert_eq!(&t.topic, &f.topic);
                prop_assert_eq!(&t.token, &f.token);
                prop_assert_eq!(&t.push_magic, &f.push_magic);
                prop_assert_eq!(&t.unlock_token, &f.unlock);
                prop_assert_eq!(t.awaiting_configuration, f.awaiting == Some(true));
            }
            CheckinMessage::CheckOut(c) => prop_assert_eq!(c.topic.as_deref(), Some(f.topic.as_str())),
            other => prop_assert!(false, "parsed as {}", other.message_type()),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(cases(4096))]

        #[test]
        fn check_in_messages_round_trip(
            kind in prop_oneof![Just("Authenticate"), Just("TokenUpdate"), Just("CheckOut")],
            f in fields(),
            binary_form in any::<bool>(),
        ) {
            let d = Value::Dictionary(dict(kind, &f));
            let body = if binary_form { binary(&d) } else { xml(&d) };
            let msg = checkin::parse(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(msg.message_type(), kind);
            check(msg, &f)?;
        }

        /// A mutated check-in message never panics, and one that still parses as the same kind
        /// of message is what the plist crate reads from the same bytes.
        #[test]
        fn check_in_mutations_never_panic(
            kind in prop_oneof![Just("Authenticate"), Just("TokenUpdate"), Just("CheckOut")],
            f in fields(),
            binary_form in any::<bool>(),
            m in mutations(),
        ) {
            let d = Value::Dictionary(dict(kind, &f));
            let body = apply(&if binary_form { binary(&d) } else { xml(&d) }, &m);
            let ((c, _), largest) = parse_plist_everywhere(body.clone());
            prop_assert!(largest < ALLOCATION_BOUND);
            if c {
                prop_assert!(plist_crate_reads(&body).is_some(), "accepted: {}", String::from_utf8_lossy(&body));
            }
        }
    }
}

/// The shapes that aborted the server (issue 23, D2), on a 256 KiB stack: each is the nesting
/// error, from check-in and connect parsing and from profile inspection.
#[test]
fn d2_hostile_nesting_is_a_clear_error_on_a_small_stack() {
    let bodies = [
        ("32,500 <array>", nested_xml("<array>", "</array>", 32_500)),
        ("40,000 <dict>", nested_xml("<dict><key>a</key>", "</dict>", 40_000)),
        ("100,000 unclosed <array>", nested_xml("<array>", "", 100_000)),
        ("50,000-level binary plist", chained_bplist(50_000, 1)),
    ];
    for (what, body) in bodies {
        assert!(body.len() < lanyard::faces::device::CONNECT_BODY_LIMIT, "{what}");
        let (results, _) = on_small_stack(move || {
            (checkin::parse(&body).map(|_| ()), report::parse(&body).map(|_| ()), lanyard::services::profiles::inspect(&body).map(|_| ()))
        });
        assert!(results.0.as_ref().is_err_and(too_deep), "{what}: check-in {:?}", results.0);
        assert!(results.1.as_ref().is_err_and(too_deep), "{what}: connect {:?}", results.1);
        assert!(results.2.is_err(), "{what}: a profile");
    }
}

/// Forty arrays each holding the next twice: 2^40 values from a few hundred bytes.
#[test]
fn binary_plist_expansion_bomb_is_refused() {
    let mut body = chained_bplist(40, 2);
    assert!(body.len() < 1024);
    let (result, largest) = on_small_stack(move || report::parse(&body).map(|_| ()));
    assert!(result.is_err_and(|e| e.to_string().contains("expands to more than")));
    assert!(largest < ALLOCATION_BOUND);
    body = chained_bplist(40, 2);
    assert!(lanyard::services::profiles::inspect(&body).is_err());
}

/// Regression (found by `plist_xml_mutations_agree_with_the_plist_crate`): anything after the
/// root element of an XML plist was ignored, so a body with a second root, or bytes that are
/// no XML at all after `</dict>`, parsed as the first dictionary.
#[test]
fn plist_data_after_the_root_is_refused() {
    let head = "<?xml version=\"1.0\"?><plist version=\"1.0\"><dict><key>Status</key><string>Idle</string>\
                <key>UDID</key><string>X</string></dict>";
    assert!(report::parse(format!("{head}</plist>").as_bytes()).is_ok());
    for tail in ["<dict><key>Status</key><string>Error</string></dict></plist>", "<string>x</string></plist>", "</dict></plist>", "garbage"]
    {
        let body = format!("{head}{tail}");
        assert!(report::parse(body.as_bytes()).is_err(), "accepted {body}");
        assert!(plist_crate_reads(body.as_bytes()).is_none(), "the plist crate accepts {body}");
    }
}

// ---------------------------------------------------------------------------------------------
// Keys and certificates.

fn name(cn: &str) -> X509Name {
    let mut n = X509Name::builder().expect("name");
    n.append_entry_by_text("CN", cn).expect("CN");
    n.build()
}

/// A CA that issues device identities, made once (RSA keys are slow in a debug build).
struct Ca {
    cert: X509,
    key: PKey<Private>,
}

fn make_ca(cn: &str) -> Ca {
    let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).expect("rsa")).expect("key");
    let mut b = X509Builder::new().expect("builder");
    b.set_version(2).expect("version");
    let mut serial = BigNum::new().expect("bn");
    serial.rand(64, MsbOption::ONE, false).expect("rand");
    b.set_serial_number(&serial.to_asn1_integer().expect("serial")).expect("serial");
    b.set_subject_name(&name(cn)).expect("subject");
    b.set_issuer_name(&name(cn)).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time")).expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(30).expect("time")).expect("na");
    b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc")).expect("bc");
    b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().expect("ku")).expect("ku");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    Ca { cert: b.build(), key }
}

/// A device: its key, its SCEP requester, and the identity certificate the CA issued it.
struct Device {
    requester: Requester,
    identity: X509,
}

const CHALLENGE: &str = "enr_property-test-challenge";

struct Keys {
    ca: Ca,
    other_ca: Ca,
    device: Device,
    /// A device whose identity comes from `other_ca`.
    stranger: Device,
}

fn make_device(ca: &Ca, cn: &str) -> Device {
    let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).expect("rsa")).expect("key");
    let requester = Requester::new(key, cn, CHALLENGE).expect("requester");
    let identity =
        lanyard::services::enrollment::identity::issue_certificate(&requester.csr().expect("csr"), &ca.cert, &ca.key, 30).expect("issue");
    Device { requester, identity }
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let ca = make_ca("Lanyard Property Test CA");
        let other_ca = make_ca("Someone Else's CA");
        let (device, stranger) = (make_device(&ca, "device"), make_device(&other_ca, "stranger"));
        Keys { ca, other_ca, device, stranger }
    })
}

fn sign(body: &[u8], d: &Device) -> Vec<u8> {
    cms::sign_detached(body, &d.identity, &d.requester.key).expect("sign")
}

fn sha256(cert: &X509) -> [u8; 32] {
    openssl::sha::sha256(&cert.to_der().expect("der"))
}

/// A realistic device body to sign.
fn idle_body(udid: &str) -> Vec<u8> {
    let mut d = Dictionary::new();
    d.insert("Status".into(), "Idle".into());
    d.insert("UDID".into(), udid.into());
    xml(&Value::Dictionary(d))
}

// ---------------------------------------------------------------------------------------------
// Mdm-Signature properties.

proptest! {
    #![proptest_config(cases(2048))]

    /// Any header value is refused (it is base64 of nothing signed), by the full check and the
    /// cached one.
    #[test]
    fn signature_arbitrary_headers_are_refused(header in prop_oneof!["[A-Za-z0-9+/=\\s]{0,200}", any::<String>()], body in vec(any::<u8>(), 0..64)) {
        let k = keys();
        prop_assert!(cms::verify_mdm_signature(&body, &header, &k.ca.cert).is_err());
        prop_assert!(SignerCache::new(4).verify(&body, &header, &k.ca.cert).is_err());
    }

    /// Any DER is refused, by both checks, and the DER reader never panics on it.
    #[test]
    fn signature_arbitrary_der_is_refused(
        der in prop_oneof![vec(any::<u8>(), 0..512), vec(any::<u8>(), 0..64).prop_map(|t| [&[0x30u8, 0x80, 0x06, 0x09][..], &t].concat())],
    ) {
        let k = keys();
        let body = b"body";
        prop_assert!(cms::verify_detached_der(body, &der, &k.ca.cert).is_err());
        prop_assert!(SignerCache::new(4).verify(body, &STANDARD.encode(&der), &k.ca.cert).is_err());
        let mut r = lanyard::protocol::der::Reader::new(&der);
        while let Some(tlv) = r.next_tlv() {
            prop_assert!(tlv.raw.len() <= der.len());
            let mut children = tlv.children();
            while children.next_tlv().is_some() {}
        }
    }

    /// A mutated signature verifies, if at all, only as the device that signed the body, and
    /// the cached fast path (warmed by the genuine signature) accepts nothing that the full
    /// check refuses.
    #[test]
    fn signature_mutations_never_verify_as_anyone_else(m in mutations(), udid in "[0-9A-F]{8,40}") {
        let k = keys();
        let body = idle_body(&udid);
        let der = sign(&body, &k.device);
        let cache = SignerCache::new(4);
        let genuine = cache.verify(&body, &STANDARD.encode(&der), &k.ca.cert).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(genuine.sha256, sha256(&k.device.identity));
        let mutated = apply(&der, &m);
        let full = cms::verify_detached_der(&body, &mutated, &k.ca.cert);
        if let Ok(signer) = &full {
            prop_assert_eq!(sha256(signer), sha256(&k.device.identity));
        }
        match cache.verify(&body, &STANDARD.encode(&mutated), &k.ca.cert) {
            Ok(signer) => {
                prop_assert_eq!(signer.sha256, sha256(&k.device.identity));
                prop_assert!(full.is_ok(), "the cache accepted a signature the full check refuses: {:?}", full.err());
            }
            Err(_) => {}
        }
    }

    /// A genuine signature never verifies over a changed body, cold or warm cache; another
    /// CA's device never verifies at all.
    #[test]
    fn signature_over_a_changed_body_never_verifies(m in mutations(), udid in "[0-9A-F]{8,40}") {
        let k = keys();
        let body = idle_body(&udid);
        let header = STANDARD.encode(sign(&body, &k.device));
        let cache = SignerCache::new(4);
        prop_assert!(cache.verify(&body, &header, &k.ca.cert).is_ok());
        let changed_body = apply(&body, &m);
        if changed(&body, &changed_body) {
            prop_assert!(cms::verify_mdm_signature(&changed_body, &header, &k.ca.cert).is_err());
            prop_assert!(cache.verify(&changed_body, &header, &k.ca.cert).is_err());
            prop_assert!(SignerCache::new(4).verify(&changed_body, &header, &k.ca.cert).is_err());
        }
        let stranger = STANDARD.encode(sign(&body, &k.stranger));
        prop_assert!(cache.verify(&body, &stranger, &k.ca.cert).is_err());
        prop_assert!(cms::verify_mdm_signature(&body, &stranger, &k.ca.cert).is_err());
        prop_assert!(cms::verify_mdm_signature(&body, &stranger, &k.other_ca.cert).is_ok());
    }
}

/// The DER reader under the signature fast path: deep indefinite lengths stop at its bound on
/// a small stack, and a long-form length never reads past the buffer.
#[test]
fn der_reader_is_bounded() {
    let (none, _) = on_small_stack(|| {
        let mut deep = Vec::new();
        for _ in 0..100_000 {
            deep.extend([0x30, 0x80]);
        }
        lanyard::protocol::der::Reader::new(&deep).next_tlv().is_none()
    });
    assert!(none);
    for len in [[0x84, 0xff, 0xff, 0xff, 0xff], [0x84, 0x7f, 0xff, 0xff, 0xff], [0x83, 0x01, 0x00, 0x00, 0x00]] {
        let der = [&[0x30u8][..], &len, &[1, 2, 3]].concat();
        assert!(lanyard::protocol::der::Reader::new(&der).next_tlv().is_none());
    }
}

// ---------------------------------------------------------------------------------------------
// SCEP properties.

fn pkcs_req(requester: &Requester) -> scep::client::BuiltMessage {
    requester.pkcs_req(&keys().ca.cert, Cipher::aes_128_cbc(), MessageDigest::sha256(), MessageType::PkcsReq).expect("PKCSReq")
}

fn parse_scep(der: Vec<u8>) -> Result<scep::ScepRequest, scep::ScepError> {
    let k = keys();
    scep::parse_pki_message(&der, &k.ca.cert, &k.ca.key)
}

/// Arbitrary JSON values, nested up to `depth`.
fn json_value(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        "[a-z.-]{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(depth, 64, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-z-]{1,10}", inner, 0..6).prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(cases(1024))]

    /// A DDM status report of any shape never panics the parser: it is read or refused, and
    /// what is read has only dotted names of the report's own keys.
    #[test]
    fn ddm_status_reports_never_panic(items in json_value(20), errors in json_value(3), full in any::<bool>()) {
        let body = serde_json::json!({"StatusItems": items, "Errors": errors, "FullReport": full}).to_string();
        if let Ok(r) = lanyard::protocol::ddm::parse_status(body.as_bytes()) {
            prop_assert!(r.items.iter().all(|(k, _)| !k.is_empty() && !k.starts_with('.')));
        }
    }

    /// Arbitrary bytes, and mutations of a real report, are read or refused without a panic.
    #[test]
    fn ddm_status_bytes_never_panic(bytes in vec(any::<u8>(), 0..2048), m in mutations()) {
        let _ = lanyard::protocol::ddm::parse_status(&bytes);
        let real = br#"{"StatusItems":{"device":{"operating-system":{"version":"18.2"}},"management":{"declarations":{"configurations":[{"identifier":"c","server-token":"t","active":true,"valid":"valid"}]}}},"Errors":[]}"#;
        let _ = lanyard::protocol::ddm::parse_status(&apply(real, &m));
    }
}

/// A MachineInfo signed as an iPad signs it at ADE enrolment, and the root it chains to.
struct SignedMachineInfo {
    der: Vec<u8>,
    plist: Vec<u8>,
    root: X509,
}

fn signed_machine_info() -> &'static SignedMachineInfo {
    static S: OnceLock<SignedMachineInfo> = OnceLock::new();
    S.get_or_init(|| {
        let apple = lanyard_mocks::AppleDeviceCa::new().expect("CA");
        let der = apple.machine_info("DMPXPROP0001", "00008101-000A1B2C3D4E5F60").expect("sign");
        let plist = lanyard_mocks::machine_info_plist("DMPXPROP0001", "00008101-000A1B2C3D4E5F60");
        SignedMachineInfo { der, plist, root: apple.root.clone() }
    })
}

proptest! {
    #![proptest_config(cases(1024))]

    /// A mutated MachineInfo never panics the verifier or the parser, and whatever still
    /// verifies says what the device signed: a changed serial never gets through.
    #[test]
    fn machine_info_mutations_never_change_what_was_signed(m in mutations()) {
        let s = signed_machine_info();
        let mutated = apply(&s.der, &m);
        if let Ok((content, _)) = cms::verify_attached(&mutated, std::slice::from_ref(&s.root)) {
            prop_assert_eq!(&content, &s.plist);
            let info = lanyard::protocol::machine_info::parse(&content).expect("the signed plist parses");
            prop_assert_eq!(info.serial.as_str(), "DMPXPROP0001");
        }
    }

    /// Arbitrary bytes, as a body or as a plist, are refused without a panic.
    #[test]
    fn machine_info_arbitrary_bytes_are_refused(bytes in vec(any::<u8>(), 0..1024)) {
        prop_assert!(cms::verify_attached(&bytes, std::slice::from_ref(&signed_machine_info().root)).is_err());
        let _ = lanyard::protocol::machine_info::parse(&bytes);
    }
}

proptest! {
    #![proptest_config(cases(2048))]

    /// Arbitrary bytes, and arbitrary bytes behind a SignedData header, are refused.
    #[test]
    fn scep_arbitrary_bytes_are_refused(
        prefix in prop_oneof![Just(vec![]), Just(vec![0x30, 0x80, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02, 0xA0, 0x80])],
        tail in vec(any::<u8>(), 0..1024),
    ) {
        prop_assert!(parse_scep([prefix, tail].concat()).is_err());
    }

    /// A mutated PKCSReq never panics; if it still parses, what the requester signed (message
    /// type, transaction, nonce, CSR and challenge) is unchanged.
    #[test]
    fn scep_mutations_never_change_what_was_signed(m in mutations()) {
        let original = pkcs_req(&keys().device.requester);
        let mutated = apply(&original.der, &m);
        if let Ok(req) = parse_scep(mutated) {
            prop_assert_eq!(req.message_type, MessageType::PkcsReq);
            prop_assert_eq!(&req.transaction_id, &original.transaction_id);
            prop_assert_eq!(&req.sender_nonce, &original.sender_nonce);
            prop_assert_eq!(&req.message_data, &keys().device.requester.csr_der);
            prop_assert_eq!(req.challenge.as_deref(), Some(CHALLENGE));
        }
    }

    /// A correctly signed and encrypted pkiMessage around a mutated PKCS#10 request: the CSR
    /// and challengePassword parsing in the OpenSSL FFI never panics, and a CSR that parses
    /// without a readable challenge has none.
    #[test]
    fn scep_mutated_csr_never_panics(m in mutations()) {
        let k = keys();
        let mut requester = k.device.requester.with_cert(k.device.requester.cert.clone());
        requester.csr_der = apply(&k.device.requester.csr_der, &m);
        let built = pkcs_req(&requester);
        match parse_scep(built.der) {
            Ok(req) => {
                prop_assert_eq!(&req.message_data, &requester.csr_der);
                prop_assert!(req.csr.is_some());
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    /// The `message` parameter of a GET PKIOperation: any string is decoded or refused without
    /// a panic, and any bytes survive every encoding clients use, taken from the query as the
    /// server takes it (`raw_query_param` and `decode_keeping_plus`: decoded once, `+` kept).
    #[test]
    fn scep_get_message_param_round_trips(data in vec(any::<u8>(), 0..600), form in 0u8..6, junk in any::<String>()) {
        let _ = scep::decode_message_param(&junk);
        let query = format!("operation=PKIOperation&message={}", client_encoding(&data, form));
        let message = lanyard::faces::device::decode_keeping_plus(lanyard::faces::device::raw_query_param(&query, "message").expect("message"));
        let decoded = scep::decode_message_param(&message).map_err(|e| TestCaseError::fail(format!("{e}: {query}")))?;
        prop_assert_eq!(decoded, data);
    }

    /// After form-style decoding (`+` turned into spaces, as `Query` does) the parameter still
    /// decodes, as long as no `+` stood at either end (`decode_message_param` trims first: the
    /// reason the server passes the raw parameter, see `plus_at_the_end_of_a_get_message`).
    #[test]
    fn scep_get_message_param_survives_form_decoding(data in vec(any::<u8>(), 0..600), form in 0u8..6) {
        let raw = client_encoding(&data, form);
        let query = format!("operation=PKIOperation&message={raw}");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&query).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let message = &pairs.iter().find(|(k, _)| k == "message").expect("message").1;
        if !message.starts_with(' ') && !message.ends_with(' ') {
            let decoded = scep::decode_message_param(message).map_err(|e| TestCaseError::fail(format!("{e}: {query}")))?;
            prop_assert_eq!(decoded, data);
        }
    }
}

/// `data` as a SCEP client puts it in `?message=`, in one of six ways.
fn client_encoding(data: &[u8], form: u8) -> String {
    let std = STANDARD.encode(data);
    match form {
        // As most clients send it: standard base64, unescaped.
        0 => std,
        // Percent-encoded.
        1 => std.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D"),
        // URL-safe, padded and not.
        2 => URL_SAFE.encode(data),
        3 => URL_SAFE_NO_PAD.encode(data),
        // Line-wrapped every 64 characters, as PEM-minded clients do, with the breaks escaped.
        4 => std.as_bytes().chunks(64).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("%0A"),
        // Escaped twice.
        _ => std.replace('+', "%252B").replace('/', "%252F").replace('=', "%253D"),
    }
}

// ---------------------------------------------------------------------------------------------
// The device face over HTTP: one real Lanyard (SQLite in a temporary directory), answering
// through its router on a runtime whose threads have small stacks.

struct Server {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    ctx: lanyard::context::Ctx,
    token: String,
    _dir: tempfile::TempDir,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_stack_size(512 * 1024)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env = std::collections::BTreeMap::new();
        env.insert("LANYARD_DATA_DIR".to_owned(), dir.path().join("data").display().to_string());
        env.insert("LANYARD_DATABASE_URL".to_owned(), format!("sqlite://{}", dir.path().join("data").join("lanyard.db").display()));
        env.insert("LANYARD_LISTEN".to_owned(), "127.0.0.1:0".to_owned());
        env.insert("LANYARD_HOSTNAME".to_owned(), "localhost".to_owned());
        env.insert("LANYARD_TLS".to_owned(), "false".to_owned());
        env.insert("LANYARD_ADMIN_PASSWORD".to_owned(), "correct-horse-battery-staple".to_owned());
        env.insert("LANYARD_APNS_URL".to_owned(), "https://127.0.0.1:9".to_owned());
        let config = lanyard::config::Config::from_sources(None, &env).expect("config");
        let (ctx, token) = runtime.block_on(async {
            let prepared = lanyard::setup::prepare(config, "http://localhost:8443".into(), Arc::new(lanyard::clock::SystemClock))
                .await
                .expect("prepare");
            let token = prepared
                .ctx
                .enrollment
                .create_enrollment_token(&lanyard::services::auth::Actor::system(), "property tests", None, None, None)
                .await
                .expect("token")
                .token;
            (prepared.ctx, token)
        });
        let app = lanyard::faces::server::app(ctx.clone());
        Server { runtime, app, ctx, token, _dir: dir }
    })
}

/// One request through the router: status and body.
fn call(method: &str, uri: &str, headers: &[(&str, String)], body: Vec<u8>) -> (u16, Vec<u8>) {
    use tower::ServiceExt as _;
    let s = server();
    let mut req = axum::http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(axum::body::Body::from(body)).expect("request");
    let app = s.app.clone();
    s.runtime.block_on(async move {
        let resp = app.oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        (status, body.to_vec())
    })
}

/// Percent-encodes every byte that is not unreserved.
fn escape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

proptest! {
    #![proptest_config(cases(512))]

    /// `/mdm/enroll` with any query: never a profile, never a server error.
    #[test]
    fn http_enroll_arbitrary_queries_are_refused(q in vec(any::<u8>(), 0..128), raw in "[ -~]{0,64}", as_token in any::<bool>()) {
        let query = if as_token { format!("token={}", escape(&q)) } else { escape(raw.as_bytes()).replace("%3D", "=").replace("%26", "&") };
        let (status, _) = call("GET", &format!("/mdm/enroll?{query}"), &[], vec![]);
        prop_assert!(matches!(status, 400 | 403), "GET /mdm/enroll?{query}: {status}");
    }

    /// A live enrolment token changed in any way opens nothing.
    #[test]
    fn http_enroll_mutated_tokens_are_refused(m in mutations()) {
        let token = server().token.as_bytes();
        let mutated = apply(token, &m);
        if changed(token, &mutated) {
            let (status, _) = call("GET", &format!("/mdm/enroll?token={}", escape(&mutated)), &[], vec![]);
            prop_assert!(matches!(status, 400 | 403), "{status}");
        }
    }

    /// A PKCSReq by GET, its base64 left unescaped in the query (`+` and `/` as they are), is
    /// read exactly as by POST: both answer with a CertRep the requester can verify.
    #[test]
    fn http_scep_get_reads_the_message_as_post_does(seed in any::<u64>()) {
        let s = server();
        let requester = &keys().device.requester;
        let ca = &s.ctx.pki.ca_cert;
        // New nonces until the base64 holds a `+`, the character form decoding turns into a space.
        let (mut built, mut b64) = (None, String::new());
        for _ in 0..64 {
            let m = requester.pkcs_req(ca, Cipher::aes_128_cbc(), MessageDigest::sha256(), MessageType::PkcsReq).expect("PKCSReq");
            b64 = STANDARD.encode(&m.der);
            built = Some(m);
            if b64.contains('+') {
                break;
            }
        }
        let built = built.expect("built");
        let padding = if seed % 2 == 0 { b64.clone() } else { b64.replace('=', "%3D") };
        let (get_status, get_body) = call("GET", &format!("/scep?operation=PKIOperation&message={padding}"), &[], vec![]);
        prop_assert_eq!(get_status, 200, "{}", String::from_utf8_lossy(&get_body));
        let (post_status, post_body) = call("POST", "/scep?operation=PKIOperation", &[], built.der.clone());
        prop_assert_eq!(post_status, 200);
        for body in [get_body, post_body] {
            let rep = requester.decode_cert_rep(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&rep.transaction_id, &built.transaction_id);
            prop_assert_eq!(&rep.recipient_nonce, &built.sender_nonce);
        }
    }

    /// SCEP by POST with any body, or mutations of a real request: a 400 or a CertRep, never a
    /// server error.
    #[test]
    fn http_scep_post_never_fails_the_server(m in mutations(), junk in vec(any::<u8>(), 0..256), use_junk in any::<bool>()) {
        let s = server();
        let body = if use_junk {
            junk
        } else {
            let built = keys().device.requester.pkcs_req(&s.ctx.pki.ca_cert, Cipher::aes_128_cbc(), MessageDigest::sha256(), MessageType::PkcsReq).expect("PKCSReq");
            apply(&built.der, &m)
        };
        let (status, _) = call("POST", "/scep?operation=PKIOperation", &[], body);
        prop_assert!(matches!(status, 200 | 400), "{status}");
    }
}

/// D2 over HTTP: the hostile shapes, signed by a genuine device identity so that they reach the
/// parsers, answer 400 on worker threads with small stacks, and the server keeps answering.
#[test]
fn http_d2_signed_hostile_nesting_answers_400() {
    let s = server();
    let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).expect("rsa")).expect("key");
    let requester = Requester::new(key, "deep-device", CHALLENGE).expect("requester");
    let identity = lanyard::services::enrollment::identity::issue_certificate(
        &requester.csr().expect("csr"),
        &s.ctx.pki.ca_cert,
        &s.ctx.pki.ca_key,
        30,
    )
    .expect("issue");
    let bodies =
        [nested_xml("<array>", "</array>", 32_500), nested_xml("<dict><key>a</key>", "</dict>", 40_000), chained_bplist(50_000, 1)];
    for body in bodies {
        let header = STANDARD.encode(cms::sign_detached(&body, &identity, &requester.key).expect("sign"));
        for path in ["/mdm/connect", "/mdm/checkin"] {
            if path == "/mdm/checkin" && body.len() > lanyard::faces::device::CHECKIN_BODY_LIMIT {
                continue;
            }
            let (status, text) = call("PUT", path, &[("mdm-signature", header.clone())], body.clone());
            let text = String::from_utf8_lossy(&text);
            assert_eq!(status, 400, "{path}: {text}");
            assert!(text.contains("nested more than 64 deep"), "{path}: {text}");
        }
        // Unsigned, the same body is refused before it is parsed.
        let (status, _) = call("PUT", "/mdm/connect", &[], body);
        assert!(matches!(status, 400 | 403), "{status}");
    }
    let (status, _) = call("GET", "/scep?operation=GetCACaps", &[], vec![]);
    assert_eq!(status, 200, "the server still answers");
}

/// Regression (found by `scep_get_message_param_round_trips`): a GET PKIOperation whose base64
/// ends in `+`, sent without padding, lost that `+` (form decoding made it a space, which was
/// trimmed) and was refused with 400 or read as other bytes. About one GET enrolment in a
/// hundred from a client that strips the padding.
#[test]
fn plus_at_the_end_of_a_get_message() {
    let s = server();
    // Only a message whose length is a multiple of 3 can end in `+` (otherwise the last
    // character carries padding bits): the subject's length moves it (3 bytes a character, and
    // 16 more each time the encrypted CSR needs another block), the nonce varies the end.
    let key = keys().device.requester.key.clone();
    let (requester, built, b64) = (0..48)
        .find_map(|n| {
            let requester = Requester::new(key.clone(), &format!("device{}", "x".repeat(n)), CHALLENGE).ok()?;
            let first =
                requester.pkcs_req(&s.ctx.pki.ca_cert, Cipher::aes_128_cbc(), MessageDigest::sha256(), MessageType::PkcsReq).ok()?;
            if first.der.len() % 3 != 0 {
                return None;
            }
            (0..2000)
                .find_map(|_| {
                    let m = requester
                        .pkcs_req(&s.ctx.pki.ca_cert, Cipher::aes_128_cbc(), MessageDigest::sha256(), MessageType::PkcsReq)
                        .ok()?;
                    let b64 = STANDARD.encode(&m.der);
                    b64.ends_with('+').then_some((m, b64))
                })
                .map(|(m, b64)| (requester, m, b64))
        })
        .expect("a message whose base64 ends in +");
    let (status, body) = call("GET", &format!("/scep?operation=PKIOperation&message={b64}"), &[], vec![]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let rep = requester.decode_cert_rep(&body).expect("a CertRep");
    assert_eq!(rep.transaction_id, built.transaction_id);
}

/// The SCEP seeds of the fuzz targets (`fuzz/seeds/scep_pki_message`,
/// `fuzz/seeds/scep_get_message`): PKCSReqs to the fuzz fixtures' CA, made by the device side
/// of SCEP, in each cipher and digest a device may use, each checked to be one the server reads
/// with that CA. CI writes them to a temporary directory; to refresh the committed seeds:
/// `LANYARD_WRITE_FUZZ_SEEDS=1 cargo test --test parsers_proptest fuzz_seeds`.
#[test]
fn fuzz_seeds_are_messages_the_server_reads() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let read = |name: &str| std::fs::read(fixtures.join("fixtures").join(name)).expect("fixture");
    let ca = X509::from_pem(&read("ca.pem")).expect("CA");
    let ca_key = PKey::private_key_from_pem(&read("ca-test-key.pem")).expect("CA key");
    let key = PKey::private_key_from_pem(&read("device-test-key.pem")).expect("key");
    let requester = Requester::new(key.clone(), "fuzz-device", "enr_fuzz-challenge").expect("requester");
    let renewal = requester.with_cert(X509::from_pem(&read("device.pem")).expect("device"));
    let scratch = tempfile::tempdir().expect("temporary directory");
    let dir = match std::env::var_os("LANYARD_WRITE_FUZZ_SEEDS") {
        Some(_) => fixtures.join("seeds"),
        None => scratch.path().to_owned(),
    };
    for sub in ["scep_pki_message", "scep_get_message"] {
        std::fs::create_dir_all(dir.join(sub)).expect("seed directory");
    }
    for (name, r, cipher, md, kind) in [
        ("pkcsreq-aes128-sha256", &requester, Cipher::aes_128_cbc(), MessageDigest::sha256(), MessageType::PkcsReq),
        ("pkcsreq-aes256-sha512", &requester, Cipher::aes_256_cbc(), MessageDigest::sha512(), MessageType::PkcsReq),
        ("pkcsreq-des3-sha1", &requester, Cipher::des_ede3_cbc(), MessageDigest::sha1(), MessageType::PkcsReq),
        ("renewalreq-aes128-sha256", &renewal, Cipher::aes_128_cbc(), MessageDigest::sha256(), MessageType::RenewalReq),
        ("getcertinitial-aes128-sha256", &requester, Cipher::aes_128_cbc(), MessageDigest::sha256(), MessageType::GetCertInitial),
    ] {
        let der = r.pkcs_req(&ca, cipher, md, kind).expect("pkiMessage").der;
        let parsed = lanyard::protocol::scep::parse_pki_message(&der, &ca, &ca_key).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.message_type, kind, "{name}");
        std::fs::write(dir.join("scep_pki_message").join(name), &der).expect("write");
        std::fs::write(dir.join("scep_get_message").join(name), STANDARD.encode(&der)).expect("write");
    }
}

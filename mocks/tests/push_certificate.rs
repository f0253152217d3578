//! The school's push certificate (`lanyard::apple::push_certificate`): PEM and .p12 import,
//! the topic, expiry, against certificates shaped like Apple's.

use chrono::TimeZone;
use chrono::Utc;
use lanyard::apple::push_certificate::*;
use lanyard_mocks::certificates::{self as testing, test_push_certificate};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::X509;

const REAL_TOPIC: &str = "com.apple.mgmt.External.e0bd1eac-1f17-4c8e-8a63-dd17d3dd35d9";

fn test_topic() -> String {
    format!("com.apple.mgmt.External.{}", uuid::Uuid::new_v4())
}

#[test]
fn topic_of_the_real_nanomdm_certificate() {
    let pem = testing::shared_fixture("nanomdm/push.pem");
    let cert = X509::from_pem(&pem).expect("push.pem parses");
    assert_eq!(topic_of(&cert).expect("topic"), REAL_TOPIC);

    // We only have its public half: any key we bring is the wrong one.
    let stranger = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
    let pem_key = stranger.private_key_to_pem_pkcs8().expect("pem");
    match PushCertificate::from_pem(&pem, &pem_key) {
        Err(PushCertError::KeyMismatch) => {}
        other => panic!("expected KeyMismatch, got {other:?}"),
    }
}

#[test]
fn generated_certificate_reads_from_pem_with_expiry() {
    let topic = test_topic();
    let (cert, key, _ca, _ca_key) = test_push_certificate(&topic, 30);
    let push = PushCertificate::from_pem(&cert.to_pem().expect("pem"), &key.private_key_to_pem_pkcs8().expect("pem")).expect("import");
    assert_eq!(push.topic, topic);
    let uuid = topic.trim_start_matches("com.apple.mgmt.External.");
    assert_eq!(push.subject, format!("UID={topic}, CN=APSP:{uuid}, C=US"));
    let now = Utc::now();
    assert!((29..=30).contains(&push.days_left(now)), "{:?}", push);
    assert!(!push.is_expired(now));
    assert!(push.not_before < now);

    // Round trip through to_pem_pair, and a combined file works for both arguments.
    let (c, k) = push.to_pem_pair();
    let again = PushCertificate::from_pem(&c, &k).expect("reimport");
    assert_eq!(again.topic, topic);
    let combined = [k.clone(), c.clone()].concat();
    assert!(PushCertificate::from_pem(&combined, &combined).is_ok());
    // DER certificate is read too.
    let der = push.cert.to_der().expect("der");
    assert!(PushCertificate::from_pem(&der, &k).is_ok());
}

#[test]
fn expired_certificate_still_parses_and_reports_expiry() {
    let (cert, key, _, _) = test_push_certificate(&test_topic(), -10);
    let push = PushCertificate::from_x509(cert, key).expect("expired still imports");
    let now = Utc::now();
    assert!(push.is_expired(now));
    assert_eq!(push.days_left(now), -10);
    let fixed = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single().expect("date");
    assert!(push.days_left(fixed) > 0);
}

#[test]
fn p12_round_trip_and_wrong_password() {
    let (cert, key, _, _) = test_push_certificate(&test_topic(), 365);
    let push = PushCertificate::from_x509(cert, key).expect("import");
    let p12 = push.to_p12("s3cret").expect("export");
    let back = PushCertificate::from_p12(&p12, "s3cret").expect("re-import");
    assert_eq!(back.topic, push.topic);
    assert_eq!(back.not_after, push.not_after);
    assert!(back.key.public_eq(&push.key));

    match PushCertificate::from_p12(&p12, "wrong") {
        Err(PushCertError::WrongPassword) => {}
        other => panic!("expected WrongPassword, got {other:?}"),
    }
    match PushCertificate::from_p12(b"not a p12 at all", "s3cret") {
        Err(PushCertError::UnreadableP12(_)) => {}
        other => panic!("expected UnreadableP12, got {other:?}"),
    }
}

#[test]
fn legacy_rc2_3des_p12_reads() {
    load_legacy_provider();
    let (cert, key, _, _) = test_push_certificate(&test_topic(), 365);
    let built = Pkcs12::builder()
        .name("legacy")
        .pkey(&key)
        .cert(&cert)
        .key_algorithm(Nid::PBE_WITHSHA1AND3_KEY_TRIPLEDES_CBC)
        .cert_algorithm(Nid::PBE_WITHSHA1AND40BITRC2_CBC)
        .mac_md(MessageDigest::sha1())
        .build2("legacy-pass");
    let p12 = match built {
        Ok(p12) => p12.to_der().expect("der"),
        // Without the legacy provider OpenSSL cannot even write RC2; nothing to test then.
        Err(e) => {
            eprintln!("legacy provider unavailable, RC2 p12 not built: {e}");
            return;
        }
    };
    let push = PushCertificate::from_p12(&p12, "legacy-pass").expect("legacy import");
    assert!(push.topic.starts_with(MDM_TOPIC_PREFIX));
    assert!(matches!(PushCertificate::from_p12(&p12, "nope"), Err(PushCertError::WrongPassword)));
}

#[test]
fn mismatched_key_is_refused() {
    let (cert, _key, _, ca_key) = test_push_certificate(&test_topic(), 365);
    match PushCertificate::from_x509(cert, ca_key) {
        Err(PushCertError::KeyMismatch) => {}
        other => panic!("expected KeyMismatch, got {other:?}"),
    }
}

#[test]
fn non_mdm_certificates_are_refused() {
    let (cert, key, _, _) = test_push_certificate("com.example.someapp", 365);
    match PushCertificate::from_x509(cert, key) {
        Err(e @ PushCertError::NotMdmTopic { .. }) => {
            assert!(e.is_not_mdm_certificate());
            assert!(e.to_string().contains("not an MDM push certificate"));
        }
        other => panic!("expected NotMdmTopic, got {other:?}"),
    }
    // A certificate without any UID (the throwaway CA is one).
    let (_, _, ca, ca_key) = test_push_certificate(&test_topic(), 365);
    match PushCertificate::from_x509(ca, ca_key) {
        Err(e @ PushCertError::NoTopic { .. }) => {
            assert!(e.to_string().contains("not an MDM push certificate"))
        }
        other => panic!("expected NoTopic, got {other:?}"),
    }
}

#[test]
fn unreadable_pem_is_refused() {
    assert!(matches!(PushCertificate::from_pem(b"hello", b"world"), Err(PushCertError::UnreadableCertificate(_))));
    let (cert, _, _, _) = test_push_certificate(&test_topic(), 365);
    assert!(matches!(PushCertificate::from_pem(&cert.to_pem().expect("pem"), b"not a key"), Err(PushCertError::UnreadableKey(_))));
}

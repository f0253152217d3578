//! The certificates an operator brings in `certs/` (certs/README.md): `tls.pem` + `tls.key` are
//! served instead of the certificate Lanyard's CA made, a broken pair stops start-up with a
//! one-line error, and `lanyard push-cert import` with no file takes `push.p12` from there.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509, X509Builder, X509NameBuilder};

const BIN: &str = env!("CARGO_BIN_EXE_lanyard");

fn lanyard(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(dir);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("LANYARD_")) {
        c.env_remove(k);
    }
    c.env("LANYARD_LISTEN", "127.0.0.1:0").env("LANYARD_ADMIN_PASSWORD", "operator-tls-test-pw");
    c
}

fn key() -> PKey<Private> {
    PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap()).unwrap()
}

/// A self-signed certificate for `cn` (and localhost), valid from `from` to `to` (Unix seconds).
fn certificate(key: &PKey<Private>, cn: &str, from: i64, to: i64) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(4242).unwrap().to_asn1_integer().unwrap()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(from).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::from_unix(to).unwrap()).unwrap();
    let san = SubjectAlternativeName::new().dns(cn).dns("localhost").build(&b.x509v3_context(None, None)).unwrap();
    b.append_extension(san).unwrap();
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn write_pair(dir: &Path, cert: &X509, key: &PKey<Private>) {
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("tls.pem"), cert.to_pem().unwrap()).unwrap();
    std::fs::write(certs.join("tls.key"), key.private_key_to_pem_pkcs8().unwrap()).unwrap();
}

/// Lines from a child's pipe, as they come.
fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

fn read_until(rx: &mpsc::Receiver<String>, until: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("never printed {until:?}; got {seen:?}"));
        let done = line.contains(until);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

/// The certificate a TLS client is shown on 127.0.0.1:`port`.
fn served_certificate(port: u16) -> X509 {
    let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
    connector.set_verify(SslVerifyMode::NONE);
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let tls = connector.build().connect("localhost", tcp).unwrap();
    tls.ssl().peer_certificate().expect("the server sent a certificate")
}

#[test]
fn serves_the_operators_certificate_from_certs() {
    let dir = tempfile::tempdir().unwrap();
    let key = key();
    let cert = certificate(&key, "mdm.school.example", now() - 3600, now() + 90 * 86_400);
    write_pair(dir.path(), &cert, &key);

    let mut child = lanyard(dir.path(), &["serve"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (out, err) = (lines(child.stdout.take().unwrap()), lines(child.stderr.take().unwrap()));
    let printed = read_until(&out, "Lanyard API:");
    let api = printed.last().unwrap();
    let url = api.split_whitespace().nth(2).unwrap();
    let port: u16 = url.rsplit(':').next().unwrap().split('/').next().unwrap().parse().unwrap();
    let logged = read_until(&err, "TLS: serving this certificate");

    let served = served_certificate(port);
    assert_eq!(served.to_der().unwrap(), cert.to_der().unwrap(), "the operator's certificate is served");
    let log = logged.last().unwrap();
    assert!(log.contains("certs/tls.pem") && log.contains("certs_dir") && log.contains("mdm.school.example"), "{log}");
    // Lanyard's own certificate is still made in the data directory, for when certs/ is emptied.
    assert!(dir.path().join("data/tls.pem").exists());

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());

    // Without certs/tls.*, the self-made certificate (signed by Lanyard's CA) is served again.
    std::fs::remove_file(dir.path().join("certs/tls.pem")).unwrap();
    std::fs::remove_file(dir.path().join("certs/tls.key")).unwrap();
    let mut child = lanyard(dir.path(), &["serve"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (out, err) = (lines(child.stdout.take().unwrap()), lines(child.stderr.take().unwrap()));
    let printed = read_until(&out, "Lanyard API:");
    let url = printed.last().unwrap().split_whitespace().nth(2).unwrap().to_owned();
    let port: u16 = url.rsplit(':').next().unwrap().split('/').next().unwrap().parse().unwrap();
    let log = read_until(&err, "TLS: serving this certificate").pop().unwrap();
    assert!(log.contains("data/tls.pem") && log.contains("data_dir"), "{log}");
    let ca = X509::from_pem(&std::fs::read(dir.path().join("data/ca.pem")).unwrap()).unwrap();
    assert!(served_certificate(port).verify(&ca.public_key().unwrap()).unwrap());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// `lanyard init` with `dir`'s certs/: exit status 2 and one line on stderr containing `want`.
fn refused(dir: &Path, want: &[&str]) {
    let out = lanyard(dir, &["init"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("lanyard: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("invalid configuration: certs_dir:"), "{line}");
    for w in want {
        assert!(line.contains(w), "{line} should name {w}");
    }
}

#[test]
fn a_broken_pair_in_certs_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let key = key();
    let good = certificate(&key, "mdm.school.example", now() - 3600, now() + 90 * 86_400);

    // Only one of the two.
    write_pair(dir.path(), &good, &key);
    std::fs::remove_file(certs.join("tls.key")).unwrap();
    refused(dir.path(), &["tls.pem is there but", "tls.key is not"]);
    write_pair(dir.path(), &good, &key);
    std::fs::remove_file(certs.join("tls.pem")).unwrap();
    refused(dir.path(), &["tls.key is there but", "tls.pem is not"]);

    // A key that is not the certificate's.
    write_pair(dir.path(), &good, &self::key());
    refused(dir.path(), &["tls.key is not the key of the certificate in", "tls.pem"]);

    // An expired certificate.
    let expired = certificate(&key, "mdm.school.example", now() - 90 * 86_400, now() - 86_400);
    write_pair(dir.path(), &expired, &key);
    refused(dir.path(), &["tls.pem expired on"]);

    // Not PEM at all.
    std::fs::write(certs.join("tls.pem"), "not a certificate").unwrap();
    refused(dir.path(), &["holds no PEM certificate"]);

    // LANYARD_CERTS_DIR points elsewhere: the broken pair in ./certs is not looked at.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = lanyard(dir.path(), &["init"]).env("LANYARD_CERTS_DIR", elsewhere.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A push certificate as Apple's portal issues it, in the part that matters: the topic in the UID.
fn push_certificate(topic: &str) -> (X509, PKey<Private>) {
    let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::USERID, topic).unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, "APSP:lanyard-test").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(365).unwrap()).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (b.build(), key)
}

#[test]
fn push_cert_import_without_a_file_takes_certs_push_p12() {
    let dir = tempfile::tempdir().unwrap();

    // Nothing given and nothing in certs/: the error names every way to give one.
    let out = lanyard(dir.path(), &["push-cert", "import"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for want in ["--p12 FILE", "--cert PEM --key PEM", "push.p12"] {
        assert!(stderr.contains(want), "{stderr} should name {want}");
    }

    let topic = "com.apple.mgmt.External.3f6c1d2a-8b1e-4c55-a0f7-0c9e2b7d4e11";
    let (cert, key) = push_certificate(topic);
    let p12 = openssl::pkcs12::Pkcs12::builder().name("push").pkey(&key).cert(&cert).build2("").unwrap();
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("certs/push.p12"), p12.to_der().unwrap()).unwrap();
    let out = lanyard(dir.path(), &["push-cert", "import"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("certs/push.p12") && stdout.contains(&format!("topic:   {topic}")), "{stdout}");
    let shown = lanyard(dir.path(), &["push-cert", "show"]).output().unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains(topic));

    // The flags work as before, and win over certs/.
    let (other_cert, other_key) = push_certificate(topic);
    std::fs::write(dir.path().join("other.pem"), other_cert.to_pem().unwrap()).unwrap();
    std::fs::write(dir.path().join("other.key"), other_key.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let out = lanyard(dir.path(), &["push-cert", "import", "--cert", "other.pem", "--key", "other.key"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("certs/push.p12"));
}

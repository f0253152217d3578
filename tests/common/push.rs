//! A mock APNs (a real HTTP/2 server over TLS) wired to a test server.
#![allow(dead_code)]

use lanyard_mocks::{MockApns, certificates::test_ca, issue_test_push_certificate};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use super::device::TOPIC;
use super::{Backend, Options, TestServer};

pub struct PushRig {
    pub mock: MockApns,
    /// Apple's stand-in: the CA that issues push certificates, which the mock trusts.
    pub ca: X509,
    pub ca_key: PKey<Private>,
    _ca_file: tempfile::NamedTempFile,
    pub env: Vec<(&'static str, String)>,
}

impl PushRig {
    pub async fn start() -> PushRig {
        let (ca, ca_key) = test_ca("Test Apple Push CA").unwrap();
        let mock = MockApns::start(&ca).await.unwrap();
        let ca_file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca_file.path(), mock.ca_pem()).unwrap();
        let env = vec![("LANYARD_APNS_URL", mock.url()), ("LANYARD_APNS_CA_FILE", ca_file.path().display().to_string())];
        PushRig { mock, ca, ca_key, _ca_file: ca_file, env }
    }

    /// A push certificate from the mock's trusted issuer.
    pub fn cert(&self, topic: &str, days: i64) -> (X509, PKey<Private>) {
        issue_test_push_certificate(&self.ca, &self.ca_key, topic, days).unwrap()
    }

    /// A server using this mock, with a push certificate for `TOPIC` loaded.
    pub async fn server(&self, b: Backend, mut opts: Options) -> TestServer {
        opts.env.extend(self.env.iter().cloned());
        let s = TestServer::start_with(b, opts).await;
        let (cert, key) = self.cert(TOPIC, 365);
        let (st, body) = s.upload_push_cert(&cert, &key, "").await;
        assert_eq!(st, reqwest::StatusCode::OK, "{body}");
        s
    }
}

//! What a face can learn about the connection a request came on (the server fills it in).

use std::net::SocketAddr;
use std::sync::Arc;

/// What a handler can learn about the connection.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    /// DER of the TLS client certificate, when Lanyard terminates TLS and the client sent one.
    pub client_cert: Option<Arc<Vec<u8>>>,
}

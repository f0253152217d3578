//! Listening: plain HTTP or TLS (with an optional client certificate), HTTP/1.1 and HTTP/2,
//! a request id on every log line, and a graceful drain on SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::connect_info::Connected;
use axum::http::Request;
use axum::serve::{IncomingStream, Listener};
use openssl::ssl::{AlpnError, Ssl, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_openssl::SslStream;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{OnResponse, TraceLayer};
use tracing::Level;

use crate::context::Ctx;
use crate::faces::peer::PeerInfo;

impl Connected<IncomingStream<'_, TcpListener>> for PeerInfo {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        PeerInfo { addr: *stream.remote_addr(), client_cert: None }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for PeerInfo {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let client_cert = stream.io().ssl().peer_certificate().and_then(|c| c.to_der().ok()).map(Arc::new);
        PeerInfo { addr: *stream.remote_addr(), client_cert }
    }
}

/// Accepts TCP connections and completes TLS handshakes in their own tasks, so one slow client
/// cannot hold up the others.
pub struct TlsListener {
    rx: mpsc::Receiver<(SslStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, acceptor: Arc<SslAcceptor>) -> Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                let (stream, addr) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    break;
                }
                let (tx, acceptor) = (tx.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let Ok(ssl) = Ssl::new(acceptor.context()) else {
                        return;
                    };
                    let Ok(mut tls) = SslStream::new(ssl, stream) else {
                        return;
                    };
                    match tokio::time::timeout(Duration::from_secs(10), Pin::new(&mut tls).accept()).await {
                        Ok(Ok(())) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl Listener for TlsListener {
    type Io = SslStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// TLS settings: our server certificate and chain, HTTP/2 by ALPN, and a client certificate
/// requested but not required (devices may present their identity; browsers need not).
pub fn tls_acceptor(ctx: &Ctx) -> Result<Arc<SslAcceptor>> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_certificate_chain_file(&ctx.pki.tls_cert_path).with_context(|| format!("cannot load {}", ctx.pki.tls_cert_path.display()))?;
    if !ctx.pki.tls_from_certs_dir {
        // Our own certificate's chain is the device CA; an operator's tls.pem carries its own.
        b.add_extra_chain_cert(ctx.pki.ca_cert.clone())?;
    }
    b.set_private_key_file(&ctx.pki.tls_key_path, SslFiletype::PEM)?;
    b.check_private_key()?;
    let served = std::fs::read(&ctx.pki.tls_cert_path).ok().and_then(|pem| openssl::x509::X509::from_pem(&pem).ok());
    if let Some(cert) = served {
        let subject = cert.subject_name().entries_by_nid(openssl::nid::Nid::COMMONNAME).next().and_then(|e| e.data().to_string().ok());
        tracing::info!(
            certificate = %ctx.pki.tls_cert_path.display(),
            subject = subject.unwrap_or_default(),
            not_after = %cert.not_after(),
            source = if ctx.pki.tls_from_certs_dir { "certs_dir (the operator's)" } else { "data_dir (made by Lanyard's CA)" },
            "TLS: serving this certificate"
        );
    }
    b.set_alpn_select_callback(|_, client| openssl::ssl::select_next_proto(b"\x02h2\x08http/1.1", client).ok_or(AlpnError::NOACK));
    // The device CA is the only one we ask for; the chain is checked by device authentication.
    let mut names = openssl::stack::Stack::new()?;
    names.push(ctx.pki.ca_cert.subject_name().to_owned()?)?;
    b.set_client_ca_list(names);
    b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
    Ok(Arc::new(b.build()))
}

/// The full application: every face, with request ids and tracing around it.
pub fn app(ctx: Ctx) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            let (method, path) = (req.method(), req.uri().path());
            match path.starts_with("/mdm/") {
                true => tracing::debug_span!("request", request_id = %id, %method, path),
                false => tracing::info_span!("request", request_id = %id, %method, path),
            }
        })
        .on_response(LogResponse);
    crate::routes(ctx.clone())
        .route_layer(axum::middleware::from_fn_with_state(ctx.clone(), crate::faces::api::metrics::track))
        .with_state(ctx)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(trace)
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
}

/// One line per answered request: at info for people and scripts (the console, the API), at
/// debug for devices' protocol requests that succeed (their span is a debug span), which come
/// by the thousand an hour from a school's iPads and would bury everything else. A device
/// request that fails is logged at info (4xx) or error (5xx) like any other.
#[derive(Clone, Copy)]
struct LogResponse;

impl<B> OnResponse<B> for LogResponse {
    fn on_response(self, response: &axum::http::Response<B>, latency: Duration, span: &tracing::Span) {
        let status = response.status().as_u16();
        let latency_ms = latency.as_millis() as u64;
        let device = span.metadata().is_none_or(|m| *m.level() == Level::DEBUG);
        if status >= 500 {
            tracing::error!(parent: span, status, latency_ms, "finished processing request");
        } else if status >= 400 || !device {
            tracing::info!(parent: span, status, latency_ms, "finished processing request");
        } else {
            tracing::debug!(parent: span, status, latency_ms, "finished processing request");
        }
    }
}

pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serve on every listener until `shutdown` resolves, then drain in-flight requests.
pub async fn serve(ctx: Ctx, listeners: Vec<TcpListener>, shutdown: Shutdown) -> Result<()> {
    let app = app(ctx.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let acceptor = if ctx.config.tls { Some(tls_acceptor(&ctx)?) } else { None };
    let mut tasks = Vec::new();
    for tcp in listeners {
        let mut stop = stop_rx.clone();
        let graceful = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let app = app.clone();
        tasks.push(match &acceptor {
            Some(acc) => {
                let l = TlsListener::new(tcp, acc.clone())?;
                tokio::spawn(async move {
                    axum::serve(l, app.into_make_service_with_connect_info::<PeerInfo>()).with_graceful_shutdown(graceful).await
                })
            }
            None => tokio::spawn(async move {
                axum::serve(tcp, app.into_make_service_with_connect_info::<PeerInfo>()).with_graceful_shutdown(graceful).await
            }),
        });
    }
    shutdown.await;
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, not when the
/// future is first polled, so a SIGTERM during start-up is not lost.
pub fn shutdown_signal() -> Shutdown {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    Box::pin(async move {
        let term = async {
            match term {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = term => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    })
}

/// Connections waiting to be accepted. The usual 128 overflows when a trolley of iPads answers
/// a push at once, and a dropped connection attempt costs the device a second (the first SYN
/// retransmission); the kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Bind every configured address.
pub async fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>> {
    let mut v = Vec::new();
    for a in addrs {
        let listen = || -> std::io::Result<TcpListener> {
            let socket = if a.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            socket.set_reuseaddr(true)?;
            socket.bind(*a)?;
            socket.listen(LISTEN_BACKLOG)
        };
        v.push(listen().with_context(|| format!("cannot listen on {a}"))?);
    }
    Ok(v)
}

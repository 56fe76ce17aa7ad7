//! gRPC channels over TLS with mango's own rustls configuration (ring only, a client
//! certificate when the server asks, or no verification at all behind an insecure flag):
//! tonic's channel carries HTTP/2, this module's connector opens the TCP connection (from a
//! chosen local address when asked) and does the TLS handshake.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpSocket;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::config::{Verify, client_config};
use crate::error::TlsError;
use crate::material::Identity;

/// What a TLS client presents and checks, with ALPN `h2` for gRPC. Cheap to clone.
#[derive(Clone)]
pub struct GrpcClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for GrpcClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcClientTls").finish_non_exhaustive()
    }
}

impl GrpcClientTls {
    /// Checks servers as `verify` says; presents `identity` when asked for a certificate.
    pub fn new(verify: &Verify, identity: Option<&Identity>) -> Result<Self, TlsError> {
        Ok(Self {
            config: Arc::new(client_config(verify, identity, &[b"h2"], false)?),
        })
    }
}

/// Why a channel could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Not an `http://` or `https://` URL.
    #[error("bad URL {0:?}")]
    BadUrl(String),
    /// An `https://` URL with no TLS settings to reach it with.
    #[error("{0}: https:// needs TLS settings (a trusted CA)")]
    NoTls(String),
    /// tonic refused the endpoint or the connection failed.
    #[error("{0}")]
    Transport(#[from] tonic::transport::Error),
}

/// How to reach one URL.
#[derive(Clone, Debug)]
pub struct Target {
    endpoint: Endpoint,
    /// TLS and the server name to check, for `https://` URLs.
    tls: Option<(GrpcClientTls, ServerName<'static>)>,
    /// The host and port to dial.
    authority: (String, u16),
    /// The local address to connect from.
    local_ip: Option<IpAddr>,
}

impl Target {
    /// `url` (`http://host:port` or `https://host:port`; a bare `host:port` is `http://`),
    /// reached with `tls` when it is `https://`, from `local_ip` when given. The endpoint's
    /// timeouts and window sizes can be set with [`Target::map_endpoint`].
    pub fn new(
        url: &str,
        tls: Option<&GrpcClientTls>,
        local_ip: Option<IpAddr>,
    ) -> Result<Self, ChannelError> {
        let bad = || ChannelError::BadUrl(url.to_string());
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if url.contains("://") {
            return Err(bad());
        } else {
            (false, url)
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        let uri: Uri = format!("http://{authority}").parse().map_err(|_| bad())?;
        let host = uri
            .host()
            .ok_or_else(bad)?
            .trim_matches(['[', ']'])
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let mut endpoint = Endpoint::from(uri);
        let tls = if https {
            let tls = tls.ok_or_else(|| ChannelError::NoTls(url.to_string()))?;
            let name = ServerName::try_from(host.clone()).map_err(|_| bad())?;
            endpoint = endpoint.origin(format!("https://{authority}").parse().map_err(|_| bad())?);
            Some((tls.clone(), name))
        } else {
            None
        };
        Ok(Self {
            endpoint: endpoint.tcp_nodelay(true),
            tls,
            authority: (host, port),
            local_ip,
        })
    }

    /// Adjusts the endpoint (timeouts, keep-alives, windows).
    pub fn map_endpoint(mut self, f: impl FnOnce(Endpoint) -> Endpoint) -> Self {
        self.endpoint = f(self.endpoint);
        self
    }

    /// Whether the URL is `https://`.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A channel that connects on first use (and reconnects).
    pub fn connect_lazy(&self) -> Channel {
        self.endpoint.connect_with_connector_lazy(self.connector())
    }

    /// A channel, connected now.
    pub async fn connect(&self) -> Result<Channel, ChannelError> {
        Ok(self
            .endpoint
            .connect_with_connector(self.connector())
            .await?)
    }

    fn connector(
        &self,
    ) -> impl tower::Service<
        Uri,
        Response = TokioIo<Stream>,
        Error = std::io::Error,
        Future = impl Future<Output = std::io::Result<TokioIo<Stream>>> + Send,
    > + Send
    + Clone
    + 'static {
        let tls = self.tls.clone();
        let (host, port) = self.authority.clone();
        let local_ip = self.local_ip;
        tower::service_fn(move |_uri: Uri| {
            let (tls, host, local_ip) = (tls.clone(), host.clone(), local_ip);
            async move {
                let tcp = dial(&host, port, local_ip).await?;
                let stream = match tls {
                    Some((tls, name)) => {
                        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
                        Stream::Tls(Box::new(connector.connect(name, tcp).await?))
                    }
                    None => Stream::Plain(tcp),
                };
                Ok(TokioIo::new(stream))
            }
        })
    }
}

/// Opens a TCP connection to `host:port` (names resolved), from `local_ip` when given.
async fn dial(
    host: &str,
    port: u16,
    local_ip: Option<IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let mut last = std::io::Error::other(format!("{host}: no address"));
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(ip) = local_ip.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        match tokio::time::timeout(Duration::from_secs(5), socket.connect(addr)).await {
            Ok(Ok(tcp)) => {
                tcp.set_nodelay(true)?;
                return Ok(tcp);
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"),
        }
    }
    Err(last)
}

/// A plain or TLS connection.
pub enum Stream {
    /// TCP.
    Plain(tokio::net::TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Plain(_) => "Stream::Plain",
            Stream::Tls(_) => "Stream::Tls",
        })
    }
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

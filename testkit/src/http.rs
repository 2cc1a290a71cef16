//! Minimal HTTP/1.1 requests for the mesh's own plumbing: the curator's API
//! (plain, or TLS to a pinned key as agents and sidecars reach it) and
//! Envoy's admin interface, all on 127.0.0.1, all answering small bodies.

use core::time::Duration;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow};
use mazu_service::tls::{SpkiPin, pinned_client_config};

/// A server on 127.0.0.1: plain HTTP, or HTTPS whose key must match a pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Its port.
    pub port: u16,
    /// The pin of its TLS key (`None`: plain HTTP).
    pub tls_pin: Option<SpkiPin>,
}

/// A connection, plain or TLS.
pub trait Connection: Read + Write + Send {}
impl<T: Read + Write + Send> Connection for T {}

impl Endpoint {
    /// Plain HTTP on `port`.
    pub fn plain(port: u16) -> Self {
        Self {
            port,
            tls_pin: None,
        }
    }

    /// HTTPS on `port`, to a server holding the key `pin` names.
    pub fn pinned(port: u16, pin: SpkiPin) -> Self {
        Self {
            port,
            tls_pin: Some(pin),
        }
    }

    /// Its base URL (`http://` or `https://`).
    pub fn url(&self) -> String {
        let scheme = if self.tls_pin.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A new connection (TLS established, the server's key checked).
    pub fn connect(&self) -> Result<Box<dyn Connection>> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))
            .with_context(|| format!("connecting to 127.0.0.1:{}", self.port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
        let Some(pin) = self.tls_pin else {
            return Ok(Box::new(tcp));
        };
        let config = pinned_client_config(&[pin])?;
        let name = rustls::pki_types::ServerName::try_from("mazu-curator")?;
        let tls = rustls::ClientConnection::new(Arc::new(config), name)?;
        Ok(Box::new(rustls::StreamOwned::new(tls, tcp)))
    }

    /// `GET path`; the status and body.
    pub fn get(&self, path: &str) -> Result<(u16, Vec<u8>)> {
        self.request("GET", path, None)
    }

    /// `GET path`, which must answer 200; the body as text.
    pub fn get_text(&self, path: &str) -> Result<String> {
        let (status, body) = self.get(path)?;
        if status != 200 {
            return Err(anyhow!(
                "GET {path}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// One HTTP/1.1 request on a new connection (a JSON body if given); the
    /// status and the (de-chunked) body.
    pub fn request(&self, method: &str, path: &str, json: Option<&str>) -> Result<(u16, Vec<u8>)> {
        let mut stream = self.connect()?;
        let body = json.unwrap_or("");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )?;
        stream.flush()?;
        let response = read_until_closed(&mut stream)
            .with_context(|| format!("reading the answer from {}{path}", self.url()))?;
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| anyhow!("malformed HTTP answer from {}{path}", self.url()))?;
        let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("no status in the answer from {path}"))?;
        let body = &response[split + 4..];
        let body = if head.contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_vec()
        };
        Ok((status, body))
    }
}

/// Everything until the server closes. A TLS server that closes the socket
/// without a close_notify after answering (`connection: close`) has still
/// answered: the framing of the answer, not the alert, says it is whole.
pub fn read_until_closed(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => Ok(response),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof && !response.is_empty() => Ok(response),
        Err(e) => Err(e),
    }
}

/// `GET path` on 127.0.0.1:`port` (plain HTTP); the status and body.
pub fn get(port: u16, path: &str) -> Result<(u16, Vec<u8>)> {
    Endpoint::plain(port).get(path)
}

/// One plain HTTP/1.1 request on a new connection (a JSON body if given);
/// the status and the (de-chunked) body.
pub fn request(port: u16, method: &str, path: &str, json: Option<&str>) -> Result<(u16, Vec<u8>)> {
    Endpoint::plain(port).request(method, path, json)
}

/// `GET path` (plain HTTP), which must answer 200; the body as text.
pub fn get_text(port: u16, path: &str) -> Result<String> {
    Endpoint::plain(port).get_text(path)
}

/// One of Envoy's own counters (`name` exactly, e.g.
/// `listener.127.0.0.1_1234.ssl.handshake`) from the admin on `admin_port`;
/// 0 if it does not exist. All stats are read and matched here: Istio's
/// cluster names hold `|`, which a `filter` regex would need escaped.
pub fn envoy_counter(admin_port: u16, name: &str) -> Result<u64> {
    let body = get_text(admin_port, "/stats")?;
    Ok(body
        .lines()
        .find_map(|line| {
            let (found, value) = line.split_once(": ")?;
            (found == name).then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0))
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let Some(size) = core::str::from_utf8(&body[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
        else {
            break;
        };
        let rest = &body[line_end + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        body = rest.get(size + 2..).unwrap_or_default();
    }
    out
}

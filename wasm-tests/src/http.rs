//! Minimal HTTP/1.1 GETs for the mesh's own plumbing: the curator's API and
//! Envoy's admin interface (both on 127.0.0.1, both answering small bodies).

use core::time::Duration;
use std::io::{Read, Write};
use std::net::TcpStream;

use anyhow::{Context as _, Result, anyhow};

/// `GET path` on 127.0.0.1:`port`; the status and body.
pub fn get(port: u16, path: &str) -> Result<(u16, Vec<u8>)> {
    request(port, "GET", path, None)
}

/// One HTTP/1.1 request on a new connection (a JSON body if given); the
/// status and the (de-chunked) body.
pub fn request(port: u16, method: &str, path: &str, json: Option<&str>) -> Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = json.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP answer from 127.0.0.1:{port}{path}"))?;
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

/// `GET path`, which must answer 200; the body as text.
pub fn get_text(port: u16, path: &str) -> Result<String> {
    let (status, body) = get(port, path)?;
    if status != 200 {
        return Err(anyhow!(
            "GET {path}: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
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

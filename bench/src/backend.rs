//! The workload behind both server sidecars: a small HTTP/1.1 server on
//! 127.0.0.1 that keeps connections alive, reads each request body
//! (`content-length`) and answers every request with a fixed 1 KiB body.
//!
//! `mazu_e2e::backend::Backend` answers with a short greeting; the bench
//! wants 1 KiB each way, as the paper's Fortio runs did, so it has its own.

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use anyhow::{Context as _, Result};

/// Size of every response body, bytes.
pub const BODY_BYTES: usize = 1024;

/// A running backend; stops accepting when dropped.
pub struct Backend {
    /// The port it listens on.
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Backend {
    /// Starts the backend on a free port.
    pub fn start() -> Result<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the bench backend")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let response: Arc<[u8]> = response().into();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let response = response.clone();
                thread::spawn(move || {
                    let _ = serve(stream, &response);
                });
            }
        });
        Ok(Backend { port, stop })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so its thread ends.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The full keep-alive response: headers and the 1 KiB body.
fn response() -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
         content-length: {BODY_BYTES}\r\n\r\n"
    )
    .into_bytes();
    out.extend(core::iter::repeat_n(b'm', BODY_BYTES));
    out
}

/// Answers requests on one connection until the client closes it or sends
/// `connection: close`.
fn serve(stream: TcpStream, response: &[u8]) -> Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut content_length = 0usize;
        let mut close = false;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.trim().parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.trim().eq_ignore_ascii_case("close");
                }
            }
        }
        body.resize(content_length, 0);
        reader.read_exact(&mut body)?;
        writer.write_all(response)?;
        if close {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_keep_alive_requests_with_a_1_kib_body() {
        let backend = Backend::start().unwrap();
        let mut stream = TcpStream::connect(("127.0.0.1", backend.port)).unwrap();
        let payload = vec![b'x'; 1024];
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        for _ in 0..2 {
            write!(
                stream,
                "POST / HTTP/1.1\r\nhost: b\r\ncontent-length: {}\r\n\r\n",
                payload.len()
            )
            .unwrap();
            stream.write_all(&payload).unwrap();
            let mut head = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let mut body = vec![0u8; BODY_BYTES];
            reader.read_exact(&mut body).unwrap();
            assert!(body.iter().all(|&b| b == b'm'));
        }
    }
}

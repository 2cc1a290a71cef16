//! A registry stand-in that fails on demand.

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Result;

use super::server::{Server, serve};
use crate::witnessed::{Request, TestLog, parse_path};

/// A stand-in for the curator where a test needs failures on demand (the
/// real one is in [`crate::curator`]): a minimal HTTP/1.1 server answering
/// `GET /v1/checkpoint` and `GET /v1/log/records` from a
/// [`TestLog`] (cosigned at the current time), or
/// `503` while [`set_unavailable`](RegistryServer::set_unavailable).
pub struct RegistryServer {
    server: Server,
    body: Arc<Mutex<TestLog>>,
    unavailable: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl RegistryServer {
    /// Serves `log`.
    pub fn start(log: TestLog) -> Result<RegistryServer> {
        let body = Arc::new(Mutex::new(log));
        let unavailable = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (served, down, log) = (body.clone(), unavailable.clone(), requests.clone());
        let server = serve(move |stream| {
            let _ = answer_registry(stream, &served, down.load(Ordering::SeqCst), &log);
        })?;
        Ok(RegistryServer {
            server,
            body,
            unavailable,
            requests,
        })
    }

    /// While true, every request gets `503 Service Unavailable`.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Replaces what is served.
    pub fn set(&self, log: TestLog) {
        *self.body.lock().unwrap_or_else(PoisonError::into_inner) = log;
    }

    /// Request lines received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn answer_registry(
    stream: TcpStream,
    log_served: &Mutex<TestLog>,
    unavailable: bool,
    log: &Mutex<Vec<String>>,
) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(request_line.trim_end().to_owned());
    let path = request_line.split_whitespace().nth(1).unwrap_or_default();
    let body = {
        let served = log_served.lock().unwrap_or_else(PoisonError::into_inner);
        match parse_path(path) {
            Request::Checkpoint => {
                Some(served.checkpoint(crate::fixtures::unix_now()).into_bytes())
            }
            Request::Records { start, end } => Some(served.records_bytes(start, end)),
            Request::State { size } => (size <= served.size()).then(|| served.state(size)),
            Request::Other(_) => None,
        }
    };
    let mut stream = stream;
    match body {
        _ if unavailable => write!(
            stream,
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )?,
        None => write!(
            stream,
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )?,
        Some(bytes) => {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n",
                bytes.len()
            )?;
            stream.write_all(&bytes)?;
        }
    }
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

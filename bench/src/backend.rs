//! The workload behind both server sidecars: the local mesh's backend
//! (HTTP/1.1 keep-alive, request bodies read by `content-length`)
//! answering every request with a fixed 1 KiB body, as the paper's Fortio
//! runs did.

use anyhow::Result;
pub use mazu_e2e::backend::Backend;

/// Size of every response body, bytes.
pub const BODY_BYTES: usize = 1024;

/// Starts the backend on a free port.
pub fn start() -> Result<Backend> {
    Backend::serving(vec![b'm'; BODY_BYTES])
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;

    use super::*;

    #[test]
    fn answers_keep_alive_requests_with_a_1_kib_body() {
        let backend = start().unwrap();
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

//! Ports for servers another process binds.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};

use anyhow::Result;

/// Every port [`free_port`] handed out in this process.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port free right now on 127.0.0.1, for a server another process will
/// bind (Envoy listeners, a curator that must keep its port across restarts).
///
/// It is picked at random *below* the kernel's ephemeral range: a port the
/// OS handed out for port 0 is also where it puts the source ports of
/// outgoing connections, so between this check and the other process's
/// bind a client socket (of any test running meanwhile) could take it.
pub fn free_port() -> Result<u16> {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    // The process never hands out a port twice: a mesh picks a score of
    // ports before its Envoys bind them, and a port picked again in that
    // window (about one mesh start in a hundred, drawing from ~22,000) made
    // two of its listeners collide ("Address already in use").
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..200 {
        let port = rand::Rng::gen_range(&mut rand::thread_rng(), low..high);
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            let port = listener.local_addr()?.port();
            handed_out.insert(port);
            return Ok(port);
        }
    }
    // Everything below the ephemeral range seems taken: fall back to the OS.
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_never_handed_out_twice() {
        let mut seen = BTreeSet::new();
        for _ in 0..500 {
            let port = free_port().expect("a free port");
            assert!(seen.insert(port), "port {port} handed out twice");
        }
    }
}

//! Loopback helpers for the real-Envoy tests: free ports, an echo server, a
//! registry stand-in that fails on demand, a TLS client (`openssl
//! s_client`) presenting a workload certificate, and an impostor TLS server
//! that counts the bytes it is sent.

mod openssl;
mod ports;
mod registry_server;
mod server;

pub use openssl::{ClientOutcome, Impostor, tls_round_trip};
pub use ports::free_port;
pub use registry_server::RegistryServer;
pub use server::{Server, echo_server};

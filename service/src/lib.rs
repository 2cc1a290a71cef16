//! Process plumbing the Mazu services (the curator, the witness) share, so
//! that each has one copy:
//! - [`init_tracing`] and [`shutdown_signal`]: logging to stderr and the
//!   SIGTERM / Ctrl-C future every server waits on;
//! - [`files`]: durable writes (atomic replacement, directory fsync) and
//!   key files that are created only on request and never overwritten;
//! - [`tls`]: TLS with a pinned server key instead of a CA (server listener,
//!   client configuration);
//! - [`http`]: serving a router with header-read and idle timeouts and
//!   per-client connection limits;
//! - [`powercut`]: test support, the power-cut shim the durability tests
//!   run the services under.

#![forbid(unsafe_code)]

pub mod files;
pub mod http;
pub mod powercut;
pub mod tls;

/// Initializes logging to stderr: `RUST_LOG` filter syntax, default `info`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            core::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                core::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Runs a service binary's server: `serve` gets the shutdown future
/// ([`shutdown_signal`]) and runs on a multi-threaded runtime whose threads
/// are named `name`. Afterwards blocking work still running (a start-up
/// replay, say) gets at most a second. An error is logged, printed as
/// `name: error` and ends the process with status 1.
pub fn run_until_shutdown<Fut, E>(
    name: &str,
    serve: impl FnOnce(core::pin::Pin<Box<dyn core::future::Future<Output = ()> + Send>>) -> Fut,
) -> std::io::Result<()>
where
    Fut: core::future::Future<Output = Result<(), E>>,
    E: core::fmt::Display,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(name)
        .build()?;
    let result = runtime.block_on(serve(Box::pin(shutdown_signal())));
    runtime.shutdown_timeout(core::time::Duration::from_secs(1));
    if let Err(e) = result {
        tracing::error!(error = %e, "{name} failed");
        eprintln!("{name}: {e}");
        std::process::exit(1);
    }
    Ok(())
}

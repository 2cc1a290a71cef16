//! Serving an axum router so that slow or idle clients cannot take the
//! server away from everyone else.
//!
//! `axum::serve` sets no timer, so hyper applies no header-read timeout and
//! an idle keep-alive connection, or one that sends a header byte a minute,
//! stays open for ever. [`serve`] runs each connection with hyper's HTTP/1
//! server directly:
//! - a **header-read timeout** that also bounds how long a kept-alive
//!   connection may sit idle between requests (hyper starts it whenever it
//!   waits for a request head);
//! - a cap on **open connections per client address** (IPv6: per /64) and a
//!   global cap: a connection beyond either is closed at once, logged
//!   (at most once a second) and counted, so one client (or one small set of
//!   addresses) cannot hold every socket;
//! - graceful shutdown: on the signal, open connections finish their
//!   request in progress and close.
//!
//! Body-read and whole-request timeouts and request concurrency limits are
//! the router's own layers (the caller's).

use core::future::Future;
use core::net::{IpAddr, Ipv6Addr, SocketAddr};
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;

/// The connection limits of [`serve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request head not received in full within this time closes the
    /// connection; also the longest a kept-alive connection may stay idle.
    pub header_read_timeout: Duration,
    /// Open connections at once, all clients together.
    pub max_connections: usize,
    /// Open connections at once from one client address (IPv6: one /64).
    pub max_connections_per_client: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_client: 64,
        }
    }
}

/// Why [`serve`] closed a connection at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The client address already has `max_connections_per_client` open.
    ClientConnections,
    /// `max_connections` are open.
    Connections,
}

impl Refusal {
    /// A stable name, for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::ClientConnections => "client_connections",
            Refusal::Connections => "connections",
        }
    }
}

/// Counts of what [`serve`] refused, for a metrics endpoint.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    refused_client: AtomicU64,
    refused_total: AtomicU64,
    open: AtomicU64,
}

impl ConnectionStats {
    /// Connections closed at once, by reason.
    pub fn refused(&self, why: Refusal) -> u64 {
        match why {
            Refusal::ClientConnections => self.refused_client.load(Ordering::Relaxed),
            Refusal::Connections => self.refused_total.load(Ordering::Relaxed),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }
}

/// Exports [`ConnectionStats`] to a Prometheus registry (register it with
/// `Registry::register_collector` under the service's prefix):
/// `connections_refused_total{reason}` and `connections_open`.
#[derive(Debug)]
pub struct ConnectionMetrics(pub Arc<ConnectionStats>);

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

impl prometheus_client::collector::Collector for ConnectionMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), core::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let refused = [Refusal::ClientConnections, Refusal::Connections];
        let mut family = encoder.encode_descriptor(
            "connections_refused",
            "Connections closed at once by the connection limits, by reason \
             (client_connections, connections)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for why in refused {
            ConstCounter::new(self.0.refused(why)).encode(family.encode_family(
                &ReasonLabel {
                    reason: why.as_str(),
                },
            )?)?;
        }
        let open = ConstGauge::new(i64::try_from(self.0.open()).unwrap_or(i64::MAX));
        let gauge = encoder.encode_descriptor(
            "connections_open",
            "HTTP connections open",
            None,
            open.metric_type(),
        )?;
        open.encode(gauge)
    }
}

/// The key a client is counted under (connections here, request rates and
/// requests in progress in the services): its address, or its /64 for IPv6
/// (one host usually owns a whole /64, so per-address limits would be
/// trivial to evade); an IPv4-mapped address counts as the IPv4 one.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// What each client (by [`client_key`]) holds at once, capped: its open
/// connections here, its requests in progress in the services.
#[derive(Debug)]
pub struct PerClient {
    max_per_client: usize,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// A client's place in a [`PerClient`]; dropping it frees the place.
#[derive(Debug)]
pub struct PerClientPlace {
    client: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerClient {
    /// At most `max_per_client` places per client at once.
    pub fn new(max_per_client: usize) -> Self {
        Self {
            max_per_client: max_per_client.max(1),
            counts: Arc::default(),
        }
    }

    /// A place for `client`, or `None` if it holds `max_per_client`.
    pub fn enter(&self, client: IpAddr) -> Option<PerClientPlace> {
        let client = client_key(client);
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(client).or_insert(0);
        if *count >= self.max_per_client {
            return None;
        }
        *count += 1;
        Some(PerClientPlace {
            client,
            counts: self.counts.clone(),
        })
    }
}

impl Drop for PerClientPlace {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.client);
            }
        }
    }
}

/// Open connections, per client and in total.
#[derive(Debug)]
struct Table {
    limits: ConnectionLimits,
    per_client: PerClient,
    stats: Arc<ConnectionStats>,
    last_warning: Mutex<Option<Instant>>,
}

/// One admitted connection; dropping it frees its places.
struct Admitted {
    _place: PerClientPlace,
    stats: Arc<ConnectionStats>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Table {
    /// Called from the accept loop only, so the global count cannot rise
    /// between its check and its increment.
    fn admit(&self, peer: SocketAddr) -> Result<Admitted, Refusal> {
        let open = usize::try_from(self.stats.open.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        let place = if open >= self.limits.max_connections {
            Err(Refusal::Connections)
        } else {
            self.per_client
                .enter(peer.ip())
                .ok_or(Refusal::ClientConnections)
        };
        let place = place.inspect_err(|why| self.refused(peer, *why))?;
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        Ok(Admitted {
            _place: place,
            stats: self.stats.clone(),
        })
    }

    fn refused(&self, peer: SocketAddr, why: Refusal) {
        let counter = match why {
            Refusal::ClientConnections => &self.stats.refused_client,
            Refusal::Connections => &self.stats.refused_total,
        };
        let total = counter.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
            *last = Some(now);
            tracing::warn!(
                %peer,
                reason = why.as_str(),
                refused_so_far = total,
                max_connections = self.limits.max_connections,
                max_connections_per_client = self.limits.max_connections_per_client,
                "connection limit reached: connection closed at once"
            );
        }
    }
}

/// A running [`serve`], boxed (it ends after its shutdown signal).
pub type Serving = core::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// [`serve`] on a bound TCP listener: TLS with `tls` (handshakes under the
/// default [`HandshakeLimits`](crate::tls::HandshakeLimits)), plain HTTP
/// without. Fails only if the TLS listener cannot start.
pub fn serve_tcp(
    listener: tokio::net::TcpListener,
    tls: Option<&crate::tls::ServerTls>,
    router: Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Serving> {
    Ok(match tls {
        Some(tls) => {
            let listener = crate::tls::TlsListener::new(
                listener,
                tls,
                crate::tls::HandshakeLimits::default(),
            )?;
            Box::pin(serve(listener, router, limits, stats, shutdown))
        }
        None => Box::pin(serve(listener, router, limits, stats, shutdown)),
    })
}

/// Serves `router` on `listener` under `limits` until `shutdown` resolves,
/// then lets open connections finish their request in progress and
/// returns once all are closed (bound the wait with a timeout). Handlers
/// see the client address as `ConnectInfo<SocketAddr>`.
pub async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()>,
) where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let table = Table {
        limits,
        per_client: PerClient::new(limits.max_connections_per_client),
        stats,
        last_warning: Mutex::new(None),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let (open_tx, open_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let Ok(admitted) = table.admit(peer) else {
            drop(io);
            continue;
        };
        let service = tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        );
        let mut stop = stop_rx.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            let _open = open;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true);
            let connection =
                builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                () = async { let _ = stop.wait_for(|stopped| *stopped).await; } => {
                    connection.as_mut().graceful_shutdown();
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error while closing");
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_rx);
    open_tx.closed().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(per_client: usize, total: usize) -> Table {
        Table {
            limits: ConnectionLimits {
                header_read_timeout: Duration::from_secs(1),
                max_connections: total,
                max_connections_per_client: per_client,
            },
            per_client: PerClient::new(per_client),
            stats: Arc::new(ConnectionStats::default()),
            last_warning: Mutex::new(None),
        }
    }

    #[test]
    fn per_client_caps_each_client_and_frees_on_drop() {
        let places = PerClient::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("address");
        let first = places.enter(a).expect("first");
        let _second = places.enter(a).expect("second");
        assert!(places.enter(a).is_none());
        // The IPv4-mapped form is the same client.
        assert!(
            places
                .enter("::ffff:10.0.0.1".parse().expect("address"))
                .is_none()
        );
        let _other = places
            .enter("10.0.0.2".parse().expect("address"))
            .expect("other");
        drop(first);
        assert!(places.enter(a).is_some());
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn each_client_gets_its_share_and_places_free_on_close() {
        let t = table(2, 3);
        let a1 = t.admit(addr("10.0.0.1:1")).expect("a1");
        let _a2 = t.admit(addr("10.0.0.1:2")).expect("a2");
        assert_eq!(
            t.admit(addr("10.0.0.1:3")).err(),
            Some(Refusal::ClientConnections)
        );
        let _b1 = t.admit(addr("10.0.0.2:1")).expect("b1");
        // Three open: the global cap, whoever asks.
        assert_eq!(
            t.admit(addr("10.0.0.3:1")).err(),
            Some(Refusal::Connections)
        );
        drop(a1);
        let _a3 = t
            .admit(addr("10.0.0.1:4"))
            .expect("a's place is free again");
        assert_eq!(t.stats.refused(Refusal::ClientConnections), 1);
        assert_eq!(t.stats.refused(Refusal::Connections), 1);
        assert_eq!(t.stats.open(), 3);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let t = table(1, 10);
        let _a = t.admit(addr("[2001:db8:1:2::1]:1")).expect("a");
        assert_eq!(
            t.admit(addr("[2001:db8:1:2::ffff]:1")).err(),
            Some(Refusal::ClientConnections)
        );
        t.admit(addr("[2001:db8:1:3::1]:1")).expect("another /64");
    }
}

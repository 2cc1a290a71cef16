//! Real TLS handshakes between the pinned client configuration and the
//! listener: the pinned server is reached, any other key is refused before a
//! request is sent, and a stalled handshake does not block other clients.

use core::time::Duration;

use axum::Router;
use axum::routing::get;
use mazu_service::tls::{
    ClientTransport, HandshakeLimits, ServerTls, SpkiPin, TlsListener, TransportError,
};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};

async fn serve(tls: &ServerTls, limits: HandshakeLimits) -> core::net::SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let listener = TlsListener::new(tcp, tls, limits).expect("listener");
    let addr = axum::serve::Listener::local_addr(&listener).expect("addr");
    let app = Router::new().route("/healthz", get(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn client(pins: &[SpkiPin]) -> reqwest::Client {
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(5));
    ClientTransport::Pinned(pins.to_vec())
        .configure(builder)
        .expect("client config")
        .build()
        .expect("client")
}

#[test]
fn a_client_needs_exactly_one_of_a_pin_and_the_insecure_flag_and_a_matching_url() {
    let pin = SpkiPin([1; 32]);
    assert!(matches!(
        ClientTransport::from_flags(vec![], false),
        Err(TransportError::NoPin)
    ));
    assert!(matches!(
        ClientTransport::from_flags(vec![pin], true),
        Err(TransportError::Both)
    ));
    let pinned = ClientTransport::from_flags(vec![pin], false).expect("pinned");
    pinned.check_url("https://curator:7878").expect("https");
    assert!(pinned.check_url("http://curator:7878").is_err());
    let plain = ClientTransport::from_flags(vec![], true).expect("plain");
    plain.check_url("http://curator:7878").expect("http");
    assert!(plain.check_url("https://curator:7878").is_err());
    // All three flags at once: another scheme is named before a missing pin.
    assert!(matches!(
        ClientTransport::for_url("ftp://curator", vec![], false),
        Err(TransportError::Scheme { .. })
    ));
    assert!(matches!(
        ClientTransport::for_url("https://curator", vec![], false),
        Err(TransportError::NoPin)
    ));
    assert!(ClientTransport::for_url("http://curator", vec![pin], false).is_err());
    assert_eq!(
        ClientTransport::for_url("https://curator", vec![pin], false).expect("pinned"),
        pinned
    );
}

#[tokio::test]
async fn the_pinned_server_is_reached_and_another_key_is_refused() {
    let server = ServerTls::from_secret(&[1u8; 32]).expect("server key");
    let other = ServerTls::from_secret(&[2u8; 32]).expect("other key");
    let addr = serve(&server, HandshakeLimits::default()).await;
    let url = format!("https://{addr}/healthz");

    let body = client(&[server.pin()])
        .get(&url)
        .send()
        .await
        .expect("pinned server answers")
        .text()
        .await
        .expect("body");
    assert_eq!(body, "ok");
    // One of several pins is enough (key rotation).
    client(&[other.pin(), server.pin()])
        .get(&url)
        .send()
        .await
        .expect("any listed pin");

    let refused = client(&[other.pin()]).get(&url).send().await;
    let error = refused.expect_err("a server with an unpinned key is refused");
    assert!(error.is_connect(), "refused in the handshake: {error:?}");
    // The refusal names the key the server showed (an impostor's, or a
    // rotated one the pins have not caught up with).
    let mut chain = String::new();
    let mut source: Option<&dyn core::error::Error> = Some(&error);
    while let Some(e) = source {
        chain.push_str(&format!("{e}: "));
        source = e.source();
    }
    assert!(
        chain.contains(&format!("(pin {}) is not a pinned key", server.pin())),
        "{chain}"
    );
}

#[tokio::test]
async fn plain_http_to_the_tls_port_gets_no_answer() {
    let server = ServerTls::from_secret(&[3u8; 32]).expect("server key");
    let addr = serve(&server, HandshakeLimits::default()).await;
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP must not be served: {plain:?}");
}

#[tokio::test]
async fn stalled_handshakes_time_out_and_do_not_block_other_clients() {
    let server = ServerTls::from_secret(&[4u8; 32]).expect("server key");
    let limits = HandshakeLimits {
        timeout: Duration::from_millis(300),
        max_in_flight: 4,
    };
    let addr = serve(&server, limits).await;
    // Four clients connect and never send a ClientHello: every permit is
    // taken until their handshakes time out.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The timeouts closed them ...
    for mut s in stalled {
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read(&mut s, &mut buf),
        )
        .await
        .expect("closed by the server, not left hanging");
        assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
        let _ = s.shutdown().await;
    }
    // ... and a real client gets through.
    client(&[server.pin()])
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .expect("served after the stalled handshakes expired");
}

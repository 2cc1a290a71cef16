//! Ending bindings on the real curator process: the reveal window, token
//! expiry, and the holder's signed releases and revocations; each survives
//! a restart (log replay and snapshot restore).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use core::time::Duration;
use std::time::Instant;

use base64ct::{Base64, Encoding};
use common::{Curator, Fixture, code};
use mazu_curator::client::holder_request;
use mazu_curator::entry::{EntryBody, LogEntry};
use mazu_curator::holder::HolderAction;
use mazu_dev_issuer::TokenRequest;
use mazu_log::record::ReleaseReason;

/// The decoded log entries.
async fn entries(c: &Curator) -> Vec<LogEntry> {
    let page = c.get_json("/v1/log?start=0&limit=1000").await;
    page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let bytes = Base64::decode_vec(e["entry"].as_str().expect("entry")).expect("b64");
            LogEntry::from_bytes(&bytes).expect("entry decodes")
        })
        .collect()
}

/// Waits until the log holds `n` entries.
async fn wait_for_size(c: &Curator, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let size = c.get_json("/v1/log?start=0&limit=1").await["size"]
            .as_u64()
            .expect("size");
        if size >= n {
            assert_eq!(size, n, "more entries than expected");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "log stuck at {size} of {n}:\n{}",
            c.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn release_reason(entry: &LogEntry) -> Option<ReleaseReason> {
    match entry.body {
        EntryBody::Release { reason, .. } => Some(reason),
        _ => None,
    }
}

/// Junk bindings (never revealed) cannot exhaust the registry: after the
/// reveal window each is released (`unrevealed`), its slot serves a new
/// registration, and the released id can neither be revealed nor bound
/// again. A restart replays the releases to the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrevealed_bindings_are_released_after_the_window_and_their_slots_reused() {
    let fx = Fixture::new();
    let mut args = fx.args(2);
    args.extend(["--reveal-window-secs".into(), "2".into()]);
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let crs = c.crs().await;

    // Fill both slots with bindings whose tokens are never revealed.
    let junk: Vec<String> = (0..2).map(|i| fx.token(&format!("junk{i}"))).collect();
    let mut junk_agents = Vec::new();
    for token in &junk {
        let agent = c.prepare(&crs, token).await;
        let (status, body) = c.post_binding(&agent.request).await;
        assert_eq!(status, 201, "bind: {body}");
        junk_agents.push(agent);
    }
    let (status, body) = c
        .post(
            "/v1/slots",
            &serde_json::json!({ "id": hex::encode(mazu_curator::client::id_of_token(&fx.token("late"))) }),
        )
        .await;
    assert_eq!((status, code(&body)), (409, "registry_full"), "{body}");
    // It says when a slot frees: the junk bindings' window ends in ≤ 2 s.
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("release is due in about 1 s") || message.contains("about 2 s"),
        "{message}"
    );

    // After the window both are released by the curator.
    wait_for_size(&c, 4).await;
    let log = entries(&c).await;
    for (k, agent) in junk_agents.iter().enumerate() {
        let release = &log[2 + k];
        assert_eq!(release.id, agent.id);
        assert_eq!(release_reason(release), Some(ReleaseReason::Unrevealed));
        assert!(
            release.at_ms >= log[k].at_ms + 2000,
            "released before the window"
        );
    }
    // The released ids are void: no reveal, no new binding.
    let (status, body) = c.post_reveal(&junk_agents[0].request.id, &junk[0]).await;
    assert_eq!((status, code(&body)), (409, "binding_ended"), "{body}");
    let (status, body) = c.post_binding(&junk_agents[1].request).await;
    assert_eq!((status, code(&body)), (409, "already_registered"), "{body}");

    // Their slots serve real registrations now.
    let (_, first) = c.register(&crs, &fx.token("web")).await;
    let (_, second) = c.register(&crs, &fx.token("db")).await;
    assert!(first["index"].as_u64() < second["index"].as_u64());
    let metrics = c.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("mazu_curator_bindings_ended_total{reason=\"unrevealed\"} 2"),
        "{metrics}"
    );
    let params = c.get_bytes("/v1/params?format=binary").await;
    let size = c.version().await;

    // A restart replays binds and releases to the same parameters.
    c.terminate();
    let mut again = Curator::spawn(fx.dir.path(), &args);
    again.ready().await;
    assert_eq!(again.version().await, size);
    assert_eq!(again.get_bytes("/v1/params?format=binary").await, params);
}

/// A live binding is released (`expired`) once its token expired, and not
/// before: the release's time is past the token's `exp`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_bindings_are_released_after_their_tokens_expiry() {
    let fx = Fixture::new();
    let mut args = fx.args(4);
    args.extend(["--expiry-grace-secs".into(), "0".into()]);
    let c = Curator::spawn(fx.dir.path(), &args);
    let mut c = c;
    c.ready().await;
    let crs = c.crs().await;
    let mut request = TokenRequest::new("shop", "brief");
    request.lifetime = 3;
    let token = fx.issuer.mint(&request).expect("mint");
    let (agent, _) = c.register(&crs, &token).await;
    wait_for_size(&c, 3).await;
    let log = entries(&c).await;
    assert_eq!(log[2].id, agent.id);
    assert_eq!(release_reason(&log[2]), Some(ReleaseReason::Expired));
    let exp = match mazu_curator::entry::LogEntry::record(&log[1], &log[1].to_bytes())
        .expect("record")
        .body
    {
        mazu_log::record::RecordBody::Reveal { token_expiry } => token_expiry,
        other => panic!("not a reveal: {other:?}"),
    };
    assert!(log[2].at_ms / 1000 >= exp, "released before the expiry");
    c.terminate();
}

/// Only the bound TLS key ends a binding early: a release or revocation
/// signed by another key, or a release signature offered as a revocation,
/// is refused and logs nothing. The signed release frees the slot, a repeat
/// answers with the same entry, a revocation marks the id revoked in the
/// registry; both survive a restart from the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_releases_and_revocations_need_the_bound_key() {
    let fx = Fixture::new();
    let args = fx.args(2);
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let crs = c.crs().await;
    let (web, _) = c.register(&crs, &fx.token("web")).await;
    let (db, _) = c.register(&crs, &fx.token("db")).await;
    let web_slot = web.request.slot;
    let db_slot = db.request.slot;
    let path = |id: &[u8; 32], what: &str| format!("/v1/bindings/{}/{what}", hex::encode(id));

    // Signed by another key (db's, a registered workload's).
    let forged = holder_request(&db.tls_key, HolderAction::Release, &web.id, web_slot);
    let (status, body) = c.post(&path(&web.id, "release"), &forged).await;
    assert_eq!(
        (status, code(&body)),
        (403, "bad_holder_signature"),
        "{body}"
    );
    // web's own release signature, offered as a revocation.
    let release = holder_request(&web.tls_key, HolderAction::Release, &web.id, web_slot);
    let (status, body) = c.post(&path(&web.id, "revoke"), &release).await;
    assert_eq!(
        (status, code(&body)),
        (403, "bad_holder_signature"),
        "{body}"
    );
    // Signed for another slot.
    let wrong_slot = holder_request(&web.tls_key, HolderAction::Release, &web.id, db_slot);
    let (status, body) = c.post(&path(&web.id, "release"), &wrong_slot).await;
    assert_eq!(
        (status, code(&body)),
        (403, "bad_holder_signature"),
        "{body}"
    );
    // An id that was never bound.
    let (status, body) = c.post(&path(&[7; 32], "release"), &release).await;
    assert_eq!((status, code(&body)), (404, "unknown_id"), "{body}");
    assert_eq!(c.version().await, 4, "a refused request logged something");

    let (status, body) = c.post(&path(&web.id, "release"), &release).await;
    assert_eq!(status, 201, "{body}");
    let index = body["index"].as_u64().expect("index");
    assert!(body["checkpoint"].as_str().is_some());
    // A repeat gets the same entry; a revocation of the released id cannot.
    let (status, body) = c.post(&path(&web.id, "release"), &release).await;
    assert_eq!(
        (status, body["index"].as_u64()),
        (200, Some(index)),
        "{body}"
    );
    let revoke_web = holder_request(&web.tls_key, HolderAction::Revoke, &web.id, web_slot);
    let (status, body) = c.post(&path(&web.id, "revoke"), &revoke_web).await;
    assert_eq!((status, code(&body)), (409, "binding_ended"), "{body}");

    let revoke = holder_request(&db.tls_key, HolderAction::Revoke, &db.id, db_slot);
    let (status, body) = c.post(&path(&db.id, "revoke"), &revoke).await;
    assert_eq!(status, 201, "{body}");
    let log = entries(&c).await;
    assert_eq!(release_reason(&log[4]), Some(ReleaseReason::Holder));
    assert!(matches!(log[5].body, EntryBody::Revoke { .. }));

    // The registry: web gone, db listed as revoked.
    let registry: serde_json::Value = c.get_json("/v1/registry?format=json").await;
    let text = registry.to_string();
    assert!(!text.contains(&hex::encode(web.id)), "{text}");
    assert!(text.contains(&hex::encode(db.id)), "{text}");
    // Both slots (the registry's whole capacity) serve new registrations.
    c.register(&crs, &fx.token("api")).await;
    c.register(&crs, &fx.token("cache")).await;
    let params = c.get_bytes("/v1/params?format=binary").await;
    let size = c.version().await;

    // A clean stop writes a snapshot; the restart restores it (releases
    // included) to the same parameters.
    c.terminate();
    let mut again = Curator::spawn(fx.dir.path(), &args);
    again.ready().await;
    let log = again.log();
    assert!(
        log.contains(&format!("snapshot_entries={size}")) && log.contains("replayed_entries=0"),
        "restart did not restore the snapshot:\n{log}"
    );
    assert_eq!(again.version().await, size);
    assert_eq!(again.get_bytes("/v1/params?format=binary").await, params);
}

/// One namespace cannot take the whole registry: beyond
/// `--max-live-per-namespace` its reveals are refused (the binding stays
/// unrevealed and is released after the window), other namespaces carry
/// on, and a release makes room again. The count survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_over_its_quota_cannot_reveal() {
    let fx = Fixture::new();
    let mut args = fx.args(8);
    args.extend(["--max-live-per-namespace".into(), "1".into()]);
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let crs = c.crs().await;
    let (web, _) = c.register(&crs, &fx.token("web")).await;
    let db_token = fx.token("db");
    let db = c.prepare(&crs, &db_token).await;
    let (status, body) = c.post_binding(&db.request).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = c.post_reveal(&db.request.id, &db_token).await;
    assert_eq!((status, code(&body)), (409, "namespace_quota"), "{body}");
    // Another namespace is not affected.
    let other = fx
        .issuer
        .mint(&TokenRequest::new("billing", "api"))
        .expect("mint");
    c.register(&crs, &other).await;

    // After a restart the namespace still counts one live registration.
    c.terminate();
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let (status, body) = c.post_reveal(&db.request.id, &db_token).await;
    assert_eq!((status, code(&body)), (409, "namespace_quota"), "{body}");
    // web's holder releases it: db may now be revealed.
    let release = holder_request(
        &web.tls_key,
        HolderAction::Release,
        &web.id,
        web.request.slot,
    );
    let (status, body) = c
        .post(
            &format!("/v1/bindings/{}/release", web.request.id),
            &release,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = c.post_reveal(&db.request.id, &db_token).await;
    assert_eq!(status, 201, "{body}");
    c.terminate();
}

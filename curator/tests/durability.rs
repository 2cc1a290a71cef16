//! Concurrency and crash safety against the `mazu-curator` process: many
//! agents at once, `kill -9` in a loop during binds and reveals (the log
//! replays to the same state and the same Merkle root), and a torn tail
//! appended by hand.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

mod common;

use core::time::Duration;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use base64ct::{Base64, Encoding};
use common::{Curator, Fixture};
use mazu_curator::client::id_of_token;
use mazu_curator::registry::Registry;
use mazu_identity::RegistrySnapshot;
use mazu_rbe::Crs;
use rand::Rng;

/// Recomputes the public parameters from the served log, in this process,
/// and checks they are byte-identical to the served ones; and the Merkle
/// root of the log's records, which must be the served checkpoint's.
/// Returns the log size.
async fn replay_matches(c: &Curator, crs: &Crs) -> u64 {
    let mut registry = Registry::new(crs.clone());
    let mut tree = mazu_log::MerkleTree::new();
    let mut served: Vec<Vec<u8>> = Vec::new();
    let mut start = 0;
    loop {
        let page = c
            .get_json(&format!("/v1/log?start={start}&limit=1000"))
            .await;
        let entries = page["entries"].as_array().expect("entries");
        if entries.is_empty() {
            break;
        }
        for e in entries {
            let bytes = Base64::decode_vec(e["entry"].as_str().expect("entry")).expect("base64");
            let entry = mazu_curator::entry::LogEntry::from_bytes(&bytes).expect("entry");
            tree.push(entry.record(&bytes).expect("record").leaf_hash());
            let decoded = mazu_curator::registry::ReplayEntry::decode(&bytes).expect("decodes");
            registry
                .replay(decoded, |index| {
                    Ok(served[usize::try_from(index).expect("index")].clone())
                })
                .expect("served log replays");
            served.push(bytes);
        }
        start += entries.len() as u64;
    }
    let served = c.get_bytes("/v1/params?format=binary").await;
    assert_eq!(
        registry.rbe().public_params().to_bytes(),
        served,
        "replayed params differ"
    );
    let note = c.get("/v1/checkpoint").await.text().await.unwrap();
    let key = c.get("/v1/checkpoint/key").await.text().await.unwrap();
    let cp = mazu_log::checkpoint::CheckpointVerifier::parse(key.trim())
        .unwrap()
        .verify(note.as_bytes())
        .unwrap();
    assert_eq!(cp.size, registry.size(), "checkpoint size");
    assert_eq!(
        cp.root,
        tree.root(cp.size).unwrap(),
        "the served checkpoint's root is not the records' root"
    );
    registry.size()
}

/// The checkpoint root served now.
async fn root_of(c: &Curator) -> (u64, mazu_log::Hash) {
    let note = c.get("/v1/checkpoint").await.text().await.unwrap();
    let key = c.get("/v1/checkpoint/key").await.text().await.unwrap();
    let cp = mazu_log::checkpoint::CheckpointVerifier::parse(key.trim())
        .unwrap()
        .verify(note.as_bytes())
        .unwrap();
    (cp.size, cp.root)
}

#[tokio::test]
async fn many_agents_register_concurrently_each_exactly_once() {
    const AGENTS: usize = 24;
    let fx = Fixture::new();
    let mut args = fx.args(64);
    args.extend(["--rate-limit-per-minute".into(), "0".into()]);
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let crs = c.crs().await;
    let c = Arc::new(c);
    let mut tasks = Vec::new();
    for i in 0..AGENTS {
        let c = c.clone();
        let crs = crs.clone();
        let token = fx.token(&format!("sa-{i}"));
        tasks.push(tokio::spawn(async move {
            let (agent, body) = c.register(&crs, &token).await;
            (
                agent.id,
                body["index"].as_u64().unwrap(),
                u64::from(agent.request.slot),
            )
        }));
    }
    let mut ids = HashSet::new();
    let mut indices = HashSet::new();
    let mut slots = HashSet::new();
    for t in tasks {
        let (id, index, slot) = t.await.expect("agent task");
        assert!(ids.insert(id));
        assert!(indices.insert(index));
        assert!(slots.insert(slot));
    }
    // Each agent: one bind and one reveal (the reveal's index returned).
    assert_eq!(indices.len(), AGENTS);
    assert_eq!(c.version().await, 2 * AGENTS as u64);
    let snapshot = RegistrySnapshot::decode(&c.get_bytes("/v1/registry").await).unwrap();
    assert_eq!(snapshot.len(), AGENTS);
    for id in &ids {
        assert!(
            snapshot
                .get(&mazu_identity::WorkloadId::from_bytes(*id))
                .is_some()
        );
    }
    assert_eq!(replay_matches(&c, &crs).await, 2 * AGENTS as u64);
}

#[tokio::test]
async fn kill_9_during_registrations_loses_nothing_acknowledged() {
    const ROUNDS: usize = 5;
    const AGENTS: usize = 6;
    const PER_AGENT: usize = 4;
    let fx = Fixture::new();
    let mut args = fx.args(256);
    args.extend(["--rate-limit-per-minute".into(), "0".into()]);
    let acked: Arc<Mutex<Vec<[u8; 32]>>> = Arc::default();
    let mut crs = None;
    let mut rng = rand::rngs::OsRng;
    for round in 0..ROUNDS {
        let mut c = Curator::spawn(fx.dir.path(), &args);
        c.ready().await;
        let crs = crs.get_or_insert(c.crs().await).clone();

        // Everything acknowledged so far is there, and the state is exactly
        // the replay of the log.
        let version = replay_matches(&c, &crs).await;
        let acked_now = acked.lock().unwrap().clone();
        assert!(version >= 2 * acked_now.len() as u64);
        for id in &acked_now {
            let r = c.get(&format!("/v1/proofs/{}", hex::encode(id))).await;
            assert_eq!(
                r.status(),
                200,
                "round {round}: acknowledged id lost:\n{}",
                c.log()
            );
        }
        // Restarting without writes serves byte-identical parameters and
        // the same checkpoint root.
        let params = c.get_bytes("/v1/params?format=binary").await;
        let root = root_of(&c).await;
        c.kill9();
        let mut c = Curator::spawn(fx.dir.path(), &args);
        c.ready().await;
        assert_eq!(c.get_bytes("/v1/params?format=binary").await, params);
        assert_eq!(root_of(&c).await, root, "round {round}: another root");

        // Registrations in flight, then SIGKILL at a random moment.
        let c = Arc::new(c);
        let mut tasks = Vec::new();
        for a in 0..AGENTS {
            let c = c.clone();
            let crs = crs.clone();
            let acked = acked.clone();
            let tokens: Vec<String> = (0..PER_AGENT)
                .map(|k| fx.token(&format!("r{round}-a{a}-{k}")))
                .collect();
            tasks.push(tokio::spawn(async move {
                for token in tokens {
                    let Ok(agent) = tokio::time::timeout(
                        Duration::from_secs(30),
                        try_prepare(&c, &crs, &token),
                    )
                    .await
                    else {
                        return;
                    };
                    let Some(agent) = agent else { return };
                    let sent = c
                        .http
                        .post(c.url("/v1/bindings"))
                        .json(&agent.request)
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 201 => {}
                        Ok(r) => panic!("unexpected refusal {}", r.status()),
                        Err(_) => return, // the process died under us
                    }
                    let sent = c
                        .http
                        .post(c.url(&format!("/v1/bindings/{}/reveal", agent.request.id)))
                        .json(&serde_json::json!({ "token": token }))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 201 => acked.lock().unwrap().push(agent.id),
                        Ok(r) => panic!("unexpected refusal {}", r.status()),
                        Err(_) => return,
                    }
                }
            }));
        }
        // Kill while registrations are flowing: once this round has some
        // acknowledged, at a random moment shortly after.
        let target = acked_now.len() + 3;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while acked.lock().unwrap().len() < target && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let delay = rng.gen_range(0..40);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        c.kill9_shared();
        for t in tasks {
            t.await.expect("agent task");
        }
        drop(c);
    }
    // Final check after the last kill.
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let crs = crs.unwrap();
    let version = replay_matches(&c, &crs).await;
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "no registration was acknowledged before the kills"
    );
    assert!(version >= 2 * acked.len() as u64);
    let live = RegistrySnapshot::decode(&c.get_bytes("/v1/registry").await).unwrap();
    for id in &acked {
        let r = c.get(&format!("/v1/proofs/{}", hex::encode(id))).await;
        assert_eq!(r.status(), 200, "acknowledged id lost");
        assert!(
            live.get(&mazu_identity::WorkloadId::from_bytes(*id))
                .is_some(),
            "acknowledged reveal lost"
        );
    }
    eprintln!(
        "kill -9 loop: {} acknowledged, {} in the log",
        acked.len(),
        version
    );
}

/// Reserve + keygen; `None` if the process went away.
async fn try_prepare(
    c: &Curator,
    crs: &Crs,
    token: &str,
) -> Option<mazu_curator::client::AgentRegistration> {
    let r = c
        .http
        .post(c.url("/v1/slots"))
        .json(&serde_json::json!({ "id": hex::encode(id_of_token(token)) }))
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = r.json().await.ok()?;
    let slot = u32::try_from(body["slot"].as_u64()?).ok()?;
    let crs = crs.clone();
    let token = token.to_owned();
    tokio::task::spawn_blocking(move || {
        mazu_curator::client::build_registration(&crs, &token, slot, &mut rand::rngs::OsRng).ok()
    })
    .await
    .ok()?
}

#[tokio::test]
async fn torn_tail_is_discarded_and_state_kept() {
    let fx = Fixture::new();
    let args = fx.args(16);
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let crs = c.crs().await;
    for sa in ["a", "b", "c"] {
        c.register(&crs, &fx.token(sa)).await;
    }
    let params = c.get_bytes("/v1/params?format=binary").await;
    let snapshot = c.get_bytes("/v1/registry").await;
    assert!(c.terminate().success());

    // A frame cut off mid-payload, as a crash during an append leaves it.
    let log_path = fx.data_dir().join("registrations.log");
    let good_len = std::fs::metadata(&log_path).unwrap().len();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .unwrap();
        f.write_all(&[0, 0, 0x10, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3])
            .unwrap();
    }

    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    assert!(c.log().contains("discarded"), "{}", c.log());
    assert!(c.log().contains("discarded_bytes=11"), "{}", c.log());
    assert_eq!(std::fs::metadata(&log_path).unwrap().len(), good_len);
    assert_eq!(c.version().await, 6);
    assert_eq!(c.get_bytes("/v1/params?format=binary").await, params);
    assert_eq!(c.get_bytes("/v1/registry").await, snapshot);

    // It keeps working, and a restart keeps the new state.
    c.register(&crs, &fx.token("d")).await;
    let params = c.get_bytes("/v1/params?format=binary").await;
    c.kill9();
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    assert_eq!(c.version().await, 8);
    assert_eq!(c.get_bytes("/v1/params?format=binary").await, params);
    assert_eq!(replay_matches(&c, &crs).await, 8);
}

#[tokio::test]
async fn restart_uses_the_shutdown_snapshot_and_ignores_a_damaged_one() {
    let fx = Fixture::new();
    let args = fx.args(16);
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let crs = c.crs().await;
    for sa in ["a", "b", "c"] {
        c.register(&crs, &fx.token(sa)).await;
    }
    let params = c.get_bytes("/v1/params?format=binary").await;
    let registry = c.get_bytes("/v1/registry").await;
    assert!(c.terminate().success());
    let snapshot = fx.data_dir().join("state.snapshot");
    assert!(snapshot.exists(), "no shutdown snapshot:\n{}", c.log());

    // Restart from the snapshot: nothing to replay.
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let log = c.log();
    assert!(log.contains("snapshot_entries=6"), "{log}");
    assert!(log.contains("replayed_entries=0"), "{log}");
    assert!(log.contains("snapshot_load_ms="), "{log}");
    assert_eq!(c.get_bytes("/v1/params?format=binary").await, params);
    assert_eq!(c.get_bytes("/v1/registry").await, registry);
    c.kill9();

    // A damaged snapshot: refused with a warning, the log is replayed, same state.
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&snapshot, &bytes).unwrap();
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let log = c.log();
    assert!(log.contains("state snapshot not used"), "{log}");
    assert!(log.contains("checksum"), "{log}");
    assert!(log.contains("replayed_entries=6"), "{log}");
    assert_eq!(c.get_bytes("/v1/params?format=binary").await, params);
    assert_eq!(c.get_bytes("/v1/registry").await, registry);
    assert_eq!(replay_matches(&c, &crs).await, 6);
}

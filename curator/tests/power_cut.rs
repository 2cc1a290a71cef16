//! Power cuts, not only `kill -9`: the curator runs under `powercut.so`
//! (`mazu_service::powercut`, an LD_PRELOAD shim) which keeps beside its
//! data directory what a power cut would leave of it: file contents as of
//! their last fsync, directory changes as of the directory's last fsync.
//! While registrations run continuously the curator is killed, the data
//! directory is replaced by that durable state (every write not yet
//! fsynced is dropped), and the curator restarted on it. Every entry it
//! acknowledged (a `201` naming its index and leaf hash) must be in the log
//! at that index, after every cut.
//!
//! `MAZU_POWER_CUTS` sets the number of cuts (default 6; the documented
//! longer run uses 100). Needs a C compiler (`cc`) for the shim.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use core::time::Duration;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{Curator, Fixture};
use rand::Rng as _;

/// Builds the shim once per test process.
fn shim() -> PathBuf {
    static SHIM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    SHIM.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mazu-powercut-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        mazu_service::powercut::build_shim(&dir).expect("the power-cut shim needs cc")
    })
    .clone()
}

fn copy_dir(from: &Path, to: &Path) {
    mazu_service::powercut::copy_dir(from, to).unwrap();
}

/// An acknowledged entry: its index and leaf hash (hex).
type Ack = (u64, String);

/// Binds and reveals fresh tokens until the task is aborted, recording
/// every acknowledged entry.
async fn register_forever(c: Arc<Curator>, fx: Arc<Fixture>, acks: Arc<Mutex<Vec<Ack>>>) {
    let crs = c.crs().await;
    for n in 0u64.. {
        let token = fx.token(&format!("sa-{}-{n}", rand::random::<u32>()));
        let id = mazu_curator::client::id_of_token(&token);
        let (status, body) = c
            .post("/v1/slots", &serde_json::json!({ "id": hex::encode(id) }))
            .await;
        let Some(slot) = body["slot"].as_u64().filter(|_| status == 201) else {
            // Full (the previous run's reservations are gone with it, the
            // slots stay bound): wait, the cut comes anyway.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let crs_for_keygen = crs.clone();
        let minted = token.clone();
        let agent = tokio::task::spawn_blocking(move || {
            mazu_curator::client::build_registration(
                &crs_for_keygen,
                &minted,
                u32::try_from(slot).unwrap(),
                &mut rand::rngs::OsRng,
            )
            .unwrap()
        })
        .await
        .unwrap();
        let record = |body: &serde_json::Value| {
            acks.lock().unwrap().push((
                body["index"].as_u64().unwrap(),
                body["leaf_hash"].as_str().unwrap().to_owned(),
            ));
        };
        let (status, body) = c.post_binding(&agent.request).await;
        if status != 201 {
            continue;
        }
        record(&body);
        let (status, body) = c.post_reveal(&agent.request.id, &token).await;
        if status == 201 {
            record(&body);
        }
    }
}

/// Every acknowledged entry is in the served log at its index.
async fn assert_all_present(c: &Curator, acks: &[Ack], cut: usize) {
    let mut entries: Vec<String> = Vec::new();
    loop {
        let page = c
            .get_json(&format!("/v1/log?start={}&limit=500", entries.len()))
            .await;
        let got = page["entries"].as_array().unwrap();
        if got.is_empty() {
            break;
        }
        entries.extend(
            got.iter()
                .map(|e| e["leaf_hash"].as_str().unwrap().to_owned()),
        );
    }
    for (index, leaf) in acks {
        let served = entries
            .get(usize::try_from(*index).unwrap())
            .map(String::as_str);
        assert_eq!(
            served,
            Some(leaf.as_str()),
            "after cut {cut}: acknowledged entry {index} lost ({} served):\n{}",
            entries.len(),
            c.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_entries_survive_power_cuts() {
    let cuts: usize = std::env::var("MAZU_POWER_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let shim = shim();
    let fx = Arc::new(Fixture::new());
    let data = fx.data_dir();
    let shadow = fx.dir.path().join("durable");
    let mut args = fx.args(1024);
    args.extend(["--rate-limit-per-minute", "0", "--snapshot-every", "5"].map(String::from));
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let mut rng = rand::thread_rng();
    for cut in 0..cuts {
        // What survived the last cut is the durable state to start from.
        copy_dir(&data, &shadow);
        std::fs::create_dir_all(&data).unwrap();
        let env = mazu_service::powercut::env(&shim, &data, &shadow);
        let env: Vec<(&str, &std::ffi::OsStr)> =
            env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        let mut c = Curator::spawn_with_env(fx.dir.path(), &args, &env);
        c.ready().await;
        let acked = acks.lock().unwrap().clone();
        assert_all_present(&c, &acked, cut).await;
        let c = Arc::new(c);
        let load = tokio::spawn(register_forever(c.clone(), fx.clone(), acks.clone()));
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1500))).await;
        // The cut: the process dies mid-flight, and the disk keeps only
        // what was fsynced.
        c.kill9_shared();
        load.abort();
        let _ = load.await;
        // The last reference: its drop reaps the dead process.
        drop(c);
        copy_dir(&shadow, &data);
    }
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let acks = acks.lock().unwrap().clone();
    assert_all_present(&c, &acks, cuts).await;
    assert!(
        acks.len() >= cuts,
        "too few acknowledged entries ({}) to mean anything",
        acks.len()
    );
    eprintln!(
        "power cuts: {cuts}, acknowledged entries: {}, all present",
        acks.len()
    );
    c.terminate();
}

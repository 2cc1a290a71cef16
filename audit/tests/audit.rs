//! `mazu-audit` against a real curator: a clean log audits OK; a curator
//! that drops, reorders or forges an entry, or serves an inconsistent
//! checkpoint, is caught (by tampering with its data files and restarting
//! it, or by a lying proxy in front of it); the monitor fires for a new
//! registration of the watched SPIFFE ID.

#![allow(clippy::unwrap_used, reason = "tests panic on failure by design")]

mod common;

use common::{Lie, World, lying_proxy};
use mazu_audit::check::Report;
use mazu_curator::entry::LogEntry;
use mazu_wasm_tests::curator_log::{read_log, write_log};

fn assert_clean(r: &Report) {
    assert!(
        r.is_clean(),
        "unexpected discrepancies: {:#?}",
        r.discrepancies
    );
}

/// The report has a discrepancy containing `needle` (at `index`, if given).
fn assert_found(r: &Report, index: Option<u64>, needle: &str) {
    assert!(
        r.discrepancies
            .iter()
            .any(|d| d.message.contains(needle) && (index.is_none() || d.index == index)),
        "no discrepancy {needle:?} at {index:?} in {:#?}",
        r.discrepancies
    );
}

async fn setup(n: usize) -> (World, common::RunningCurator, mazu_rbe::Crs) {
    let w = World::new();
    let c = w.start().await;
    let crs = c.crs().await;
    for i in 0..n {
        c.register(&w, &crs, "shop", &format!("sa-{i}")).await;
    }
    (w, c, crs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_log_audits_ok_and_remembers_its_checkpoint() {
    let (w, c, crs) = setup(4).await;
    let state = w.dir.path().join("audit-state.json");
    let r = w.audit(&c.base, &crs, Some(&state)).await;
    assert_clean(&r);
    assert_eq!(
        (r.entries, r.checkpoint_size, r.compared_version),
        (4, Some(4), Some(4))
    );
    assert!(r.state_updated);
    // Grows, still consistent with the remembered checkpoint.
    c.register(&w, &crs, "shop", "late").await;
    let r = w.audit(&c.base, &crs, Some(&state)).await;
    assert_clean(&r);
    assert_eq!(r.checkpoint_size, Some(5));
    // The wrong CRS digest is reported (nothing else can be checked).
    let mut cfg = w.check_config(&c.base, &crs, None);
    cfg.crs_digest[0] ^= 1;
    let r = mazu_audit::check::run(&cfg, &mut |_| {}).await.unwrap();
    assert_found(&r, None, "not the expected");
    c.stop().await;
}

/// A proxy that lies about the log in front of an honest curator: the
/// signed checkpoint (which it cannot forge) and the served parameters give
/// it away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_log_is_caught() {
    let (w, c, crs) = setup(4).await;

    let honest = lying_proxy(c.base.clone(), Lie::Honest).await;
    assert_clean(&w.audit(&honest, &crs, None).await);

    // Dropped entry: the log is short of the checkpoint.
    let p = lying_proxy(c.base.clone(), Lie::Drop(1)).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, None, "the log ends at 3 entries");

    // Reordered entries: out of time order, and the root differs.
    let p = lying_proxy(c.base.clone(), Lie::Swap(1, 2)).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, Some(2), "out of order");
    assert_found(&r, None, "Merkle root");

    // A forged entry (another TLS key in entry 3): its proof of possession
    // fails, the root differs, and the served registry is not the replay's.
    let (_, frames) = read_log(&w.data_dir()).unwrap();
    let mut forged = LogEntry::from_bytes(&frames[3]).unwrap();
    let other = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    forged.tls_spki = mazu_curator::client::spki_der(&other);
    let p = lying_proxy(c.base.clone(), Lie::Replace(3, forged.to_bytes())).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, Some(3), "proof of possession");
    assert_found(&r, None, "Merkle root");
    assert_found(&r, None, "served registry");

    // A forged token (signature bytes changed): refused at its index.
    let mut forged = LogEntry::from_bytes(&frames[0]).unwrap();
    let n = forged.token.len();
    forged.token[n - 3] = if forged.token[n - 3] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let p = lying_proxy(c.base.clone(), Lie::Replace(0, forged.to_bytes())).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, Some(0), "token refused");
    c.stop().await;
}

/// The curator itself rewrites its log (and signs checkpoints over the
/// rewritten log): a fresh audit catches what is checkable entry by entry;
/// an auditor who remembers an earlier checkpoint catches the fork or the
/// rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_curator_that_rewrites_its_log_is_caught() {
    let (w, c, crs) = setup(4).await;
    let state = w.dir.path().join("audit-state.json");
    assert_clean(&w.audit(&c.base, &crs, Some(&state)).await);
    c.stop().await;
    let (header, frames) = read_log(&w.data_dir()).unwrap();
    assert_eq!(frames.len(), 4);

    // Reordered on disk: the curator replays it happily and signs it.
    let mut reordered = frames.clone();
    reordered.swap(1, 2);
    write_log(&w.data_dir(), header, &reordered).unwrap();
    let c = w.start().await;
    let fresh = w.audit(&c.base, &crs, None).await;
    assert_found(&fresh, Some(2), "out of order");
    let r = w.audit(&c.base, &crs, Some(&state)).await;
    assert_found(&r, None, "no longer hash to the checkpoint seen before");
    assert_found(&r, None, "consistency proof");
    assert!(!r.state_updated);
    c.stop().await;

    // Dropped on disk (the last entry): a rollback.
    write_log(&w.data_dir(), header, &frames[..3]).unwrap();
    let c = w.start().await;
    let r = w.audit(&c.base, &crs, Some(&state)).await;
    assert_found(&r, None, "rolled back");
    c.stop().await;

    // Dropped in the middle and the log regrown to the same size: a fork.
    let mut dropped = frames.clone();
    dropped.remove(1);
    write_log(&w.data_dir(), header, &dropped).unwrap();
    let c = w.start().await;
    c.register(&w, &crs, "shop", "refill").await;
    let r = w.audit(&c.base, &crs, Some(&state)).await;
    assert_found(&r, None, "no longer hash to the checkpoint seen before");
    c.stop().await;

    // Forged on disk: another TLS key in entry 2 (the curator's replay does
    // not re-check proofs of possession; the audit does).
    let mut forged_frames = frames.clone();
    let mut forged = LogEntry::from_bytes(&frames[2]).unwrap();
    let other = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    forged.tls_spki = mazu_curator::client::spki_der(&other);
    forged_frames[2] = forged.to_bytes();
    write_log(&w.data_dir(), header, &forged_frames).unwrap();
    let c = w.start().await;
    let r = w.audit(&c.base, &crs, None).await;
    assert_found(&r, Some(2), "proof of possession");
    c.stop().await;
}

/// Checkpoints that contradict each other or change key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inconsistent_checkpoints_are_caught() {
    let (w, c, crs) = setup(2).await;
    let old_note = c.text("/v1/checkpoint").await;
    c.register(&w, &crs, "shop", "more").await;
    let state = w.dir.path().join("audit-state.json");
    assert_clean(&w.audit(&c.base, &crs, Some(&state)).await);

    // A stale checkpoint (validly signed, smaller) after a newer one.
    let p = lying_proxy(c.base.clone(), Lie::Checkpoint(old_note.clone())).await;
    let r = w.audit(&p, &crs, Some(&state)).await;
    assert_found(&r, None, "rolled back");

    // A tampered checkpoint: the signature fails.
    let tampered = old_note.replacen("\n2\n", "\n3\n", 1);
    let p = lying_proxy(c.base.clone(), Lie::Checkpoint(tampered)).await;
    let r = w.audit(&p, &crs, Some(&state)).await;
    assert_found(&r, None, "does not verify");

    // A checkpoint, validly signed with the curator's key, of the right size
    // and root, that binds another registry (what a curator would sign to
    // serve filters a registry its log does not yield).
    let key = std::fs::read_to_string(w.data_dir().join("checkpoint.key")).unwrap();
    let key: [u8; 32] = hex::decode(key.trim()).unwrap().try_into().unwrap();
    let honest = c.text("/v1/checkpoint").await;
    let origin = honest.lines().next().unwrap();
    let signer = mazu_log::CheckpointSigner::new(origin, &key).unwrap();
    let cp = signer.verifier().verify(honest.as_bytes()).unwrap();
    let other_registry = mazu_log::evidence::registry_extension(&[7; 32]);
    let lie = signer.sign_with_extensions(cp.size, &cp.root, vec![other_registry]);
    let p = lying_proxy(c.base.clone(), Lie::Checkpoint(lie)).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, None, "a registry the log does not yield");
    // ... or none at all.
    let bare = signer.sign(cp.size, &cp.root);
    let p = lying_proxy(c.base.clone(), Lie::Checkpoint(bare)).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, None, "does not bind a registry");
    c.stop().await;

    // Another checkpoint key (the key file replaced): the pinned key wins.
    std::fs::remove_file(w.data_dir().join("checkpoint.key")).unwrap();
    let c = w.start().await;
    let r = w.audit(&c.base, &crs, Some(&state)).await;
    assert_found(&r, None, "not the pinned");
    assert_found(&r, None, "does not verify");
    c.stop().await;
}

/// The binary: exit codes, DISCREPANCY lines, progress on stderr, and the
/// monitor's ALERT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reports_and_the_monitor_alerts() {
    let (w, c, crs) = setup(2).await;
    let bin = env!("CARGO_BIN_EXE_mazu-audit");
    let check = |base: String| {
        let args = vec![
            "check".to_owned(),
            "--curator".into(),
            base,
            "--crs-digest".into(),
            hex::encode(crs.digest()),
            "--issuer".into(),
            w.issuer_arg(),
            "--audience".into(),
            mazu_dev_issuer::DEV_AUDIENCE.into(),
        ];
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(bin).args(args).output().unwrap()
            })
            .await
            .unwrap()
        }
    };
    let o = check(c.base.clone()).await;
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.starts_with("OK: 2 entries checked"), "{stdout}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("checked 2/2 entries"));

    let p = lying_proxy(c.base.clone(), Lie::Swap(0, 1)).await;
    let o = check(p).await;
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("DISCREPANCY index=1: accepted at"),
        "{stdout}"
    );
    assert!(
        stdout.lines().last().unwrap().starts_with("FAILED"),
        "{stdout}"
    );

    // Monitor: existing entries of another identity do not alert; a new
    // registration of the watched one does.
    let mut monitor = tokio::process::Command::new(bin)
        .args([
            "monitor",
            "--curator",
            &c.base,
            "--spiffe-id",
            "spiffe://cluster.local/ns/pay/sa/ledger",
            "--interval-secs",
            "1",
            "--exit-on-alert",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::sleep(core::time::Duration::from_millis(1500)).await;
    assert!(
        monitor.try_wait().unwrap().is_none(),
        "alerted without a registration"
    );
    c.register(&w, &crs, "pay", "ledger").await;
    let out = tokio::time::timeout(
        core::time::Duration::from_secs(30),
        monitor.wait_with_output(),
    )
    .await
    .expect("monitor did not alert")
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(
            "ALERT registration of spiffe://cluster.local/ns/pay/sa/ledger at index=2 "
        ),
        "{stdout}"
    );

    // --once with a state file: reports once, then nothing new.
    let state = w.dir.path().join("monitor.json");
    let once = |state: std::path::PathBuf| {
        let base = c.base.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin)
                .args(["monitor", "--curator", &base, "--once", "--state"])
                .arg(&state)
                .args(["--spiffe-id", "spiffe://cluster.local/ns/pay/sa/ledger"])
                .output()
                .unwrap()
        })
    };
    assert_eq!(once(state.clone()).await.unwrap().status.code(), Some(1));
    assert_eq!(once(state.clone()).await.unwrap().status.code(), Some(0));
    c.stop().await;
}

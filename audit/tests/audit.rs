//! `mazu-audit` against a real curator whose checkpoints real `mazu-witness`
//! servers cosign (log format 2: bind, then reveal): a clean log audits OK
//! with its witnessed time; a checkpoint below the witness quorum is
//! refused; a curator (or a proxy in front of it) that drops, reorders or
//! changes entries, logs a record its entry does not support, logs a second
//! binding of a bound id or a reveal with an invalid token, or serves
//! inconsistent checkpoints, is caught; the CLI and the monitor report.

#![allow(clippy::unwrap_used, reason = "tests panic on failure by design")]

mod common;

use common::{Lie, World, lying_proxy, record_of};
use mazu_audit::check::Report;
use mazu_curator::entry::{EntryBody, LogEntry};
use mazu_testkit::curator_log::read_log;
use sha2::Digest as _;

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

/// A world, its curator and `n` registrations (`2n` entries: bind, reveal).
async fn setup(n: usize) -> (World, common::RunningCurator, mazu_rbe::Crs) {
    let w = World::new().await;
    let c = w.start().await;
    let crs = c.crs().await;
    for i in 0..n {
        c.register(&w, &crs, "shop", &format!("sa-{i}")).await;
    }
    (w, c, crs)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_log_audits_ok_and_remembers_its_checkpoint() {
    let (w, c, crs) = setup(2).await;
    // A pending binding (not revealed yet) is fine too.
    let pending = w.token("shop", "pending");
    c.bind(&crs, &pending).await;
    let state = w.dir.path().join("audit-state.json");
    let r = w.audit(&c.base, &crs, Some(&state)).await;
    assert_clean(&r);
    assert_eq!(
        (r.entries, r.checkpoint_size, r.compared_version),
        (5, Some(5), Some(5))
    );
    assert_eq!(r.cosigners.len(), common::WITNESSES);
    let witnessed = r.witnessed_at.unwrap();
    assert!(witnessed.abs_diff(now_secs()) < 120, "{witnessed}");
    assert!(r.state_updated);
    // Grows (the reveal of the pending binding), still consistent with the
    // remembered checkpoint.
    c.reveal(&pending).await;
    let r = w.audit(&c.base, &crs, Some(&state)).await;
    assert_clean(&r);
    assert_eq!(r.checkpoint_size, Some(6));
    // The wrong CRS digest is reported (nothing else can be checked).
    let mut cfg = w.check_config(&c.base, &crs, None);
    cfg.crs_digest[0] ^= 1;
    let r = mazu_audit::check::run(&cfg, &mut |_| {}).await.unwrap();
    assert_found(&r, None, "not the expected");
    c.stop().await;
}

/// The witness quorum: a checkpoint cosigned by fewer witnesses than the
/// quorum is refused (nothing is checked against it); without witnesses the
/// audit does not run unless explicitly insecure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_below_the_witness_quorum_is_refused() {
    let (w, c, crs) = setup(1).await;
    let honest = c.text("/v1/checkpoint").await;

    // One cosignature line stripped: one witness of two.
    let witness_line = format!("— {} ", w.witnesses[1].verifier().name());
    let stripped: String = honest
        .split_inclusive('\n')
        .filter(|l| !l.starts_with(&witness_line))
        .collect();
    assert_ne!(stripped, honest);
    let p = lying_proxy(c.base.clone(), Lie::Checkpoint(stripped)).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, None, "lacks the witness quorum");
    assert_eq!((r.checkpoint_size, r.witnessed_at), (None, None));
    assert!(
        !r.discrepancies
            .iter()
            .any(|d| d.message.contains("Merkle root"))
    );
    // The same note meets a quorum of 1.
    let mut cfg = w.check_config(&p, &crs, None);
    cfg.witness_quorum = Some(1);
    let r = mazu_audit::check::run(&cfg, &mut |_| {}).await.unwrap();
    assert_clean(&r);
    assert_eq!(
        r.cosigners,
        vec![w.witnesses[0].verifier().name().to_owned()]
    );

    // A witness the auditor trusts that never cosigned (quorum: all three).
    let absent = mazu_log::CosignatureSigner::new("absent.audit.test", &[9; 32]).unwrap();
    let mut cfg = w.check_config(&c.base, &crs, None);
    cfg.witnesses.push(absent.verifier());
    let r = mazu_audit::check::run(&cfg, &mut |_| {}).await.unwrap();
    assert_found(&r, None, "lacks the witness quorum");

    // A bad cosignature line claiming a configured witness: refused.
    let sig = honest
        .lines()
        .find(|l| l.starts_with(&witness_line))
        .unwrap()
        .to_owned();
    // A character inside the signature (not the key hash, not padding).
    let mut bad = sig.clone().into_bytes();
    let n = bad.len();
    bad[n - 20] = if bad[n - 20] == b'A' { b'B' } else { b'A' };
    let forged = honest.replace(&sig, &String::from_utf8(bad).unwrap());
    let p = lying_proxy(c.base.clone(), Lie::Checkpoint(forged)).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, None, "lacks the witness quorum");

    // No witnesses: refused to run; with the explicit flag: runs, unwitnessed.
    let mut cfg = w.check_config(&c.base, &crs, None);
    cfg.witnesses.clear();
    let e = mazu_audit::check::run(&cfg, &mut |_| {}).await.unwrap_err();
    assert!(e.to_string().contains("--insecure-no-witness"), "{e}");
    cfg.witness_quorum = Some(0);
    assert!(mazu_audit::check::run(&cfg, &mut |_| {}).await.is_err());
    cfg.insecure_no_witness = true;
    let r = mazu_audit::check::run(&cfg, &mut |_| {}).await.unwrap();
    assert_clean(&r);
    assert_eq!((r.checkpoint_size, r.witnessed_at), (Some(2), None));
    c.stop().await;
}

/// A proxy that lies about the log in front of an honest curator: the
/// witnessed checkpoint (which it cannot forge) and the records give it
/// away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_log_is_caught() {
    let (w, c, crs) = setup(2).await;

    let honest = lying_proxy(c.base.clone(), Lie::Honest).await;
    assert_clean(&w.audit(&honest, &crs, None).await);

    // Dropped entry: the log is short of the checkpoint.
    let p = lying_proxy(c.base.clone(), Lie::Drop(1)).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, None, "the log ends at 3 entries");

    // Reordered entries (the first reveal and the second bind): out of
    // time order, and the root differs.
    let p = lying_proxy(c.base.clone(), Lie::Swap(1, 2)).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, Some(2), "out of order");
    assert_found(&r, None, "Merkle root");

    // Entry 2 (a bind) with another TLS key, under its honest record: the
    // record does not match the entry, and its proof of possession fails.
    let log = c.log().await;
    let mut forged = LogEntry::from_bytes(&log[2].0).unwrap();
    let other = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let EntryBody::Bind { tls_spki, .. } = &mut forged.body else {
        panic!("entry 2 is not a bind")
    };
    *tls_spki = mazu_curator::client::spki_der(&other);
    let p = lying_proxy(c.base.clone(), Lie::Replace(2, forged.to_bytes())).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, Some(2), "not the record of its entry");
    assert_found(&r, Some(2), "proof of possession");

    // A reveal's token with changed signature bytes: its SHA-256 is not
    // the id any more, so the entry has no valid record.
    let mut forged = LogEntry::from_bytes(&log[1].0).unwrap();
    let EntryBody::Reveal { token } = &mut forged.body else {
        panic!("entry 1 is not a reveal")
    };
    let n = token.len();
    token[n - 3] = if token[n - 3] == b'A' { b'B' } else { b'A' };
    let p = lying_proxy(c.base.clone(), Lie::Replace(1, forged.to_bytes())).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, Some(1), "no valid record");
    c.stop().await;
}

/// The curator logs a record its entry does not support, under a checkpoint
/// its witnesses cosigned (they see records only): the record check catches
/// it, and the registry it yields is not the served one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_does_not_match_its_entry_is_caught() {
    let (w, c, crs) = setup(2).await;
    let mut log = c.log().await;
    // The bind at 2 recorded with another key hash: filters would trust a
    // key that the entry (its proof of possession) never bound.
    let mut record = mazu_log::LeafRecord::from_bytes(&log[2].1).unwrap();
    let mazu_log::RecordBody::Bind { spki_hash, .. } = &mut record.body else {
        panic!("entry 2 is not a bind")
    };
    *spki_hash = [7; 32];
    log[2].1 = record.to_bytes();
    let p = w.serve_forged(&c.base, log).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, Some(2), "not the record of its entry");
    assert_found(&r, None, "served registry");
    // The forged checkpoint itself verifies: the entries are what is wrong.
    assert!(r.witnessed_at.is_some());
    assert!(
        !r.discrepancies
            .iter()
            .any(|d| d.message.contains("Merkle root"))
    );
    c.stop().await;
}

/// First binding wins: a second, perfectly valid bind of a bound id
/// (crafted from the curator's own log file, with a fresh key in a free
/// slot and a valid proof of possession) is void, and an honest curator
/// never logs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_binding_of_a_bound_id_is_caught() {
    let (w, c, crs) = setup(2).await;
    c.stop().await;
    let (_, mut frames) = read_log(&w.data_dir()).unwrap();
    assert_eq!(frames.len(), 4);
    let first = LogEntry::from_bytes(&frames[0]).unwrap();
    let free_slot = CAPACITY_MINUS_ONE;
    let EntryBody::Bind { token_expiry, .. } = first.body else {
        panic!("entry 0 is not a bind");
    };
    let agent = mazu_curator::client::build_binding_of(
        &crs,
        &first.id,
        token_expiry,
        free_slot,
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let b64 = |s: &str| <base64ct::Base64 as base64ct::Encoding>::decode_vec(s).unwrap();
    let registration: mazu_rbe::Registration =
        serde_json::from_value(agent.request.registration.clone()).unwrap();
    let second = LogEntry {
        at_ms: LogEntry::from_bytes(frames.last().unwrap()).unwrap().at_ms + 1,
        id: first.id,
        body: EntryBody::Bind {
            slot: free_slot,
            token_expiry,
            tls_spki: b64(&agent.request.tls_spki),
            tls_signature: b64(&agent.request.tls_signature),
            registration: registration.to_bytes(),
        },
    };
    frames.push(second.to_bytes());
    // The curator refuses to replay a log with a void entry: it is served
    // (with a witnessed checkpoint over it) by a lying front instead.
    let c = w.start().await;
    let p = w.serve_forged_frames(&c.base, &frames).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, Some(4), "first binding wins");
    assert_found(&r, Some(4), "bound at index 0");
    // Nothing else is wrong with the entry itself.
    assert!(
        !r.discrepancies
            .iter()
            .any(|d| d.index == Some(4) && d.message.contains("proof of possession")),
        "{:#?}",
        r.discrepancies
    );
    c.stop().await;
}

const CAPACITY_MINUS_ONE: u32 = common::CAPACITY - 1;

/// Reveals: a token the configured issuers did not sign (the curator never
/// checks tokens at bind time, so the bind itself is honest), and a reveal
/// of an id that is not bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reveal_with_an_invalid_token_is_caught() {
    let (w, c, crs) = setup(1).await;
    let rogue = mazu_dev_issuer::DevIssuer::generate(
        mazu_dev_issuer::Algorithm::Es256,
        mazu_dev_issuer::DEFAULT_ISSUER_URL,
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let token = rogue
        .mint(&mazu_dev_issuer::TokenRequest::new("shop", "rogue"))
        .unwrap();
    let id: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
    c.bind(&crs, &token).await;
    let mut log = c.log().await;
    assert_eq!(log.len(), 3);
    let at_ms = LogEntry::from_bytes(&log[2].0).unwrap().at_ms + 1;
    let reveal = LogEntry {
        at_ms,
        id,
        body: EntryBody::Reveal {
            token: token.into_bytes(),
        },
    }
    .to_bytes();
    // A valid token of the trusted issuer, for an id never bound.
    let unbound_token = w.token("shop", "unbound");
    let unbound = LogEntry {
        at_ms: at_ms + 1,
        id: sha2::Sha256::digest(unbound_token.as_bytes()).into(),
        body: EntryBody::Reveal {
            token: unbound_token.into_bytes(),
        },
    }
    .to_bytes();
    log.push((reveal.clone(), record_of(&reveal)));
    log.push((unbound.clone(), record_of(&unbound)));
    let p = w.serve_forged(&c.base, log).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, Some(3), "revealed token refused");
    assert_found(&r, Some(4), "void reveal");
    assert!(
        !r.discrepancies
            .iter()
            .any(|d| d.index == Some(4) && d.message.contains("token refused")),
        "{:#?}",
        r.discrepancies
    );
    c.stop().await;
}

/// The curator itself rewrites its log (and signs checkpoints over the
/// rewritten log): a fresh audit catches what is checkable entry by entry;
/// an auditor who remembers an earlier checkpoint catches the fork or the
/// rollback. (Witnesses that already cosigned the original refuse the
/// rewritten log, so these are served by a front with a forged note.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_curator_that_rewrites_its_log_is_caught() {
    let (w, c, crs) = setup(2).await;
    let state = w.dir.path().join("audit-state.json");
    assert_clean(&w.audit(&c.base, &crs, Some(&state)).await);
    let log = c.log().await;
    assert_eq!(log.len(), 4);

    let serve = |log: Vec<(Vec<u8>, Vec<u8>)>| w.serve_forged(&c.base, log);
    // Reordered (the first reveal after the second bind): out of time order
    // for a fresh auditor; a fork for one who remembers.
    let mut reordered = log.clone();
    reordered.swap(1, 2);
    let p = serve(reordered).await;
    let fresh = w.audit(&p, &crs, None).await;
    assert_found(&fresh, Some(2), "out of order");
    let r = w.audit(&p, &crs, Some(&state)).await;
    assert_found(&r, None, "no longer hash to the checkpoint seen before");
    assert_found(&r, None, "consistency proof");
    assert!(!r.state_updated);

    // The last entry dropped: a rollback.
    let p = serve(log[..3].to_vec()).await;
    let r = w.audit(&p, &crs, Some(&state)).await;
    assert_found(&r, None, "rolled back");
    c.stop().await;
}

/// Checkpoints that contradict each other, are tampered with, or are
/// signed with another key than the pinned one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inconsistent_checkpoints_are_caught() {
    let (w, c, crs) = setup(1).await;
    let old_note = c.text("/v1/checkpoint").await;
    c.register(&w, &crs, "shop", "more").await;
    let state = w.dir.path().join("audit-state.json");
    assert_clean(&w.audit(&c.base, &crs, Some(&state)).await);

    // A stale checkpoint (validly signed and witnessed, smaller) after a
    // newer one.
    let p = lying_proxy(c.base.clone(), Lie::Checkpoint(old_note.clone())).await;
    let r = w.audit(&p, &crs, Some(&state)).await;
    assert_found(&r, None, "rolled back");

    // A tampered checkpoint: the signature fails.
    let tampered = old_note.replacen("\n2\n", "\n3\n", 1);
    assert_ne!(tampered, old_note);
    let p = lying_proxy(c.base.clone(), Lie::Checkpoint(tampered)).await;
    let r = w.audit(&p, &crs, Some(&state)).await;
    assert_found(&r, None, "does not verify");

    // Another pinned key: reported, and the checkpoint does not verify.
    let other = mazu_log::CheckpointSigner::new(common::ORIGIN, &[5; 32]).unwrap();
    let mut cfg = w.check_config(&c.base, &crs, None);
    cfg.checkpoint_key = Some(other.verifier().to_vkey());
    let r = mazu_audit::check::run(&cfg, &mut |_| {}).await.unwrap();
    assert_found(&r, None, "not the pinned");
    assert_found(&r, None, "does not verify");

    // The forged note of the honest log is clean (the harness's forgery
    // is faithful, so the refusals above are the audit's).
    let p = lying_proxy(
        c.base.clone(),
        Lie::Forged {
            log: c.log().await,
            witnesses: w.witness_signers(),
        },
    )
    .await;
    assert_clean(&w.audit(&p, &crs, None).await);
    c.stop().await;
}

/// The binary: exit codes, DISCREPANCY lines, the witnessed time, progress
/// on stderr, and the monitor's ALERTs for binds and reveals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reports_and_the_monitor_alerts() {
    let (w, c, crs) = setup(1).await;
    let bin = env!("CARGO_BIN_EXE_mazu-audit");
    let check = |base: String, witnesses: bool| {
        let mut args = vec![
            "check".to_owned(),
            "--insecure-plain-http".into(),
            "--curator".into(),
            base,
            "--crs-digest".into(),
            hex::encode(crs.digest()),
            "--issuer".into(),
            w.issuer_arg(),
            "--audience".into(),
            mazu_dev_issuer::DEV_AUDIENCE.into(),
        ];
        if witnesses {
            for vkey in w.witness_vkeys() {
                args.extend(["--witness".to_owned(), vkey]);
            }
            args.extend(["--witness-quorum".to_owned(), "2".into()]);
        }
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(bin).args(args).output().unwrap()
            })
            .await
            .unwrap()
        }
    };
    let o = check(c.base.clone(), true).await;
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.starts_with("OK: 2 entries checked"), "{stdout}");
    assert!(stdout.contains("witnessed at "), "{stdout}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("checked 2/2 entries"));

    // No witnesses, no --insecure-no-witness: a usage error.
    let o = check(c.base.clone(), false).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--insecure-no-witness"));

    let p = lying_proxy(c.base.clone(), Lie::Swap(0, 1)).await;
    let o = check(p, true).await;
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("DISCREPANCY index=1: logged at"),
        "{stdout}"
    );
    assert!(
        stdout.lines().last().unwrap().starts_with("FAILED"),
        "{stdout}"
    );

    // Monitor: existing entries of another identity do not alert; a reveal
    // of the watched one does (with the key it was bound to).
    let mut monitor = tokio::process::Command::new(bin)
        .args([
            "monitor",
            "--insecure-plain-http",
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
        stdout.starts_with("ALERT reveal of ns/pay/sa/ledger index=3 "),
        "{stdout}"
    );
    assert!(stdout.contains("bound_at=2 spki_hash="), "{stdout}");

    // --once with a state file and a watched id: its bind is reported once,
    // then nothing new.
    let token = w.token("pay", "watched");
    let id: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
    c.bind(&crs, &token).await;
    let state = w.dir.path().join("monitor.json");
    let once = |state: std::path::PathBuf| {
        let base = c.base.clone();
        let id = hex::encode(id);
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(bin)
                .args([
                    "monitor",
                    "--insecure-plain-http",
                    "--curator",
                    &base,
                    "--once",
                    "--state",
                ])
                .arg(&state)
                .args(["--id", &id])
                .output()
                .unwrap()
        })
    };
    let o = once(state.clone()).await.unwrap();
    assert_eq!(o.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.starts_with("ALERT bind index=4 "), "{stdout}");
    assert_eq!(once(state.clone()).await.unwrap().status.code(), Some(0));
    c.stop().await;
}

/// Registers `sa` with a fresh token: bind, then reveal. Returns the agent.
async fn register_agent(
    w: &World,
    c: &common::RunningCurator,
    crs: &mazu_rbe::Crs,
    sa: &str,
) -> mazu_curator::client::AgentRegistration {
    let token = w.token("shop", sa);
    let agent = c.bind(crs, &token).await;
    c.reveal(&token).await;
    agent
}

/// A log with a holder's release and a revocation audits clean: the
/// signatures verify with the bound keys, and the RBE state replayed with
/// the keys taken out (and a freed slot reused) gives the served parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_and_revocations_audit_clean() {
    use mazu_curator::client::holder_request;
    use mazu_curator::holder::HolderAction;
    let w = World::new().await;
    let c = w.start().await;
    let crs = c.crs().await;
    let web = register_agent(&w, &c, &crs, "web").await;
    let db = register_agent(&w, &c, &crs, "db").await;
    for (agent, action) in [(&web, HolderAction::Release), (&db, HolderAction::Revoke)] {
        let body = holder_request(&agent.tls_key, action, &agent.id, agent.request.slot);
        let (status, answer) = c
            .post(
                &format!("/v1/bindings/{}/{}", agent.request.id, action.as_str()),
                &body,
            )
            .await;
        assert_eq!(status, 201, "{answer}");
    }
    // A freed slot is bound again.
    register_agent(&w, &c, &crs, "api").await;
    let r = w.audit(&c.base, &crs, None).await;
    assert_clean(&r);
    assert_eq!(r.entries, 8);
    c.stop().await;
}

/// A curator that ends a binding its holder did not ask to end (a
/// revocation signed by another workload's key) is caught, though every
/// filter applies the record: the auditor checks the signature against the
/// bound key, which the record alone does not carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_the_holder_did_not_sign_is_caught() {
    use mazu_curator::client::holder_request;
    use mazu_curator::holder::HolderAction;
    let w = World::new().await;
    let c = w.start().await;
    let crs = c.crs().await;
    let victim = register_agent(&w, &c, &crs, "victim").await;
    let other = register_agent(&w, &c, &crs, "other").await;
    c.stop().await;
    let (_, mut frames) = read_log(&w.data_dir()).unwrap();
    let forged = holder_request(
        &other.tls_key,
        HolderAction::Revoke,
        &victim.id,
        victim.request.slot,
    );
    let revoke = LogEntry {
        at_ms: LogEntry::from_bytes(frames.last().unwrap()).unwrap().at_ms + 1,
        id: victim.id,
        body: EntryBody::Revoke {
            signature: <base64ct::Base64 as base64ct::Encoding>::decode_vec(&forged.signature)
                .unwrap(),
        },
    };
    frames.push(revoke.to_bytes());
    // The curator refuses to replay it (it checks holder signatures too):
    // a lying front serves it under a witnessed checkpoint.
    let c = w.start().await;
    let p = w.serve_forged_frames(&c.base, &frames).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, Some(4), "not signed by the bound TLS key");
    c.stop().await;
}

/// The curator signs a checkpoint of the honest log whose state line is
/// not the state its records give (its witnesses colluding, so the quorum
/// holds): new filters would install that state; the audit replays the
/// records and catches the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_false_state_line_is_caught() {
    let (w, c, crs) = setup(2).await;
    let honest = c.text("/v1/checkpoint").await;
    let signer = w.curator_signer();
    let cp = signer.verifier().verify(honest.as_bytes()).unwrap();
    assert!(
        mazu_log::evidence::state_digest(&cp).unwrap().is_some(),
        "the curator's checkpoints carry the state line"
    );
    let false_line = mazu_log::evidence::state_extension(&[7; 32]);
    let note = signer.sign_with_extensions(cp.size, &cp.root, vec![false_line]);
    let lying = signer.verifier().verify(note.as_bytes()).unwrap();
    let lines: Vec<String> = w
        .witness_signers()
        .iter()
        .map(|s| s.cosign(&lying, now_secs()).unwrap())
        .collect();
    let note = mazu_log::cosignature::append_cosignatures(&note, &lines).unwrap();
    let p = lying_proxy(c.base.clone(), Lie::Checkpoint(note)).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, None, "is not the follower state derived from its");
    c.stop().await;
}

/// Records timed after the witnessed time (here: the witnesses cosigned
/// the checkpoint an hour before the records' time, as if the curator had
/// moved its clock ahead) are caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_timed_after_the_witnessed_time_are_caught() {
    let (w, c, crs) = setup(1).await;
    let honest = c.text("/v1/checkpoint").await;
    let signer = w.curator_signer();
    let unsigned: String = honest
        .split_inclusive('\n')
        .take_while(|line| !line.starts_with("— ") || line.contains(signer.name()))
        .collect();
    let cp = signer.verifier().verify(unsigned.as_bytes()).unwrap();
    let lines: Vec<String> = w
        .witness_signers()
        .iter()
        .map(|s| s.cosign(&cp, now_secs() - 3600).unwrap())
        .collect();
    let note = mazu_log::cosignature::append_cosignatures(&unsigned, &lines).unwrap();
    let p = lying_proxy(c.base.clone(), Lie::Checkpoint(note)).await;
    let r = w.audit(&p, &crs, None).await;
    assert_found(&r, None, "after the checkpoint's witnessed time");
    c.stop().await;
}

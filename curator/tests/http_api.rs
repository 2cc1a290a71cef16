//! The API over real HTTP against the `mazu-curator` process: bind first,
//! reveal later; conditional requests; the records endpoint; and every
//! refusal with its code and no state change.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

mod common;

use base64ct::{Base64, Encoding};
use common::{Curator, Fixture, code};
use mazu_curator::client::{AgentRegistration, id_of_token, request_for, sign_pop, spki_der};
use mazu_curator::entry::{EntryBody, LogEntry};
use mazu_dev_issuer::TokenRequest;
use mazu_identity::{RegistrySnapshot, SpkiHash, WorkloadId};
use mazu_log::checkpoint::CheckpointVerifier;
use mazu_log::record::{LeafRecord, RecordBody, decode_records};
use mazu_rbe::{Crs, MembershipProof, Opening, PublicParams, Registration};
use serde_json::{Value, json};
use sha2::Digest as _;

/// Public parameters (canonical bytes) and log size: what must not change
/// when a request is refused.
async fn state_of(c: &Curator) -> (Vec<u8>, u64) {
    let params = c.get_bytes("/v1/params?format=binary").await;
    let log = c.get_json("/v1/log?start=0&limit=1000").await;
    (params, log["size"].as_u64().expect("size"))
}

/// A binding for `token`'s id in `slot`, built but not sent.
fn binding(crs: &Crs, token: &str, slot: u32) -> AgentRegistration {
    mazu_curator::client::build_registration(crs, token, slot, &mut rand::rngs::OsRng).unwrap()
}

/// Reserves and binds `token`'s id; panics unless accepted.
async fn bind(c: &Curator, crs: &Crs, token: &str) -> (AgentRegistration, Value) {
    let agent = c.prepare(crs, token).await;
    let (status, body) = c.post_binding(&agent.request).await;
    assert_eq!(status, 201, "bind: {body}");
    (agent, body)
}

/// Checks a `LoggedJson` answer: its checkpoint verifies with the curator's
/// key and covers the index. Returns the checkpoint's size.
async fn covered(c: &Curator, logged: &Value) -> u64 {
    let key = c.get("/v1/checkpoint/key").await.text().await.unwrap();
    let verifier = CheckpointVerifier::parse(key.trim()).unwrap();
    let cp = verifier
        .verify(logged["checkpoint"].as_str().unwrap().as_bytes())
        .unwrap();
    assert!(
        mazu_log::evidence::state_digest(&cp).unwrap().is_some(),
        "the one extension line is the state line: {:?}",
        cp.extensions
    );
    assert_eq!(cp.extensions.len(), 1);
    assert!(cp.size > logged["index"].as_u64().unwrap(), "{logged}");
    cp.size
}

#[tokio::test]
async fn bind_then_reveal_conditional_requests_and_refusals() {
    let fx = Fixture::new();
    let mut args = fx.args(16);
    args.extend([
        "--max-body-bytes".into(),
        "65536".into(),
        "--rate-limit-per-minute".into(),
        "0".into(),
    ]);
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;

    // Ready, and loud about the development CRS and the missing witnesses.
    let ready = c.get_json("/readyz").await;
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["dev_crs"], true);
    assert!(ready["warnings"][0].as_str().unwrap().contains("INSECURE"));
    assert!(c.log().contains("INSECURE DEVELOPMENT CRS"));
    assert!(c.log().contains("RUNNING WITHOUT WITNESSES"));
    assert_eq!(c.get("/healthz").await.status(), 200);

    let crs = c.crs().await;
    assert_eq!(crs.capacity(), 16);
    assert!(c.get_json("/v1/crs?format=json").await.is_object());

    // --- slot reservation by id (no token): same id, same reservation ---
    let token_a = fx.token("cart");
    let id_a = id_of_token(&token_a);
    assert_eq!(id_a, *WorkloadId::of_token(token_a.as_bytes()).as_bytes());
    let (status, first) = c
        .post("/v1/slots", &json!({ "id": hex::encode(id_a) }))
        .await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = c
        .post("/v1/slots", &json!({ "id": hex::encode(id_a) }))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(first, again);
    assert_eq!(first["id"], hex::encode(id_a));
    let slot_a = u32::try_from(first["slot"].as_u64().unwrap()).unwrap();
    // The token is not accepted there any more, nor a malformed id.
    let (s, b) = c.post("/v1/slots", &json!({ "token": token_a })).await;
    assert_eq!((s, code(&b)), (400, "malformed_body"), "{b}");
    let (s, b) = c.post("/v1/slots", &json!({ "id": "abc" })).await;
    assert_eq!((s, code(&b)), (400, "invalid_field"), "{b}");

    // A second id gets another slot.
    let token_b = fx.token("checkout");
    let slot_b = c.reserve(&token_b).await;
    assert_ne!(slot_a, slot_b);

    // --- bind without the token ---
    let agent_a = binding(&crs, &token_a, slot_a);
    let serialized = serde_json::to_string(&agent_a.request).unwrap();
    assert!(!serialized.contains(&token_a), "no token in a binding");
    let (status, bound) = c.post_binding(&agent_a.request).await;
    assert_eq!(status, 201, "{bound}");
    assert_eq!(bound["index"], 0);
    assert_eq!(covered(&c, &bound).await, 1);
    // The identical binding again: 200, same entry, nothing appended.
    let (status, repeat) = c.post_binding(&agent_a.request).await;
    assert_eq!(status, 200, "{repeat}");
    assert_eq!(
        (&repeat["index"], &repeat["leaf_hash"]),
        (&bound["index"], &bound["leaf_hash"])
    );
    assert_eq!(c.version().await, 1);
    // Bound but not revealed: not in the derived registry yet.
    let snapshot = RegistrySnapshot::decode(&c.get_bytes("/v1/registry").await).unwrap();
    assert!(snapshot.get(&WorkloadId::from_bytes(id_a)).is_none());

    // --- reveal ---
    let (status, revealed) = c.post_reveal(&hex::encode(id_a), &token_a).await;
    assert_eq!(status, 201, "{revealed}");
    assert_eq!(revealed["index"], 1);
    assert_eq!(covered(&c, &revealed).await, 2);
    let (status, repeat) = c.post_reveal(&hex::encode(id_a), &token_a).await;
    assert_eq!(status, 200, "{repeat}");
    assert_eq!(repeat["index"], 1);
    assert_eq!(c.version().await, 2);
    let spki_a = spki_der(&agent_a.tls_key);

    // --- params: ETag = log size, 304 on an unchanged poll ---
    let r = c.get("/v1/params").await;
    assert_eq!(r.headers()["etag"], "\"2\"");
    let params_json: PublicParams = r.json().await.unwrap();
    assert_eq!(params_json.version(), 1, "one RBE key (the bind)");
    let params_bin =
        PublicParams::from_bytes(&c.get_bytes("/v1/params?format=binary").await).unwrap();
    assert_eq!(params_bin, params_json);
    let r = c
        .http
        .get(c.url("/v1/params"))
        .header("if-none-match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());

    // --- the derived registry (operators' view), JSON variant, 304 ---
    let r = c.get("/v1/registry").await;
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["etag"], "\"2\"");
    assert!(r.headers().get("mazu-checkpoint").is_none(), "not evidence");
    let snapshot = RegistrySnapshot::decode(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(snapshot.version(), 2);
    let entry = snapshot
        .get(&WorkloadId::from_bytes(id_a))
        .expect("live after the reveal");
    assert_eq!(entry.slot, slot_a);
    assert_eq!(entry.spki_hash, SpkiHash::of_spki_der(&spki_a));
    let snap_json = c.get_json("/v1/registry?format=json").await;
    assert_eq!(snap_json["version"], 2);
    assert_eq!(snap_json["entries"][0]["id"], hex::encode(id_a));
    let r = c
        .http
        .get(c.url("/v1/registry"))
        .header("if-none-match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // Deltas are gone: verifiers follow the records.
    assert_eq!(c.get("/v1/registry?since=0").await.status(), 400);

    // --- opening and membership proof verify against the served params ---
    let opening = c.get_json(&format!("/v1/openings/{slot_a}")).await;
    assert_eq!(opening["registered"], true);
    let opening: Opening = serde_json::from_value(opening["opening"].clone()).unwrap();
    assert_eq!(opening.slot, slot_a);
    let proof = c
        .get_json(&format!("/v1/proofs/{}", hex::encode(id_a)))
        .await;
    assert_eq!(proof["slot"], slot_a);
    let proof: MembershipProof = serde_json::from_value(proof["proof"].clone()).unwrap();
    proof
        .verify(&crs, &params_bin)
        .expect("membership proof verifies");
    assert_eq!(
        proof.public_key,
        reg_of(agent_a.request.registration.clone()).public_key
    );
    let unknown = c.get(&format!("/v1/proofs/{}", "ab".repeat(32))).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(code(&unknown.json().await.unwrap()), "unknown_id");
    assert_eq!(c.get("/v1/proofs/xyz").await.status(), 400);
    let out = c.get("/v1/openings/16").await;
    assert_eq!(code(&out.json().await.unwrap()), "slot_out_of_range");

    // --- the raw log: entries with their records ---
    let log = c.get_json("/v1/log").await;
    assert_eq!(log["size"], 2);
    for (i, e) in log["entries"].as_array().unwrap().iter().enumerate() {
        let raw = Base64::decode_vec(e["entry"].as_str().unwrap()).unwrap();
        let record = Base64::decode_vec(e["record"].as_str().unwrap()).unwrap();
        let entry = LogEntry::from_bytes(&raw).unwrap();
        assert_eq!(entry.id, id_a);
        assert_eq!(entry.record(&raw).unwrap().to_bytes(), record, "entry {i}");
        assert_eq!(
            e["leaf_hash"],
            hex::encode(mazu_log::merkle::leaf_hash(&record))
        );
        match (i, &entry.body) {
            (0, EntryBody::Bind { tls_spki, slot, .. }) => {
                assert_eq!((tls_spki, *slot), (&spki_a, slot_a));
            }
            (1, EntryBody::Reveal { token }) => assert_eq!(token, token_a.as_bytes()),
            other => panic!("unexpected entry {other:?}"),
        }
    }
    assert_eq!(log["entries"][0]["leaf_hash"], bound["leaf_hash"]);
    assert_eq!(log["entries"][1]["leaf_hash"], revealed["leaf_hash"]);
    assert_eq!(c.get("/v1/log?limit=0").await.status(), 400);

    // ================= refusals: code, status, nothing changed =================
    let check = |status: u16, body: &Value, want_status: u16, want_code: &str| {
        assert_eq!((status, code(body)), (want_status, want_code), "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    };

    // Token B's id is bound (not revealed) for the token checks below.
    let (good_b, _) = {
        let agent = binding(&crs, &token_b, slot_b);
        let (s, b) = c.post_binding(&agent.request).await;
        assert_eq!(s, 201, "{b}");
        (agent, b)
    };
    let id_b = hex::encode(id_of_token(&token_b));
    let before = state_of(&c).await;

    // A second binding of a bound id, with another key: first binding wins.
    let token_c = fx.token("payments");
    let slot_c = c.reserve(&token_c).await;
    let second =
        mazu_curator::client::build_registration(&crs, &token_a, slot_c, &mut rand::rngs::OsRng)
            .unwrap();
    let (s, b) = c.post_binding(&second.request).await;
    check(s, &b, 409, "already_registered");
    // The same key in another slot is another binding too.
    let (s, b) = c
        .post("/v1/slots", &json!({ "id": hex::encode(id_a) }))
        .await;
    check(s, &b, 409, "already_registered");

    // Reused slot: another id's binding for slot_a.
    let token_d = fx.token("ledger");
    let reused = binding(&crs, &token_d, slot_a);
    let (s, b) = c.post_binding(&reused.request).await;
    check(s, &b, 409, "slot_taken");
    // Slot reserved for someone else (slot_c is token C's).
    let stolen = binding(&crs, &token_d, slot_c);
    let (s, b) = c.post_binding(&stolen.request).await;
    check(s, &b, 409, "slot_reserved");

    // Reveals: a token of another id, an unbound id, a malformed id.
    let (s, b) = c.post_reveal(&id_b, &token_a).await;
    check(s, &b, 400, "token_id_mismatch");
    let (s, b) = c
        .post_reveal(&hex::encode(id_of_token(&token_d)), &token_d)
        .await;
    check(s, &b, 404, "unknown_id");
    let (s, b) = c.post_reveal("xyz", &token_b).await;
    check(s, &b, 400, "invalid_parameter");
    let (s, b) = c
        .post(
            &format!("/v1/bindings/{id_b}/reveal"),
            &json!({ "token": 5 }),
        )
        .await;
    check(s, &b, 400, "malformed_body");

    // Bad TLS signature: signed by another key, bit-flipped, over another
    // slot's message; a key that is not a key.
    let reg_b = reg_of(good_b.request.registration.clone());
    let token_f = fx.token("fraud");
    let slot_f = c.reserve(&token_f).await;
    let good_f = binding(&crs, &token_f, slot_f);
    let reg_f = reg_of(good_f.request.registration.clone());
    let spki_f = spki_der(&good_f.tls_key);
    let exp_f = good_f.request.token_expiry;
    let other_key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let wrong_signer = request_for(
        &reg_f,
        exp_f,
        &spki_f,
        &sign_pop(&other_key, &reg_f, exp_f, &spki_f),
    );
    let (s, b) = c.post_binding(&wrong_signer).await;
    check(s, &b, 422, "bad_tls_signature");
    let mut flipped = Base64::decode_vec(&good_f.request.tls_signature).unwrap();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let (s, b) = c
        .post_binding(&request_for(&reg_f, exp_f, &spki_f, &flipped))
        .await;
    check(s, &b, 422, "bad_tls_signature");
    let mut moved = reg_f.clone();
    moved.slot = (slot_f + 1) % 16;
    let other_slot = request_for(
        &reg_f,
        exp_f,
        &spki_f,
        &sign_pop(&good_f.tls_key, &moved, exp_f, &spki_f),
    );
    let (s, b) = c.post_binding(&other_slot).await;
    check(s, &b, 422, "bad_tls_signature");
    // The expiry is signed too: a curator (or proxy) that changes it breaks
    // the proof of possession.
    let other_expiry = request_for(
        &reg_f,
        exp_f + 1,
        &spki_f,
        &Base64::decode_vec(&good_f.request.tls_signature).unwrap(),
    );
    let (s, b) = c.post_binding(&other_expiry).await;
    check(s, &b, 422, "bad_tls_signature");
    // An expiry in the past, or beyond the maximum token lifetime, is
    // refused before any point is decoded.
    for expiry in [1, exp_f + 49 * 3600] {
        let signed = request_for(
            &reg_f,
            expiry,
            &spki_f,
            &sign_pop(&good_f.tls_key, &reg_f, expiry, &spki_f),
        );
        let (s, b) = c.post_binding(&signed).await;
        check(s, &b, 400, "invalid_field");
        assert!(b.to_string().contains("token_expiry"), "{b}");
    }
    let not_key = request_for(
        &reg_f,
        exp_f,
        b"not a key",
        &sign_pop(&good_f.tls_key, &reg_f, exp_f, &spki_f),
    );
    let (s, b) = c.post_binding(&not_key).await;
    check(s, &b, 400, "invalid_tls_key");

    // Wrong helper value and wrong proof of knowledge (correctly signed by
    // the TLS key, so only the RBE checks catch them).
    let mut bad_helpers = reg_f.clone();
    bad_helpers.helpers.swap(0, 1);
    let tampered = request_for(
        &bad_helpers,
        exp_f,
        &spki_f,
        &sign_pop(&good_f.tls_key, &bad_helpers, exp_f, &spki_f),
    );
    let (s, b) = c.post_binding(&tampered).await;
    check(s, &b, 422, "invalid_helpers");
    let mut bad_pok = reg_f.clone();
    bad_pok.proof = reg_b.proof;
    let tampered = request_for(
        &bad_pok,
        exp_f,
        &spki_f,
        &sign_pop(&good_f.tls_key, &bad_pok, exp_f, &spki_f),
    );
    let (s, b) = c.post_binding(&tampered).await;
    check(s, &b, 422, "invalid_proof_of_knowledge");

    // Id mismatch: the request names another id than its registration.
    let mut mismatched = good_f.request.clone();
    mismatched.id = hex::encode(id_of_token(&token_d));
    let (s, b) = c.post_binding(&mismatched).await;
    check(s, &b, 422, "id_mismatch");
    // Slot field disagreeing with the registration.
    let mut wrong_slot = good_f.request.clone();
    wrong_slot.slot = (slot_f + 1) % 16;
    let (s, b) = c.post_binding(&wrong_slot).await;
    check(s, &b, 400, "invalid_field");

    // Malformed bodies.
    let raw = |body: &'static str, content_type: &'static str| {
        let c = &c;
        async move {
            let r = c
                .http
                .post(c.url("/v1/bindings"))
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, b) = raw("{not json", "application/json").await;
    check(s, &b, 400, "malformed_body");
    let (s, b) = raw(r#"{"id": 5}"#, "application/json").await;
    check(s, &b, 400, "malformed_body");
    let (s, b) = raw("{}", "text/plain").await;
    check(s, &b, 415, "unsupported_media_type");
    let mut garbage = serde_json::to_value(&good_f.request).unwrap();
    garbage["registration"]["public_key"] = json!("AAAA");
    let (s, b) = c.post("/v1/bindings", &garbage).await;
    check(s, &b, 400, "invalid_registration");
    let mut bad_b64 = good_f.request.clone();
    bad_b64.tls_spki = "%%%".into();
    let (s, b) = c.post_binding(&bad_b64).await;
    check(s, &b, 400, "invalid_field");
    // The old route is gone.
    let (s, b) = c.post("/v1/registrations", &good_f.request).await;
    check(s, &b, 404, "not_found");

    // Oversized body (limit 64 KiB here).
    let big = json!({ "token": "x".repeat(100_000) });
    let (s, b) = c.post(&format!("/v1/bindings/{id_b}/reveal"), &big).await;
    check(s, &b, 413, "body_too_large");

    // Unknown route and wrong method, in the same format.
    let r = c.get("/v1/nothing").await;
    assert_eq!(r.status(), 404);
    assert_eq!(code(&r.json().await.unwrap()), "not_found");
    let r = c.http.delete(c.url("/v1/params")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(code(&r.json().await.unwrap()), "method_not_allowed");

    assert_eq!(
        state_of(&c).await,
        before,
        "a refused request changed the state"
    );

    // Token checks of a reveal, each for a bound id whose token fails one:
    // expired, untrusted issuer, wrong audience. Only the binds change the
    // log.
    let now = mazu_curator::service::now_unix();
    let expired = fx
        .issuer
        .mint(
            &TokenRequest::new("shop", "old")
                .issued_at(now - 7200)
                .lifetime(3600),
        )
        .unwrap();
    let foreign = fx
        .stranger
        .mint(&TokenRequest::new("shop", "evil"))
        .unwrap();
    let wrong_aud = fx
        .issuer
        .mint(&TokenRequest::new("shop", "cart").audiences(["kubernetes"]))
        .unwrap();
    // An expired token cannot even be bound: the expiry a binding commits
    // to must lie ahead (bounded state: the id is forgotten after it).
    let agent = c.prepare(&crs, &expired).await;
    let before = state_of(&c).await;
    let (s, b) = c.post_binding(&agent.request).await;
    check(s, &b, 400, "invalid_field");
    assert_eq!(state_of(&c).await, before, "expired token bound");
    for (token, status, want) in [
        (&foreign, 401, "token_unknown_kid"),
        (&wrong_aud, 401, "token_wrong_audience"),
    ] {
        bind(&c, &crs, token).await;
        let before = state_of(&c).await;
        let (s, b) = c.post_reveal(&hex::encode(id_of_token(token)), token).await;
        check(s, &b, status, want);
        assert_eq!(state_of(&c).await, before, "{want}");
    }

    // A re-encoded copy of a revealed token (ECDSA s -> n - s): another id,
    // which can be bound (bind carries no token), but its reveal is refused:
    // the same signed content was revealed for id A.
    let copy = malleate(&token_a);
    assert_ne!(copy, token_a);
    bind(&c, &crs, &copy).await;
    let before = state_of(&c).await;
    let (s, b) = c.post_reveal(&hex::encode(id_of_token(&copy)), &copy).await;
    check(s, &b, 409, "token_already_registered");
    assert_eq!(state_of(&c).await, before);

    // Token B's reveal still goes through afterwards.
    let (s, b) = c.post_reveal(&id_b, &token_b).await;
    assert_eq!(s, 201, "{b}");
    let size = c.version().await;
    assert_eq!(b["index"].as_u64().unwrap(), size - 1);

    // Metrics saw it all.
    let metrics = c.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(&format!("mazu_curator_registrations_accepted_total {size}")),
        "{metrics}"
    );
    for reason in [
        "slot_taken",
        "invalid_helpers",
        "bad_tls_signature",
        "invalid_field",
        "token_id_mismatch",
        "already_registered",
        "malformed_body",
    ] {
        assert!(
            metrics.contains(&format!(
                "mazu_curator_registrations_refused_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {metrics}"
        );
    }
    assert!(metrics.contains(&format!("mazu_curator_log_entries {size}")));
    assert!(metrics.contains(r#"route="/v1/bindings""#), "{metrics}");

    // Graceful shutdown on SIGTERM.
    let status = c.terminate();
    assert!(status.success(), "{status}");
    assert!(c.log().contains("SIGTERM received"));
}

#[tokio::test]
async fn records_are_served_in_pages_and_strictly() {
    let fx = Fixture::new();
    let mut c = Curator::spawn(fx.dir.path(), &fx.args(16));
    c.ready().await;
    let crs = c.crs().await;

    // The empty log.
    let r = c.get("/v1/log/records").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["mazu-log-size"], "0");
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert!(r.bytes().await.unwrap().is_empty());

    let tokens: Vec<String> = (0..3).map(|i| fx.token(&format!("w{i}"))).collect();
    for t in &tokens {
        c.register(&crs, t).await;
    }
    // 3 binds + 3 reveals.
    let all = c.get_bytes("/v1/log/records?start=0&end=6").await;
    let records = decode_records(&all).unwrap();
    assert_eq!(records.len(), 6);
    // Each record is the one the log's entry gives, in order.
    let log = c.get_json("/v1/log").await;
    for (i, (record, e)) in records
        .iter()
        .zip(log["entries"].as_array().unwrap())
        .enumerate()
    {
        let raw = Base64::decode_vec(e["entry"].as_str().unwrap()).unwrap();
        let entry = LogEntry::from_bytes(&raw).unwrap();
        assert_eq!(*record, entry.record(&raw).unwrap(), "record {i}");
    }
    let kinds: Vec<_> = records.iter().map(|r| r.body.kind_name()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "bind").count(), 3);
    // The records give the checkpoint's root.
    let note = c.get("/v1/checkpoint").await.text().await.unwrap();
    let key = c.get("/v1/checkpoint/key").await.text().await.unwrap();
    let cp = CheckpointVerifier::parse(key.trim())
        .unwrap()
        .verify(note.as_bytes())
        .unwrap();
    assert_eq!(cp.size, 6);
    let mut follower = mazu_identity::registry::derive::LogFollower::new();
    // No witnesses here: the local clock bounds the records' times.
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let void = follower
        .extend(&records, cp.size, &cp.root, now_ms)
        .unwrap();
    assert!(void.is_empty(), "the curator logs no void entry: {void:?}");
    for t in &tokens {
        assert!(matches!(
            follower.registry().state(&id_of_token(t)),
            Some(mazu_identity::registry::derive::IdState::Live { .. })
        ));
    }

    // The checkpoint commits to the follower state, which the curator
    // serves and which is exactly the one derived from the records.
    let line = mazu_log::evidence::state_digest(&cp).unwrap().unwrap();
    let served = c.get_bytes("/v1/log/state?size=6").await;
    let digest: [u8; 32] = sha2::Sha256::digest(&served).into();
    assert_eq!(digest, line);
    assert_eq!(served, follower.encode_state());
    // Only the newest few signed sizes are kept; never a size not signed.
    for size in [1, 7] {
        let r = c.get(&format!("/v1/log/state?size={size}")).await;
        assert_eq!(r.status(), 400, "size {size}");
        assert_eq!(code(&r.json().await.unwrap()), "out_of_range");
    }
    let r = c.get("/v1/log/state").await;
    assert_eq!(r.status(), 400);

    // Pages: any window is the same bytes as the slice of the whole.
    let concat = |rs: &[LeafRecord]| {
        rs.iter()
            .flat_map(LeafRecord::to_bytes)
            .collect::<Vec<u8>>()
    };
    let r = c.get("/v1/log/records?start=2&end=4").await;
    assert_eq!(r.headers()["mazu-log-size"], "6");
    assert_eq!(r.bytes().await.unwrap().to_vec(), concat(&records[2..4]));
    // `end` beyond the size is clamped; `end` defaults to the size.
    assert_eq!(
        c.get_bytes("/v1/log/records?start=5&end=100").await,
        concat(&records[5..])
    );
    assert_eq!(
        c.get_bytes("/v1/log/records?start=1").await,
        concat(&records[1..])
    );
    // start = size: empty; start > size: out_of_range.
    assert!(c.get_bytes("/v1/log/records?start=6").await.is_empty());
    let r = c.get("/v1/log/records?start=7").await;
    assert_eq!(r.status(), 400);
    assert_eq!(code(&r.json().await.unwrap()), "out_of_range");
    // end < start, unknown or malformed parameters.
    for bad in [
        "/v1/log/records?start=3&end=2",
        "/v1/log/records?start=-1",
        "/v1/log/records?start=x",
        "/v1/log/records?from=0",
    ] {
        let r = c.get(bad).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(code(&r.json().await.unwrap()), "invalid_parameter", "{bad}");
    }
    assert!(matches!(records[0].body, RecordBody::Bind { .. }));
}

#[tokio::test]
async fn per_client_rate_limit_covers_every_write() {
    let fx = Fixture::new();
    let mut args = fx.args(16);
    args.extend([
        "--rate-limit-per-minute".into(),
        "1".into(),
        "--rate-limit-burst".into(),
        "2".into(),
    ]);
    let mut c = Curator::spawn(fx.dir.path(), &args);
    c.ready().await;
    let before = state_of(&c).await;
    for i in 0..2 {
        let (s, b) = c
            .post("/v1/slots", &json!({ "id": hex::encode([i; 32]) }))
            .await;
        assert_eq!(s, 201, "{b}");
    }
    for path in [
        "/v1/bindings".to_owned(),
        format!("/v1/bindings/{}/reveal", hex::encode([0; 32])),
        "/v1/slots".to_owned(),
    ] {
        let r = c
            .http
            .post(c.url(&path))
            .json(&json!({ "token": "x" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{path}");
        assert!(
            r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1
        );
        assert_eq!(code(&r.json().await.unwrap()), "rate_limited");
    }
    // Reads are not rate limited, and nothing changed.
    assert_eq!(state_of(&c).await, before);
}

/// The rbe registration inside a request.
fn reg_of(v: Value) -> Registration {
    serde_json::from_value(v).expect("registration")
}

/// The same ES256 token with its signature's `s` replaced by `n - s`: still a
/// valid signature over the same header and claims, but other token bytes.
fn malleate(token: &str) -> String {
    use base64ct::Base64UrlUnpadded;
    let (signing_input, sig) = token.rsplit_once('.').unwrap();
    let sig = Base64UrlUnpadded::decode_vec(sig).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
    let (r, s) = sig.split_scalars();
    let flipped = p256::ecdsa::Signature::from_scalars(r, -s).unwrap();
    format!(
        "{signing_input}.{}",
        Base64UrlUnpadded::encode_string(&flipped.to_bytes())
    )
}

/// A binding body costs the curator curve arithmetic (a subgroup check per
/// point, up to n − 1 of them): a body that fails the cheap checks (id,
/// shape, slot range, helper count, a bound id) is refused before any point
/// is decoded. These bodies carry points that do not decode: answering
/// `invalid_registration` would mean the points were decoded first.
#[tokio::test]
async fn unauthenticated_bodies_are_refused_before_any_point_is_decoded() {
    let fx = Fixture::new();
    let mut c = Curator::spawn(fx.dir.path(), &fx.args(16));
    c.ready().await;
    let crs = c.crs().await;
    let (bound, _) = bind(&c, &crs, &fx.token("bound")).await;
    let before = state_of(&c).await;
    let agent = c.prepare(&crs, &fx.token("a")).await;

    // Points that would fail to decode.
    let not_a_point = Base64::encode_string(&[0xff; 48]);
    let mut garbage = agent.request.clone();
    for helper in garbage.registration["helpers"]
        .as_array_mut()
        .expect("helpers")
    {
        *helper = json!(not_a_point);
    }
    garbage.registration["public_key"] = json!(not_a_point);

    // An id that is not hex.
    let mut bad_id = garbage.clone();
    bad_id.id = "not hex".into();
    let (status, body) = c.post_binding(&bad_id).await;
    assert_eq!((status, code(&body)), (400, "invalid_field"), "{body}");

    // The request's id is not the registration's.
    let mut other_id = garbage.clone();
    other_id.id = hex::encode([9; 32]);
    let (status, body) = c.post_binding(&other_id).await;
    assert_eq!((status, code(&body)), (422, "id_mismatch"), "{body}");

    // A second binding of a bound id (another key): refused on the state.
    let mut rebind = garbage.clone();
    rebind.id = bound.request.id.clone();
    rebind.registration["id"] = bound.request.registration["id"].clone();
    let (status, body) = c.post_binding(&rebind).await;
    assert_eq!((status, code(&body)), (409, "already_registered"), "{body}");

    // The helper count is checked from the JSON alone.
    let mut short = garbage.clone();
    short.registration["helpers"]
        .as_array_mut()
        .expect("helpers")
        .pop();
    let (status, body) = c.post_binding(&short).await;
    assert_eq!((status, code(&body)), (422, "helper_count"), "{body}");

    // So is the slot's range.
    let mut far = garbage.clone();
    far.slot = 16;
    far.registration["slot"] = json!(16);
    let (status, body) = c.post_binding(&far).await;
    assert_eq!(code(&body), "slot_out_of_range", "{status} {body}");

    // The garbage body with everything cheap right reaches the points.
    let (status, body) = c.post_binding(&garbage).await;
    assert_eq!(
        (status, code(&body)),
        (400, "invalid_registration"),
        "{body}"
    );

    assert_eq!(state_of(&c).await, before);
    // The genuine request still binds.
    let (status, body) = c.post_binding(&agent.request).await;
    assert_eq!(status, 201, "{body}");
}

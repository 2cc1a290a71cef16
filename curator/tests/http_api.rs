//! The API over real HTTP against the `mazu-curator` process: the happy path,
//! conditional requests, and every refusal with its code and no state change.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on failure by design"
)]

mod common;

use base64ct::{Base64, Encoding};
use common::{Curator, Fixture, code};
use mazu_curator::client::{request_for, sign_pop, spki_der};
use mazu_curator::entry::LogEntry;
use mazu_dev_issuer::TokenRequest;
use mazu_identity::{RegistryDelta, RegistrySnapshot, SpkiHash, WorkloadId};
use mazu_rbe::{MembershipProof, Opening, PublicParams, Registration};
use serde_json::{Value, json};

/// Public parameters (canonical bytes) and log size: what must not change
/// when a request is refused.
async fn state_of(c: &Curator) -> (Vec<u8>, u64) {
    let params = c.get_bytes("/v1/params?format=binary").await;
    let log = c.get_json("/v1/log?start=0&limit=1000").await;
    (params, log["size"].as_u64().expect("size"))
}

#[tokio::test]
async fn happy_path_conditional_requests_and_refusals() {
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

    // Ready, and loud about the development CRS.
    let ready = c.get_json("/readyz").await;
    assert_eq!(ready["status"], "ok");
    assert_eq!(ready["dev_crs"], true);
    assert!(ready["warnings"][0].as_str().unwrap().contains("INSECURE"));
    assert!(c.log().contains("INSECURE DEVELOPMENT CRS"));
    assert_eq!(c.get("/healthz").await.status(), 200);

    let crs = c.crs().await;
    assert_eq!(crs.capacity(), 16);
    let crs_json = c.get_json("/v1/crs?format=json").await;
    assert!(crs_json.is_object());

    // --- slot reservation: same token, same reservation ---
    let token_a = fx.token("cart");
    let (status, first) = c.post("/v1/slots", &json!({ "token": token_a })).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = c.post("/v1/slots", &json!({ "token": token_a })).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(first, again);
    let id_a: [u8; 32] = WorkloadId::of_token(token_a.as_bytes())
        .as_bytes()
        .to_owned();
    assert_eq!(first["id"], hex::encode(id_a));
    let slot_a = u32::try_from(first["slot"].as_u64().unwrap()).unwrap();

    // A second token gets another slot.
    let token_b = fx.token("checkout");
    let slot_b = c.reserve(&token_b).await;
    assert_ne!(slot_a, slot_b);

    // --- registration ---
    let agent_a =
        mazu_curator::client::build_registration(&crs, &token_a, slot_a, &mut rand::rngs::OsRng)
            .unwrap();
    let (status, body) = c.post_registration(&agent_a.request).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["index"], 0);
    assert_eq!(body["version"], 1);
    assert_eq!(body["entry"]["id"], hex::encode(id_a));
    assert_eq!(body["entry"]["slot"], slot_a);
    let spki_a = spki_der(&agent_a.tls_key);
    assert_eq!(
        body["entry"]["spki_hash"],
        hex::encode(SpkiHash::of_spki_der(&spki_a).as_bytes())
    );

    // --- params: version 1, ETag, 304 on an unchanged poll ---
    let r = c.get("/v1/params").await;
    assert_eq!(r.headers()["etag"], "\"1\"");
    let params_json: PublicParams = r.json().await.unwrap();
    assert_eq!(params_json.version(), 1);
    let params_bin =
        PublicParams::from_bytes(&c.get_bytes("/v1/params?format=binary").await).unwrap();
    assert_eq!(params_bin, params_json);
    let r = c
        .http
        .get(c.url("/v1/params"))
        .header("if-none-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());

    // --- registry snapshot, JSON variant, deltas, 304 ---
    let r = c.get("/v1/registry").await;
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.headers()["etag"], "\"1\"");
    let snapshot = RegistrySnapshot::decode(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(snapshot.version(), 1);
    let entry = snapshot
        .get(&WorkloadId::from_bytes(id_a))
        .expect("registered");
    assert_eq!(entry.slot, slot_a);
    assert_eq!(entry.spki_hash, SpkiHash::of_spki_der(&spki_a));
    let snap_json = c.get_json("/v1/registry?format=json").await;
    assert_eq!(snap_json["version"], 1);
    assert_eq!(snap_json["entries"][0]["id"], hex::encode(id_a));
    let delta = RegistryDelta::decode(&c.get_bytes("/v1/registry?since=0").await).unwrap();
    assert_eq!(
        (
            delta.from_version(),
            delta.to_version(),
            delta.entries().len()
        ),
        (0, 1, 1)
    );
    let empty = RegistryDelta::decode(&c.get_bytes("/v1/registry?since=1").await).unwrap();
    assert!(empty.entries().is_empty());
    let delta_json = c.get_json("/v1/registry?since=0&format=json").await;
    assert_eq!(delta_json["to_version"], 1);
    for path in ["/v1/registry", "/v1/registry?since=0"] {
        let r = c
            .http
            .get(c.url(path))
            .header("if-none-match", "\"1\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304, "{path}");
    }
    let r = c
        .http
        .get(c.url("/v1/registry"))
        .header("if-none-match", "\"0\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A client ahead of the curator is told so.
    let r = c.get("/v1/registry?since=9").await;
    assert_eq!(r.status(), 400);
    assert_eq!(code(&r.json().await.unwrap()), "version_ahead");

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
        agent_a.request.registration.clone().pipe(reg_of).public_key
    );
    let unknown = c.get(&format!("/v1/proofs/{}", "ab".repeat(32))).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(code(&unknown.json().await.unwrap()), "unknown_id");
    let bad_id = c.get("/v1/proofs/xyz").await;
    assert_eq!(bad_id.status(), 400);
    let out = c.get("/v1/openings/16").await;
    assert_eq!(code(&out.json().await.unwrap()), "slot_out_of_range");

    // --- the raw log ---
    let log = c.get_json("/v1/log").await;
    assert_eq!(log["size"], 1);
    let raw = Base64::decode_vec(log["entries"][0]["entry"].as_str().unwrap()).unwrap();
    let entry = LogEntry::from_bytes(&raw).unwrap();
    assert_eq!(entry.token, token_a.as_bytes());
    assert_eq!(entry.tls_spki, spki_a);
    assert_eq!(
        log["entries"][0]["leaf_hash"],
        hex::encode(LogEntry::leaf_hash(&raw))
    );
    assert_eq!(log["entries"][0]["leaf_hash"], body["entry"]["leaf_hash"]);
    assert_eq!(
        c.get_json("/v1/log?start=1").await["entries"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(c.get("/v1/log?limit=0").await.status(), 400);

    // ================= refusals: code, status, nothing changed =================
    let before = state_of(&c).await;
    let check = |status: u16, body: &Value, want_status: u16, want_code: &str| {
        assert_eq!((status, code(body)), (want_status, want_code), "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    };

    // Duplicate id: the same registration again.
    let (s, b) = c.post_registration(&agent_a.request).await;
    check(s, &b, 409, "already_registered");
    // And asking for a slot with a registered token.
    let (s, b) = c.post("/v1/slots", &json!({ "token": token_a })).await;
    check(s, &b, 409, "already_registered");

    // Reused slot: another token's registration for slot_a.
    let reused =
        mazu_curator::client::build_registration(&crs, &token_b, slot_a, &mut rand::rngs::OsRng)
            .unwrap();
    let (s, b) = c.post_registration(&reused.request).await;
    check(s, &b, 409, "slot_taken");

    // Slot reserved for someone else.
    let token_c = fx.token("payments");
    let stolen =
        mazu_curator::client::build_registration(&crs, &token_c, slot_b, &mut rand::rngs::OsRng)
            .unwrap();
    let (s, b) = c.post_registration(&stolen.request).await;
    check(s, &b, 409, "slot_reserved");

    // Re-encoded copy of the registered token (ECDSA signature s -> n - s):
    // another id, same signed content.
    let copy = malleate(&token_a);
    assert_ne!(copy, token_a);
    let (s, b) = c.post("/v1/slots", &json!({ "token": copy })).await;
    check(s, &b, 409, "token_already_registered");
    let copy_reg =
        mazu_curator::client::build_registration(&crs, &copy, slot_b, &mut rand::rngs::OsRng)
            .unwrap();
    let (s, b) = c.post_registration(&copy_reg.request).await;
    check(s, &b, 409, "token_already_registered");

    // Expired token.
    let now = mazu_curator::service::now_unix();
    let expired = fx
        .issuer
        .mint(
            &TokenRequest::new("shop", "old")
                .issued_at(now - 7200)
                .lifetime(3600),
        )
        .unwrap();
    let (s, b) = c.post("/v1/slots", &json!({ "token": expired })).await;
    check(s, &b, 401, "token_expired");
    let reg =
        mazu_curator::client::build_registration(&crs, &expired, slot_b, &mut rand::rngs::OsRng)
            .unwrap();
    let (s, b) = c.post_registration(&reg.request).await;
    check(s, &b, 401, "token_expired");

    // A token from an issuer the curator does not trust.
    let foreign = fx
        .stranger
        .mint(&TokenRequest::new("shop", "evil"))
        .unwrap();
    let (s, b) = c.post("/v1/slots", &json!({ "token": foreign })).await;
    check(s, &b, 401, "token_unknown_kid");
    let reg =
        mazu_curator::client::build_registration(&crs, &foreign, slot_b, &mut rand::rngs::OsRng)
            .unwrap();
    let (s, b) = c.post_registration(&reg.request).await;
    check(s, &b, 401, "token_unknown_kid");

    // Wrong audience.
    let wrong_aud = fx
        .issuer
        .mint(&TokenRequest::new("shop", "cart").audiences(["kubernetes"]))
        .unwrap();
    let (s, b) = c.post("/v1/slots", &json!({ "token": wrong_aud })).await;
    check(s, &b, 401, "token_wrong_audience");
    let reg =
        mazu_curator::client::build_registration(&crs, &wrong_aud, slot_b, &mut rand::rngs::OsRng)
            .unwrap();
    let (s, b) = c.post_registration(&reg.request).await;
    check(s, &b, 401, "token_wrong_audience");

    // Bad TLS signature: signed by another key, and bit-flipped.
    let good_b =
        mazu_curator::client::build_registration(&crs, &token_b, slot_b, &mut rand::rngs::OsRng)
            .unwrap();
    let reg_b = reg_of(good_b.request.registration.clone());
    let other_key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let spki_b = spki_der(&good_b.tls_key);
    let wrong_signer = request_for(
        &token_b,
        &reg_b,
        &spki_b,
        &sign_pop(&other_key, &reg_b, &spki_b),
    );
    let (s, b) = c.post_registration(&wrong_signer).await;
    check(s, &b, 422, "bad_tls_signature");
    let mut flipped = Base64::decode_vec(&good_b.request.tls_signature).unwrap();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let flipped = request_for(&token_b, &reg_b, &spki_b, &flipped);
    let (s, b) = c.post_registration(&flipped).await;
    check(s, &b, 422, "bad_tls_signature");
    // A signature over another slot's message.
    let mut moved = reg_b.clone();
    moved.slot = (slot_b + 1) % 16;
    let other_slot = request_for(
        &token_b,
        &reg_b,
        &spki_b,
        &sign_pop(&good_b.tls_key, &moved, &spki_b),
    );
    let (s, b) = c.post_registration(&other_slot).await;
    check(s, &b, 422, "bad_tls_signature");
    // Not a key at all.
    let not_key = request_for(
        &token_b,
        &reg_b,
        b"not a key",
        &sign_pop(&good_b.tls_key, &reg_b, &spki_b),
    );
    let (s, b) = c.post_registration(&not_key).await;
    check(s, &b, 400, "invalid_tls_key");

    // Wrong helper value (correctly signed by the TLS key, so only the RBE
    // check can catch it).
    let mut bad_helpers = reg_b.clone();
    bad_helpers.helpers.swap(0, 1);
    let tampered = request_for(
        &token_b,
        &bad_helpers,
        &spki_b,
        &sign_pop(&good_b.tls_key, &bad_helpers, &spki_b),
    );
    let (s, b) = c.post_registration(&tampered).await;
    check(s, &b, 422, "invalid_helpers");

    // Wrong proof of knowledge (another registration's proof).
    let mut bad_pok = reg_b.clone();
    bad_pok.proof = reg_of(reused.request.registration.clone()).proof;
    let tampered = request_for(
        &token_b,
        &bad_pok,
        &spki_b,
        &sign_pop(&good_b.tls_key, &bad_pok, &spki_b),
    );
    let (s, b) = c.post_registration(&tampered).await;
    check(s, &b, 422, "invalid_proof_of_knowledge");

    // Id mismatch: a registration made for another token's id.
    let token_d = fx.token("ledger");
    let for_d =
        mazu_curator::client::build_registration(&crs, &token_d, slot_b, &mut rand::rngs::OsRng)
            .unwrap();
    let reg_d = reg_of(for_d.request.registration.clone());
    let spki_d = spki_der(&for_d.tls_key);
    let mismatched = request_for(
        &token_b,
        &reg_d,
        &spki_d,
        &sign_pop(&for_d.tls_key, &reg_d, &spki_d),
    );
    let (s, b) = c.post_registration(&mismatched).await;
    check(s, &b, 422, "id_mismatch");

    // Slot field disagreeing with the registration.
    let mut wrong_slot = good_b.request.clone();
    wrong_slot.slot = (slot_b + 1) % 16;
    let (s, b) = c.post_registration(&wrong_slot).await;
    check(s, &b, 400, "invalid_field");

    // Malformed bodies.
    let raw = |body: &'static str, content_type: &'static str| {
        let c = &c;
        async move {
            let r = c
                .http
                .post(c.url("/v1/registrations"))
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
    let (s, b) = raw(r#"{"token": 5}"#, "application/json").await;
    check(s, &b, 400, "malformed_body");
    let (s, b) = raw("{}", "text/plain").await;
    check(s, &b, 415, "unsupported_media_type");
    let mut garbage = serde_json::to_value(&good_b.request).unwrap();
    garbage["registration"]["public_key"] = json!("AAAA");
    let (s, b) = c.post("/v1/registrations", &garbage).await;
    check(s, &b, 400, "invalid_registration");
    let mut bad_b64 = good_b.request.clone();
    bad_b64.tls_spki = "%%%".into();
    let (s, b) = c.post_registration(&bad_b64).await;
    check(s, &b, 400, "invalid_field");

    // Oversized body (limit 64 KiB here).
    let big = json!({ "token": "x".repeat(100_000) });
    let (s, b) = c.post("/v1/slots", &big).await;
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

    // The good registration for token B still goes through afterwards.
    let (s, b) = c.post_registration(&good_b.request).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["version"], 2);

    // Metrics saw it all.
    let metrics = c.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("mazu_curator_registrations_accepted_total 2"),
        "{metrics}"
    );
    for reason in [
        "slot_taken",
        "invalid_helpers",
        "bad_tls_signature",
        "token_expired",
        "malformed_body",
    ] {
        assert!(
            metrics.contains(&format!(
                "mazu_curator_registrations_refused_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {metrics}"
        );
    }
    assert!(metrics.contains("mazu_curator_log_entries 2"));
    assert!(
        metrics.contains(r#"route="/v1/registrations""#),
        "{metrics}"
    );

    // Graceful shutdown on SIGTERM.
    let status = c.terminate();
    assert!(status.success(), "{status}");
    assert!(c.log().contains("SIGTERM received"));
}

#[tokio::test]
async fn per_client_rate_limit() {
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
    for _ in 0..2 {
        let (s, b) = c
            .post("/v1/slots", &json!({ "token": fx.token("a") }))
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let r = c
        .http
        .post(c.url("/v1/registrations"))
        .json(&json!({ "token": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(code(&r.json().await.unwrap()), "rate_limited");
    let (s, b) = c
        .post("/v1/slots", &json!({ "token": fx.token("b") }))
        .await;
    assert_eq!((s, code(&b)), (429, "rate_limited"));
    // Reads are not rate limited, and nothing changed.
    assert_eq!(state_of(&c).await, before);
}

/// The rbe registration inside a request.
fn reg_of(v: Value) -> Registration {
    serde_json::from_value(v).expect("registration")
}

/// Small helper to chain a function call.
trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

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

/// A registration body costs the curator curve arithmetic (a subgroup check
/// per point, up to n − 1 of them) only after its token verified: an
/// unauthenticated request is refused on its token (or its shape) before any
/// point is decoded. Before the fix these bodies were refused as
/// `invalid_registration`, i.e. after decoding the points.
#[tokio::test]
async fn unauthenticated_bodies_are_refused_before_any_point_is_decoded() {
    let fx = Fixture::new();
    let mut c = Curator::spawn(fx.dir.path(), &fx.args(16));
    c.ready().await;
    let crs = c.crs().await;
    let before = state_of(&c).await;
    let agent = c.prepare(&crs, &fx.token("a")).await;

    // Points that would fail to decode, and a token that does not verify.
    let not_a_point = Base64::encode_string(&[0xff; 48]);
    let mut request = agent.request.clone();
    request.token = malleate(&fx.token("a")).replace('.', "!");
    for helper in request.registration["helpers"]
        .as_array_mut()
        .expect("helpers")
    {
        *helper = json!(not_a_point);
    }
    request.registration["public_key"] = json!(not_a_point);
    let (status, body) = c.post_registration(&request).await;
    assert_eq!(status, 401, "{body}");
    assert!(code(&body).starts_with("token_"), "{body}");

    // A valid token from another workload: refused on the id, still before
    // the points.
    request.token = fx.token("b");
    let (status, body) = c.post_registration(&request).await;
    assert_eq!((status, code(&body)), (422, "id_mismatch"), "{body}");

    // The helper count is checked from the JSON alone.
    let mut short = agent.request.clone();
    short.token = "garbage".into();
    short.registration["helpers"]
        .as_array_mut()
        .expect("helpers")
        .pop();
    let (status, body) = c.post_registration(&short).await;
    assert_eq!((status, code(&body)), (422, "helper_count"), "{body}");

    // So is the slot's range.
    let mut far = agent.request.clone();
    far.slot = 16;
    far.registration["slot"] = json!(16);
    let (status, body) = c.post_registration(&far).await;
    assert_eq!(code(&body), "slot_out_of_range", "{status} {body}");

    assert_eq!(state_of(&c).await, before);
    // The genuine request still registers.
    let (status, body) = c.post_registration(&agent.request).await;
    assert_eq!(status, 201, "{body}");
}

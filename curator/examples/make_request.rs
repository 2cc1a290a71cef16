//! Builds a `POST /v1/bindings` body by hand, as a node agent would, for
//! trying the curator with curl (bind first, reveal later):
//!
//! ```sh
//! cargo run -p mazu-curator --example make_request -- CRS_FILE SLOT TOKEN > body.json
//! curl -s -H 'content-type: application/json' --data @body.json http://127.0.0.1:7878/v1/bindings
//! ID=$(jq -r .id body.json)
//! curl -s -H 'content-type: application/json' -d "{\"token\":\"$TOKEN\"}" \
//!     http://127.0.0.1:7878/v1/bindings/$ID/reveal
//! ```
//!
//! The token itself is not in the body (only its SHA-256, the id). The RBE
//! and TLS secret keys are thrown away: this is for trying the API only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "command-line example"
)]

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, crs, slot, token] = args.as_slice() else {
        eprintln!("usage: make_request CRS_FILE SLOT TOKEN");
        std::process::exit(2);
    };
    let crs = mazu_rbe::Crs::from_bytes(&std::fs::read(crs).expect("read CRS")).expect("CRS");
    let slot: u32 = slot.parse().expect("slot");
    let agent =
        mazu_curator::client::build_registration(&crs, token.trim(), slot, &mut rand::rngs::OsRng)
            .expect("keygen");
    println!(
        "{}",
        serde_json::to_string_pretty(&agent.request).expect("json")
    );
}

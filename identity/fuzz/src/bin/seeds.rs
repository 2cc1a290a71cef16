//! Writes starting corpora into corpus/<target>/ (not committed):
//! from identity/fuzz, `cargo +nightly fuzz build -O` then
//! `./target/x86_64-unknown-linux-gnu/release/seeds` (or `cargo run --release --bin seeds`).

use std::fs;
use std::path::Path;

use mazu_identity_fuzz::WORLD;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).expect("create corpus dir");
    fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let world = &*WORLD;
    for (i, cert) in world.certificates.iter().enumerate() {
        // The certificate target reads its first byte as a selector (0 = verdict).
        write(
            "certificate",
            &format!("cert-{i}"),
            &[&[0u8][..], cert].concat(),
        );
    }
    // Selector 1: a Mazu extension value; selector 2: a SPIFFE ID.
    let token = &world.tokens[0];
    let ext = mazu_identity::certificate::MazuIdentity {
        workload_id: mazu_identity::WorkloadId::of_token(token),
        token,
    }
    .to_der()
    .expect("extension DER");
    write("certificate", "extension", &[&[1u8][..], &ext].concat());
    write(
        "certificate",
        "spiffe",
        b"\x02spiffe://cluster.local/ns/shop/sa/cart",
    );
    for (i, token) in world.tokens.iter().enumerate() {
        write("jwt", &format!("token-{i}"), token);
    }
    write(
        "snapshot",
        "snapshot",
        &[&[0u8][..], &world.registry.encode()].concat(),
    );
    write(
        "snapshot",
        "delta",
        &[&[1u8][..], &world.delta.encode()].concat(),
    );
    let snapshot = world.registry.encode();
    let mut both = vec![2u8];
    both.extend_from_slice(&(snapshot.len() as u32).to_be_bytes());
    both.extend_from_slice(&snapshot);
    both.extend_from_slice(&world.delta.encode());
    write("snapshot", "apply", &both);
    println!("seeds written to corpus/{{certificate,jwt,snapshot}}");
}

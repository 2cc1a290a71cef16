//! A walk through the RBE scheme, as the curator, agents and a sender use it:
//! dev CRS, verification, registrations in several blocks, encryption and
//! decryption (also after later registrations), membership and
//! non-membership proofs, and an auditor's replay of the log.
//!
//! `cargo run --release -p mazu-rbe --example rbe_walkthrough`
//!
//! Exits non-zero if any step fails (including a forged proof that verifies).

use std::process::ExitCode;
use std::time::Instant;

use mazu_rbe::{
    Crs, DecryptError, MembershipProof, OpeningHistory, Registration, RegistryState, SecretKey,
    decrypt, encrypt, keygen,
};
use rand::rngs::OsRng;

const CAPACITY: u32 = 1024; // n = 32, 32 blocks

/// Run one step, print its outcome and duration, stop at the first failure.
fn step<T>(name: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let start = Instant::now();
    let out = f();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    match &out {
        Ok(_) => println!("[ ok ] {name:<62} {ms:>9.2} ms"),
        Err(e) => println!("[FAIL] {name:<62} {ms:>9.2} ms\n       {e}"),
    }
    out.map_err(|e| format!("{name}: {e}"))
}

fn id_of(name: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(name.as_bytes()).into()
}

fn run() -> Result<(), String> {
    let mut rng = OsRng;
    println!("Mazu RBE walkthrough (capacity {CAPACITY})");
    println!("WARNING: single-party development CRS, never use it in production.\n");

    let crs = step("CRS: generate_insecure_dev", || {
        Crs::generate_insecure_dev(CAPACITY, &mut rng).map_err(|e| e.to_string())
    })?;
    let dims = crs.dimensions();
    println!(
        "       n = {}, blocks = {}, encoding {} bytes, digest {}",
        dims.block_size(),
        dims.blocks(),
        crs.to_bytes().len(),
        hex(&crs.digest()[..8])
    );
    step("CRS: decode canonical bytes", || {
        let back = Crs::from_bytes(&crs.to_bytes()).map_err(|e| e.to_string())?;
        (back == crs)
            .then_some(())
            .ok_or("decoded CRS differs".into())
    })?;
    step("CRS: verify (batched pairing check, no secret)", || {
        crs.verify().map_err(|e| e.to_string())
    })?;

    let mut state = RegistryState::new(crs.clone());
    let mut log: Vec<Registration> = Vec::new();
    let mut keys: Vec<(String, SecretKey)> = Vec::new();
    // Users in blocks 0, 1, 1 and 31.
    for (name, slot) in [
        ("frontend", 0u32),
        ("cart", 33),
        ("payments", 40),
        ("ledger", 1000),
    ] {
        let (sk, reg) = step(&format!("agent: keygen for {name} (slot {slot})"), || {
            keygen(&crs, slot, id_of(name), &mut rng).map_err(|e| e.to_string())
        })?;
        let reg = step(&format!("curator: verify + apply {name}"), || {
            state.verify_and_apply(reg).map_err(|e| e.to_string())
        })?;
        log.push(reg);
        keys.push((name.to_string(), sk));
    }
    step(
        "curator: rejects a second registration of the same id",
        || {
            let (_, dup) =
                keygen(&crs, 41, id_of("payments"), &mut rng).map_err(|e| e.to_string())?;
            match state.verify(dup) {
                Err(e) => {
                    println!("       rejected as expected: {e}");
                    Ok(())
                }
                Ok(_) => Err("duplicate id accepted".into()),
            }
        },
    )?;

    let payments_slot = 40;
    let payments_sk = &keys[2].1;
    let mut history = OpeningHistory::new(state.opening(payments_slot).ok_or("no opening")?);
    let pp = state.public_params();
    println!(
        "       public parameters version {}, {} bytes",
        pp.version(),
        pp.to_bytes().len()
    );

    let msg = b"hello payments, this is frontend";
    let ct = step("sender: encrypt to slot 40 with public parameters", || {
        encrypt(&crs, &pp, payments_slot, msg, b"walkthrough", &mut rng).map_err(|e| e.to_string())
    })?;
    println!("       ciphertext {} bytes", ct.to_bytes().len());
    step("payments: decrypt", || {
        let got = decrypt(&crs, payments_sk, history.latest(), &ct, b"walkthrough")
            .map_err(|e| e.to_string())?;
        (got == msg).then_some(()).ok_or("wrong plaintext".into())
    })?;
    step("impostor: a fresh key for slot 40 cannot decrypt", || {
        let (impostor, _) =
            keygen(&crs, payments_slot, id_of("impostor"), &mut rng).map_err(|e| e.to_string())?;
        match decrypt(&crs, &impostor, history.latest(), &ct, b"walkthrough") {
            Err(e) => {
                println!("       refused as expected: {e}");
                Ok(())
            }
            Ok(_) => Err("an unregistered key decrypted".into()),
        }
    })?;

    // A later registration in the same block changes C_1.
    let (_, late) = step(
        "agent + curator: register checkout in block 1 (slot 45)",
        || {
            let (sk, reg) =
                keygen(&crs, 45, id_of("checkout"), &mut rng).map_err(|e| e.to_string())?;
            let reg = state.verify_and_apply(reg).map_err(|e| e.to_string())?;
            Ok((sk, reg))
        },
    )?;
    log.push(late.clone());
    step(
        "payments: update its opening from the public registration",
        || {
            history.update(&crs, &late).map_err(|e| e.to_string())?;
            (Some(*history.latest()) == state.opening(payments_slot))
                .then_some(())
                .ok_or("self-maintained opening differs from the curator's".into())
        },
    )?;
    step(
        "payments: old ciphertext with the new opening is a typed error",
        || match decrypt(&crs, payments_sk, history.latest(), &ct, b"walkthrough") {
            Err(DecryptError::StaleOpening) => Ok(()),
            other => Err(format!("expected StaleOpening, got {other:?}")),
        },
    )?;
    step(
        "payments: old ciphertext decrypts with the opening from history",
        || {
            let old = history
                .opening_for(ct.commitment())
                .ok_or("no matching opening")?;
            let got =
                decrypt(&crs, payments_sk, old, &ct, b"walkthrough").map_err(|e| e.to_string())?;
            (got == msg).then_some(()).ok_or("wrong plaintext".into())
        },
    )?;

    let pp = state.public_params();
    let proof = state.membership_proof(payments_slot).ok_or("no proof")?;
    step("anyone: membership proof of payments verifies", || {
        proof.verify(&crs, &pp).map_err(|e| e.to_string())
    })?;
    step("anyone: membership proof with cart's key fails", || {
        let cart_pk = *state.public_key(33).ok_or("no key")?;
        let forged = MembershipProof {
            public_key: cart_pk,
            ..proof
        };
        match forged.verify(&crs, &pp) {
            Err(e) => {
                println!("       rejected as expected: {e}");
                Ok(())
            }
            Ok(()) => Err("forged membership proof verified".into()),
        }
    })?;
    step("anyone: non-membership of free slot 41 verifies", || {
        state
            .non_membership_proof(41)
            .ok_or("slot 41 not free")?
            .verify(&crs, &pp)
            .map_err(|e| e.to_string())
    })?;

    step(
        "auditor: replay the log, same public parameters byte for byte",
        || {
            let replayed = RegistryState::replay(crs.clone(), log.iter().cloned())
                .map_err(|e| e.to_string())?;
            (replayed.public_params().to_bytes() == pp.to_bytes())
                .then_some(())
                .ok_or("replayed parameters differ".into())
        },
    )?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            println!("\nall steps passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nwalkthrough failed: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The connections the demo makes and prints: the mesh's own traffic, then
//! each attack of the list against a sidecar, then a curator that
//! rewrites its log. The tests in `tests/scenarios.rs` make the same
//! connections and assert each result.

use core::fmt::Write as _;

use anyhow::Result;

use crate::attacks::{self, Credential};
use crate::mesh::{LocalMesh, ServiceSpec, Verdict};

/// One connection attempt and how it ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Who connects, e.g. `frontend` or `attacker: stolen token`.
    pub client: String,
    /// The service it connects to.
    pub target: String,
    /// Whether the mesh should let it through.
    pub should_allow: bool,
    /// What happened.
    pub verdict: Verdict,
}

impl Outcome {
    /// Whether the mesh did what it should.
    pub fn as_expected(&self) -> bool {
        self.verdict.is_allowed() == self.should_allow
    }
}

/// Runs every scenario that needs no change to the mesh: each service calls
/// each other one through the sidecars, then an attacker connects to the
/// second service (`target`) presenting each kind of forged credential for
/// the first one (`victim`).
pub fn run_standard(mesh: &LocalMesh) -> Result<Vec<Outcome>> {
    let mut outcomes = Vec::new();
    let names: Vec<String> = mesh
        .services()
        .iter()
        .map(|s| s.spec.name.clone())
        .collect();
    for from in &names {
        for to in names.iter().filter(|to| *to != from) {
            outcomes.push(Outcome {
                client: from.clone(),
                target: to.clone(),
                should_allow: true,
                verdict: mesh.call(from, to)?,
            });
        }
    }
    let (Some(victim), Some(target)) = (mesh.services().first(), mesh.services().get(1)) else {
        return Ok(outcomes);
    };
    let victim_spec: ServiceSpec = victim.spec.clone();
    let target_spec = target.spec.clone();
    let attacks: Vec<(&str, Option<Credential>)> = vec![
        (
            "mesh-CA certificate, no Mazu token",
            Some(attacks::mesh_ca_signed(mesh.dir(), &victim_spec)?),
        ),
        (
            "stolen token, attacker's TLS key",
            Some(attacks::stolen_token(mesh, &victim_spec.name)?),
        ),
        (
            "valid token, never registered",
            Some(attacks::never_registered(mesh, &victim_spec)?),
        ),
        (
            "expired token",
            Some(attacks::expired_token(mesh, &victim_spec)),
        ),
        (
            "token from another issuer",
            Some(attacks::other_issuer(mesh, &victim_spec)?),
        ),
        (
            "token for another audience",
            Some(attacks::other_audience(mesh, &victim_spec)),
        ),
        (
            "tampered token (exp edited)",
            Some(attacks::tampered_token(mesh, &victim_spec.name)?),
        ),
        (
            "SPIFFE ID != token's service account",
            Some(attacks::spiffe_id_mismatch(
                mesh,
                &victim_spec.name,
                &target_spec,
            )?),
        ),
        ("no client certificate", None),
    ];
    for (what, credential) in attacks {
        let verdict = mesh.connect_as(
            &target_spec.name,
            credential.as_ref().map(Credential::as_pair),
        )?;
        outcomes.push(Outcome {
            client: format!("attacker: {what}"),
            target: target_spec.name.clone(),
            should_allow: false,
            verdict,
        });
    }
    Ok(outcomes)
}

/// The outcomes as a table, one line per connection.
pub fn table(outcomes: &[Outcome]) -> String {
    let client_width = outcomes
        .iter()
        .map(|o| o.client.len())
        .chain([6])
        .max()
        .unwrap_or(6);
    let target_width = outcomes
        .iter()
        .map(|o| o.target.len())
        .chain([2])
        .max()
        .unwrap_or(2);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:client_width$}  {:target_width$}  {:8}  {:18}  REASON",
        "FROM", "TO", "RESULT", "DECIDED BY"
    );
    for outcome in outcomes {
        let (result, by, reason) = match &outcome.verdict {
            Verdict::Allowed => ("allowed", "-", "-"),
            Verdict::Denied { by, reason } => ("DENIED", by.as_str(), reason.as_str()),
        };
        let flag = if outcome.as_expected() {
            ""
        } else {
            "   <-- UNEXPECTED"
        };
        let _ = writeln!(
            out,
            "{:client_width$}  {:target_width$}  {result:8}  {by:18}  {reason}{flag}",
            outcome.client, outcome.target
        );
    }
    out
}

/// The curator lies about its history: it swaps the first two logged
/// bindings on disk and restarts (same port, same checkpoint key), then asks
/// the witnesses to cosign checkpoints of the rewritten log: same size,
/// another root. Waits until every witness has refused it (recorded fork
/// evidence) or `limit` passes, and returns the number of fork records per
/// witness. No filter ever sees a witnessed checkpoint of the rewritten log,
/// so every filter keeps the registry it held.
pub fn curator_rewrites_its_log(
    mesh: &mut LocalMesh,
    limit: core::time::Duration,
) -> Result<Vec<(String, usize)>> {
    mesh.rewrite_curator_log(|entries| {
        // Byte 5 of an entry is its kind; 1 is a bind.
        let binds: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].get(5) == Some(&1))
            .take(2)
            .collect();
        if let [first, second] = binds[..] {
            entries.swap(first, second);
        }
    })?;
    let start = std::time::Instant::now();
    loop {
        let refusals = mesh.witness_fork_records()?;
        if refusals.iter().all(|(_, n)| *n > 0) || start.elapsed() > limit {
            return Ok(refusals);
        }
        std::thread::sleep(core::time::Duration::from_millis(100));
    }
}

//! The registry-lifecycle soak of issue 17, on real processes: capacity 16,
//! tokens of 20 s replaced every 6 s, four services calling each other
//! through their Envoys on new and pooled connections (`mazu_e2e::soak`,
//! docs/soak.md).
//!
//! Runs for `MAZU_SOAK_SECS` seconds (default 300, the CI run; `just soak`
//! runs 1800). It is its own test binary with one test, so cargo runs it
//! alone, after or before the scenarios, never beside them.
//!
//! Needs the binaries (`cargo build -p mazu-curator -p mazu-agent -p
//! mazu-witness -p mazu-audit`), the filter `.wasm` and Envoy; `just test`
//! provides all of them.

use mazu_e2e::soak::{self, SoakOptions};

#[test]
fn soak_the_registry_lifecycle_under_traffic() {
    let options = SoakOptions::from_env().expect("MAZU_SOAK_* settings");
    let report = soak::run(&options).expect("the soak runs");
    // Printed in full: `just soak` (--nocapture) shows the series, and a
    // failing CI run shows it with the failure.
    println!("{report}");
    let problems = report.problems();
    assert!(
        problems.is_empty(),
        "the soak failed:\n- {}\n\n{report}",
        problems.join("\n- ")
    );
}

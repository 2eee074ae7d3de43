//! The whole front end on arbitrary text: pest statement splitting, sqlparser, fsql's own
//! statements, analysis (catalog, DataFusion planning and coercion, Flink type rules), lowering and
//! the boundedness check. It must never panic (ARCHITECTURE.md: "No panic on user input"), every
//! diagnostic must render (its span must lie in its file), and a compiled plan must survive its
//! artefact round trip unchanged.
#![no_main]

use std::path::Path;

use fsql_compiler::{CompileOptions, compile_source};
use fsql_plan::Plan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    if names_a_device(&text) {
        return;
    }
    let c = compile_source(
        Path::new("fuzz.fsql"),
        text,
        &CompileOptions::default(),
        &[],
    );
    for d in &c.diagnostics {
        let _ = d.render(&c.sources);
    }
    if let Some(plan) = c.plan() {
        let bytes = plan.to_bytes();
        let back = Plan::from_bytes(&bytes)
            .unwrap_or_else(|e| panic!("a compiled plan does not load back: {e}"));
        assert!(back == plan, "the plan changed in its artefact round trip");
    }
});

/// `INCLUDE '/dev/zero'` (or `/dev/stdin`, `/proc/...`) would make the compiler read a file that
/// never ends: that is the user's request, not a bug, so such inputs are not run. `INCLUDE` of
/// ordinary (missing or existing) files is still exercised.
fn names_a_device(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["dev/", "proc/", "sys/"].iter().any(|d| lower.contains(d))
}

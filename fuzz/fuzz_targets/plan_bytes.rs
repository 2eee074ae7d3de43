//! `Plan::from_bytes` on arbitrary bytes: `fsql run` loads artefacts from disk, so a truncated,
//! corrupt or hostile file must give a `PlanError`, never a panic. Whatever loads must serialise
//! and load back to the same plan.
#![no_main]

use fsql_plan::Plan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(plan) = Plan::from_bytes(data) {
        let back = Plan::from_bytes(&plan.to_bytes())
            .unwrap_or_else(|e| panic!("a loaded plan does not load back: {e}"));
        assert!(back == plan, "the plan changed in its artefact round trip");
    }
});

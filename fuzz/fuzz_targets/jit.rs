//! The JIT against the interpreter on expressions and batches generated from the fuzzer's bytes
//! (`fsql_runtime::compiled::generated`): no crash, no difference. Every case compiles a kernel
//! and runs it, so this also exercises code generation on whatever trees the bytes describe.
#![no_main]

use fsql_runtime::compiled::generated::{Rng, calc_case, ruleset_case};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (first, rest) = data.split_first().unwrap_or((&0, &[]));
    let rng = Rng::from_bytes(rest);
    let result = if first % 4 == 0 {
        ruleset_case(rng)
    } else {
        calc_case(rng).map(|_| ())
    };
    if let Err(diff) = result {
        panic!("the JIT differs from the interpreter:\n{diff}");
    }
});

//! A LightGBM model file's text → `fsql_model::Model::load` (fsql's parser, then LightGBM's loader,
//! then the Cranelift-compiled scorer and its probe check). Invariants: no panic or crash on any
//! text; a model that loads scores rows, and when the compiled scorer is in use its results equal
//! LightGBM's bit for bit.
#![no_main]

use fsql_model::{Engine, Model, Output};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(mut model) = Model::load(&text, true) else {
        return;
    };
    let features = model.features();
    let outputs = model.outputs();
    if features > 4096 || outputs > 256 {
        return;
    }
    // Rows of values around the decisions: NaN, zeros, small integers, fractions.
    let values = [f64::NAN, 0.0, -0.0, 1.0, 0.5, -1.0, 3.0, 1e-36, 2.5, 1e300];
    let rows: Vec<f64> = (0..4 * features).map(|i| values[(i * 7 + i / 3) % values.len()]).collect();
    let mut got = vec![0.0; 4 * outputs];
    let mut want = vec![0.0; 4 * outputs];
    for output in [Output::Raw, Output::Transformed] {
        model.predict(&rows, output, &mut got).expect("a loaded model scores");
        model.predict_reference(&rows, output, &mut want).expect("LightGBM scores");
        if matches!(model.engine(), Engine::Compiled { .. }) {
            let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "compiled {got:?} != LightGBM {want:?}");
        }
    }
});

//! The load-time equality check between the compiled scorer and LightGBM.
//!
//! Probe rows are built from the model itself: for every feature, the values where a decision
//! can change — each split threshold and its neighbouring doubles, NaN, ±0, values inside and just
//! outside LightGBM's zero threshold, each category bit of a categorical split and its neighbours —
//! are mixed at random (seeded) into rows. Both scorers must give bit-identical raw scores and
//! predictions on every row.

use crate::ensemble::{SplitKind, ZERO_THRESHOLD};
use crate::{Model, ModelError, Output};

/// Rows per probe batch and batches per check.
const ROWS: usize = 512;
const BATCHES: usize = 4;

/// The values worth trying for each feature.
fn candidates(model: &Model) -> Vec<Vec<f64>> {
    let e = model.ensemble();
    let mut values: Vec<Vec<f64>> = (0..e.num_features())
        .map(|_| {
            vec![
                f64::NAN,
                0.0,
                -0.0,
                ZERO_THRESHOLD,
                ZERO_THRESHOLD.next_up(),
                -ZERO_THRESHOLD.next_up(),
                1.0,
                -1.0,
                1e300,
                -1e300,
            ]
        })
        .collect();
    for tree in &e.trees {
        for split in &tree.splits {
            let Some(v) = values.get_mut(split.feature) else {
                continue;
            };
            match &split.kind {
                SplitKind::Numerical { threshold: t, .. } => {
                    v.extend([*t, t.next_up(), t.next_down()]);
                }
                SplitKind::Categorical { set } => {
                    let words = tree.category_sets.get(*set).map_or(0, Vec::len);
                    for bit in 0..(words * 32).min(256) {
                        let c = bit as f64;
                        v.extend([c, c + 0.5]);
                    }
                    v.extend([-0.5, (words * 32) as f64, 2147483648.0]);
                }
            }
        }
    }
    for v in &mut values {
        v.sort_by(f64::total_cmp);
        v.dedup_by(|a, b| a.to_bits() == b.to_bits());
    }
    values
}

/// Scores the probe rows with both scorers; the number of rows compared when they are equal.
pub(crate) fn compare(model: &mut Model) -> Result<usize, ModelError> {
    let values = candidates(model);
    let features = model.features();
    let outputs = model.outputs();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut rows = vec![0.0; ROWS * features];
    let mut compiled = vec![0.0; ROWS * outputs];
    let mut reference = vec![0.0; ROWS * outputs];
    for _ in 0..BATCHES {
        for (i, x) in rows.iter_mut().enumerate() {
            let v = &values[i % features];
            *x = v[(next() % v.len() as u64) as usize];
        }
        for output in [Output::Raw, Output::Transformed] {
            model.predict_compiled(&rows, output, &mut compiled)?;
            model.reference.predict(&rows, output, &mut reference)?;
            if let Some(k) =
                (0..compiled.len()).find(|&k| compiled[k].to_bits() != reference[k].to_bits())
            {
                return Err(ModelError::Unsupported(format!(
                    "the compiled scorer gave {:e} where LightGBM gives {:e} ({output:?} output, probe row {})",
                    compiled[k],
                    reference[k],
                    k / outputs
                )));
            }
        }
    }
    Ok(ROWS * BATCHES)
}

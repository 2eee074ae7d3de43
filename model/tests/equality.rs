//! The compiled scorer against LightGBM itself, bit for bit, on 100k generated rows per model:
//! binary, multiclass, multiclass one-vs-all and regression models trained here with the LightGBM
//! library (NaN and exact zeros in the data, so every missing-value rule occurs), and categorical
//! models and a `zero_as_missing` one trained by `models/train_test_models.py`.

use fsql_model::{Engine, Model, Output};
use lightgbm3::{Booster, Dataset};
use serde_json::json;

const ROWS: usize = 100_000;
const FEATURES: usize = 8;

/// A deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Rows with NaN (5%), exact zeros (5%), tiny values inside LightGBM's zero threshold, and
/// ordinary values; and a label computed from them.
fn data(seed: u64, rows: usize, features: usize) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng(seed);
    let mut x = Vec::with_capacity(rows * features);
    let mut signal = Vec::with_capacity(rows);
    for _ in 0..rows {
        let mut s = 0.0;
        for f in 0..features {
            let u = rng.unit();
            let v = if u < 0.05 {
                f64::NAN
            } else if u < 0.10 {
                0.0
            } else if u < 0.11 {
                1e-36
            } else {
                rng.unit() * 10.0 - 5.0
            };
            if !v.is_nan() && f < 4 {
                s += v * (f as f64 + 1.0) / 4.0;
            }
            x.push(v);
        }
        signal.push(s + rng.unit() * 2.0 - 1.0);
    }
    (x, signal)
}

fn train(params: serde_json::Value, label: impl Fn(f64) -> f32) -> String {
    let (x, signal) = data(1, 5_000, FEATURES);
    let labels: Vec<f32> = signal.iter().map(|&s| label(s)).collect();
    let dataset = Dataset::from_slice(&x, &labels, FEATURES as i32, true).unwrap();
    let booster = Booster::train(dataset, &params).unwrap();
    booster.save_string().unwrap()
}

fn assert_equal(text: &str, what: &str) {
    let mut model = Model::load(text, true).unwrap();
    assert!(
        matches!(model.engine(), Engine::Compiled { .. }),
        "{what}: {}",
        model.engine()
    );
    let features = model.features();
    let (x, _) = data(2, ROWS, features);
    // The reference: LightGBM reading the model file itself (fsql gives LightGBM a canonical
    // rendering of what its own parser read; this checks that reading too).
    let booster = Booster::from_string(text).unwrap();
    for output in [Output::Raw, Output::Transformed] {
        let mut compiled = vec![0.0; ROWS * model.outputs()];
        model.predict(&x, output, &mut compiled).unwrap();
        let reference = match output {
            Output::Raw => booster.raw_scores(&x, features as i32, true).unwrap(),
            Output::Transformed => booster.predict(&x, features as i32, true).unwrap(),
        };
        let mut rendered = vec![0.0; ROWS * model.outputs()];
        model.predict_reference(&x, output, &mut rendered).unwrap();
        assert_eq!(
            rendered.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            reference.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{what} {output:?}: LightGBM on fsql's rendering differs from LightGBM on the file"
        );
        let differ = (0..compiled.len())
            .filter(|&k| compiled[k].to_bits() != reference[k].to_bits())
            .count();
        assert_eq!(differ, 0, "{what} {output:?}: {differ} values differ");
        // The scores are not all alike (the comparison compares something).
        let distinct: std::collections::BTreeSet<u64> =
            compiled.iter().map(|v| v.to_bits()).collect();
        assert!(
            distinct.len() > 100,
            "{what}: {} distinct scores",
            distinct.len()
        );
    }
    // Batch 1 goes through LightGBM's single-row path: equal too.
    for r in (0..ROWS).step_by(9973) {
        let row = &x[r * features..(r + 1) * features];
        let mut one = vec![0.0; model.outputs()];
        model.predict(row, Output::Transformed, &mut one).unwrap();
        let reference = booster.predict(row, features as i32, true).unwrap();
        assert_eq!(
            one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            reference.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{what}: row {r}"
        );
    }
}

fn params(objective: &str) -> serde_json::Value {
    json!({"objective": objective, "num_iterations": 60, "num_leaves": 31, "learning_rate": 0.1,
           "min_data_in_leaf": 5, "seed": 7, "deterministic": true, "num_threads": 1, "verbose": -1})
}

#[test]
fn binary_model_scores_equal_lightgbm() {
    let text = train(params("binary"), |s| f32::from(s > 0.5));
    assert_equal(&text, "binary");
}

#[test]
fn multiclass_models_score_equal_lightgbm() {
    let label = |s: f64| {
        if s < -1.0 {
            0.0
        } else if s < 1.5 {
            1.0
        } else {
            2.0
        }
    };
    let mut p = params("multiclass");
    p["num_class"] = json!(3);
    assert_equal(&train(p.clone(), label), "multiclass");
    p["objective"] = json!("multiclassova");
    assert_equal(&train(p, label), "multiclassova");
}

#[test]
fn regression_models_score_equal_lightgbm() {
    assert_equal(&train(params("regression"), |s| s as f32), "regression");
    assert_equal(&train(params("poisson"), |s| s.exp() as f32), "poisson");
}

#[test]
fn categorical_models_score_equal_lightgbm() {
    for file in ["categorical_binary.txt", "categorical_multiclass.txt"] {
        let text = committed(file);
        assert!(
            text.contains("cat_threshold="),
            "{file} has categorical splits"
        );
        // Categorical features get integer-valued and fractional inputs, NaN and negatives.
        assert_equal(&text, file);
    }
}

#[test]
fn zero_as_missing_model_scores_equal_lightgbm() {
    let text = committed("zero_as_missing.txt");
    // decision_type bits 2-3 = 1: the Zero missing type.
    let zero_splits = text
        .lines()
        .filter_map(|l| l.strip_prefix("decision_type="))
        .flat_map(|l| l.split(' '))
        .filter(|d| d.parse::<u8>().is_ok_and(|d| (d >> 2) & 3 == 1))
        .count();
    assert!(zero_splits > 0, "the model has Zero missing-type splits");
    assert_equal(&text, "zero_as_missing");
}

/// A model trained by `models/train_test_models.py`.
fn committed(file: &str) -> String {
    let path = format!("{}/tests/models/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap()
}

#[test]
fn the_compiled_scorer_can_be_turned_off() {
    let text = train(params("binary"), |s| f32::from(s > 0.5));
    let model = Model::load(&text, false).unwrap();
    assert_eq!(
        model.engine().to_string(),
        "LightGBM C API (compiled scorer disabled)"
    );
}

#[test]
fn damaged_model_files_are_errors_not_panics() {
    let text = train(params("binary"), |s| f32::from(s > 0.5));
    // Cut the file at many points, and corrupt numbers: every outcome is Ok or Err, never a
    // panic, and an Ok model still scores.
    for cut in (0..text.len()).step_by(text.len() / 97 + 1) {
        let mut end = cut;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if let Ok(mut m) = Model::load(&text[..end], true) {
            let rows = vec![0.5; m.features()];
            let mut out = vec![0.0; m.outputs()];
            m.predict(&rows, Output::Transformed, &mut out).unwrap();
        }
    }
    let broken = text.replacen("left_child=", "left_child=99 ", 1);
    assert!(Model::load(&broken, true).is_err());
    // LightGBM jumps to trees by the `tree_sizes` offsets without checking them; it never sees a
    // file's own text, so wrong sizes are harmless.
    let start = text.find("tree_sizes=").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    let lying = format!("{}tree_sizes=999999999 1 0{}", &text[..start], &text[end..]);
    let mut model = Model::load(&lying, true).unwrap();
    let rows = vec![0.5; model.features()];
    let mut out = vec![0.0; 1];
    model.predict(&rows, Output::Transformed, &mut out).unwrap();
}

//! The compiled tree-model scorer against LightGBM's C API, side by side in one run
//! (`cargo bench --bench model`), on a 500-tree, 64-leaf binary model over 100 features trained
//! here with LightGBM itself:
//!
//! 1. batch 1: each of 20,000 rows scored alone — LightGBM's fastest single-row path
//!    (`LGBM_BoosterPredictForMatSingleRowFast`) vs one call of the compiled scorer;
//!    mean, p50 and p99 per row;
//! 2. batch 1024: 100 batches of 1,024 rows (`LGBM_BoosterPredictForMat` vs the compiled scorer);
//!    rows per second;
//! 3. the model's load time: parsing, Cranelift compilation and the probe comparison.
//!
//! Both scorers' outputs are checked bit-identical on every row first. LightGBM is built without
//! OpenMP (as fsql links it), so both run on one thread: a runtime node scores on the thread that
//! runs the operator.

use std::time::{Duration, Instant};

use fsql_model::{LightGbm, Model, Output};
use lightgbm3::{Booster, Dataset};
use serde_json::json;

const FEATURES: usize = 100;
const TRAIN_ROWS: usize = 20_000;
const SINGLE_ROWS: usize = 20_000;
const BATCH: usize = 1024;
const BATCHES: usize = 100;

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn rows(rng: &mut Rng, n: usize) -> Vec<f64> {
    (0..n * FEATURES)
        .map(|_| {
            let u = rng.unit();
            if u < 0.02 {
                f64::NAN
            } else {
                rng.unit() * 4.0 - 2.0
            }
        })
        .collect()
}

fn train() -> String {
    let mut rng = Rng(5);
    let x = rows(&mut rng, TRAIN_ROWS);
    let labels: Vec<f32> = x
        .chunks(FEATURES)
        .map(|r| {
            let s: f64 = r
                .iter()
                .enumerate()
                .filter(|(_, v)| !v.is_nan())
                .map(|(i, v)| v * ((i % 7) as f64 - 3.0) / 3.0 + (v * (i as f64)).sin() * 0.3)
                .sum();
            f32::from(s + rng.unit() * 4.0 - 2.0 > 0.0)
        })
        .collect();
    let dataset = Dataset::from_slice(&x, &labels, FEATURES as i32, true).expect("dataset");
    let params = json!({"objective": "binary", "num_iterations": 500, "num_leaves": 64,
        "learning_rate": 0.05, "min_data_in_leaf": 5, "seed": 7, "deterministic": true,
        "num_threads": 1, "verbose": -1});
    Booster::train(dataset, &params)
        .expect("train")
        .save_string()
        .expect("save")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let t = Instant::now();
    let text = train();
    eprintln!("trained in {:.1} s", t.elapsed().as_secs_f64());
    let mut loads = Vec::new();
    let mut model = None;
    for _ in 0..5 {
        let t = Instant::now();
        model = Some(Model::load(&text, true).expect("load"));
        loads.push(t.elapsed());
    }
    loads.sort();
    let mut model = model.expect("model");
    let e = model.ensemble();
    let splits: usize = e.trees.iter().map(|t| t.splits.len()).sum();
    println!(
        "model: {} trees, {} splits, {} leaves max, {} features; engine: {}",
        e.trees.len(),
        splits,
        e.trees
            .iter()
            .map(|t| t.leaf_values.len())
            .max()
            .unwrap_or(0),
        e.num_features(),
        model.engine()
    );
    let t = Instant::now();
    let mut plain = Model::load(&text, false).expect("load");
    let parse_and_lightgbm = t.elapsed();
    let _ = &mut plain;
    println!(
        "load: {:.1} ms median of 5 (parse + LightGBM load alone: {:.1} ms; the rest is Cranelift and the probe)",
        loads[2].as_secs_f64() * 1e3,
        parse_and_lightgbm.as_secs_f64() * 1e3
    );
    let mut reference = LightGbm::load(model.ensemble()).expect("lightgbm");
    let mut rng = Rng(99);
    let data = rows(&mut rng, SINGLE_ROWS.max(BATCH * BATCHES));

    // Equality on every row first.
    let n = BATCH * BATCHES;
    let mut a = vec![0.0; n];
    let mut b = vec![0.0; n];
    model
        .predict(&data[..n * FEATURES], Output::Transformed, &mut a)
        .expect("compiled");
    reference
        .predict(&data[..n * FEATURES], Output::Transformed, &mut b)
        .expect("lightgbm");
    let differ = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count();
    assert_eq!(differ, 0, "compiled and LightGBM differ on {differ} rows");
    println!("equal: {n} rows, bit-identical probabilities");

    // 1. batch 1.
    let single = |f: &mut dyn FnMut(&[f64], &mut [f64])| {
        let mut out = [0.0];
        let mut times = Vec::with_capacity(SINGLE_ROWS);
        for r in 0..SINGLE_ROWS {
            let row = &data[r * FEATURES..(r + 1) * FEATURES];
            let t = Instant::now();
            f(row, &mut out);
            times.push(t.elapsed());
        }
        let total: Duration = times.iter().sum();
        times.sort();
        (
            total / SINGLE_ROWS as u32,
            percentile(&times, 0.5),
            percentile(&times, 0.99),
        )
    };
    // Warm both, then measure them alternately (3 rounds each), keeping each one's best round.
    let mut best_l = (Duration::MAX, Duration::MAX, Duration::MAX);
    let mut best_c = best_l;
    for _ in 0..3 {
        let l = single(&mut |row, out| {
            reference
                .predict(row, Output::Transformed, out)
                .expect("lgbm")
        });
        let c = single(&mut |row, out| {
            model
                .predict(row, Output::Transformed, out)
                .expect("compiled")
        });
        if l.0 < best_l.0 {
            best_l = l;
        }
        if c.0 < best_c.0 {
            best_c = c;
        }
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("\nbatch 1 ({SINGLE_ROWS} rows, one call each): mean / p50 / p99 per row");
    println!(
        "  LightGBM C API (SingleRowFast): {:.2} / {:.2} / {:.2} us",
        us(best_l.0),
        us(best_l.1),
        us(best_l.2)
    );
    println!(
        "  compiled (Cranelift):           {:.2} / {:.2} / {:.2} us",
        us(best_c.0),
        us(best_c.1),
        us(best_c.2)
    );
    println!(
        "  ratio (LightGBM / compiled):    {:.1}x mean, {:.1}x p50, {:.1}x p99",
        us(best_l.0) / us(best_c.0),
        us(best_l.1) / us(best_c.1),
        us(best_l.2) / us(best_c.2)
    );

    // 2. batch 1024.
    let batched = |f: &mut dyn FnMut(&[f64], &mut [f64])| {
        let mut out = vec![0.0; BATCH];
        let t = Instant::now();
        for k in 0..BATCHES {
            f(
                &data[k * BATCH * FEATURES..(k + 1) * BATCH * FEATURES],
                &mut out,
            );
        }
        (BATCH * BATCHES) as f64 / t.elapsed().as_secs_f64()
    };
    let mut best = (0.0f64, 0.0f64);
    for _ in 0..3 {
        let l = batched(&mut |rows, out| {
            reference
                .predict(rows, Output::Transformed, out)
                .expect("lgbm")
        });
        let c = batched(&mut |rows, out| {
            model
                .predict(rows, Output::Transformed, out)
                .expect("compiled")
        });
        best = (best.0.max(l), best.1.max(c));
    }
    println!("\nbatch {BATCH} ({BATCHES} batches): rows per second (best of 3)");
    println!("  LightGBM C API (PredictForMat): {:.0}", best.0);
    println!("  compiled (Cranelift):           {:.0}", best.1);
    println!("  ratio (compiled / LightGBM):    {:.1}x", best.1 / best.0);
}

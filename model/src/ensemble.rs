//! A tree ensemble as LightGBM defines it: trees of numerical and categorical splits, summed per
//! class, then transformed by the objective's output function. This is the plain data the
//! compiled scorer is generated from; scoring semantics are LightGBM's (`tree.h`, `gbdt.cpp`).

/// LightGBM's `kZeroThreshold` (`1e-35f` widened to double): feature values within it are zero.
pub const ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;

/// A whole model: its trees and how their sums become predictions.
#[derive(Clone, Debug, PartialEq)]
pub struct Ensemble {
    /// The feature names, in input order (`feature_names=`).
    pub feature_names: Vec<String>,
    /// Trees per boosting iteration: 1, or the number of classes for multiclass objectives.
    pub trees_per_iteration: usize,
    /// The number of classes (`num_class=`): the number of raw scores per row.
    pub num_class: usize,
    /// The objective, which fixes the output transform.
    pub objective: Objective,
    /// The file's `objective=` line as written (with its parameters), when it has one.
    pub objective_line: Option<String>,
    /// Random-forest mode: raw scores are averaged over iterations instead of summed.
    pub average_output: bool,
    /// Tree `i` adds to class `i % trees_per_iteration`.
    pub trees: Vec<Tree>,
}

impl Ensemble {
    /// The number of input features.
    pub fn num_features(&self) -> usize {
        self.feature_names.len()
    }

    /// Whether the model was trained with feature names (not LightGBM's `Column_0`,
    /// `Column_1`, ...): only then can a declaration's column names be checked against them.
    pub fn has_feature_names(&self) -> bool {
        self.feature_names
            .iter()
            .enumerate()
            .any(|(i, f)| *f != format!("Column_{i}"))
    }

    /// The number of boosting iterations (the divisor of an averaged output).
    pub fn iterations(&self) -> usize {
        self.trees.len() / self.trees_per_iteration.max(1)
    }
}

/// The objective line of a model (`objective=binary sigmoid:1`), reduced to its output transform.
#[derive(Clone, Debug, PartialEq)]
pub enum Objective {
    /// `regression` and friends (l1, huber, fair, quantile, mape), lambdarank, rank_xendcg:
    /// the raw score is the prediction.
    Identity { name: String },
    /// `regression sqrt`: sign(x)·x².
    SignedSquare,
    /// `poisson`, `gamma`, `tweedie`: exp(x).
    Exp { name: String },
    /// `binary sigmoid:s`: 1 / (1 + exp(-s·x)).
    Binary { sigmoid: f64 },
    /// `cross_entropy` (xentropy): 1 / (1 + exp(-x)).
    CrossEntropy,
    /// `cross_entropy_lambda`: log1p(exp(x)).
    CrossEntropyLambda,
    /// `multiclass num_class:k`: softmax over the k raw scores.
    Multiclass,
    /// `multiclassova num_class:k sigmoid:s`: a sigmoid per class.
    MulticlassOva { sigmoid: f64 },
    /// An objective the compiled scorer does not know; predictions come from LightGBM.
    Other { line: String },
}

impl Objective {
    /// The objective's name as LightGBM writes it (`binary`, `multiclass`, ...).
    pub fn name(&self) -> &str {
        match self {
            Objective::Identity { name } | Objective::Exp { name } => name,
            Objective::SignedSquare => "regression",
            Objective::Binary { .. } => "binary",
            Objective::CrossEntropy => "cross_entropy",
            Objective::CrossEntropyLambda => "cross_entropy_lambda",
            Objective::Multiclass => "multiclass",
            Objective::MulticlassOva { .. } => "multiclassova",
            Objective::Other { line } => line.split_whitespace().next().unwrap_or(""),
        }
    }

    /// Turns one row's raw scores into predictions in place, exactly as LightGBM's
    /// `ObjectiveFunction::ConvertOutput` does; `None` for an objective it does not know.
    pub fn transform(&self, scores: &mut [f64]) -> Option<()> {
        let sigmoid = |s: f64, x: f64| 1.0 / (1.0 + (-s * x).exp());
        match self {
            Objective::Identity { .. } => {}
            Objective::SignedSquare => {
                for x in scores.iter_mut() {
                    let sign = if *x > 0.0 {
                        1.0
                    } else if *x < 0.0 {
                        -1.0
                    } else {
                        0.0
                    };
                    *x = sign * *x * *x;
                }
            }
            Objective::Exp { .. } => scores.iter_mut().for_each(|x| *x = x.exp()),
            Objective::Binary { sigmoid: s } | Objective::MulticlassOva { sigmoid: s } => {
                scores.iter_mut().for_each(|x| *x = sigmoid(*s, *x))
            }
            Objective::CrossEntropy => scores.iter_mut().for_each(|x| *x = sigmoid(1.0, *x)),
            Objective::CrossEntropyLambda => scores.iter_mut().for_each(|x| *x = x.exp().ln_1p()),
            Objective::Multiclass => softmax(scores),
            Objective::Other { .. } => return None,
        }
        Some(())
    }
}

/// LightGBM's `Common::Softmax`, operation for operation (so results are bit-identical).
fn softmax(scores: &mut [f64]) {
    let Some(&first) = scores.first() else {
        return;
    };
    let wmax = scores[1..]
        .iter()
        .fold(first, |m, &x| if x < m { m } else { x });
    let mut wsum = 0.0;
    for x in scores.iter_mut() {
        *x = (*x - wmax).exp();
        wsum += *x;
    }
    for x in scores.iter_mut() {
        *x /= wsum;
    }
}

/// One tree. Internal nodes are numbered from 0 (the root); a child reference `c < 0` is the
/// leaf `!c` (LightGBM's encoding). A tree with one leaf has no internal nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Tree {
    pub splits: Vec<Split>,
    pub leaf_values: Vec<f64>,
    /// Bitsets of categorical splits, LightGBM's `cat_threshold` cut by `cat_boundaries`.
    pub category_sets: Vec<Vec<u32>>,
}

/// One internal node.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    pub feature: usize,
    pub kind: SplitKind,
    pub left: i32,
    pub right: i32,
}

/// How a node decides between its children.
#[derive(Clone, Debug, PartialEq)]
pub enum SplitKind {
    /// `x <= threshold` goes left; `missing` says how NaN and zero are treated.
    Numerical {
        threshold: f64,
        missing: Missing,
        default_left: bool,
    },
    /// The integer value of `x` is in the category set `set` (an index into `category_sets`):
    /// left. NaN and negative values go right.
    Categorical { set: usize },
}

/// LightGBM's missing-value handling of a numerical split (`decision_type` bits 2–3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missing {
    /// NaN is treated as 0.0.
    None,
    /// Zero (and NaN, which becomes zero) takes the default direction.
    Zero,
    /// NaN takes the default direction.
    NaN,
}

impl Tree {
    /// The leaf `row` reaches, walking the tree as LightGBM's `Tree::GetLeaf` does. `row` holds
    /// feature values already passed through [`zero_small`].
    pub fn leaf(&self, row: &[f64]) -> usize {
        if self.splits.is_empty() {
            return 0;
        }
        let mut node: i32 = 0;
        while node >= 0 {
            let Some(split) = self.splits.get(node as usize) else {
                return 0;
            };
            let x = row.get(split.feature).copied().unwrap_or(0.0);
            node = if self.goes_left(split, x) {
                split.left
            } else {
                split.right
            };
        }
        !node as usize
    }

    /// Whether `x` goes to the left child of `split` (LightGBM's `NumericalDecision` and
    /// `CategoricalDecision`).
    pub fn goes_left(&self, split: &Split, x: f64) -> bool {
        match &split.kind {
            SplitKind::Numerical {
                threshold,
                missing,
                default_left,
            } => {
                let x = if x.is_nan() && *missing != Missing::NaN {
                    0.0
                } else {
                    x
                };
                let takes_default = match missing {
                    Missing::Zero => (-ZERO_THRESHOLD..=ZERO_THRESHOLD).contains(&x),
                    Missing::NaN => x.is_nan(),
                    Missing::None => false,
                };
                if takes_default {
                    *default_left
                } else {
                    x <= *threshold
                }
            }
            SplitKind::Categorical { set } => {
                if x.is_nan() {
                    return false;
                }
                // C++'s `static_cast<int>`: truncation; out-of-range values are INT_MIN on
                // x86, which goes right like any negative value.
                let v = x as i64;
                if v < 0 || v > i64::from(i32::MAX) {
                    return false;
                }
                let bits = self.category_sets.get(*set).map_or(&[][..], |b| b);
                let word = (v / 32) as usize;
                bits.get(word).is_some_and(|w| (w >> (v % 32)) & 1 == 1)
            }
        }
    }
}

/// LightGBM's input filter (`c_api.cpp`): a value within [`ZERO_THRESHOLD`] of zero is zero;
/// NaN stays NaN.
pub fn zero_small(x: f64) -> f64 {
    if x.abs() > ZERO_THRESHOLD || x.is_nan() {
        x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_matches_lightgbm_order_of_operations() {
        let mut s = [1.0, 2.0, 3.0];
        softmax(&mut s);
        let e = [(-2.0f64).exp(), (-1.0f64).exp(), 1.0];
        let sum = e[0] + e[1] + e[2];
        assert_eq!(s, [e[0] / sum, e[1] / sum, e[2] / sum]);
    }

    #[test]
    fn missing_value_handling_follows_lightgbm() {
        let split = |missing, default_left| Split {
            feature: 0,
            kind: SplitKind::Numerical {
                threshold: -1.0,
                missing,
                default_left,
            },
            left: -1,
            right: -2,
        };
        let tree = Tree {
            splits: vec![],
            leaf_values: vec![],
            category_sets: vec![],
        };
        // None: NaN is 0.0, which is > -1.0 → right.
        assert!(!tree.goes_left(&split(Missing::None, true), f64::NAN));
        // Zero: 0.0 and NaN take the default direction.
        assert!(tree.goes_left(&split(Missing::Zero, true), 0.0));
        assert!(tree.goes_left(&split(Missing::Zero, true), f64::NAN));
        assert!(!tree.goes_left(&split(Missing::Zero, true), 0.5));
        // NaN: only NaN takes the default.
        assert!(tree.goes_left(&split(Missing::NaN, true), f64::NAN));
        assert!(!tree.goes_left(&split(Missing::NaN, true), 0.0));
        assert_eq!(zero_small(1e-36), 0.0);
        assert_eq!(zero_small(-1e-30), -1e-30);
    }
}

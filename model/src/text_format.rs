//! LightGBM's model text format (what `Booster::save_model` writes) → [`Ensemble`].
//!
//! The header (`num_class=`, `num_tree_per_iteration=`, `max_feature_idx=`, `objective=`,
//! `feature_names=`, `average_output`) is followed by `Tree=<i>` blocks of `key=values` lines and
//! ends at `end of trees`. Every index read from the file is checked, so a truncated or edited
//! file is an error, never a panic or an out-of-bounds walk.

use std::collections::HashMap;

use crate::ModelError;
use crate::ensemble::{Ensemble, Missing, Objective, Split, SplitKind, Tree};

/// Parses a LightGBM model file's text.
pub fn parse(text: &str) -> Result<Ensemble, ModelError> {
    let mut lines = text.lines().enumerate().peekable();
    let mut header: HashMap<&str, (usize, &str)> = HashMap::new();
    let mut average_output = false;
    // Header: up to the first `Tree=` line.
    while let Some(&(n, line)) = lines.peek() {
        if line.starts_with("Tree=") || line == "end of trees" {
            break;
        }
        lines.next();
        if line == "average_output" {
            average_output = true;
        } else if let Some((k, v)) = line.split_once('=') {
            header.insert(k, (n + 1, v));
        }
    }
    if !header.contains_key("version") && !header.contains_key("num_class") {
        return Err(ModelError::format(
            1,
            "not a LightGBM text model (no `version=` or `num_class=` header)",
        ));
    }
    let get = |key: &str| -> Result<(usize, &str), ModelError> {
        header
            .get(key)
            .copied()
            .ok_or_else(|| ModelError::format(0, format!("the header has no `{key}=` line")))
    };
    let num_class: usize = number(get("num_class")?)?;
    let trees_per_iteration: usize = match header.get("num_tree_per_iteration") {
        Some(&v) => number(v)?,
        None => num_class,
    };
    let max_feature_idx: usize = number(get("max_feature_idx")?)?;
    let num_features = max_feature_idx + 1;
    let feature_names: Vec<String> = match header.get("feature_names") {
        Some((n, v)) => {
            let names: Vec<String> = v.split(' ').map(str::to_string).collect();
            if names.len() != num_features {
                return Err(ModelError::format(
                    *n,
                    format!(
                        "{} feature names for max_feature_idx={max_feature_idx}",
                        names.len()
                    ),
                ));
            }
            names
        }
        None => (0..num_features).map(|i| format!("Column_{i}")).collect(),
    };
    let objective = match header.get("objective") {
        Some((_, line)) => objective(line),
        None => Objective::Other {
            line: String::new(),
        },
    };
    if num_class == 0 || trees_per_iteration == 0 {
        return Err(ModelError::format(
            0,
            "num_class and num_tree_per_iteration must be positive",
        ));
    }

    let mut trees = Vec::new();
    while let Some(&(n, line)) = lines.peek() {
        if line == "end of trees" {
            break;
        }
        lines.next();
        if !line.starts_with("Tree=") {
            continue;
        }
        let mut fields: HashMap<&str, (usize, &str)> = HashMap::new();
        while let Some(&(m, l)) = lines.peek() {
            if l.starts_with("Tree=") || l == "end of trees" {
                break;
            }
            lines.next();
            if let Some((k, v)) = l.split_once('=') {
                fields.insert(k, (m + 1, v));
            }
        }
        trees.push(tree(n + 1, &fields, num_features)?);
    }
    if trees.is_empty() {
        return Err(ModelError::format(0, "the model has no trees"));
    }
    if trees.len() % trees_per_iteration != 0 {
        return Err(ModelError::format(
            0,
            format!(
                "{} trees is not a multiple of num_tree_per_iteration={trees_per_iteration}",
                trees.len()
            ),
        ));
    }
    Ok(Ensemble {
        feature_names,
        trees_per_iteration,
        num_class,
        objective,
        average_output,
        trees,
    })
}

fn objective(line: &str) -> Objective {
    let mut words = line.split_whitespace();
    let name = words.next().unwrap_or("").to_string();
    let params: HashMap<&str, &str> = words.filter_map(|w| w.split_once(':')).collect();
    let flag = line.split_whitespace().any(|w| w == "sqrt");
    let sigmoid = params.get("sigmoid").and_then(|s| s.parse::<f64>().ok());
    match (name.as_str(), sigmoid) {
        ("regression", _) if flag => Objective::SignedSquare,
        (
            "regression" | "regression_l1" | "huber" | "fair" | "quantile" | "mape" | "lambdarank"
            | "rank_xendcg",
            _,
        ) => Objective::Identity { name },
        ("poisson" | "gamma" | "tweedie", _) => Objective::Exp { name },
        ("binary", Some(s)) => Objective::Binary { sigmoid: s },
        ("cross_entropy", _) => Objective::CrossEntropy,
        ("cross_entropy_lambda", _) => Objective::CrossEntropyLambda,
        ("multiclass", _) => Objective::Multiclass,
        ("multiclassova", Some(s)) => Objective::MulticlassOva { sigmoid: s },
        _ => Objective::Other {
            line: line.to_string(),
        },
    }
}

fn number<T: std::str::FromStr>((line, v): (usize, &str)) -> Result<T, ModelError> {
    v.trim()
        .parse()
        .map_err(|_| ModelError::format(line, format!("`{v}` is not a valid number")))
}

fn list<T: std::str::FromStr>(
    fields: &HashMap<&str, (usize, &str)>,
    key: &str,
    len: usize,
) -> Result<Vec<T>, ModelError> {
    let Some(&(line, v)) = fields.get(key) else {
        return Err(ModelError::format(
            0,
            format!("a tree has no `{key}=` line"),
        ));
    };
    let values = v
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| number((line, s)))
        .collect::<Result<Vec<T>, _>>()?;
    if values.len() != len {
        return Err(ModelError::format(
            line,
            format!("`{key}` has {} values, expected {len}", values.len()),
        ));
    }
    Ok(values)
}

fn tree(
    line: usize,
    fields: &HashMap<&str, (usize, &str)>,
    num_features: usize,
) -> Result<Tree, ModelError> {
    let leaves: usize = number(
        fields
            .get("num_leaves")
            .copied()
            .ok_or_else(|| ModelError::format(line, "a tree has no `num_leaves=` line"))?,
    )?;
    if leaves == 0 {
        return Err(ModelError::format(line, "a tree has no leaves"));
    }
    let leaf_values: Vec<f64> = list(fields, "leaf_value", leaves)?;
    let linear = fields
        .get("is_linear")
        .is_some_and(|(_, v)| v.trim() == "1");
    if leaves == 1 {
        return Ok(Tree {
            splits: Vec::new(),
            leaf_values,
            category_sets: Vec::new(),
            linear,
        });
    }
    let internal = leaves - 1;
    let feature: Vec<usize> = list(fields, "split_feature", internal)?;
    let threshold: Vec<f64> = list(fields, "threshold", internal)?;
    let decision: Vec<u8> = list(fields, "decision_type", internal)?;
    let left: Vec<i32> = list(fields, "left_child", internal)?;
    let right: Vec<i32> = list(fields, "right_child", internal)?;
    let num_cat: usize = fields.get("num_cat").map_or(Ok(0), |&v| number(v))?;
    let category_sets = if num_cat > 0 {
        let bounds: Vec<usize> = list(fields, "cat_boundaries", num_cat + 1)?;
        let total = bounds.last().copied().unwrap_or(0);
        let words: Vec<u32> = list(fields, "cat_threshold", total)?;
        bounds
            .windows(2)
            .map(|w| {
                words
                    .get(w[0]..w[1])
                    .map(<[u32]>::to_vec)
                    .ok_or_else(|| ModelError::format(line, "cat_boundaries out of order"))
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    let child_ok = |c: i32| {
        if c >= 0 {
            (c as usize) < internal && c != 0
        } else {
            ((!c) as usize) < leaves
        }
    };
    let mut splits = Vec::with_capacity(internal);
    for i in 0..internal {
        if feature[i] >= num_features {
            return Err(ModelError::format(
                line,
                format!("tree splits on feature {} of {num_features}", feature[i]),
            ));
        }
        // Children are numbered after their parent, so every walk ends at a leaf.
        let forward = |c: i32| c < 0 || c as usize > i;
        if !(child_ok(left[i]) && child_ok(right[i]) && forward(left[i]) && forward(right[i])) {
            return Err(ModelError::format(
                line,
                format!("node {i} has an invalid child"),
            ));
        }
        let d = decision[i];
        let kind = if d & 1 == 1 {
            let set = threshold[i] as usize;
            if threshold[i] < 0.0 || set >= category_sets.len() {
                return Err(ModelError::format(
                    line,
                    format!(
                        "node {i} names category set {} of {}",
                        threshold[i],
                        category_sets.len()
                    ),
                ));
            }
            SplitKind::Categorical { set }
        } else {
            SplitKind::Numerical {
                threshold: threshold[i],
                missing: match (d >> 2) & 3 {
                    0 => Missing::None,
                    1 => Missing::Zero,
                    _ => Missing::NaN,
                },
                default_left: d & 2 == 2,
            }
        };
        splits.push(Split {
            feature: feature[i],
            kind,
            left: left[i],
            right: right[i],
        });
    }
    Ok(Tree {
        splits,
        leaf_values,
        category_sets,
        linear,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n\
max_feature_idx=1\nobjective=binary sigmoid:1\nfeature_names=a b\nfeature_infos=[0:1] [0:1]\n\
tree_sizes=100\n\nTree=0\nnum_leaves=3\nnum_cat=0\nsplit_feature=0 1\nsplit_gain=1 1\n\
threshold=0.5 1.0000000000000001e-35\ndecision_type=2 10\nleft_child=1 -1\nright_child=-3 -2\n\
leaf_value=0.25 -0.5 1\nleaf_weight=1 1 1\nleaf_count=1 1 1\ninternal_value=0 0\n\
internal_weight=1 1\ninternal_count=2 1\nis_linear=0\nshrinkage=1\n\n\nend of trees\n";

    #[test]
    fn parses_header_and_trees() {
        let e = parse(MODEL).unwrap();
        assert_eq!(e.feature_names, ["a", "b"]);
        assert_eq!(e.objective, Objective::Binary { sigmoid: 1.0 });
        assert_eq!(e.trees.len(), 1);
        let t = &e.trees[0];
        assert_eq!(t.splits.len(), 2);
        assert_eq!(
            t.splits[1].kind,
            SplitKind::Numerical {
                threshold: 1.0000000000000001e-35,
                missing: Missing::NaN,
                default_left: true
            }
        );
        // a = 0.2 ≤ 0.5 → node 1; b = NaN → default left → leaf 0.
        assert_eq!(t.leaf(&[0.2, f64::NAN]), 0);
        assert_eq!(t.leaf(&[0.2, 3.0]), 1);
        assert_eq!(t.leaf(&[0.7, 3.0]), 2);
    }

    #[test]
    fn damaged_files_are_errors() {
        for (from, to) in [
            ("left_child=1 -1", "left_child=1 -7"),
            ("left_child=1 -1", "left_child=0 -1"),
            ("split_feature=0 1", "split_feature=0 9"),
            ("leaf_value=0.25 -0.5 1", "leaf_value=0.25 -0.5"),
            ("num_leaves=3", "num_leaves=x"),
            ("max_feature_idx=1", "max_feature_idx=3"),
            ("Tree=0", "Tree"),
        ] {
            let text = MODEL.replace(from, to);
            assert!(parse(&text).is_err(), "{to}");
        }
        assert!(parse("hello").is_err());
        assert!(parse("").is_err());
    }
}

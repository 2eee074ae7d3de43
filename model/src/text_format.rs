//! LightGBM's model text format (what `Booster::save_model` writes) → [`Ensemble`].
//!
//! The header (`num_class=`, `num_tree_per_iteration=`, `max_feature_idx=`, `objective=`,
//! `feature_names=`, `average_output`) is followed by `Tree=<i>` blocks of `key=values` lines and
//! ends at `end of trees`. Every index read from the file is checked, so a truncated or edited
//! file is an error, never a panic or an out-of-bounds walk.

use std::collections::HashMap;

use crate::ModelError;
use crate::ensemble::{Ensemble, Missing, Objective, Split, SplitKind, Tree};

/// The canonical text of `e`: what LightGBM is given to load. LightGBM's loader trusts the file
/// (array lengths, offsets, line structure) and can read or write outside its buffers on a damaged
/// one, so it only ever sees text rendered from an ensemble this module parsed and checked. Values
/// are written in the shortest form that reads back to the same double.
pub fn render(e: &Ensemble) -> String {
    use std::fmt::Write;
    let join = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>().join(" ");
    let mut t = String::new();
    let _ = writeln!(t, "tree\nversion=v4\nnum_class={}", e.num_class);
    let _ = writeln!(
        t,
        "num_tree_per_iteration={}\nlabel_index=0",
        e.trees_per_iteration
    );
    let _ = writeln!(t, "max_feature_idx={}", e.num_features().saturating_sub(1));
    if let Some(line) = &e.objective_line {
        let _ = writeln!(t, "objective={line}");
    }
    if e.average_output {
        let _ = writeln!(t, "average_output");
    }
    let _ = writeln!(t, "feature_names={}", e.feature_names.join(" "));
    let _ = writeln!(
        t,
        "feature_infos={}\n",
        vec!["none"; e.num_features()].join(" ")
    );
    for (i, tree) in e.trees.iter().enumerate() {
        let leaves = tree.leaf_values.len();
        let internal = tree.splits.len();
        let zeros = |n: usize| vec!["0"; n].join(" ");
        let _ = writeln!(
            t,
            "Tree={i}\nnum_leaves={leaves}\nnum_cat={}",
            tree.category_sets.len()
        );
        if internal > 0 {
            let _ = writeln!(
                t,
                "split_feature={}",
                join(&mut tree.splits.iter().map(|s| s.feature.to_string()))
            );
            let _ = writeln!(t, "split_gain={}", zeros(internal));
            let thresholds = tree.splits.iter().map(|s| match &s.kind {
                SplitKind::Numerical { threshold, .. } => format!("{threshold:?}"),
                SplitKind::Categorical { set } => set.to_string(),
            });
            let _ = writeln!(t, "threshold={}", join(&mut thresholds.into_iter()));
            let decisions = tree.splits.iter().map(|s| {
                let d: u8 = match &s.kind {
                    SplitKind::Categorical { .. } => 1,
                    SplitKind::Numerical {
                        missing,
                        default_left,
                        ..
                    } => {
                        let m = match missing {
                            Missing::None => 0,
                            Missing::Zero => 1,
                            Missing::NaN => 2,
                        };
                        (m << 2) | (u8::from(*default_left) << 1)
                    }
                };
                d.to_string()
            });
            let _ = writeln!(t, "decision_type={}", join(&mut decisions.into_iter()));
            let _ = writeln!(
                t,
                "left_child={}",
                join(&mut tree.splits.iter().map(|s| s.left.to_string()))
            );
            let _ = writeln!(
                t,
                "right_child={}",
                join(&mut tree.splits.iter().map(|s| s.right.to_string()))
            );
        }
        let _ = writeln!(
            t,
            "leaf_value={}",
            join(&mut tree.leaf_values.iter().map(|v| format!("{v:?}")))
        );
        if internal > 0 {
            let _ = writeln!(
                t,
                "leaf_weight={}\nleaf_count={}",
                zeros(leaves),
                zeros(leaves)
            );
            let _ = writeln!(
                t,
                "internal_value={}\ninternal_weight={}\ninternal_count={}",
                zeros(internal),
                zeros(internal),
                zeros(internal)
            );
        }
        if !tree.category_sets.is_empty() {
            let mut bounds = vec![0usize];
            for set in &tree.category_sets {
                bounds.push(bounds[bounds.len() - 1] + set.len());
            }
            let _ = writeln!(
                t,
                "cat_boundaries={}",
                join(&mut bounds.iter().map(usize::to_string))
            );
            let words = tree.category_sets.iter().flatten().map(u32::to_string);
            let _ = writeln!(t, "cat_threshold={}", join(&mut words.into_iter()));
        }
        let _ = writeln!(t, "is_linear=0\nshrinkage=1\n\n");
    }
    t.push_str("end of trees\n");
    t
}

/// The largest models accepted (far beyond any real one; they bound what a damaged file can make
/// the parser allocate).
const MAX_FEATURES: usize = 1 << 20;
const MAX_CLASSES: usize = 1 << 16;
/// LightGBM reads at most this many `key=value` lines of a tree.
const MAX_TREE_LINES: usize = 22;

/// Parses a LightGBM model file's text.
pub fn parse(text: &str) -> Result<Ensemble, ModelError> {
    // Lines end at `\n`, a `\r` before it is dropped (LightGBM reads both ends of line).
    let mut lines = text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .peekable();
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
        } else if !line.is_empty() {
            // LightGBM reads a line without `=` as the key with an empty value (which then fails
            // to parse as a number here, instead of dividing by zero there).
            header.insert(line, (n + 1, ""));
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
    // Sizes come from the file: bounded before anything is allocated from them.
    if max_feature_idx >= MAX_FEATURES
        || num_class > MAX_CLASSES
        || trees_per_iteration > MAX_CLASSES
    {
        return Err(ModelError::format(
            0,
            format!("more than {MAX_FEATURES} features or {MAX_CLASSES} classes"),
        ));
    }
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
    let objective_line = header.get("objective").map(|(_, l)| l.to_string());
    let objective = match header.get("objective") {
        Some((n, line)) => {
            // LightGBM indexes the objective line's first word without checking there is one,
            // and refuses names it does not know.
            const KNOWN: [&str; 17] = [
                "regression",
                "regression_l1",
                "quantile",
                "huber",
                "fair",
                "poisson",
                "binary",
                "lambdarank",
                "rank_xendcg",
                "multiclass",
                "multiclassova",
                "cross_entropy",
                "cross_entropy_lambda",
                "mape",
                "gamma",
                "tweedie",
                "custom",
            ];
            let name = line.split(' ').next().unwrap_or("");
            if !KNOWN.contains(&name) {
                return Err(ModelError::format(
                    *n,
                    format!("unknown objective `{line}`"),
                ));
            }
            // LightGBM sizes its output by the header's num_class but converts scores with the
            // objective's: a file where they differ makes it write past its buffer.
            let declared = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("num_class:"));
            if let Some(k) = declared
                && k.parse::<usize>().ok() != Some(num_class)
            {
                return Err(ModelError::format(
                    *n,
                    format!("the objective's num_class:{k} differs from num_class={num_class}"),
                ));
            }
            objective(line)
        }
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
    // LightGBM writes num_tree_per_iteration raw scores into a buffer of num_class: they must be
    // equal (they are in every model it writes).
    if num_class != trees_per_iteration {
        return Err(ModelError::format(
            0,
            format!(
                "num_tree_per_iteration={trees_per_iteration} differs from num_class={num_class}"
            ),
        ));
    }

    // Trees: `Tree=<i>`, then `key=value` lines up to a blank line; only blank lines between
    // trees. LightGBM reads a tree by scanning for `=` and for the line's end without checking
    // where the text ends, so anything looser could make it read past its buffer; and it stops at
    // the first other line, so this reading and LightGBM's agree on which trees there are.
    let mut trees = Vec::new();
    while let Some((n, line)) = lines.next() {
        if line.is_empty() {
            continue;
        }
        if line == "end of trees" {
            break;
        }
        if !line.starts_with("Tree=") {
            return Err(ModelError::format(
                n + 1,
                format!("expected `Tree=` or `end of trees`, found `{line}`"),
            ));
        }
        let mut fields: HashMap<&str, (usize, &str)> = HashMap::new();
        let mut terminated = false;
        let mut count = 0;
        for (m, l) in lines.by_ref() {
            if l.is_empty() {
                terminated = true;
                break;
            }
            let Some((k, v)) = l.split_once('=') else {
                return Err(ModelError::format(
                    m + 1,
                    format!("`{l}` is not `key=value`"),
                ));
            };
            // A repeated key counts: LightGBM stops after this many lines, whatever they hold.
            count += 1;
            if fields.insert(k, (m + 1, v)).is_some() {
                return Err(ModelError::format(
                    m + 1,
                    format!("`{k}` appears twice in a tree"),
                ));
            }
            if count > MAX_TREE_LINES {
                return Err(ModelError::format(m + 1, "too many lines in a tree"));
            }
        }
        if !terminated {
            return Err(ModelError::format(
                n + 1,
                "a tree is not ended by a blank line",
            ));
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
        objective_line,
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

/// A number exactly as written: no surrounding whitespace and no `+` sign, which LightGBM's own
/// number reading does not skip (it would read such a value differently, e.g. a child index as 0).
fn number<T: std::str::FromStr>((line, v): (usize, &str)) -> Result<T, ModelError> {
    let invalid = || ModelError::format(line, format!("`{v}` is not a valid number"));
    if v.is_empty() || v.starts_with('+') || v.chars().any(char::is_whitespace) {
        return Err(invalid());
    }
    v.parse().map_err(|_| invalid())
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
    if fields
        .get("is_linear")
        .is_some_and(|(_, v)| v.trim() != "0")
    {
        return Err(ModelError::format(
            line,
            "linear trees (linear_tree=true) are not supported",
        ));
    }
    let internal = leaves - 1;
    // LightGBM reads these arrays without checking their length (a short one makes it read past
    // the text): when present they must be complete and numeric.
    for (key, len) in [
        ("leaf_weight", leaves),
        ("leaf_count", leaves),
        ("split_gain", internal),
        ("internal_value", internal),
        ("internal_weight", internal),
        ("internal_count", internal),
    ] {
        if fields.contains_key(key) {
            list::<f64>(fields, key, len)?;
        }
    }
    if !fields.contains_key("num_cat") {
        return Err(ModelError::format(line, "a tree has no `num_cat=` line"));
    }
    if leaves == 1 {
        return Ok(Tree {
            splits: Vec::new(),
            leaf_values,
            category_sets: Vec::new(),
        });
    }
    let feature: Vec<usize> = list(fields, "split_feature", internal)?;
    let threshold: Vec<f64> = list(fields, "threshold", internal)?;
    let decision: Vec<u8> = list(fields, "decision_type", internal)?;
    let left: Vec<i32> = list(fields, "left_child", internal)?;
    let right: Vec<i32> = list(fields, "right_child", internal)?;
    let num_cat: usize = fields.get("num_cat").map_or(Ok(0), |&v| number(v))?;
    if num_cat > internal {
        return Err(ModelError::format(
            line,
            "num_cat exceeds the number of splits",
        ));
    }
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
            if threshold[i].is_nan() || threshold[i] < 0.0 || set >= category_sets.len() {
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
        // Found by fuzzing: LightGBM would write num_class:5 scores into a buffer for 2.
        let multi = MODEL
            .replace(
                "num_class=1\nnum_tree_per_iteration=1",
                "num_class=2\nnum_tree_per_iteration=1",
            )
            .replace(
                "objective=binary sigmoid:1",
                "objective=multiclass num_class:5",
            );
        assert!(
            parse(&multi)
                .unwrap_err()
                .to_string()
                .contains("num_class:5 differs")
        );
        // Sizes that would overflow or allocate without bound.
        let huge = MODEL.replace("max_feature_idx=1", "max_feature_idx=18446744073709551615");
        assert!(parse(&huge).is_err());
        assert!(parse("hello").is_err());
        assert!(parse("").is_err());
    }
}

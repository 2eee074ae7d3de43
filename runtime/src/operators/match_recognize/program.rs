//! A row pattern compiled to a program for a Pike VM: threads advance in lockstep over a
//! partition's rows, ordered by preference, so the preferred match (greedy/reluctant quantifiers,
//! leftmost alternative) is found without backtracking and each row costs work proportional to the
//! live threads.

use fsql_plan::Pattern;

/// One instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inst {
    /// Consume the current row if it satisfies variable `v`'s condition.
    Var(usize),
    /// [`Inst::Var`] inside an exclusion `{- ... -}`: the row is matched but not output by
    /// `ALL ROWS PER MATCH`.
    ExcludedVar(usize),
    /// Continue at both targets, the first preferred.
    Split(usize, usize),
    Jump(usize),
    /// Succeeds only before the partition's first row (`^`).
    Start,
    /// Succeeds only after the partition's last row (`$`).
    End,
    /// The end of an iteration of the quantifier whose split is at this position: a path that
    /// took that split without reading a row since ends here (an iteration beyond the minimum
    /// must read a row), which also makes every loop finite.
    Check(usize),
    /// A complete match.
    Match,
}

impl Inst {
    /// The variable a row is classified as here, and whether the row is excluded from the output.
    pub(crate) fn var(self) -> Option<(usize, bool)> {
        match self {
            Inst::Var(v) => Some((v, false)),
            Inst::ExcludedVar(v) => Some((v, true)),
            _ => None,
        }
    }
}

/// Programs larger than this are refused (a quantifier such as `{1000}` unrolls).
pub(crate) const MAX_PROGRAM: usize = 10_000;

/// Permutations of more than this many patterns are refused (n! alternatives).
const MAX_PERMUTE: usize = 6;

/// The program for `pattern`, ending in [`Inst::Match`].
pub(crate) fn compile(pattern: &Pattern) -> Result<Vec<Inst>, String> {
    let mut code = Vec::new();
    emit(pattern, false, &mut code)?;
    code.push(Inst::Match);
    Ok(code)
}

fn check(code: &[Inst]) -> Result<(), String> {
    if code.len() > MAX_PROGRAM {
        return Err(format!(
            "the pattern expands to more than {MAX_PROGRAM} steps; use smaller bounded quantifiers"
        ));
    }
    Ok(())
}

/// Appends the code of `p`; `excluded`: `p` is inside an exclusion.
fn emit(p: &Pattern, excluded: bool, code: &mut Vec<Inst>) -> Result<(), String> {
    match p {
        Pattern::Var(v) if excluded => code.push(Inst::ExcludedVar(*v)),
        Pattern::Var(v) => code.push(Inst::Var(*v)),
        Pattern::Empty => {}
        Pattern::Start => code.push(Inst::Start),
        Pattern::End => code.push(Inst::End),
        Pattern::Exclude(inner) => emit(inner, true, code)?,
        Pattern::Concat(parts) => {
            for part in parts {
                emit(part, excluded, code)?;
            }
        }
        Pattern::Alt(alternatives) => alternation(alternatives, excluded, code)?,
        Pattern::Permute(parts) => {
            if parts.len() > MAX_PERMUTE {
                return Err(format!(
                    "PERMUTE of more than {MAX_PERMUTE} patterns is not supported"
                ));
            }
            let orders: Vec<Pattern> = permutations(parts.len())
                .into_iter()
                .map(|order| Pattern::Concat(order.into_iter().map(|i| parts[i].clone()).collect()))
                .collect();
            alternation(&orders, excluded, code)?;
        }
        Pattern::Repeat {
            pattern,
            min,
            max,
            greedy,
        } => {
            for _ in 0..*min {
                emit(pattern, excluded, code)?;
                check(code)?;
            }
            match max {
                None => {
                    // L: split(body, end) ; body ; check L ; jump L ; end:
                    let split = code.len();
                    code.push(Inst::Jump(0));
                    emit(pattern, excluded, code)?;
                    code.push(Inst::Check(split));
                    code.push(Inst::Jump(split));
                    let end = code.len();
                    code[split] = prefer(*greedy, split + 1, end);
                }
                Some(max) => {
                    // (max - min) optional copies, each skipping to the common end.
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        let split = code.len();
                        splits.push(split);
                        code.push(Inst::Jump(0));
                        emit(pattern, excluded, code)?;
                        code.push(Inst::Check(split));
                        check(code)?;
                    }
                    let end = code.len();
                    for s in splits {
                        code[s] = prefer(*greedy, s + 1, end);
                    }
                }
            }
        }
    }
    check(code)
}

fn prefer(greedy: bool, body: usize, skip: usize) -> Inst {
    if greedy {
        Inst::Split(body, skip)
    } else {
        Inst::Split(skip, body)
    }
}

fn alternation(
    alternatives: &[Pattern],
    excluded: bool,
    code: &mut Vec<Inst>,
) -> Result<(), String> {
    let Some((last, rest)) = alternatives.split_last() else {
        return Ok(());
    };
    let mut jumps = Vec::new();
    for alt in rest {
        let split = code.len();
        code.push(Inst::Jump(0));
        emit(alt, excluded, code)?;
        jumps.push(code.len());
        code.push(Inst::Jump(0));
        code[split] = Inst::Split(split + 1, code.len());
    }
    emit(last, excluded, code)?;
    let end = code.len();
    for j in jumps {
        code[j] = Inst::Jump(end);
    }
    Ok(())
}

/// All orders of `0..n`, lexicographically.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for first in 0..n {
        for rest in permutations(n - 1) {
            let mut order = vec![first];
            order.extend(rest.into_iter().map(|i| if i >= first { i + 1 } else { i }));
            out.push(order);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(v: usize) -> Pattern {
        Pattern::Var(v)
    }

    #[test]
    fn quantifiers_unroll_and_loop_with_the_preferred_branch_first() {
        let plus = Pattern::Repeat {
            pattern: Box::new(var(0)),
            min: 1,
            max: None,
            greedy: true,
        };
        assert_eq!(
            compile(&plus).unwrap(),
            vec![
                Inst::Var(0),
                Inst::Split(2, 5),
                Inst::Var(0),
                Inst::Check(1),
                Inst::Jump(1),
                Inst::Match
            ]
        );
        let reluctant = Pattern::Repeat {
            pattern: Box::new(var(0)),
            min: 0,
            max: Some(2),
            greedy: false,
        };
        assert_eq!(
            compile(&reluctant).unwrap(),
            vec![
                Inst::Split(6, 1),
                Inst::Var(0),
                Inst::Check(0),
                Inst::Split(6, 4),
                Inst::Var(0),
                Inst::Check(3),
                Inst::Match
            ]
        );
    }

    #[test]
    fn alternation_and_permute_prefer_the_leftmost() {
        let alt = Pattern::Alt(vec![var(0), var(1), var(2)]);
        assert_eq!(
            compile(&alt).unwrap(),
            vec![
                Inst::Split(1, 3),
                Inst::Var(0),
                Inst::Jump(7),
                Inst::Split(4, 6),
                Inst::Var(1),
                Inst::Jump(7),
                Inst::Var(2),
                Inst::Match
            ]
        );
        assert_eq!(
            permutations(3),
            vec![
                vec![0, 1, 2],
                vec![0, 2, 1],
                vec![1, 0, 2],
                vec![1, 2, 0],
                vec![2, 0, 1],
                vec![2, 1, 0]
            ]
        );
        let too_big = Pattern::Repeat {
            pattern: Box::new(var(0)),
            min: 20_000,
            max: None,
            greedy: true,
        };
        assert!(compile(&too_big).is_err());
    }
}

//! [`ValueCounts`]: how many rows of a frame hold each value — the state of a DISTINCT aggregate
//! and of a sliding MIN/MAX.
//!
//! Most partitions hold a handful of values (a card's devices, countries or merchants over an
//! hour), and there is one such state per key and aggregate. So while there are at most [`FEW`]
//! values they are kept in a sorted vector grown one power of two at a time (one value: 32 bytes,
//! against about 150 for a hash table and 400 for a B-tree leaf, and a binary search instead of a
//! hash); past that, in an ordered map. Either way values iterate in order, so a checkpoint of
//! equal state is the same bytes.

use std::collections::BTreeMap;

use super::value::Value;

/// The most values kept in the sorted vector; one more moves them to the map.
const FEW: usize = 32;
/// A map that shrinks below this many values moves back to the vector (below [`FEW`], so a
/// partition hovering around the limit does not move back and forth).
const BACK_TO_FEW: usize = FEW / 4;

/// Values with their (non-zero) counts, in value order.
#[derive(Clone, Debug)]
pub(crate) enum ValueCounts {
    /// Sorted by value, no duplicates.
    Few(Vec<(Value, u32)>),
    /// Boxed, so the enum stays the size of the vector (it sits inline in every accumulator).
    #[allow(clippy::box_collection)]
    Many(Box<BTreeMap<Value, u32>>),
}

impl Default for ValueCounts {
    fn default() -> ValueCounts {
        ValueCounts::Few(Vec::new())
    }
}

impl ValueCounts {
    /// Counts `n` more rows holding `v`; true when `v` was not counted before.
    pub(crate) fn add(&mut self, v: &Value, n: u32) -> bool {
        match self {
            ValueCounts::Few(few) => match few.binary_search_by(|(x, _)| x.cmp(v)) {
                Ok(at) => {
                    if let Some((_, c)) = few.get_mut(at) {
                        *c += n;
                    }
                    false
                }
                Err(at) if few.len() < FEW => {
                    if few.len() == few.capacity() {
                        // Grow by powers of two from one: most partitions never pass one or two.
                        few.reserve_exact(few.capacity().max(1));
                    }
                    few.insert(at, (v.clone(), n));
                    true
                }
                Err(_) => {
                    let mut many: BTreeMap<Value, u32> = std::mem::take(few).into_iter().collect();
                    many.insert(v.clone(), n);
                    *self = ValueCounts::Many(Box::new(many));
                    true
                }
            },
            ValueCounts::Many(many) => {
                if let Some(c) = many.get_mut(v) {
                    *c += n;
                    false
                } else {
                    many.insert(v.clone(), n);
                    true
                }
            }
        }
    }

    /// One row holding `v` leaves; true when it was the last one (`v` is no longer counted).
    /// A value never added is ignored.
    pub(crate) fn retract(&mut self, v: &Value) -> bool {
        match self {
            ValueCounts::Few(few) => match few.binary_search_by(|(x, _)| x.cmp(v)) {
                Ok(at) => match few.get_mut(at) {
                    Some((_, c)) if *c > 1 => {
                        *c -= 1;
                        false
                    }
                    _ => {
                        few.remove(at);
                        true
                    }
                },
                Err(_) => false,
            },
            ValueCounts::Many(many) => {
                let last = match many.get_mut(v) {
                    Some(c) if *c > 1 => {
                        *c -= 1;
                        return false;
                    }
                    Some(_) => many.remove(v).is_some(),
                    None => false,
                };
                if many.len() < BACK_TO_FEW {
                    let few: Vec<(Value, u32)> = std::mem::take(&mut **many).into_iter().collect();
                    *self = ValueCounts::Few(few);
                }
                last
            }
        }
    }

    /// The smallest value.
    pub(crate) fn first(&self) -> Option<&Value> {
        match self {
            ValueCounts::Few(few) => few.first().map(|(v, _)| v),
            ValueCounts::Many(many) => many.first_key_value().map(|(v, _)| v),
        }
    }

    /// The largest value.
    pub(crate) fn last(&self) -> Option<&Value> {
        match self {
            ValueCounts::Few(few) => few.last().map(|(v, _)| v),
            ValueCounts::Many(many) => many.last_key_value().map(|(v, _)| v),
        }
    }

    /// How many distinct values are counted.
    pub(crate) fn len(&self) -> usize {
        match self {
            ValueCounts::Few(few) => few.len(),
            ValueCounts::Many(many) => many.len(),
        }
    }

    /// Every value with its count, in value order (one of the two parts is empty; no boxing, as
    /// window slices merge through this).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Value, u32)> {
        let (few, many) = match self {
            ValueCounts::Few(few) => (few.as_slice(), None),
            ValueCounts::Many(many) => (&[][..], Some(&**many)),
        };
        few.iter()
            .map(|(v, c)| (v, *c))
            .chain(many.into_iter().flatten().map(|(v, c)| (v, *c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same adds and retracts on `counts` and on a `BTreeMap`, compared after every step.
    struct Check {
        counts: ValueCounts,
        model: BTreeMap<Value, u32>,
        /// Whether the counts were ever in the map, and back in the vector after that.
        moved: (bool, bool),
    }

    impl Check {
        fn add(&mut self, v: Value) {
            let new = !self.model.contains_key(&v);
            *self.model.entry(v.clone()).or_insert(0) += 1;
            assert_eq!(self.counts.add(&v, 1), new, "add {v:?}");
            self.compare();
        }

        fn retract(&mut self, v: Value) {
            let last = self.model.get(&v) == Some(&1);
            match self.model.get_mut(&v) {
                Some(c) if *c > 1 => *c -= 1,
                Some(_) => {
                    self.model.remove(&v);
                }
                None => {}
            }
            assert_eq!(self.counts.retract(&v), last, "retract {v:?}");
            self.compare();
        }

        fn compare(&mut self) {
            match &self.counts {
                ValueCounts::Few(_) => self.moved.1 |= self.moved.0,
                ValueCounts::Many(_) => self.moved.0 = true,
            }
            let got: Vec<_> = self.counts.iter().map(|(v, c)| (v.clone(), c)).collect();
            let want: Vec<_> = self.model.iter().map(|(v, c)| (v.clone(), *c)).collect();
            assert_eq!(got, want);
            assert_eq!(self.counts.len(), self.model.len());
            assert_eq!(self.counts.first(), self.model.keys().next());
            assert_eq!(self.counts.last(), self.model.keys().next_back());
        }
    }

    /// Random adds and retracts (two adds for every retract) of values drawn from `range`, then
    /// every value retracted until none is left.
    fn agrees_with_a_map(range: i64, steps: usize, seed: u64) -> (bool, bool) {
        let mut check = Check {
            counts: ValueCounts::default(),
            model: BTreeMap::new(),
            moved: (false, false),
        };
        let mut s = seed;
        for _ in 0..steps {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = Value::Int(((s >> 33) as i64).rem_euclid(range));
            if (s >> 20).is_multiple_of(3) {
                check.retract(v);
            } else {
                check.add(v);
            }
        }
        while let Some(v) = check.model.keys().next().cloned() {
            check.retract(v);
        }
        assert_eq!(check.counts.len(), 0);
        check.moved
    }

    #[test]
    fn counts_agree_with_an_ordered_map_through_both_representations() {
        assert_eq!(agrees_with_a_map(5, 2_000, 1), (false, false));
        assert_eq!(agrees_with_a_map(200, 5_000, 2), (true, true));
        assert_eq!(agrees_with_a_map(40, 5_000, 3), (true, true));
    }

    #[test]
    fn a_few_values_take_a_vector_sized_to_fit() {
        let mut counts = ValueCounts::default();
        counts.add(&Value::Int(7), 1);
        counts.add(&Value::Int(7), 2);
        match &counts {
            ValueCounts::Few(few) => assert_eq!((few.len(), few.capacity()), (1, 1)),
            ValueCounts::Many(_) => panic!("one value is kept in the vector"),
        }
        assert!(!counts.retract(&Value::Int(7)));
        assert!(!counts.retract(&Value::Int(7)));
        assert!(
            counts.retract(&Value::Int(7)),
            "the third copy was the last"
        );
        assert!(
            !counts.retract(&Value::Int(7)),
            "an absent value is ignored"
        );
        assert_eq!(counts.len(), 0);
    }
}

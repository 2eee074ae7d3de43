//! The compiled scorer: a tree ensemble turned into branch-free native code with Cranelift.
//!
//! A walk that branches on every split (what lleaves generates) mispredicts about half of them
//! on real inputs, and a 500-tree model then spends most of its time refilling the pipeline.
//! This scorer walks without branches instead, several trees in lockstep:
//!
//! * **Inputs** ([`Slot`]): each split reads one value of a *slot row* built from the input row
//!   before the walk, so that every split is the same `x <= threshold`. A numerical split reads
//!   its feature with LightGBM's missing-value rule already applied (NaN as 0.0, or NaN — and
//!   zero, for zero-as-missing splits — as −∞, which goes left at every threshold, or NaN, which
//!   goes right at every threshold, so that it takes the default direction); a
//!   categorical split reads 0.0 when the value is in its category set and 1.0 when not, against
//!   the threshold 0.5.
//! * **Tables**: every tree is laid out in preorder as 16-byte nodes (threshold, slot byte
//!   offset, right child's byte offset); the left child is the next node. A leaf is a node whose
//!   threshold is NaN and whose right child is itself, so a walk that reached a leaf stays there.
//! * **Code**: trees are sorted by depth and cut into chunks of [`LANES`]; for each chunk the code
//!   holds the roots as constants and steps all of them `depth` times — a load of the slot, a
//!   compare and a `select` per tree and step — then stores each tree's leaf value. Several
//!   independent walks in flight hide each other's load latency.
//!
//! Scores are then summed per class in tree order starting from 0.0, as LightGBM sums them, so
//! equality with LightGBM holds by construction; [`crate::Model`] checks it on probe rows before
//! it uses this scorer.

use std::collections::HashMap;

use cranelift_codegen::Context;
use cranelift_codegen::ir::{AbiParam, InstBuilder, MemFlagsData, condcodes::FloatCC, types};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Module, default_libcall_names};

use crate::ModelError;
use crate::ensemble::{Ensemble, Missing, Split, SplitKind, Tree, zero_small};

/// Trees walked in lockstep by one chunk of code.
pub const LANES: usize = 8;

/// `(slot row, leaf values)`: walks every tree over one slot row and writes each tree's leaf
/// value to `leaf values[tree]`.
type WalkFn = unsafe extern "C" fn(*const f64, *mut f64);

/// One node of a laid-out tree. `#[repr(C)]`: the generated code reads the fields by offset.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Node {
    /// Left iff `slot value <= threshold`; NaN in a leaf, so that no value goes left.
    threshold: f64,
    /// Byte offset of the slot this node reads in the slot row.
    slot: u32,
    /// Byte offset of the right child in the node table (the left child is the next node).
    right: u32,
}

const NODE_BYTES: i64 = std::mem::size_of::<Node>() as i64;

/// One value of the slot row, derived from one feature of the input row.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Slot {
    /// The feature, with NaN replaced by `nan`.
    Value { feature: usize, nan: Fill },
    /// The feature, with NaN and zero replaced by `missing`.
    ZeroOrNan { feature: usize, missing: Fill },
    /// 0.0 when the feature's value is in the category set, 1.0 when not.
    Category { feature: usize, set: Vec<u32> },
}

/// What a missing value becomes in a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Fill {
    /// 0.0 (LightGBM's rule for splits without missing-value handling), compared as a value.
    Zero,
    /// −∞, which goes left at every threshold (−∞ ≤ t for all t, −∞ included).
    Left,
    /// NaN, which goes right at every threshold (no compare with NaN is true).
    Right,
}

impl Fill {
    fn value(self) -> f64 {
        match self {
            Fill::Zero => 0.0,
            Fill::Left => f64::NEG_INFINITY,
            Fill::Right => f64::NAN,
        }
    }
}

impl Slot {
    /// The slot's value for the input value `x` (already passed through
    /// [`crate::zero_small`]).
    fn value(&self, x: f64) -> f64 {
        match self {
            Slot::Value { nan, .. } => {
                if x.is_nan() {
                    nan.value()
                } else {
                    x
                }
            }
            Slot::ZeroOrNan { missing, .. } => {
                if x.is_nan() || x == 0.0 {
                    missing.value()
                } else {
                    x
                }
            }
            Slot::Category { set, .. } => {
                if category_contains(set, x) {
                    0.0
                } else {
                    1.0
                }
            }
        }
    }

    fn feature(&self) -> usize {
        match self {
            Slot::Value { feature, .. }
            | Slot::ZeroOrNan { feature, .. }
            | Slot::Category { feature, .. } => *feature,
        }
    }
}

/// LightGBM's `CategoricalDecision` on a bitset: NaN and negative values are not in any set.
fn category_contains(set: &[u32], x: f64) -> bool {
    if x.is_nan() {
        return false;
    }
    // C++'s `static_cast<int>`: truncation; out-of-range values are INT_MIN on x86.
    let v = x as i64;
    if v < 0 || v > i64::from(i32::MAX) {
        return false;
    }
    set.get((v / 32) as usize)
        .is_some_and(|w| (w >> (v % 32)) & 1 == 1)
}

/// The slot a split reads and the threshold it compares it with.
fn slot_of(tree: &Tree, split: &Split) -> Result<(Slot, f64), ModelError> {
    let feature = split.feature;
    Ok(match &split.kind {
        SplitKind::Numerical {
            threshold,
            missing,
            default_left,
        } => {
            let default = if *default_left {
                Fill::Left
            } else {
                Fill::Right
            };
            let slot = match missing {
                Missing::None => Slot::Value {
                    feature,
                    nan: Fill::Zero,
                },
                Missing::NaN => Slot::Value {
                    feature,
                    nan: default,
                },
                Missing::Zero => Slot::ZeroOrNan {
                    feature,
                    missing: default,
                },
            };
            (slot, *threshold)
        }
        SplitKind::Categorical { set } => {
            let set = tree.category_sets.get(*set).cloned().unwrap_or_default();
            (Slot::Category { feature, set }, 0.5)
        }
    })
}

/// The ensemble's trees as node tables over slots.
struct Layout {
    slots: Vec<Slot>,
    slot_index: HashMap<Slot, usize>,
    nodes: Vec<Node>,
    /// Leaf values, indexed like `nodes` (0.0 for splits).
    values: Vec<f64>,
    /// Per tree: the root's byte offset and the number of steps that reach any leaf.
    roots: Vec<(u32, usize)>,
}

impl Layout {
    fn new(ensemble: &Ensemble) -> Result<Layout, ModelError> {
        let mut layout = Layout {
            slots: Vec::new(),
            slot_index: HashMap::new(),
            nodes: Vec::new(),
            values: Vec::new(),
            roots: Vec::with_capacity(ensemble.trees.len()),
        };
        for tree in &ensemble.trees {
            let root = layout.offset_of(layout.nodes.len())?;
            let depth = layout.add_tree(tree)?;
            layout.roots.push((root, depth));
        }
        Ok(layout)
    }

    fn offset_of(&self, index: usize) -> Result<u32, ModelError> {
        u32::try_from(index as u64 * NODE_BYTES as u64)
            .map_err(|_| ModelError::Unsupported("more than 2^28 tree nodes".into()))
    }

    fn slot_index(&mut self, slot: Slot) -> Result<u32, ModelError> {
        let index = match self.slot_index.get(&slot) {
            Some(&i) => i,
            None => {
                self.slots.push(slot.clone());
                self.slot_index.insert(slot, self.slots.len() - 1);
                self.slots.len() - 1
            }
        };
        u32::try_from(index * 8).map_err(|_| ModelError::Unsupported("too many slots".into()))
    }

    /// Lays `tree` out in preorder; returns its depth (splits on the longest path).
    fn add_tree(&mut self, tree: &Tree) -> Result<usize, ModelError> {
        let first = self.nodes.len();
        // The parser guarantees children are numbered after their parents; a child shared by
        // two parents would be laid out twice, so the node count is bounded.
        let limit = tree.splits.len() + tree.leaf_values.len().max(1);
        // (child, depth, the node whose right child this is)
        let mut stack: Vec<(i32, usize, Option<usize>)> =
            vec![(if tree.splits.is_empty() { -1 } else { 0 }, 0, None)];
        let mut depth = 0;
        while let Some((child, d, parent)) = stack.pop() {
            if self.nodes.len() - first >= limit {
                return Err(ModelError::Unsupported(
                    "a tree whose nodes are shared".into(),
                ));
            }
            let index = self.nodes.len();
            let offset = self.offset_of(index)?;
            if let Some(p) = parent {
                self.nodes[p].right = offset;
            }
            depth = depth.max(d);
            if child < 0 {
                let value = tree
                    .leaf_values
                    .get(!child as usize)
                    .copied()
                    .unwrap_or(0.0);
                self.nodes.push(Node {
                    threshold: f64::NAN,
                    slot: 0,
                    right: offset,
                });
                self.values.push(value);
            } else {
                let split = tree.splits.get(child as usize).ok_or_else(|| {
                    ModelError::Unsupported(format!("tree node {child} does not exist"))
                })?;
                let (slot, threshold) = slot_of(tree, split)?;
                let slot = self.slot_index(slot)?;
                self.nodes.push(Node {
                    threshold,
                    slot,
                    right: 0,
                });
                self.values.push(0.0);
                // Preorder: the left subtree right after this node, then the right one.
                stack.push((split.right, d + 1, Some(index)));
                stack.push((split.left, d + 1, None));
            }
        }
        Ok(depth)
    }
}

/// Native code scoring one ensemble's raw scores.
pub struct CompiledEnsemble {
    module: Option<JITModule>,
    walk: WalkFn,
    slots: Vec<Slot>,
    features: usize,
    classes: usize,
    /// The node table and the leaf values, which the code reads by address.
    _nodes: Box<[Node]>,
    _values: Box<[f64]>,
    /// Per-row scratch: the slot row and each tree's leaf value.
    slot_row: Vec<f64>,
    leaves: Vec<f64>,
}

// SAFETY: after `finalize_definitions` the code and the tables it reads are immutable; a call
// only reads the slot row and writes the leaf buffer it is given, both owned by `self` and only
// touched through `&mut self`. The module is touched again only by `Drop`.
unsafe impl Send for CompiledEnsemble {}
unsafe impl Sync for CompiledEnsemble {}

impl Drop for CompiledEnsemble {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: the function pointer dies with `self`; no call can be running, since
            // `raw_scores` borrows `self`.
            unsafe { module.free_memory() };
        }
    }
}

impl CompiledEnsemble {
    /// Compiles `ensemble`.
    pub fn compile(ensemble: &Ensemble) -> Result<CompiledEnsemble, ModelError> {
        let layout = Layout::new(ensemble)?;
        let nodes: Box<[Node]> = layout.nodes.into_boxed_slice();
        let values: Box<[f64]> = layout.values.into_boxed_slice();
        let isa = fsql_jit::host_isa().map_err(|e| ModelError::Codegen(e.to_string()))?;
        let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        let id = define(&mut module, &layout.roots, &nodes, &values)?;
        module
            .finalize_definitions()
            .map_err(|e| ModelError::Codegen(e.to_string()))?;
        let code = module.get_finalized_function(id);
        // SAFETY: `code` is a function just defined with exactly `WalkFn`'s signature; it stays
        // mapped as long as `module`, which `self` owns.
        let walk = unsafe { std::mem::transmute::<*const u8, WalkFn>(code) };
        Ok(CompiledEnsemble {
            module: Some(module),
            walk,
            slot_row: vec![0.0; layout.slots.len()],
            slots: layout.slots,
            features: ensemble.num_features(),
            classes: ensemble.trees_per_iteration,
            leaves: vec![0.0; ensemble.trees.len()],
            _nodes: nodes,
            _values: values,
        })
    }

    /// Adds the raw scores of `rows` (row-major, `features` values per row, NULL as NaN) to
    /// `scores` (`classes` per row, zeroed by the caller). LightGBM's input filter
    /// ([`zero_small`]) is applied as the slot row is built.
    pub fn raw_scores(&mut self, rows: &[f64], scores: &mut [f64]) -> Result<(), ModelError> {
        let n = crate::row_count(rows, self.features, scores, self.classes)?;
        let classes = self.classes.max(1);
        for r in 0..n {
            let row = &rows[r * self.features..(r + 1) * self.features];
            for (value, slot) in self.slot_row.iter_mut().zip(&self.slots) {
                // Every slot's feature is < `features` (checked by the parser).
                *value = slot.value(zero_small(row.get(slot.feature()).copied().unwrap_or(0.0)));
            }
            // SAFETY: the slot row holds every slot the nodes name and the leaf buffer one value
            // per tree, the only offsets the code reads and writes; the node table and the
            // values live as long as the code.
            unsafe { (self.walk)(self.slot_row.as_ptr(), self.leaves.as_mut_ptr()) };
            let out = &mut scores[r * classes..(r + 1) * classes];
            for (t, leaf) in self.leaves.iter().enumerate() {
                out[t % classes] += leaf;
            }
        }
        Ok(())
    }
}

/// Generates the walk over every tree: chunks of [`LANES`] trees of similar depth, each stepped
/// in lockstep until all of its trees are at a leaf.
fn define(
    module: &mut JITModule,
    roots: &[(u32, usize)],
    nodes: &[Node],
    values: &[f64],
) -> Result<cranelift_module::FuncId, ModelError> {
    let ptr = types::I64;
    let mut ctx: Context = module.make_context();
    ctx.func.signature.params.push(AbiParam::new(ptr));
    ctx.func.signature.params.push(AbiParam::new(ptr));
    let mut fctx = FunctionBuilderContext::new();
    let frontend_config = module.target_config();
    let mut order: Vec<usize> = (0..roots.len()).collect();
    order.sort_by_key(|&t| roots[t].1);
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let flags = MemFlagsData::trusted();
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let (slot_row, leaves) = (params[0], params[1]);
        let table = b.ins().iconst(ptr, nodes.as_ptr() as i64);
        let value_table = b.ins().iconst(ptr, values.as_ptr() as i64);
        let lanes: Vec<_> = (0..LANES).map(|_| b.declare_var(ptr)).collect();
        let counter = b.declare_var(ptr);
        for chunk in order.chunks(LANES) {
            let depth = chunk.iter().map(|&t| roots[t].1).max().unwrap_or(0);
            for (lane, &t) in lanes.iter().zip(chunk) {
                let root = b.ins().iconst(ptr, i64::from(roots[t].0));
                b.def_var(*lane, root);
            }
            if depth > 0 {
                let steps = b.ins().iconst(ptr, depth as i64);
                b.def_var(counter, steps);
                let body = b.create_block();
                let done = b.create_block();
                b.ins().jump(body, &[]);
                b.switch_to_block(body);
                for lane in &lanes[..chunk.len()] {
                    let at = b.use_var(*lane);
                    let node = b.ins().iadd(table, at);
                    let threshold = b.ins().load(types::F64, flags, node, 0);
                    let slot = b.ins().uload32(flags, node, 8);
                    let right = b.ins().uload32(flags, node, 12);
                    let slot = b.ins().iadd(slot_row, slot);
                    let x = b.ins().load(types::F64, flags, slot, 0);
                    let left = b.ins().iadd_imm_s(at, NODE_BYTES);
                    let goes_left = b.ins().fcmp(FloatCC::LessThanOrEqual, x, threshold);
                    let next = b.ins().select(goes_left, left, right);
                    b.def_var(*lane, next);
                }
                let c = b.use_var(counter);
                let c = b.ins().iadd_imm_s(c, -1);
                b.def_var(counter, c);
                b.ins().brif(c, body, &[], done, &[]);
                b.switch_to_block(done);
            }
            for (lane, &t) in lanes.iter().zip(chunk) {
                let at = b.use_var(*lane);
                // Values are 8 bytes per node, nodes 16.
                let index = b.ins().ushr_imm_u(at, 1);
                let addr = b.ins().iadd(value_table, index);
                let value = b.ins().load(types::F64, flags, addr, 0);
                b.ins().store(flags, value, leaves, (t * 8) as i32);
            }
        }
        b.ins().return_(&[]);
        b.seal_all_blocks();
        b.finalize(frontend_config);
    }
    let id = module
        .declare_anonymous_function(&ctx.func.signature)
        .map_err(|e| ModelError::Codegen(e.to_string()))?;
    module
        .define_function(id, &mut ctx)
        .map_err(|e| ModelError::Codegen(format!("{e:?}")))?;
    module.clear_context(&mut ctx);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_apply_lightgbm_missing_value_rules() {
        let left = Slot::Value {
            feature: 0,
            nan: Fill::Left,
        };
        assert_eq!(left.value(f64::NAN), f64::NEG_INFINITY);
        assert_eq!(left.value(0.0), 0.0);
        let as_zero = Slot::Value {
            feature: 0,
            nan: Fill::Zero,
        };
        assert_eq!(as_zero.value(f64::NAN), 0.0);
        let right = Slot::ZeroOrNan {
            feature: 0,
            missing: Fill::Right,
        };
        assert!(right.value(0.0).is_nan());
        assert!(right.value(-0.0).is_nan());
        assert!(right.value(f64::NAN).is_nan());
        assert_eq!(right.value(2.0), 2.0);
        let category = Slot::Category {
            feature: 0,
            set: vec![0b1010],
        };
        assert_eq!(category.value(1.0), 0.0);
        assert_eq!(category.value(1.9), 0.0);
        assert_eq!(category.value(2.0), 1.0);
        assert_eq!(category.value(3.0), 0.0);
        assert_eq!(category.value(-1.0), 1.0);
        assert_eq!(category.value(f64::NAN), 1.0);
        assert_eq!(category.value(1e12), 1.0);
    }

    #[test]
    fn layout_is_preorder_with_self_looping_leaves() {
        // root: x0 <= 1 ? (x0 <= 0 ? leaf0 : leaf1) : leaf2
        let split = |threshold, left, right| Split {
            feature: 0,
            kind: SplitKind::Numerical {
                threshold,
                missing: Missing::None,
                default_left: false,
            },
            left,
            right,
        };
        let tree = Tree {
            splits: vec![split(1.0, 1, -3), split(0.0, -1, -2)],
            leaf_values: vec![10.0, 11.0, 12.0],
            category_sets: vec![],
        };
        let mut layout = Layout {
            slots: vec![],
            slot_index: HashMap::new(),
            nodes: vec![],
            values: vec![],
            roots: vec![],
        };
        assert_eq!(layout.add_tree(&tree).unwrap(), 2);
        let rights: Vec<u32> = layout.nodes.iter().map(|n| n.right).collect();
        // 0: root, 1: split, 2: leaf0, 3: leaf1, 4: leaf2
        assert_eq!(rights, vec![64, 48, 32, 48, 64]);
        assert_eq!(layout.values, vec![0.0, 0.0, 10.0, 11.0, 12.0]);
        assert!(layout.nodes[2].threshold.is_nan());
    }
}

//! The compiled scorer: a tree ensemble turned into native code with Cranelift (what lleaves
//! does with LLVM). Every split becomes a compare and a branch, every tree a chain of blocks
//! ending in a leaf constant, so scoring a row walks no data structure at all.
//!
//! Trees are grouped into functions of about [`NODES_PER_FUNCTION`] splits; each function loops
//! over the batch's rows and adds its trees' leaves to the rows' raw scores. A group's code stays
//! in the instruction cache while it runs over the whole batch, and a large model compiles as
//! several medium functions instead of one huge one.
//!
//! Equality with LightGBM is by construction — each split is LightGBM's `NumericalDecision` or
//! `CategoricalDecision` ([`crate::ensemble::Tree::goes_left`]), scores are summed in tree order
//! starting from 0.0 in f64 — and checked: [`crate::Scorer`] compares both scorers before it
//! uses this one.

use cranelift_codegen::Context;
use cranelift_codegen::ir::{
    AbiParam, BlockArg, InstBuilder, MemFlagsData, Value,
    condcodes::{FloatCC, IntCC},
    types,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Module, default_libcall_names};

use crate::ModelError;
use crate::ensemble::{Ensemble, Missing, SplitKind, Tree, ZERO_THRESHOLD};

/// Splits per generated function (a soft limit: a tree is never cut).
pub const NODES_PER_FUNCTION: usize = 4096;

/// `(rows, row count, row stride in bytes, scores)`: adds this function's trees to `scores`
/// (`num_class` f64 per row).
type TreesFn = unsafe extern "C" fn(*const f64, i64, i64, *mut f64);

/// Native code scoring one ensemble's raw scores.
pub struct CompiledEnsemble {
    module: Option<JITModule>,
    functions: Vec<TreesFn>,
    features: usize,
    classes: usize,
    /// The bitsets of categorical splits, which the code reads by address.
    _category_words: Box<[u32]>,
}

// SAFETY: after `finalize_definitions` the code and the bitsets it reads are immutable; a call
// only reads its input rows and writes the score buffer it is given. The module is touched again
// only by `Drop`.
unsafe impl Send for CompiledEnsemble {}
unsafe impl Sync for CompiledEnsemble {}

impl Drop for CompiledEnsemble {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: the function pointers die with `self`; no call can be running, since
            // `raw_scores` borrows `self`.
            unsafe { module.free_memory() };
        }
    }
}

impl CompiledEnsemble {
    /// Compiles `ensemble`.
    pub fn compile(ensemble: &Ensemble) -> Result<CompiledEnsemble, ModelError> {
        let isa = fsql_jit::host_isa().map_err(|e| ModelError::Codegen(e.to_string()))?;
        let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        // All category bitsets in one allocation; each tree's sets start at an offset.
        let mut words = Vec::new();
        let mut set_offsets = Vec::with_capacity(ensemble.trees.len());
        for tree in &ensemble.trees {
            let mut offsets = Vec::with_capacity(tree.category_sets.len());
            for set in &tree.category_sets {
                offsets.push(words.len());
                words.extend_from_slice(set);
            }
            set_offsets.push(offsets);
        }
        let words: Box<[u32]> = words.into_boxed_slice();
        let classes = ensemble.trees_per_iteration;
        let mut ids = Vec::new();
        let mut start = 0;
        while start < ensemble.trees.len() {
            let mut end = start;
            let mut nodes = 0;
            while end < ensemble.trees.len() && (end == start || nodes < NODES_PER_FUNCTION) {
                nodes += ensemble.trees[end].splits.len().max(1);
                end += 1;
            }
            let group = Group {
                trees: &ensemble.trees[start..end],
                first_tree: start,
                classes,
                set_offsets: &set_offsets[start..end],
                words: words.as_ptr(),
            };
            ids.push(define(&mut module, &group)?);
            start = end;
        }
        module
            .finalize_definitions()
            .map_err(|e| ModelError::Codegen(e.to_string()))?;
        let functions = ids
            .into_iter()
            .map(|id| {
                let code = module.get_finalized_function(id);
                // SAFETY: `code` is a function just defined with exactly `TreesFn`'s signature;
                // it stays mapped as long as `module`, which `self` owns.
                unsafe { std::mem::transmute::<*const u8, TreesFn>(code) }
            })
            .collect();
        Ok(CompiledEnsemble {
            module: Some(module),
            functions,
            features: ensemble.num_features(),
            classes,
            _category_words: words,
        })
    }

    /// Adds the raw scores of `rows` (row-major, `features` values per row, each passed through
    /// [`crate::ensemble::zero_small`]) to `scores` (`classes` per row, zeroed by the caller).
    pub fn raw_scores(&self, rows: &[f64], scores: &mut [f64]) -> Result<(), ModelError> {
        let n = crate::row_count(rows, self.features, scores, self.classes)?;
        let stride = (self.features * 8) as i64;
        for f in &self.functions {
            // SAFETY: `rows` holds `n` rows of `features` f64 values and `scores` `n × classes`
            // f64 (checked above); the code reads feature indices < `features` (checked by the
            // parser) and writes classes < `classes`.
            unsafe { f(rows.as_ptr(), n as i64, stride, scores.as_mut_ptr()) };
        }
        Ok(())
    }
}

/// Consecutive trees compiled into one function.
struct Group<'a> {
    trees: &'a [Tree],
    first_tree: usize,
    classes: usize,
    set_offsets: &'a [Vec<usize>],
    words: *const u32,
}

fn define(module: &mut JITModule, group: &Group) -> Result<cranelift_module::FuncId, ModelError> {
    let ptr = types::I64;
    let mut ctx: Context = module.make_context();
    for _ in 0..4 {
        ctx.func.signature.params.push(AbiParam::new(ptr));
    }
    let mut fctx = FunctionBuilderContext::new();
    let frontend_config = module.target_config();
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let flags = MemFlagsData::trusted();
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let (rows, count, stride, scores) = (params[0], params[1], params[2], params[3]);
        let row = b.declare_var(types::I64);
        let zero = b.ins().iconst(types::I64, 0);
        b.def_var(row, zero);
        let head = b.create_block();
        let body = b.create_block();
        let exit = b.create_block();
        b.ins().jump(head, &[]);

        b.switch_to_block(head);
        let r = b.use_var(row);
        let more = b.ins().icmp(IntCC::SignedLessThan, r, count);
        b.ins().brif(more, body, &[], exit, &[]);

        b.switch_to_block(body);
        let r = b.use_var(row);
        let offset = b.ins().imul(r, stride);
        let x = b.ins().iadd(rows, offset);
        let out = b.ins().imul_imm_s(r, (group.classes * 8) as i64);
        let out = b.ins().iadd(scores, out);
        // Per-class accumulators, loaded once per row and stored once.
        let used: Vec<usize> = (0..group.classes)
            .filter(|k| {
                (0..group.trees.len()).any(|t| (group.first_tree + t) % group.classes == *k)
            })
            .collect();
        let mut acc: Vec<Option<Variable>> = vec![None; group.classes];
        for &k in &used {
            let v = b.declare_var(types::F64);
            let loaded = b.ins().load(types::F64, flags, out, (k * 8) as i32);
            b.def_var(v, loaded);
            acc[k] = Some(v);
        }
        for (t, tree) in group.trees.iter().enumerate() {
            let class = (group.first_tree + t) % group.classes;
            let leaf = emit_tree(&mut b, tree, x, group.words, &group.set_offsets[t]);
            if let Some(v) = acc[class] {
                let sum = b.use_var(v);
                let sum = b.ins().fadd(sum, leaf);
                b.def_var(v, sum);
            }
        }
        for &k in &used {
            if let Some(v) = acc[k] {
                let sum = b.use_var(v);
                b.ins().store(flags, sum, out, (k * 8) as i32);
            }
        }
        let r = b.use_var(row);
        let next = b.ins().iadd_imm_s(r, 1);
        b.def_var(row, next);
        b.ins().jump(head, &[]);

        b.switch_to_block(exit);
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

/// Emits `tree`'s walk for the row at `x`; returns the leaf value (the value of a join block's
/// parameter), with the builder positioned after the join.
fn emit_tree(
    b: &mut FunctionBuilder,
    tree: &Tree,
    x: Value,
    words: *const u32,
    set_offsets: &[usize],
) -> Value {
    if tree.splits.is_empty() {
        let v = tree.leaf_values.first().copied().unwrap_or(0.0);
        return b.ins().f64const(v);
    }
    let join = b.create_block();
    let value = b.append_block_param(join, types::F64);
    let blocks: Vec<_> = (0..tree.splits.len())
        .map(|i| if i == 0 { None } else { Some(b.create_block()) })
        .collect();
    let flags = MemFlagsData::trusted();
    for (i, split) in tree.splits.iter().enumerate() {
        if let Some(block) = blocks[i] {
            b.switch_to_block(block);
        }
        let fval = b
            .ins()
            .load(types::F64, flags, x, (split.feature * 8) as i32);
        let left = match &split.kind {
            SplitKind::Numerical {
                threshold,
                missing,
                default_left,
            } => numerical(b, fval, *threshold, *missing, *default_left),
            SplitKind::Categorical { set } => {
                let words_of_set = tree.category_sets.get(*set).map_or(0, Vec::len);
                let base = set_offsets.get(*set).copied().unwrap_or(0);
                categorical(b, fval, words, base, words_of_set)
            }
        };
        // A child is a node block or the join, with the leaf's value.
        let target = |b: &mut FunctionBuilder,
                      child: i32|
         -> (cranelift_codegen::ir::Block, Vec<BlockArg>) {
            if child < 0 {
                let v = tree
                    .leaf_values
                    .get(!child as usize)
                    .copied()
                    .unwrap_or(0.0);
                let c = b.ins().f64const(v);
                (join, vec![BlockArg::Value(c)])
            } else {
                (blocks[child as usize].unwrap_or(join), Vec::new())
            }
        };
        let (lb, la) = target(b, split.left);
        let (rb, ra) = target(b, split.right);
        b.ins().brif(left, lb, &la, rb, &ra);
    }
    b.switch_to_block(join);
    value
}

/// LightGBM's `NumericalDecision` as one or two compares (an `i8` that is 1 for "left").
fn numerical(
    b: &mut FunctionBuilder,
    x: Value,
    threshold: f64,
    missing: Missing,
    default_left: bool,
) -> Value {
    let t = b.ins().f64const(threshold);
    match missing {
        // NaN becomes 0.0: left iff 0.0 <= t; an unordered compare gives NaN that answer.
        Missing::None => {
            let cc = if 0.0 <= threshold {
                FloatCC::UnorderedOrLessThanOrEqual
            } else {
                FloatCC::LessThanOrEqual
            };
            b.ins().fcmp(cc, x, t)
        }
        // NaN takes the default direction.
        Missing::NaN => {
            let cc = if default_left {
                FloatCC::UnorderedOrLessThanOrEqual
            } else {
                FloatCC::LessThanOrEqual
            };
            b.ins().fcmp(cc, x, t)
        }
        // Zero (|x| ≤ kZeroThreshold) and NaN take the default direction.
        Missing::Zero => {
            let abs = b.ins().fabs(x);
            let zt = b.ins().f64const(ZERO_THRESHOLD);
            let zero = b.ins().fcmp(FloatCC::UnorderedOrLessThanOrEqual, abs, zt);
            let le = b.ins().fcmp(FloatCC::LessThanOrEqual, x, t);
            if default_left {
                b.ins().bor(zero, le)
            } else {
                let not_zero = b.ins().bxor_imm_u(zero, 1);
                b.ins().band(not_zero, le)
            }
        }
    }
}

/// LightGBM's `CategoricalDecision`: NaN and negative values go right; otherwise the bit of the
/// integer value in the split's bitset (`n` words at `words + base`).
fn categorical(
    b: &mut FunctionBuilder,
    x: Value,
    words: *const u32,
    base: usize,
    n: usize,
) -> Value {
    if n == 0 {
        return b.ins().iconst(types::I8, 0);
    }
    let ordered = b.ins().fcmp(FloatCC::Ordered, x, x);
    let v = b.ins().fcvt_to_sint_sat(types::I32, x);
    // Unsigned compare: a negative value is out of range too.
    let in_range = b
        .ins()
        .icmp_imm_s(IntCC::UnsignedLessThan, v, (n * 32) as i64);
    let v64 = b.ins().uextend(types::I64, v);
    let word_index = b.ins().ushr_imm_u(v64, 5);
    let zero = b.ins().iconst(types::I64, 0);
    let word_index = b.ins().select(in_range, word_index, zero);
    let byte = b.ins().ishl_imm_u(word_index, 2);
    let table = b.ins().iconst(types::I64, words as i64 + (base * 4) as i64);
    let addr = b.ins().iadd(table, byte);
    let word = b.ins().load(types::I32, MemFlagsData::trusted(), addr, 0);
    let bit = b.ins().band_imm_u(v, 31);
    let shifted = b.ins().ushr(word, bit);
    let set = b.ins().band_imm_u(shifted, 1);
    let set = b.ins().icmp_imm_u(IntCC::NotEqual, set, 0);
    let both = b.ins().band(ordered, in_range);
    b.ins().band(both, set)
}

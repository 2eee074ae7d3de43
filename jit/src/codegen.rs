//! Expression trees to Cranelift IR: one native function per [`KernelSpec`] that loops over the
//! rows of a batch, evaluates the filter, and writes the outputs of the rows that pass.
//!
//! Every value is a register pair: the value and, unless the value can never be NULL, a validity
//! flag (`i8` 0/1). Booleans are `i8` 0/1. Nothing the generated code does can trap: integer
//! division guards its divisor (zero gives NULL, `MIN / -1` wraps), float-to-integer conversion
//! saturates. The ABI is [`ColumnArg`]/[`OutputArg`] (see `kernel.rs`).

use arrow::datatypes::TimeUnit;
use cranelift_codegen::ir::{
    AbiParam, InstBuilder, MemFlagsData, Signature, StackSlot, StackSlotData, StackSlotKind, Type,
    Value,
    condcodes::{FloatCC, IntCC},
    types,
};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, isa::OwnedTargetIsa};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Module, default_libcall_names};
use fsql_plan::{BinaryOp, Expr, ExprKind, Literal, UnaryOp};

use crate::JitError;
use crate::helpers;
use crate::like::{self, LikeMatcher};
use crate::phys::{
    Phys, common, decimal_product_precision, decimal_sum_precision, timestamp_shift,
};
use crate::split::{KernelSpec, decimal_int, unsupported};

/// Byte offsets of [`crate::kernel::ColumnArg`] fields.
const COL_VALUES: i32 = 0;
const COL_VALIDITY: i32 = 8;
const COL_DATA: i32 = 16;
pub(crate) const COL_SIZE: i64 = 24;
/// Byte offsets of [`crate::kernel::OutputArg`] fields.
const OUT_VALUES: i32 = 0;
const OUT_VALIDITY: i32 = 8;
pub(crate) const OUT_SIZE: i64 = 16;

/// A right operand of AND/OR costing more than this many nodes is skipped with a branch when the
/// left one decides; cheaper ones are evaluated branch-free.
const BRANCH_COST: usize = 12;

/// Outputs costing at most this many nodes in total are computed for every row, and kept only for
/// rows that pass the filter, instead of branching on the filter.
const BRANCH_FREE_OUTPUTS: usize = 24;

/// The kernel's native signature: `(inputs, rows, outputs, selection) -> selected rows`, or -1
/// when a row failed (see `Gen::fail_if`).
pub(crate) type KernelFn = unsafe extern "C" fn(*const u8, i64, *const u8, *mut u8) -> i64;

/// A finalised function and the memory that holds it.
pub(crate) struct Code {
    pub module: JITModule,
    pub function: KernelFn,
    /// Per output, whether this code never writes a NULL (its validity bitmap is not written).
    pub always_valid: Vec<bool>,
    /// String literals the code points into.
    pub _strings: Vec<Box<[u8]>>,
    /// `LIKE` patterns the code points to (boxed: their addresses are in the code and must not
    /// move as the vector grows).
    #[allow(clippy::vec_box)]
    pub _matchers: Vec<Box<LikeMatcher>>,
}

/// The host's instruction set with fsql's Cranelift settings (speed, no PIC), made once per
/// process; the tree-model compiler (`fsql-model`) uses it too.
pub fn host_isa() -> Result<OwnedTargetIsa, JitError> {
    static ISA: std::sync::OnceLock<Result<OwnedTargetIsa, String>> = std::sync::OnceLock::new();
    ISA.get_or_init(|| {
        let mut flags = settings::builder();
        let set = |f: &mut settings::Builder, k: &str, v: &str| {
            f.set(k, v)
                .map_err(|e| format!("cranelift setting {k}: {e}"))
        };
        set(&mut flags, "opt_level", "speed")?;
        set(&mut flags, "is_pic", "false")?;
        set(&mut flags, "use_colocated_libcalls", "false")?;
        let builder = cranelift_native::builder().map_err(|e| e.to_string())?;
        builder
            .finish(settings::Flags::new(flags))
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(JitError::Codegen)
}

/// Compiles `spec`; `nullable[k]` says whether slot `k`'s validity bitmap is read (a slot
/// compiled as not nullable must be given an array without NULLs).
pub(crate) fn compile(spec: &KernelSpec, nullable: &[bool]) -> Result<Code, JitError> {
    let slots = spec
        .slots
        .iter()
        .map(|t| Phys::of(t).ok_or_else(|| JitError::Unsupported(format!("a {t} input"))))
        .collect::<Result<Vec<_>, _>>()?;
    for e in spec.filter.iter().chain(&spec.outputs) {
        check(e, &spec.slots)?;
    }
    let mut module = JITModule::new(JITBuilder::with_isa(host_isa()?, default_libcall_names()));
    let ptr = types::I64;
    let mut ctx: Context = module.make_context();
    for _ in 0..4 {
        ctx.func.signature.params.push(AbiParam::new(ptr));
    }
    ctx.func.signature.returns.push(AbiParam::new(ptr));
    let mut fctx = FunctionBuilderContext::new();
    let frontend_config = module.target_config();
    let mut always_valid_flags = Vec::new();
    let mut strings = Vec::new();
    let mut matchers = Vec::new();
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let mut sig = |params: &[Type], ret: Type| {
            let mut s = Signature::new(module.isa().default_call_conv());
            s.params.extend(params.iter().map(|t| AbiParam::new(*t)));
            s.returns.push(AbiParam::new(ret));
            b.import_signature(s)
        };
        let str_cmp = sig(&[ptr, ptr, ptr, ptr], types::I32);
        let fmod32 = sig(&[types::F32, types::F32], types::F32);
        let like = sig(&[ptr, ptr, ptr], types::I8);
        let f64_f64 = sig(&[types::F64], types::F64);
        let mul_i128 = sig(
            &[types::I64, types::I64, types::I64, types::I64, ptr],
            types::I8,
        );
        let timestamp_field = sig(&[types::I64, types::I8, ptr], types::I64);
        let f64x2_f64 = sig(&[types::F64, types::F64], types::F64);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        b.seal_block(entry);
        let params = b.block_params(entry).to_vec();
        let (inputs, rows, outputs, selection) = (params[0], params[1], params[2], params[3]);
        let flags = MemFlagsData::trusted();
        // Each row reads a slot's buffer addresses from `inputs` where it uses the slot (an L1
        // hit), rather than holding them all in registers across the loop, which spilled them
        // and the loop's own state.
        let regs: Vec<SlotRegs> = slots
            .iter()
            .enumerate()
            .map(|(k, phys)| SlotRegs {
                phys: *phys,
                arg: inputs,
                offset: k as i32 * COL_SIZE as i32,
                nullable: nullable.get(k).copied().unwrap_or(true),
            })
            .collect();
        let mut outs = Vec::with_capacity(spec.outputs.len());
        for k in 0..spec.outputs.len() {
            let base = b.ins().iadd_imm_s(outputs, k as i64 * OUT_SIZE);
            outs.push((
                b.ins().load(ptr, flags, base, OUT_VALUES),
                b.ins().load(ptr, flags, base, OUT_VALIDITY),
            ));
        }
        let row = b.declare_var(ptr);
        let kept = b.declare_var(ptr);
        let zero = b.ins().iconst(ptr, 0);
        b.def_var(row, zero);
        b.def_var(kept, zero);
        let bail = b.declare_var(types::I8);
        let no = b.ins().iconst(types::I8, 0);
        b.def_var(bail, no);
        // One 64-bit accumulator per bitmap written: the selection, then each output's validity
        // and (BOOLEAN) values.
        let mut bitmap_acc = || {
            let acc = b.declare_var(types::I64);
            b.def_var(acc, zero);
            acc
        };
        let selection_acc = bitmap_acc();
        let output_accs: Vec<(Variable, Variable)> = (0..spec.outputs.len())
            .map(|_| (bitmap_acc(), bitmap_acc()))
            .collect();
        // Rows go by words of 64: the selection bitmap's word is built in a register and stored
        // once per word.
        let word_end = b.declare_var(ptr);
        let outer = b.create_block();
        let word = b.create_block();
        let head = b.create_block();
        let body = b.create_block();
        let next = b.create_block();
        let word_done = b.create_block();
        let exit = b.create_block();
        b.ins().jump(outer, &[]);
        b.switch_to_block(outer);
        let start = b.use_var(row);
        let done = b.ins().icmp(IntCC::SignedGreaterThanOrEqual, start, rows);
        b.ins().brif(done, exit, &[], word, &[]);
        b.switch_to_block(word);
        b.seal_block(word);
        let full = b.ins().iadd_imm_s(start, 64);
        let short = b.ins().icmp(IntCC::SignedLessThan, rows, full);
        let end = b.ins().select(short, rows, full);
        b.def_var(word_end, end);
        b.def_var(selection_acc, zero);
        b.ins().jump(head, &[]);
        b.switch_to_block(head);
        let i = b.use_var(row);
        let end = b.use_var(word_end);
        let word_full = b.ins().icmp(IntCC::SignedGreaterThanOrEqual, i, end);
        b.ins().brif(word_full, word_done, &[], body, &[]);
        b.switch_to_block(body);
        b.seal_block(body);
        let mut g = Gen {
            b,
            slots: regs,
            row: i,
            strings: &mut strings,
            matchers: &mut matchers,
            like,
            f64_f64,
            f64x2_f64,
            mul_i128,
            timestamp_field,
            scratch: None,
            str_cmp,
            fmod32,
            literals: Vec::new(),
            bail,
            loaded: vec![Vec::new()],
        };
        // Rows that fail the filter: with cheap outputs, the outputs are computed anyway and
        // overwritten by the next row (no branch to mispredict); otherwise they are skipped.
        let mut advance_by = None;
        if let Some(filter) = &spec.filter {
            let pass = g.cond(filter, true)?;
            let acc = g.b.use_var(selection_acc);
            let wide = g.b.ins().uextend(types::I64, pass);
            let shift = g.b.ins().band_imm_u(i, 63);
            let bit = g.b.ins().ishl(wide, shift);
            let acc = g.b.ins().bor(acc, bit);
            g.b.def_var(selection_acc, acc);
            let output_cost: usize = spec.outputs.iter().map(cost).sum();
            if output_cost <= BRANCH_FREE_OUTPUTS {
                advance_by = Some(pass);
            } else {
                let emit = g.b.create_block();
                g.b.ins().brif(pass, emit, &[], next, &[]);
                g.b.switch_to_block(emit);
                g.b.seal_block(emit);
                g.loaded.push(Vec::new());
            }
        }
        let k = g.b.use_var(kept);
        for ((e, (values, validity)), (values_acc, validity_acc)) in
            spec.outputs.iter().zip(&outs).zip(&output_accs)
        {
            let v = g.expr(e)?;
            // An output that cannot be NULL in this variant gets no validity bitmap.
            if let Some(valid) = v.valid {
                g.put_bit(*validity, *validity_acc, k, valid);
            }
            always_valid_flags.push(v.valid.is_none());
            match v.phys {
                Phys::Bool => g.put_bit(*values, *values_acc, k, v.a),
                phys => {
                    let offset = g.b.ins().imul_imm_s(k, phys.width() as i64);
                    let addr = g.b.ins().iadd(*values, offset);
                    g.b.ins().store(flags, v.a, addr, 0);
                }
            }
        }
        let k1 = match advance_by {
            Some(pass) => {
                let step = g.b.ins().uextend(types::I64, pass);
                g.b.ins().iadd(k, step)
            }
            None => g.b.ins().iadd_imm_s(k, 1),
        };
        g.b.def_var(kept, k1);
        g.b.ins().jump(next, &[]);
        g.b.switch_to_block(next);
        g.b.seal_block(next);
        let i1 = g.b.ins().iadd_imm_s(i, 1);
        g.b.def_var(row, i1);
        g.b.ins().jump(head, &[]);
        g.b.seal_block(head);
        g.b.switch_to_block(word_done);
        g.b.seal_block(word_done);
        if spec.filter.is_some() {
            let offset = g.b.ins().ushr_imm_u(start, 3);
            let addr = g.b.ins().iadd(selection, offset);
            let acc = g.b.use_var(selection_acc);
            g.b.ins().store(MemFlagsData::trusted(), acc, addr, 0);
        }
        g.b.ins().jump(outer, &[]);
        g.b.seal_block(outer);
        g.b.switch_to_block(exit);
        g.b.seal_block(exit);
        let kept = g.b.use_var(kept);
        let failed = g.b.use_var(bail);
        let minus_one = g.b.ins().iconst(ptr, -1);
        let result = g.b.ins().select(failed, minus_one, kept);
        g.b.ins().return_(&[result]);
        g.b.finalize(frontend_config);
    }
    let id = module
        .declare_anonymous_function(&ctx.func.signature)
        .map_err(|e| JitError::Codegen(e.to_string()))?;
    if std::env::var_os("FSQL_JIT_DUMP").is_some() {
        ctx.set_disasm(true);
    }
    module
        .define_function(id, &mut ctx)
        .map_err(|e| JitError::Codegen(format!("{e:?}")))?;
    if let Some(code) = ctx.compiled_code().and_then(|c| c.vcode.as_ref())
        && std::env::var_os("FSQL_JIT_DUMP").is_some()
    {
        eprintln!("{code}");
    }
    module.clear_context(&mut ctx);
    module
        .finalize_definitions()
        .map_err(|e| JitError::Codegen(e.to_string()))?;
    let code = module.get_finalized_function(id);
    // SAFETY: `code` is the function just defined with exactly `KernelFn`'s signature, and it
    // stays mapped as long as `module`, which `Code` owns.
    let function = unsafe { std::mem::transmute::<*const u8, KernelFn>(code) };
    Ok(Code {
        module,
        function,
        always_valid: always_valid_flags,
        _strings: strings,
        _matchers: matchers,
    })
}

/// Refuses a tree with any node compiled code does not implement, or a column outside `slots`
/// (the kernel's memory safety rests on this: every load is of a slot whose class is known).
fn check(e: &Expr, slots: &[arrow::datatypes::DataType]) -> Result<(), JitError> {
    if let ExprKind::Column(k) = e.kind {
        return match slots.get(k) {
            Some(t) if *t == e.data_type.to_arrow() => Ok(()),
            _ => Err(JitError::Unsupported(format!("column ${k} of this type"))),
        };
    }
    if let Some(reason) = unsupported(e) {
        return Err(JitError::Unsupported(reason));
    }
    e.children().into_iter().try_for_each(|c| check(c, slots))
}

/// Where a slot's [`crate::kernel::ColumnArg`] is: at `offset` from the `arg` pointer.
struct SlotRegs {
    phys: Phys,
    arg: Value,
    offset: i32,
    /// Whether its validity bitmap is read.
    nullable: bool,
}

/// One computed value: `a` (for strings the pointer, with `len`), and its validity flag unless
/// it is never NULL.
#[derive(Clone, Copy)]
struct V {
    a: Value,
    len: Option<Value>,
    valid: Option<Value>,
    phys: Phys,
}

struct Gen<'f, 's> {
    b: FunctionBuilder<'f>,
    slots: Vec<SlotRegs>,
    /// The current row number.
    row: Value,
    strings: &'s mut Vec<Box<[u8]>>,
    #[allow(clippy::vec_box)]
    matchers: &'s mut Vec<Box<LikeMatcher>>,
    like: cranelift_codegen::ir::SigRef,
    /// Signatures of stdlib functions' scalar forms (`fsql_stdlib::Scalar`).
    f64_f64: cranelift_codegen::ir::SigRef,
    f64x2_f64: cranelift_codegen::ir::SigRef,
    /// [`helpers::mul_i128`]'s signature, and that of `fsql_stdlib::Scalar::TimestampToBigInt`.
    mul_i128: cranelift_codegen::ir::SigRef,
    timestamp_field: cranelift_codegen::ir::SigRef,
    /// Stack space helpers write results to (see `scratch_slot`).
    scratch: Option<StackSlot>,
    str_cmp: cranelift_codegen::ir::SigRef,
    fmod32: cranelift_codegen::ir::SigRef,
    /// Set (1) by a row that failed where the interpreter reports an error: the kernel then
    /// returns -1 and the batch goes to the interpreter.
    bail: Variable,
    /// String literals (their index in `strings`) by the register holding their pointer, for
    /// comparisons specialised to them.
    literals: Vec<(Value, usize)>,
    /// Columns already loaded for the current row, by scope: a scope per conditionally executed
    /// block, so a value is reused only where its load dominates the use.
    loaded: Vec<Vec<(usize, V)>>,
}

/// The number of nodes of `e`, with string comparisons weighing more (an ordering comparison
/// always calls a helper; an equality rarely does).
fn cost(e: &Expr) -> usize {
    let own = match &e.kind {
        ExprKind::Binary { op, left, .. } if left.data_type == fsql_plan::DataType::String => {
            match op {
                BinaryOp::Eq
                | BinaryOp::NotEq
                | BinaryOp::IsDistinctFrom
                | BinaryOp::IsNotDistinctFrom => 2,
                _ => 8,
            }
        }
        ExprKind::Case { .. } | ExprKind::InList { .. } => 3,
        _ => 1,
    };
    own + e.children().into_iter().map(cost).sum::<usize>()
}

impl Gen<'_, '_> {
    fn iconst(&mut self, ty: Type, v: i64) -> Value {
        if ty == types::I128 {
            return self.const128(i128::from(v));
        }
        let bits = ty.bits();
        let masked = if bits >= 64 {
            v
        } else {
            (v as u64 & ((1u64 << bits) - 1)) as i64
        };
        self.b.ins().iconst(ty, masked)
    }

    /// A 128-bit constant, from its two halves.
    fn const128(&mut self, v: i128) -> Value {
        let lo = self.b.ins().iconst(types::I64, v as i64);
        let hi = self.b.ins().iconst(types::I64, (v >> 64) as i64);
        self.b.ins().iconcat(lo, hi)
    }

    /// DECIMAL `l + r` or `l - r` (one scale; `precision` is that of the interpreter's raw sum,
    /// `target` the result type's). A sum that overflows `i128` is the interpreter's error: the
    /// row sets the kernel's bail-out flag. A sum with more digits than `target` allows is NULL,
    /// as the interpreter's safe cast to the result type makes it.
    fn decimal_add_sub(&mut self, plus: bool, l: V, r: V, precision: u8, target: u8) -> V {
        let (a, b) = (l.a, r.a);
        let sum = if plus {
            self.b.ins().iadd(a, b)
        } else {
            self.b.ins().isub(a, b)
        };
        // Signed overflow: the operands agree in sign (differ, for `-`) and the result does not.
        let x = self.b.ins().bxor(a, sum);
        let y = if plus {
            self.b.ins().bxor(b, sum)
        } else {
            self.b.ins().bxor(a, b)
        };
        let z = self.b.ins().band(x, y);
        let zero = self.const128(0);
        let overflow = self.b.ins().icmp(IntCC::SignedLessThan, z, zero);
        self.decimal_result(sum, overflow, l, r, precision, target)
    }

    /// A timestamp in `unit` (milliseconds or finer) moved by a day-time interval of `ms`
    /// milliseconds, wrapping on overflow as the interpreter does.
    fn shift_timestamp(&mut self, t: V, ms: V, unit: TimeUnit, minus: bool) -> V {
        let units = match unit {
            // `timestamp_shift` admits no whole-second timestamps.
            TimeUnit::Second | TimeUnit::Millisecond => ms.a,
            TimeUnit::Microsecond => self.b.ins().imul_imm_s(ms.a, 1_000),
            TimeUnit::Nanosecond => self.b.ins().imul_imm_s(ms.a, 1_000_000),
        };
        let a = if minus {
            self.b.ins().isub(t.a, units)
        } else {
            self.b.ins().iadd(t.a, units)
        };
        V {
            a,
            len: None,
            valid: self.both_valid(t.valid, ms.valid),
            phys: Phys::I64,
        }
    }

    /// DECIMAL `l * r` (result scale `s1 + s2`; `precision` is that of the interpreter's raw
    /// product, `target` the result type's). A product beyond `i128` is the interpreter's error
    /// (the row sets the bail-out flag); one with more digits than `target` allows is NULL.
    fn decimal_multiply(&mut self, l: V, r: V, precision: u8, target: u8) -> V {
        let slot = self.scratch_slot();
        let out = self.b.ins().stack_addr(types::I64, slot, 0);
        let (a_lo, a_hi) = self.b.ins().isplit(l.a);
        let (b_lo, b_hi) = self.b.ins().isplit(r.a);
        let overflow = self.call_host(
            self.mul_i128,
            helpers::mul_i128 as *const u8,
            &[a_lo, a_hi, b_lo, b_hi, out],
        );
        let lo = self.b.ins().stack_load(types::I64, types::I64, slot, 0);
        let hi = self.b.ins().stack_load(types::I64, types::I64, slot, 8);
        let product = self.b.ins().iconcat(lo, hi);
        self.decimal_result(product, overflow, l, r, precision, target)
    }

    /// The DECIMAL result `value` of operands `l` and `r`: a valid row whose operation
    /// overflowed `i128` (`overflow`) is the interpreter's error (the row sets the bail-out
    /// flag); a value with more digits than `target` allows, where the interpreter's raw result
    /// has `precision`, is NULL, as the interpreter's safe cast to the result type makes it.
    fn decimal_result(
        &mut self,
        value: Value,
        overflow: Value,
        l: V,
        r: V,
        precision: u8,
        target: u8,
    ) -> V {
        let mut valid = self.both_valid(l.valid, r.valid);
        let failed = match valid {
            Some(v) => self.b.ins().band(v, overflow),
            None => overflow,
        };
        self.fail_if(failed);
        if precision > target {
            valid = Some(self.fits_precision(value, target, valid));
        }
        V {
            a: value,
            len: None,
            valid,
            phys: Phys::I128,
        }
    }

    /// Calls the host function at `f` (of signature `sig`: one of the helpers or a stdlib row
    /// form) with `args`; its one result.
    fn call_host(
        &mut self,
        sig: cranelift_codegen::ir::SigRef,
        f: *const u8,
        args: &[Value],
    ) -> Value {
        let callee = self.b.ins().iconst(types::I64, f as i64);
        let call = self.b.ins().call_indirect(sig, callee, args);
        self.b.inst_results(call)[0]
    }

    /// 16 bytes of the kernel's stack that helpers write results to.
    fn scratch_slot(&mut self) -> StackSlot {
        *self.scratch.get_or_insert_with(|| {
            self.b
                .create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, 16, 4))
        })
    }

    /// `valid` (when given) and: `v` has at most `digits` digits.
    fn fits_precision(&mut self, v: Value, digits: u8, valid: Option<Value>) -> Value {
        let max = 10i128.pow(u32::from(digits)) - 1;
        let hi = self.const128(max);
        let lo = self.const128(-max);
        let below = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, v, hi);
        let above = self.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, v, lo);
        let fits = self.b.ins().band(below, above);
        match valid {
            Some(v) => self.b.ins().band(v, fits),
            None => fits,
        }
    }

    /// Marks the batch as one the interpreter must compute when `failed` (0/1) is set: a row
    /// failed where the interpreter reports an error (it gives the reference error, or none if a
    /// guard excludes the row).
    fn fail_if(&mut self, failed: Value) {
        let old = self.b.use_var(self.bail);
        let now = self.b.ins().bor(old, failed);
        self.b.def_var(self.bail, now);
    }

    fn one(&mut self) -> Value {
        self.b.ins().iconst(types::I8, 1)
    }

    fn not(&mut self, v: Value) -> Value {
        self.b.ins().bxor_imm_u(v, 1)
    }

    fn both_valid(&mut self, l: Option<Value>, r: Option<Value>) -> Option<Value> {
        match (l, r) {
            (Some(l), Some(r)) => Some(self.b.ins().band(l, r)),
            (x, None) | (None, x) => x,
        }
    }

    /// Bit `index` of the bitmap at `base` (bit 0 is the first byte's lowest).
    fn load_bit(&mut self, base: Value, index: Value) -> Value {
        let byte_index = self.b.ins().ushr_imm_u(index, 3);
        let addr = self.b.ins().iadd(base, byte_index);
        let byte = self
            .b
            .ins()
            .load(types::I8, MemFlagsData::trusted(), addr, 0);
        let shift = self.b.ins().band_imm_u(index, 7);
        let shifted = self.b.ins().ushr(byte, shift);
        self.b.ins().band_imm_u(shifted, 1)
    }

    /// Sets bit `index` of the bitmap at `base` (whole 64-bit words) to `bit` (0/1), for indexes
    /// written in non-decreasing order (an index written again replaces its bit): the word is
    /// built in accumulator `acc` (restarted at each word's first bit) and stored whole, so no
    /// byte is read back.
    fn put_bit(&mut self, base: Value, acc: Variable, index: Value, bit: Value) {
        let shift = self.b.ins().band_imm_u(index, 63);
        let first = self.b.ins().icmp_imm_u(IntCC::Equal, shift, 0);
        let old = self.b.use_var(acc);
        let one = self.b.ins().iconst(types::I64, 1);
        let mask = self.b.ins().ishl(one, shift);
        let cleared = self.b.ins().band_not(old, mask);
        let zero = self.b.ins().iconst(types::I64, 0);
        let kept = self.b.ins().select(first, zero, cleared);
        let wide = self.b.ins().uextend(types::I64, bit);
        let moved = self.b.ins().ishl(wide, shift);
        let word = self.b.ins().bor(kept, moved);
        self.b.def_var(acc, word);
        let word_index = self.b.ins().ushr_imm_u(index, 6);
        let offset = self.b.ins().ishl_imm_u(word_index, 3);
        let addr = self.b.ins().iadd(base, offset);
        self.b.ins().store(MemFlagsData::trusted(), word, addr, 0);
    }

    fn expr(&mut self, e: &Expr) -> Result<V, JitError> {
        let phys = Phys::of(&e.data_type.to_arrow())
            .ok_or_else(|| JitError::Unsupported(format!("{} values", e.data_type)))?;
        Ok(match &e.kind {
            ExprKind::Column(k) => self.column(*k)?,
            ExprKind::Literal(lit) => self.literal(lit, e, phys)?,
            ExprKind::Unary { op, arg } => {
                let v = self.expr(arg)?;
                self.unary(*op, v)
            }
            ExprKind::Binary { op, left, right } => match op {
                BinaryOp::And | BinaryOp::Or => self.and_or(*op == BinaryOp::And, left, right)?,
                BinaryOp::Plus
                | BinaryOp::Minus
                | BinaryOp::Multiply
                | BinaryOp::Divide
                | BinaryOp::Modulo => {
                    let l = self.expr(left)?;
                    let r = self.expr(right)?;
                    let minus = *op == BinaryOp::Minus;
                    let shift = matches!(op, BinaryOp::Plus | BinaryOp::Minus)
                        .then(|| {
                            timestamp_shift(
                                &left.data_type.to_arrow(),
                                &right.data_type.to_arrow(),
                                &e.data_type.to_arrow(),
                                minus,
                            )
                        })
                        .flatten();
                    if let Some((unit, swapped)) = shift {
                        let (t, ms) = if swapped { (r, l) } else { (l, r) };
                        self.shift_timestamp(t, ms, unit, minus)
                    } else if phys == Phys::I128 && *op != BinaryOp::Multiply {
                        let (lt, rt, t) = (
                            left.data_type.to_arrow(),
                            right.data_type.to_arrow(),
                            e.data_type.to_arrow(),
                        );
                        let (Some(precision), arrow::datatypes::DataType::Decimal128(target, _)) =
                            (decimal_sum_precision(&lt, &rt, &t), &t)
                        else {
                            return Err(JitError::Unsupported(e.to_string()));
                        };
                        let plus = match op {
                            BinaryOp::Plus => true,
                            BinaryOp::Minus => false,
                            _ => return Err(JitError::Unsupported(e.to_string())),
                        };
                        self.decimal_add_sub(plus, l, r, precision, *target)
                    } else if phys == Phys::I128 && *op == BinaryOp::Multiply {
                        let t = e.data_type.to_arrow();
                        let lt = left.data_type.to_arrow();
                        let rt = right.data_type.to_arrow();
                        let (Some(precision), arrow::datatypes::DataType::Decimal128(target, _)) =
                            (decimal_product_precision(&lt, &rt, &t), &t)
                        else {
                            return Err(JitError::Unsupported(e.to_string()));
                        };
                        self.decimal_multiply(l, r, precision, *target)
                    } else {
                        self.arithmetic(*op, l, r)
                    }
                }
                _ => {
                    let l = self.expr(left)?;
                    let r = self.expr(right)?;
                    self.compare(*op, l, r)
                }
            },
            ExprKind::Cast { arg, .. } => {
                let v = self.expr(arg)?;
                V {
                    a: self.convert(v.a, v.phys, phys),
                    phys,
                    ..v
                }
            }
            ExprKind::Case {
                branches,
                otherwise,
            } => self.case(branches, otherwise.as_deref(), phys)?,
            ExprKind::InList { arg, list, negated } => {
                let a = self.expr(arg)?;
                let mut acc: Option<V> = None;
                for item in list {
                    let v = self.expr(item)?;
                    let eq = self.compare(BinaryOp::Eq, a, v);
                    acc = Some(match acc {
                        None => eq,
                        Some(prev) => self.kleene(false, prev, eq),
                    });
                }
                let result = match acc {
                    Some(v) => v,
                    None => V {
                        a: self.b.ins().iconst(types::I8, 0),
                        len: None,
                        valid: None,
                        phys: Phys::Bool,
                    },
                };
                if *negated {
                    self.unary(UnaryOp::Not, result)
                } else {
                    result
                }
            }
            ExprKind::Like {
                arg,
                pattern,
                negated,
                case_insensitive: false,
                escape,
            } => {
                let ExprKind::Literal(Literal::String(p)) = &pattern.kind else {
                    return Err(JitError::Unsupported(e.to_string()));
                };
                let v = self.expr(arg)?;
                let Some(len) = v.len else {
                    return Err(JitError::Unsupported(e.to_string()));
                };
                let matcher = Box::new(LikeMatcher::new(p, *escape));
                if let Some(matched) = self.like_inline(v.a, len, &matcher) {
                    return Ok(V {
                        a: if *negated { self.not(matched) } else { matched },
                        len: None,
                        valid: v.valid,
                        phys: Phys::Bool,
                    });
                }
                let m = self
                    .b
                    .ins()
                    .iconst(types::I64, &*matcher as *const LikeMatcher as i64);
                self.matchers.push(matcher);
                let matched =
                    self.call_host(self.like, like::like_match as *const u8, &[m, v.a, len]);
                V {
                    a: if *negated { self.not(matched) } else { matched },
                    len: None,
                    valid: v.valid,
                    phys: Phys::Bool,
                }
            }
            ExprKind::Call { function, args }
                if matches!(function.as_str(), "coalesce" | "ifnull") =>
            {
                self.coalesce(args, phys)?
            }
            ExprKind::Call { function, args } => self.call(function, args, e)?,
            ExprKind::Like { .. } => {
                return Err(JitError::Unsupported(e.to_string()));
            }
        })
    }

    /// A call of a stdlib function through its row form (`fsql_stdlib::Scalar`), once per row.
    /// Rows with a NULL argument call it too (on whatever value the slot holds: the functions
    /// are pure) and are NULL.
    fn call(&mut self, function: &str, args: &[Expr], e: &Expr) -> Result<V, JitError> {
        let unsupported = || JitError::Unsupported(e.to_string());
        let scalar = fsql_stdlib::lookup(function).and_then(|f| f.scalar);
        let (f, sig, phys) = match (scalar, args) {
            (Some(fsql_stdlib::Scalar::F64(f)), [_]) => (f as *const u8, self.f64_f64, Phys::F64),
            (Some(fsql_stdlib::Scalar::F64F64(f)), [_, _]) => {
                (f as *const u8, self.f64x2_f64, Phys::F64)
            }
            (Some(fsql_stdlib::Scalar::TimestampToBigInt(f)), [arg]) => {
                let arrow::datatypes::DataType::Timestamp(unit, _) = arg.data_type.to_arrow()
                else {
                    return Err(unsupported());
                };
                let v = self.expr(arg)?;
                let unit = match unit {
                    TimeUnit::Second => 0,
                    TimeUnit::Millisecond => 1,
                    TimeUnit::Microsecond => 2,
                    TimeUnit::Nanosecond => 3,
                };
                let slot = self.scratch_slot();
                let valid_at = self.b.ins().stack_addr(types::I64, slot, 0);
                let unit = self.b.ins().iconst(types::I8, unit);
                let a =
                    self.call_host(self.timestamp_field, f as *const u8, &[v.a, unit, valid_at]);
                let in_range = self.b.ins().stack_load(types::I64, types::I8, slot, 0);
                let valid = self.both_valid(v.valid, Some(in_range));
                return Ok(V {
                    a,
                    len: None,
                    valid,
                    phys: Phys::I64,
                });
            }
            _ => return Err(unsupported()),
        };
        let mut values = Vec::with_capacity(args.len());
        let mut valid = None;
        for arg in args {
            let v = self.expr(arg)?;
            if v.phys != phys {
                return Err(unsupported());
            }
            valid = self.both_valid(valid, v.valid);
            values.push(v.a);
        }
        Ok(V {
            a: self.call_host(sig, f, &values),
            len: None,
            valid,
            phys,
        })
    }

    fn column(&mut self, k: usize) -> Result<V, JitError> {
        let cached = self
            .loaded
            .iter()
            .rev()
            .flat_map(|scope| scope.iter())
            .find(|(slot, _)| *slot == k);
        if let Some((_, v)) = cached {
            return Ok(*v);
        }
        let v = self.load_column(k)?;
        if let Some(scope) = self.loaded.last_mut() {
            scope.push((k, v));
        }
        Ok(v)
    }

    fn load_column(&mut self, k: usize) -> Result<V, JitError> {
        let Some(slot) = self.slots.get(k) else {
            return Err(JitError::Unsupported(format!("slot {k}")));
        };
        let (phys, arg, offset, nullable) = (slot.phys, slot.arg, slot.offset, slot.nullable);
        let flags = MemFlagsData::trusted();
        let ptr = types::I64;
        let values = self.b.ins().load(ptr, flags, arg, offset + COL_VALUES);
        let validity = nullable.then(|| self.b.ins().load(ptr, flags, arg, offset + COL_VALIDITY));
        let data =
            (phys == Phys::Str).then(|| self.b.ins().load(ptr, flags, arg, offset + COL_DATA));
        let i = self.row;
        let valid = validity.map(|bitmap| self.load_bit(bitmap, i));
        let flags = MemFlagsData::trusted();
        let (a, len) = match phys {
            Phys::Bool => (self.load_bit(values, i), None),
            Phys::Str => {
                let Some(data) = data else {
                    return Err(JitError::Codegen(format!("slot {k} has no string data")));
                };
                let at = self.b.ins().ishl_imm_u(i, 2);
                let addr = self.b.ins().iadd(values, at);
                let start = self.b.ins().load(types::I32, flags, addr, 0);
                let end = self.b.ins().load(types::I32, flags, addr, 4);
                let start = self.b.ins().sextend(types::I64, start);
                let end = self.b.ins().sextend(types::I64, end);
                let ptr = self.b.ins().iadd(data, start);
                (ptr, Some(self.b.ins().isub(end, start)))
            }
            _ => {
                let at = self.b.ins().imul_imm_s(i, phys.width() as i64);
                let addr = self.b.ins().iadd(values, at);
                (self.b.ins().load(phys.ir(), flags, addr, 0), None)
            }
        };
        Ok(V {
            a,
            len,
            valid,
            phys,
        })
    }

    /// A literal `check` accepted (`split::literal_ok`).
    fn literal(&mut self, lit: &Literal, e: &Expr, phys: Phys) -> Result<V, JitError> {
        let (a, len) = match (lit, phys) {
            (Literal::Null, Phys::F32) => (self.b.ins().f32const(0.0), None),
            (Literal::Null, Phys::F64) => (self.b.ins().f64const(0.0), None),
            (Literal::Null, Phys::Str) => {
                let z = self.b.ins().iconst(types::I64, 0);
                (z, Some(z))
            }
            (Literal::Null, p) => (self.iconst(p.ir(), 0), None),
            (Literal::Boolean(v), _) => (self.b.ins().iconst(types::I8, i64::from(*v)), None),
            (Literal::Int(v), Phys::I128) => {
                let fsql_plan::DataType::Decimal { scale, .. } = e.data_type else {
                    return Err(JitError::Unsupported(e.to_string()));
                };
                let unscaled =
                    decimal_int(*v, scale).ok_or_else(|| JitError::Unsupported(e.to_string()))?;
                (self.const128(unscaled), None)
            }
            (Literal::Decimal(text), Phys::I128) => {
                let unscaled: i128 = text
                    .trim()
                    .parse()
                    .map_err(|_| JitError::Unsupported(e.to_string()))?;
                (self.const128(unscaled), None)
            }
            (Literal::Int(v), Phys::F32) => (self.b.ins().f32const(*v as f32), None),
            (Literal::Int(v), Phys::F64) => (self.b.ins().f64const(*v as f64), None),
            (Literal::Int(v), p) => (self.iconst(p.ir(), *v), None),
            (Literal::Float(bits), Phys::F32) => {
                (self.b.ins().f32const(f64::from_bits(*bits) as f32), None)
            }
            (Literal::Float(bits), _) => (self.b.ins().f64const(f64::from_bits(*bits)), None),
            (Literal::String(s), _) => {
                let bytes: Box<[u8]> = s.as_bytes().into();
                let ptr = self.b.ins().iconst(types::I64, bytes.as_ptr() as i64);
                let len = self.b.ins().iconst(types::I64, bytes.len() as i64);
                self.literals.push((ptr, self.strings.len()));
                self.strings.push(bytes);
                (ptr, Some(len))
            }
            _ => return Err(JitError::Unsupported(e.to_string())),
        };
        let valid = (*lit == Literal::Null).then(|| self.b.ins().iconst(types::I8, 0));
        Ok(V {
            a,
            len,
            valid,
            phys,
        })
    }

    fn unary(&mut self, op: UnaryOp, v: V) -> V {
        let boolean = |a| V {
            a,
            len: None,
            valid: None,
            phys: Phys::Bool,
        };
        match op {
            UnaryOp::Not => V {
                a: self.not(v.a),
                ..v
            },
            UnaryOp::Negate => V {
                a: if v.phys.is_float() {
                    self.b.ins().fneg(v.a)
                } else {
                    self.b.ins().ineg(v.a)
                },
                ..v
            },
            UnaryOp::IsNull => boolean(match v.valid {
                Some(valid) => self.not(valid),
                None => self.b.ins().iconst(types::I8, 0),
            }),
            UnaryOp::IsNotNull => boolean(match v.valid {
                Some(valid) => valid,
                None => self.one(),
            }),
            UnaryOp::IsTrue => boolean(self.is(v, true)),
            UnaryOp::IsNotTrue => {
                let t = self.is(v, true);
                boolean(self.not(t))
            }
            UnaryOp::IsFalse | UnaryOp::IsNotFalse => {
                let f = self.not(v.a);
                let f = match v.valid {
                    Some(valid) => self.b.ins().band(valid, f),
                    None => f,
                };
                boolean(if op == UnaryOp::IsFalse {
                    f
                } else {
                    self.not(f)
                })
            }
        }
    }

    /// Kleene AND (`is_and`) or OR of two evaluated booleans, without branches.
    fn kleene(&mut self, is_and: bool, l: V, r: V) -> V {
        let (a, valid) = match (l.valid, r.valid) {
            (None, None) => {
                let a = if is_and {
                    self.b.ins().band(l.a, r.a)
                } else {
                    self.b.ins().bor(l.a, r.a)
                };
                (a, None)
            }
            (lv, rv) => {
                // The value that decides alone: FALSE for AND, TRUE for OR.
                let decides = |g: &mut Self, v: V| {
                    let x = if is_and { g.not(v.a) } else { v.a };
                    match v.valid {
                        Some(valid) => g.b.ins().band(valid, x),
                        None => x,
                    }
                };
                let ld = decides(self, l);
                let rd = decides(self, r);
                let decided = self.b.ins().bor(ld, rd);
                let both = self.both_valid(lv, rv).unwrap_or(decided);
                let valid = self.b.ins().bor(decided, both);
                let a = if is_and { self.not(decided) } else { decided };
                (a, Some(valid))
            }
        };
        V {
            a,
            len: None,
            valid,
            phys: Phys::Bool,
        }
    }

    /// COALESCE/IFNULL: the first argument that is not NULL, without branches (every argument is
    /// evaluated; compiled code has no side effects). Arguments have the result's type.
    fn coalesce(&mut self, args: &[Expr], phys: Phys) -> Result<V, JitError> {
        let values = args
            .iter()
            .map(|a| self.expr(a))
            .collect::<Result<Vec<_>, _>>()?;
        let Some((&last, earlier)) = values.split_last() else {
            return Err(JitError::Unsupported("COALESCE without arguments".into()));
        };
        if values.iter().any(|v| v.phys != phys) {
            return Err(JitError::Unsupported("COALESCE of mixed types".into()));
        }
        let mut acc = last;
        for v in earlier.iter().rev() {
            let Some(valid) = v.valid else {
                // Never NULL: it is the answer whatever follows.
                acc = *v;
                continue;
            };
            let a = self.b.ins().select(valid, v.a, acc.a);
            let len = match (v.len, acc.len) {
                (Some(l), Some(r)) => Some(self.b.ins().select(valid, l, r)),
                _ => None,
            };
            acc = V {
                a,
                len,
                valid: acc.valid.map(|av| self.b.ins().bor(valid, av)),
                phys,
            };
        }
        Ok(acc)
    }

    /// 1 where the BOOLEAN `e` is `want` (TRUE or FALSE), 0 where it is the other value or NULL:
    /// what a filter or a CASE condition needs. AND, OR and NOT then need no validity flags, since
    /// `A AND B` is TRUE exactly when both are TRUE and FALSE when either is FALSE (and dually for
    /// OR), whatever the other operand is.
    fn cond(&mut self, e: &Expr, want: bool) -> Result<Value, JitError> {
        match &e.kind {
            ExprKind::Unary {
                op: UnaryOp::Not,
                arg,
            } => self.cond(arg, !want),
            ExprKind::Binary {
                op: op @ (BinaryOp::And | BinaryOp::Or),
                left,
                right,
            } => {
                if cost(right) > BRANCH_COST {
                    // The right side is skipped on the rows the left one decides (FALSE for AND,
                    // TRUE for OR) and evaluated on the others, NULL included: the rows where
                    // the interpreter evaluates it, so a row that fails there fails here too.
                    let v = self.and_or(*op == BinaryOp::And, left, right)?;
                    return Ok(self.is(v, want));
                }
                // Both operands must be `want` (TRUE AND, FALSE OR), or either may be.
                let both = (*op == BinaryOp::And) == want;
                let l = self.cond(left, want)?;
                let r = self.cond(right, want)?;
                Ok(if both {
                    self.b.ins().band(l, r)
                } else {
                    self.b.ins().bor(l, r)
                })
            }
            _ => {
                let v = self.expr(e)?;
                Ok(self.is(v, want))
            }
        }
    }

    /// 1 where the BOOLEAN `v` is `want` (not NULL).
    fn is(&mut self, v: V, want: bool) -> Value {
        let is = if want { v.a } else { self.not(v.a) };
        match v.valid {
            Some(valid) => self.b.ins().band(valid, is),
            None => is,
        }
    }

    /// AND/OR; an expensive right side is skipped on rows the left side decides.
    fn and_or(&mut self, is_and: bool, left: &Expr, right: &Expr) -> Result<V, JitError> {
        let l = self.expr(left)?;
        if cost(right) <= BRANCH_COST {
            let r = self.expr(right)?;
            return Ok(self.kleene(is_and, l, r));
        }
        let x = if is_and { self.not(l.a) } else { l.a };
        let decided = match l.valid {
            Some(valid) => self.b.ins().band(valid, x),
            None => x,
        };
        let va = self.b.declare_var(types::I8);
        let vvalid = self.b.declare_var(types::I8);
        let short = self.b.create_block();
        let long = self.b.create_block();
        let merge = self.b.create_block();
        self.b.ins().brif(decided, short, &[], long, &[]);
        self.b.switch_to_block(short);
        self.b.seal_block(short);
        let value = self.b.ins().iconst(types::I8, i64::from(!is_and));
        let one = self.one();
        self.b.def_var(va, value);
        self.b.def_var(vvalid, one);
        self.b.ins().jump(merge, &[]);
        self.b.switch_to_block(long);
        self.b.seal_block(long);
        self.loaded.push(Vec::new());
        let r = self.expr(right)?;
        self.loaded.pop();
        let out = self.kleene(is_and, l, r);
        let valid = match out.valid {
            Some(v) => v,
            None => self.one(),
        };
        self.b.def_var(va, out.a);
        self.b.def_var(vvalid, valid);
        self.b.ins().jump(merge, &[]);
        self.b.switch_to_block(merge);
        self.b.seal_block(merge);
        Ok(V {
            a: self.b.use_var(va),
            len: None,
            valid: Some(self.b.use_var(vvalid)),
            phys: Phys::Bool,
        })
    }

    fn case(
        &mut self,
        branches: &[(Expr, Expr)],
        otherwise: Option<&Expr>,
        phys: Phys,
    ) -> Result<V, JitError> {
        let va = self.b.declare_var(phys.ir());
        let vlen = self.b.declare_var(types::I64);
        let vvalid = self.b.declare_var(types::I8);
        let merge = self.b.create_block();
        let define = |g: &mut Self, v: V| {
            let len = match v.len {
                Some(l) => l,
                None => g.b.ins().iconst(types::I64, 0),
            };
            let valid = match v.valid {
                Some(x) => x,
                None => g.one(),
            };
            g.b.def_var(va, v.a);
            g.b.def_var(vlen, len);
            g.b.def_var(vvalid, valid);
            g.b.ins().jump(merge, &[]);
        };
        // Each `next` block is a scope of its own until the merge, which the branches taken
        // before it also reach.
        let scopes = self.loaded.len();
        for (cond, value) in branches {
            let hit = self.cond(cond, true)?;
            let then = self.b.create_block();
            let next = self.b.create_block();
            self.b.ins().brif(hit, then, &[], next, &[]);
            self.b.switch_to_block(then);
            self.b.seal_block(then);
            self.loaded.push(Vec::new());
            let v = self.expr(value)?;
            self.loaded.pop();
            define(self, v);
            self.b.switch_to_block(next);
            self.b.seal_block(next);
            self.loaded.push(Vec::new());
        }
        let v = match otherwise {
            Some(e) => self.expr(e)?,
            None => {
                let a = match phys {
                    Phys::F32 => self.b.ins().f32const(0.0),
                    Phys::F64 => self.b.ins().f64const(0.0),
                    p => self.iconst(p.ir(), 0),
                };
                let len = (phys == Phys::Str).then(|| self.b.ins().iconst(types::I64, 0));
                let valid = Some(self.b.ins().iconst(types::I8, 0));
                V {
                    a,
                    len,
                    valid,
                    phys,
                }
            }
        };
        define(self, v);
        self.loaded.truncate(scopes);
        self.b.switch_to_block(merge);
        self.b.seal_block(merge);
        Ok(V {
            a: self.b.use_var(va),
            len: (phys == Phys::Str).then(|| self.b.use_var(vlen)),
            valid: Some(self.b.use_var(vvalid)),
            phys,
        })
    }

    /// Converts a value between classes: integer widening/narrowing (wrapping), integer to
    /// float, float to integer (truncating, saturating at INT for narrower types as Java
    /// does, NaN to 0), float widening/narrowing.
    fn convert(&mut self, a: Value, from: Phys, to: Phys) -> Value {
        if from == to || from.ir() == to.ir() && !from.is_float() && !to.is_float() {
            return a;
        }
        let ins = self.b.ins();
        match (from.is_float(), to.is_float()) {
            (false, false) => {
                if from.width() < to.width() {
                    ins.sextend(to.ir(), a)
                } else {
                    ins.ireduce(to.ir(), a)
                }
            }
            (false, true) => ins.fcvt_from_sint(to.ir(), a),
            (true, false) => {
                if to == Phys::I64 {
                    ins.fcvt_to_sint_sat(types::I64, a)
                } else {
                    let int = ins.fcvt_to_sint_sat(types::I32, a);
                    if to == Phys::I32 {
                        int
                    } else {
                        self.b.ins().ireduce(to.ir(), int)
                    }
                }
            }
            (true, true) => {
                if to == Phys::F64 {
                    ins.fpromote(types::F64, a)
                } else {
                    ins.fdemote(types::F32, a)
                }
            }
        }
    }

    fn arithmetic(&mut self, op: BinaryOp, l: V, r: V) -> V {
        let valid = self.both_valid(l.valid, r.valid);
        let phys = l.phys;
        if phys.is_float() {
            let a = match op {
                BinaryOp::Plus => self.b.ins().fadd(l.a, r.a),
                BinaryOp::Minus => self.b.ins().fsub(l.a, r.a),
                BinaryOp::Multiply => self.b.ins().fmul(l.a, r.a),
                BinaryOp::Divide => self.b.ins().fdiv(l.a, r.a),
                _ => {
                    let (sig, f) = if phys == Phys::F64 {
                        (self.f64x2_f64, helpers::fmod64 as *const u8)
                    } else {
                        (self.fmod32, helpers::fmod32 as *const u8)
                    };
                    self.call_host(sig, f, &[l.a, r.a])
                }
            };
            return V {
                a,
                len: None,
                valid,
                phys,
            };
        }
        let ty = phys.ir();
        let (a, valid) = match op {
            BinaryOp::Plus => (self.b.ins().iadd(l.a, r.a), valid),
            BinaryOp::Minus => (self.b.ins().isub(l.a, r.a), valid),
            BinaryOp::Multiply => (self.b.ins().imul(l.a, r.a), valid),
            _ => {
                // Zero divisors give NULL; -1 is done by negation (MIN / -1 wraps to MIN,
                // MIN % -1 is 0), so the hardware division never traps.
                let zero = self.b.ins().icmp_imm_u(IntCC::Equal, r.a, 0);
                let minus_one_c = self.iconst(ty, -1);
                let minus_one = self.b.ins().icmp(IntCC::Equal, r.a, minus_one_c);
                let bad = self.b.ins().bor(zero, minus_one);
                let one = self.iconst(ty, 1);
                let divisor = self.b.ins().select(bad, one, r.a);
                let a = if op == BinaryOp::Divide {
                    let q = self.b.ins().sdiv(l.a, divisor);
                    let neg = self.b.ins().ineg(l.a);
                    self.b.ins().select(minus_one, neg, q)
                } else {
                    let q = self.b.ins().srem(l.a, divisor);
                    let z = self.iconst(ty, 0);
                    self.b.ins().select(minus_one, z, q)
                };
                let nonzero = self.not(zero);
                let valid = match valid {
                    Some(v) => self.b.ins().band(v, nonzero),
                    None => nonzero,
                };
                (a, Some(valid))
            }
        };
        V {
            a,
            len: None,
            valid,
            phys,
        }
    }

    /// 1 when the string at `p` (`len` bytes) equals `lit`, a literal of 1 to 16 bytes: without
    /// branches or calls, by comparing the length and one or two (overlapping) loads that cover
    /// the literal.
    fn str_equal_literal(&mut self, p: Value, len: Value, lit: Value, bytes: &[u8]) -> Value {
        let same_len = self
            .b
            .ins()
            .icmp_imm_u(IntCC::Equal, len, bytes.len() as i64);
        self.bytes_equal_literal(same_len, p, lit, bytes)
    }

    /// 1 when `ok` and the `bytes.len()` (1 to 16) bytes at `at` are `bytes`, whose copy is at
    /// `lit`. When `ok` is 0 the loads read the literal itself, so `at` need only be readable
    /// for that many bytes when `ok` is 1.
    fn bytes_equal_literal(&mut self, ok: Value, at: Value, lit: Value, bytes: &[u8]) -> Value {
        let n = bytes.len();
        debug_assert!((1..=16).contains(&n));
        let at = self.b.ins().select(ok, at, lit);
        let flags = MemFlagsData::new().with_notrap();
        let width = match n {
            1 => 1,
            2 | 3 => 2,
            4..=7 => 4,
            _ => 8,
        };
        let ty = Type::int_with_byte_size(width as u16).unwrap_or(types::I64);
        let word = |offset: usize| {
            let mut v = [0u8; 8];
            v[..width].copy_from_slice(&bytes[offset..offset + width]);
            i64::from_le_bytes(v)
        };
        let mut eq = ok;
        for offset in [0, n - width] {
            let loaded = self.b.ins().load(ty, flags, at, offset as i32);
            let expected = self.iconst(ty, word(offset));
            let same = self.b.ins().icmp(IntCC::Equal, loaded, expected);
            eq = self.b.ins().band(eq, same);
        }
        eq
    }

    /// `LIKE` with an exact, prefix (`abc%`) or suffix (`%abc`) pattern of at most 16 bytes,
    /// inline (bytes compare as characters do: UTF-8 is self-synchronising); `None` for other
    /// patterns, which call [`like::like_match`].
    fn like_inline(&mut self, p: Value, len: Value, matcher: &LikeMatcher) -> Option<Value> {
        let (text, suffix) = match matcher {
            LikeMatcher::Exact(t) | LikeMatcher::Prefix(t) => (t, false),
            LikeMatcher::Suffix(t) => (t, true),
            _ => return None,
        };
        if text.len() > 16 {
            return None;
        }
        if text.is_empty() {
            // '' matches only the empty string; '%' anything.
            return Some(match matcher {
                LikeMatcher::Exact(_) => self.b.ins().icmp_imm_u(IntCC::Equal, len, 0),
                _ => self.one(),
            });
        }
        let bytes: Box<[u8]> = text.as_bytes().into();
        let lit = self.b.ins().iconst(types::I64, bytes.as_ptr() as i64);
        let n = bytes.len() as i64;
        let result = match matcher {
            LikeMatcher::Exact(_) => self.str_equal_literal(p, len, lit, &bytes),
            _ => {
                let long_enough = self
                    .b
                    .ins()
                    .icmp_imm_s(IntCC::SignedGreaterThanOrEqual, len, n);
                let at = if suffix {
                    let end = self.b.ins().iadd(p, len);
                    self.b.ins().iadd_imm_s(end, -n)
                } else {
                    p
                };
                self.bytes_equal_literal(long_enough, at, lit, &bytes)
            }
        };
        self.strings.push(bytes);
        Some(result)
    }

    /// The bytes of a string literal held in register `v`, if it is one.
    fn literal_bytes(&self, v: Value) -> Option<Box<[u8]>> {
        let (_, k) = self.literals.iter().find(|(ptr, _)| *ptr == v)?;
        self.strings.get(*k).cloned()
    }

    /// 1 when two strings are equal. Without branches it compares the lengths and the first and
    /// last bytes, which decides strings of up to two bytes (country codes) and most unequal ones;
    /// only the rest call [`helpers::str_cmp`].
    fn str_equal(&mut self, lp: Value, llen: Value, rp: Value, rlen: Value) -> Value {
        static EMPTY: u8 = 0;
        let flags = MemFlagsData::trusted();
        let same_len = self.b.ins().icmp(IntCC::Equal, llen, rlen);
        // An empty string's pointer may be one past its buffer (or null, for a NULL literal):
        // read a byte of our own instead.
        let empty = self.b.ins().icmp_imm_u(IntCC::Equal, llen, 0);
        let r_empty = self.b.ins().icmp_imm_u(IntCC::Equal, rlen, 0);
        let dummy = self.b.ins().iconst(types::I64, &EMPTY as *const u8 as i64);
        let lp0 = self.b.ins().select(empty, dummy, lp);
        let rp0 = self.b.ins().select(r_empty, dummy, rp);
        let last = self.b.ins().iadd_imm_s(llen, -1);
        let zero = self.b.ins().iconst(types::I64, 0);
        let last = self.b.ins().select(empty, zero, last);
        let lpn = self.b.ins().iadd(lp0, last);
        // `rp0 + last` is in bounds only when the lengths are equal; otherwise read the first byte.
        let rlast = self.b.ins().select(same_len, last, zero);
        let rpn = self.b.ins().iadd(rp0, rlast);
        let lf = self.b.ins().load(types::I8, flags, lp0, 0);
        let rf = self.b.ins().load(types::I8, flags, rp0, 0);
        let ll = self.b.ins().load(types::I8, flags, lpn, 0);
        let rl = self.b.ins().load(types::I8, flags, rpn, 0);
        let first_eq = self.b.ins().icmp(IntCC::Equal, lf, rf);
        let last_eq = self.b.ins().icmp(IntCC::Equal, ll, rl);
        let ends = self.b.ins().band(first_eq, last_eq);
        let quick = self.b.ins().band(same_len, ends);
        let long = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, llen, 2);
        let needs_call = self.b.ins().band(quick, long);
        let result = self.b.declare_var(types::I8);
        self.b.def_var(result, quick);
        let call = self.b.create_block();
        let done = self.b.create_block();
        self.b.ins().brif(needs_call, call, &[], done, &[]);
        self.b.switch_to_block(call);
        self.b.seal_block(call);
        let ordering = self.call_host(
            self.str_cmp,
            helpers::str_cmp as *const u8,
            &[lp, llen, rp, rlen],
        );
        let eq = self.b.ins().icmp_imm_u(IntCC::Equal, ordering, 0);
        self.b.def_var(result, eq);
        self.b.ins().jump(done, &[]);
        self.b.switch_to_block(done);
        self.b.seal_block(done);
        self.b.use_var(result)
    }

    fn compare(&mut self, op: BinaryOp, l: V, r: V) -> V {
        let phys = common(l.phys, r.phys);
        let la = self.convert(l.a, l.phys, phys);
        let ra = self.convert(r.a, r.phys, phys);
        let equality = matches!(
            op,
            BinaryOp::Eq | BinaryOp::NotEq | BinaryOp::IsDistinctFrom | BinaryOp::IsNotDistinctFrom
        );
        let (la, ra) = match phys {
            Phys::Str if equality => {
                let llen = l.len.unwrap_or(la);
                let rlen = r.len.unwrap_or(ra);
                let short =
                    |b: &Option<Box<[u8]>>| b.as_ref().is_some_and(|b| (1..=16).contains(&b.len()));
                let (lb, rb) = (self.literal_bytes(la), self.literal_bytes(ra));
                let eq = if short(&rb) && r.valid.is_none() {
                    self.str_equal_literal(la, llen, ra, rb.as_deref().unwrap_or_default())
                } else if short(&lb) && l.valid.is_none() {
                    self.str_equal_literal(ra, rlen, la, lb.as_deref().unwrap_or_default())
                } else {
                    self.str_equal(la, llen, ra, rlen)
                };
                // Compared below as `eq == 1` (or `<> 1`).
                (eq, self.b.ins().iconst(types::I8, 1))
            }
            Phys::Str => {
                let llen = l.len.unwrap_or(la);
                let rlen = r.len.unwrap_or(ra);
                let ordering = self.call_host(
                    self.str_cmp,
                    helpers::str_cmp as *const u8,
                    &[la, llen, ra, rlen],
                );
                (ordering, self.b.ins().iconst(types::I32, 0))
            }
            _ => (la, ra),
        };
        let a = if phys.is_float() {
            // IEEE-754, as Flink: NaN is unordered and unequal to everything; -0.0 = 0.0.
            let cc = match op {
                BinaryOp::Eq | BinaryOp::IsNotDistinctFrom => FloatCC::Equal,
                BinaryOp::NotEq | BinaryOp::IsDistinctFrom => FloatCC::NotEqual,
                BinaryOp::Lt => FloatCC::LessThan,
                BinaryOp::LtEq => FloatCC::LessThanOrEqual,
                BinaryOp::Gt => FloatCC::GreaterThan,
                _ => FloatCC::GreaterThanOrEqual,
            };
            self.b.ins().fcmp(cc, la, ra)
        } else {
            let cc = match op {
                BinaryOp::Eq | BinaryOp::IsNotDistinctFrom => IntCC::Equal,
                BinaryOp::NotEq | BinaryOp::IsDistinctFrom => IntCC::NotEqual,
                BinaryOp::Lt => IntCC::SignedLessThan,
                BinaryOp::LtEq => IntCC::SignedLessThanOrEqual,
                BinaryOp::Gt => IntCC::SignedGreaterThan,
                _ => IntCC::SignedGreaterThanOrEqual,
            };
            self.b.ins().icmp(cc, la, ra)
        };
        let (a, valid) = match op {
            BinaryOp::IsDistinctFrom | BinaryOp::IsNotDistinctFrom => {
                // NULL equals NULL; NULL differs from any value.
                let same = op == BinaryOp::IsNotDistinctFrom;
                let a = match (l.valid, r.valid) {
                    (None, None) => a,
                    (lv, rv) => {
                        let lv = lv.unwrap_or_else(|| self.one());
                        let rv = rv.unwrap_or_else(|| self.one());
                        let both = self.b.ins().band(lv, rv);
                        let either = self.b.ins().bor(lv, rv);
                        let neither = self.not(either);
                        let when_valid = self.b.ins().band(both, a);
                        if same {
                            self.b.ins().bor(when_valid, neither)
                        } else {
                            // Distinct: a value differs (both valid) or exactly one is NULL.
                            let one_null = self.b.ins().bxor(lv, rv);
                            self.b.ins().bor(when_valid, one_null)
                        }
                    }
                };
                (a, None)
            }
            _ => (a, self.both_valid(l.valid, r.valid)),
        };
        V {
            a,
            len: None,
            valid,
            phys: Phys::Bool,
        }
    }
}

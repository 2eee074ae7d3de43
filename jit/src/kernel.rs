//! A compiled kernel and its calling convention: Arrow arrays in, Arrow arrays out.

use std::sync::Arc;

use arrow::array::{Array, ArrayData, ArrayRef, make_array};
use arrow::buffer::{BooleanBuffer, Buffer, MutableBuffer, NullBuffer};
use arrow::datatypes::DataType as ArrowType;

use crate::JitError;
use crate::codegen::{self, COL_SIZE, Code, OUT_SIZE};
use crate::phys::Phys;
use crate::split::KernelSpec;

/// One kernel input as compiled code reads it (layout fixed by `codegen`'s `COL_*` offsets).
/// Everything starts at the array's first row: bitmaps at bit 0 of their first byte.
#[repr(C)]
struct ColumnArg {
    /// Primitive values, the value bitmap of a BOOLEAN, or the `i32` offsets of a STRING.
    values: *const u8,
    /// The validity bitmap (1 = valid); read only when the slot was compiled as nullable.
    validity: *const u8,
    /// A STRING's bytes.
    data: *const u8,
}

/// One kernel output: buffers compiled code stores values in; bitmaps are written in whole
/// 64-bit words.
#[repr(C)]
struct OutputArg {
    values: *mut u8,
    validity: *mut u8,
}

const _: () = assert!(std::mem::size_of::<ColumnArg>() as i64 == COL_SIZE);
const _: () = assert!(std::mem::size_of::<OutputArg>() as i64 == OUT_SIZE);

/// What a kernel computed over one batch.
#[derive(Debug)]
pub struct KernelOutput {
    /// With a filter: which input rows passed (NULL and FALSE did not).
    pub selection: Option<BooleanBuffer>,
    /// The number of rows that passed (all rows without a filter): the length of `columns`.
    pub selected: usize,
    /// The outputs, computed for the passing rows only.
    pub columns: Vec<ArrayRef>,
}

/// Native code for one [`KernelSpec`], compiled for a given nullability of its slots.
pub struct Kernel {
    code: Option<Code>,
    spec: KernelSpec,
    nullable: Vec<bool>,
    outputs: Vec<(ArrowType, Phys)>,
}

// SAFETY: after `finalize_definitions` the code and the literals it points to are immutable; the
// function only reads its arguments and writes the output buffers each call passes, so calls from
// several threads do not interfere. The module is touched again only by `Drop`.
unsafe impl Send for Kernel {}
unsafe impl Sync for Kernel {}

impl Drop for Kernel {
    fn drop(&mut self) {
        if let Some(code) = self.code.take() {
            // SAFETY: the function pointer dies with `self`; no call can be running, since
            // `run` borrows `self`.
            unsafe { code.module.free_memory() };
        }
    }
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("spec", &self.spec)
            .field("nullable", &self.nullable)
            .finish()
    }
}

impl Kernel {
    /// Compiles `spec`. A slot with `nullable[k] == false` is read as never NULL: [`Kernel::run`]
    /// refuses an input with NULLs there.
    pub fn compile(spec: &KernelSpec, nullable: &[bool]) -> Result<Kernel, JitError> {
        let nullable: Vec<bool> = (0..spec.slots.len())
            .map(|k| nullable.get(k).copied().unwrap_or(true))
            .collect();
        let outputs = spec
            .outputs
            .iter()
            .map(|e| {
                let t = e.data_type.to_arrow();
                match Phys::of(&t) {
                    Some(p) if p.writable() => Ok((t, p)),
                    _ => Err(JitError::Unsupported(format!("{} results", e.data_type))),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let code = codegen::compile(spec, &nullable)?;
        Ok(Kernel {
            code: Some(code),
            spec: spec.clone(),
            nullable,
            outputs,
        })
    }

    /// The spec this kernel computes.
    pub fn spec(&self) -> &KernelSpec {
        &self.spec
    }

    /// Runs the kernel over `rows` rows whose slot values are `slots` (in slot order). Inputs of
    /// the wrong number, length or type are refused, never read.
    pub fn run(&self, slots: &[ArrayRef], rows: usize) -> Result<KernelOutput, JitError> {
        let Some(code) = &self.code else {
            return Err(JitError::Codegen("the kernel was freed".into()));
        };
        if slots.len() != self.spec.slots.len() {
            return Err(JitError::Input(format!(
                "{} inputs for {} slots",
                slots.len(),
                self.spec.slots.len()
            )));
        }
        let data: Vec<ArrayData> = slots.iter().map(|a| a.to_data()).collect();
        // An all-valid bitmap for nullable slots whose input has none (allocated only then).
        let needs_ones = data
            .iter()
            .zip(&self.nullable)
            .any(|(d, nullable)| *nullable && d.nulls().is_none_or(|n| n.null_count() == 0));
        let ones = if needs_ones {
            vec![0xFFu8; rows.div_ceil(8)]
        } else {
            Vec::new()
        };
        // Bitmaps that start inside a byte are copied to start at bit 0; they live here.
        let mut realigned = Vec::new();
        let mut args = Vec::with_capacity(slots.len());
        for (k, d) in data.iter().enumerate() {
            args.push(column_arg(
                d,
                &self.spec.slots[k],
                self.nullable[k],
                rows,
                &ones,
                &mut realigned,
            )?);
        }
        let bitmap = || MutableBuffer::from_len_zeroed(rows.div_ceil(64) * 8);
        let mut buffers: Vec<(MutableBuffer, MutableBuffer)> = self
            .outputs
            .iter()
            .map(|(_, p)| {
                let values = match p {
                    Phys::Bool => bitmap(),
                    p => MutableBuffer::from_len_zeroed(rows * p.width()),
                };
                (values, bitmap())
            })
            .collect();
        let mut selection = self.spec.filter.as_ref().map(|_| bitmap());
        let out_args: Vec<OutputArg> = buffers
            .iter_mut()
            .map(|(v, n)| OutputArg {
                values: v.as_mut_ptr(),
                validity: n.as_mut_ptr(),
            })
            .collect();
        let selected = if rows == 0 {
            0
        } else {
            let rows_i64 =
                i64::try_from(rows).map_err(|_| JitError::Input(format!("{rows} rows")))?;
            let selection_ptr = selection
                .as_mut()
                .map_or(std::ptr::null_mut(), |s| s.as_mut_ptr());
            // SAFETY: every slot was checked above to hold `rows` values of the class the code
            // was compiled for, with a validity bitmap wherever the code reads one; every output
            // buffer and the selection bitmap hold `rows` values/bits.
            let n = unsafe {
                (code.function)(
                    args.as_ptr().cast(),
                    rows_i64,
                    out_args.as_ptr().cast(),
                    selection_ptr,
                )
            };
            if n == -1 {
                return Err(JitError::RowFailed);
            }
            usize::try_from(n)
                .ok()
                .filter(|n| *n <= rows)
                .ok_or_else(|| JitError::Codegen(format!("kernel returned {n} rows of {rows}")))?
        };
        let columns = buffers
            .into_iter()
            .zip(&self.outputs)
            .zip(&code.always_valid)
            .map(|(((values, validity), (t, _)), always_valid)| {
                let nulls = if *always_valid {
                    None
                } else {
                    let nulls = NullBuffer::new(BooleanBuffer::new(validity.into(), 0, selected));
                    (nulls.null_count() > 0).then_some(nulls)
                };
                let data = ArrayData::builder(t.clone())
                    .len(selected)
                    .add_buffer(Buffer::from(values))
                    .nulls(nulls)
                    .build()
                    .map_err(|e| JitError::Codegen(e.to_string()))?;
                Ok(make_array(data))
            })
            .collect::<Result<Vec<_>, JitError>>()?;
        Ok(KernelOutput {
            selection: selection.map(|s| BooleanBuffer::new(s.into(), 0, rows)),
            selected,
            columns,
        })
    }
}

/// A pointer to bit `offset` of `buffer` when that is a byte boundary; otherwise the bits
/// copied to a new buffer starting at bit 0, kept in `keep`.
fn bitmap_at(buffer: &Buffer, offset: usize, len: usize, keep: &mut Vec<Buffer>) -> *const u8 {
    if offset.is_multiple_of(8) {
        // SAFETY: the caller checked that the buffer holds `offset + len` bits.
        unsafe { buffer.as_ptr().add(offset / 8) }
    } else {
        let copy = BooleanBuffer::new(buffer.clone(), offset, len).sliced();
        let ptr = copy.as_ptr();
        keep.push(copy);
        ptr
    }
}

/// The argument for one slot, after checking that `d` is what the code reads.
fn column_arg(
    d: &ArrayData,
    expected: &ArrowType,
    nullable: bool,
    rows: usize,
    ones: &[u8],
    keep: &mut Vec<Buffer>,
) -> Result<ColumnArg, JitError> {
    if d.data_type() != expected || d.len() != rows {
        return Err(JitError::Input(format!(
            "a {} input of {} rows where {expected} of {rows} rows is compiled",
            d.data_type(),
            d.len()
        )));
    }
    let phys = Phys::of(expected).ok_or_else(|| JitError::Input(format!("a {expected} input")))?;
    let offset = d.offset();
    let validity = match d.nulls() {
        Some(n) if n.null_count() > 0 || nullable => {
            if !nullable {
                return Err(JitError::Input(
                    "NULLs in an input compiled as NOT NULL".into(),
                ));
            }
            bitmap_at(n.buffer(), n.offset(), rows, keep)
        }
        _ => ones.as_ptr(),
    };
    let buffer = |i: usize, needed: usize| -> Result<&Buffer, JitError> {
        match d.buffers().get(i) {
            Some(b) if b.len() >= needed => Ok(b),
            _ => Err(JitError::Input(format!("a short {expected} buffer"))),
        }
    };
    let arg = match phys {
        Phys::Bool => ColumnArg {
            values: bitmap_at(buffer(0, (offset + rows).div_ceil(8))?, offset, rows, keep),
            validity,
            data: std::ptr::null(),
        },
        Phys::Str => {
            let offsets = buffer(0, (offset + rows + 1) * 4)?.as_ptr();
            ColumnArg {
                // SAFETY: the offsets buffer holds at least `offset + rows + 1` i32 values.
                values: unsafe { offsets.add(offset * 4) },
                validity,
                data: buffer(1, 0)?.as_ptr(),
            }
        }
        p => {
            let values = buffer(0, (offset + rows) * p.width())?.as_ptr();
            ColumnArg {
                // SAFETY: the buffer holds at least `offset + rows` values.
                values: unsafe { values.add(offset * p.width()) },
                validity,
                data: std::ptr::null(),
            }
        }
    };
    Ok(arg)
}

/// Kernels shared by everything that compiles the same spec with the same nullability (two
/// operators with one filter, a rule re-sent unchanged). Entries are weak: code is freed when
/// its last user — a plan or a ruleset version — is dropped.
pub(crate) fn shared(spec: &KernelSpec, nullable: &[bool]) -> Result<Arc<Kernel>, JitError> {
    use std::collections::HashMap;
    use std::sync::{Mutex, Weak};
    type Cache = Mutex<HashMap<(KernelSpec, Vec<bool>), Weak<Kernel>>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (spec.clone(), nullable.to_vec());
    let mut map = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(kernel) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(kernel);
    }
    let kernel = Arc::new(Kernel::compile(spec, nullable)?);
    map.retain(|_, k| k.strong_count() > 0);
    map.insert(key, Arc::downgrade(&kernel));
    Ok(kernel)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, AsArray, Float64Array, StringArray};
    use arrow::datatypes::DataType as A;
    use fsql_plan::{BinaryOp, DataType, Expr, ExprKind, Literal};

    use super::*;
    use crate::Split;

    fn gt(threshold: f64) -> Expr {
        Expr {
            kind: ExprKind::Binary {
                op: BinaryOp::Gt,
                left: Box::new(Expr::column(0, DataType::Double, true)),
                right: Box::new(Expr::literal(Literal::float(threshold), DataType::Double)),
            },
            data_type: DataType::Boolean,
            nullable: true,
        }
    }

    #[test]
    fn equal_specs_share_code_until_the_last_user_drops_it() {
        let spec = Split::new(Some(&gt(10.0)), &[], &[A::Float64])
            .kernel
            .expect("compiles");
        let a = shared(&spec, &[true]).unwrap();
        let b = shared(&spec, &[true]).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one compilation for equal specs");
        let other = Split::new(Some(&gt(11.0)), &[], &[A::Float64])
            .kernel
            .expect("compiles");
        let c = shared(&other, &[true]).unwrap();
        assert!(
            !Arc::ptr_eq(&a, &c),
            "a different constant is different code"
        );
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert!(
            weak.upgrade().is_none(),
            "the code is freed with its last user"
        );
        let again = shared(&spec, &[true]).unwrap();
        let input: ArrayRef = Arc::new(Float64Array::from(vec![Some(5.0), None, Some(50.0)]));
        let out = again.run(&[input], 3).unwrap();
        assert_eq!(out.selected, 1);
        assert_eq!(
            out.selection.unwrap().iter().collect::<Vec<_>>(),
            vec![false, false, true]
        );
    }

    #[test]
    fn inputs_that_do_not_match_the_compiled_code_are_refused_not_read() {
        let spec = Split::new(Some(&gt(1.0)), &[], &[A::Float64])
            .kernel
            .expect("compiles");
        let not_null = Kernel::compile(&spec, &[false]).unwrap();
        let with_nulls: ArrayRef = Arc::new(Float64Array::from(vec![Some(5.0), None]));
        let strings: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
        for (inputs, rows) in [
            (vec![with_nulls.clone()], 2),
            (vec![strings], 2),
            (vec![with_nulls.clone()], 3),
            (vec![], 2),
        ] {
            assert!(matches!(
                not_null.run(&inputs, rows),
                Err(JitError::Input(_))
            ));
        }
        let nullable = Kernel::compile(&spec, &[true]).unwrap();
        let sliced = with_nulls.slice(1, 1);
        let out = nullable.run(&[sliced], 1).unwrap();
        assert_eq!(out.selected, 0);
        assert!(out.columns.is_empty());
        let _ = out.selection.map(|s| s.len());
        let doubled = Split::new(
            None,
            &[Expr {
                kind: ExprKind::Binary {
                    op: BinaryOp::Multiply,
                    left: Box::new(Expr::column(0, DataType::Double, true)),
                    right: Box::new(Expr::literal(Literal::float(2.0), DataType::Double)),
                },
                data_type: DataType::Double,
                nullable: true,
            }],
            &[A::Float64],
        );
        let k = Kernel::compile(&doubled.kernel.unwrap(), &[true]).unwrap();
        let out = k.run(&[with_nulls.slice(0, 2)], 2).unwrap();
        let values = out.columns[0].as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!(values.iter().collect::<Vec<_>>(), vec![Some(10.0), None]);
    }
}

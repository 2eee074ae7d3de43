//! The Cranelift JIT of fsql's expression IR.
//!
//! An operator's filter and output expressions are split ([`Split`]) into what compiled code
//! computes and what the interpreter computes first (function calls, `LIKE`, DECIMAL...). The
//! compiled part becomes one native function ([`Kernel`]) that loops over a batch's rows, reads
//! Arrow values and validity bitmaps directly, evaluates the filter and writes the outputs of the
//! rows that pass. The interpreter (`fsql-runtime`'s `eval`) is the reference: results are equal
//! bit for bit, which the runtime's differential tests check on generated expressions.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
//! use arrow::datatypes::{DataType as A, Int64Type};
//! use fsql_jit::{Kernels, Split};
//! use fsql_plan::{BinaryOp, DataType, Expr, ExprKind, Literal};
//!
//! let x = Expr::column(0, DataType::BigInt, true);
//! let times_two = Expr {
//!     kind: ExprKind::Binary {
//!         op: BinaryOp::Multiply,
//!         left: Box::new(x.clone()),
//!         right: Box::new(Expr::literal(Literal::Int(2), DataType::BigInt)),
//!     },
//!     data_type: DataType::BigInt,
//!     nullable: true,
//! };
//! let split = Split::new(None, &[times_two], &[A::Int64]);
//! let mut kernels = Kernels::new(split.kernel.unwrap());
//! let input: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(21)]));
//! let kernel = kernels.for_inputs(&[input.clone()]).unwrap();
//! let out = kernel.run(&[input], 3).unwrap();
//! let doubled = out.columns[0].as_primitive::<Int64Type>();
//! assert_eq!(doubled.iter().collect::<Vec<_>>(), vec![Some(2), None, Some(42)]);
//! ```

mod codegen;
mod helpers;
mod kernel;
mod like;
mod phys;
mod split;
mod variants;

pub use codegen::host_isa;
pub use kernel::{Kernel, KernelOutput};
pub use split::{KernelSpec, Part, Slot, Split};
pub use variants::Kernels;

/// Why an expression could not be compiled or a kernel not run. Callers fall back to the
/// interpreter on any of these; none is a wrong result.
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    /// The expression uses something compiled code does not implement.
    #[error("not compiled: {0}")]
    Unsupported(String),
    /// Cranelift failed (a bug in the code generator, reported rather than hidden).
    #[error("code generation failed: {0}")]
    Codegen(String),
    /// A row failed where the interpreter reports an error (a DECIMAL sum beyond `i128`, say):
    /// the interpreter must compute this batch, giving the reference result or error.
    #[error("a row failed in compiled code")]
    RowFailed,
    /// The inputs given to a kernel are not those it was compiled for.
    #[error("kernel input mismatch: {0}")]
    Input(String),
}

//! Conditional and NULL-handling functions: COALESCE, NULLIF, IF, IFNULL.

use std::sync::Arc;

use arrow::array::{ArrayRef, new_null_array};
use arrow::compute::kernels::cmp::eq;
use arrow::compute::kernels::zip::zip;
use arrow::compute::{is_not_null, nullif as arrow_nullif};
use arrow::datatypes::DataType;

use crate::args::{arity, arrow_err, boolean, cast_to, common_type, invalid, rows};
use crate::{Function, KernelError, Signature};

pub(crate) fn register(out: &mut Vec<Function>) {
    out.push(Function {
        name: "coalesce",
        doc: "COALESCE(x1, x2, ...): the first argument that is not NULL (NULL if all are).",
        signature: Signature::VariadicCommon { min: 1 },
        return_type: common,
        kernel: coalesce,
        scalar: None,
    });
    out.push(Function {
        name: "ifnull",
        doc: "IFNULL(x, y): x if it is not NULL, else y.",
        signature: Signature::VariadicCommon { min: 2 },
        return_type: |types| {
            if types.len() != 2 {
                return Err(format!("expects 2 arguments, got {}", types.len()));
            }
            common(types)
        },
        kernel: ifnull,
        scalar: None,
    });
    out.push(Function {
        name: "nullif",
        doc: "NULLIF(x, y): NULL if x equals y, else x (of x's type).",
        signature: Signature::Any(2),
        return_type: nullif_type,
        kernel: nullif,
        scalar: None,
    });
    out.push(Function {
        name: "if",
        doc: "IF(cond, a, b): a if cond is TRUE, else b (also when cond is NULL); a and b are widened to a \
              common type.",
        signature: Signature::Any(3),
        return_type: if_type,
        kernel: if_kernel,
        scalar: None,
    });
}

fn common(types: &[DataType]) -> Result<DataType, String> {
    if types.is_empty() {
        return Err("expects at least 1 argument".into());
    }
    common_type(types)
}

fn nullif_type(types: &[DataType]) -> Result<DataType, String> {
    match types {
        [a, b] => {
            common_type(types)?;
            Ok(if a == &DataType::Null {
                b.clone()
            } else {
                a.clone()
            })
        }
        _ => Err(format!("expects 2 arguments, got {}", types.len())),
    }
}

fn if_type(types: &[DataType]) -> Result<DataType, String> {
    match types {
        [c, a, b] => {
            if !matches!(c, DataType::Boolean | DataType::Null) {
                return Err(format!("the condition must be BOOLEAN, got {c}"));
            }
            common_type(&[a.clone(), b.clone()])
        }
        _ => Err(format!("expects 3 arguments, got {}", types.len())),
    }
}

fn types_of(args: &[ArrayRef]) -> Vec<DataType> {
    args.iter().map(|a| a.data_type().clone()).collect()
}

/// The first non-NULL value per row of `values`, all of type `t`.
fn first_non_null(
    function: &'static str,
    values: &[ArrayRef],
    t: &DataType,
    n: usize,
) -> Result<ArrayRef, KernelError> {
    if t == &DataType::Null {
        return Ok(new_null_array(t, n));
    }
    let cast = values
        .iter()
        .map(|a| cast_to(function, a, t))
        .collect::<Result<Vec<_>, _>>()?;
    let Some((last, rest)) = cast.split_last() else {
        return Err(KernelError::Arity {
            function,
            expected: "at least 1".into(),
            got: 0,
        });
    };
    let mut result = Arc::clone(last);
    for v in rest.iter().rev() {
        let present = is_not_null(v.as_ref()).map_err(arrow_err(function))?;
        result = zip(&present, v, &result).map_err(arrow_err(function))?;
    }
    Ok(result)
}

fn coalesce(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "coalesce";
    if args.is_empty() {
        return Err(KernelError::Arity {
            function: F,
            expected: "at least 1".into(),
            got: 0,
        });
    }
    rows(F, args, n)?;
    let t = common(&types_of(args)).map_err(|m| invalid(F, m))?;
    first_non_null(F, args, &t, n)
}

fn ifnull(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "ifnull";
    arity(F, args, &[2])?;
    rows(F, args, n)?;
    let t = common(&types_of(args)).map_err(|m| invalid(F, m))?;
    first_non_null(F, args, &t, n)
}

fn nullif(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "nullif";
    arity(F, args, &[2])?;
    rows(F, args, n)?;
    let types = types_of(args);
    let out_type = nullif_type(&types).map_err(|m| invalid(F, m))?;
    let cmp_type = common_type(&types).map_err(|m| invalid(F, m))?;
    if out_type == DataType::Null
        || cmp_type == DataType::Null
        || args[0].data_type() == &DataType::Null
    {
        return Ok(new_null_array(&out_type, n));
    }
    let (a, b) = (
        cast_to(F, &args[0], &cmp_type)?,
        cast_to(F, &args[1], &cmp_type)?,
    );
    let equal = eq(&a, &b).map_err(arrow_err(F))?;
    arrow_nullif(args[0].as_ref(), &equal).map_err(arrow_err(F))
}

fn if_kernel(args: &[ArrayRef], n: usize) -> Result<ArrayRef, KernelError> {
    const F: &str = "if";
    arity(F, args, &[3])?;
    rows(F, args, n)?;
    let cond = boolean(F, args, 0)?;
    let t = if_type(&types_of(args)).map_err(|m| invalid(F, m))?;
    if t == DataType::Null {
        return Ok(new_null_array(&t, n));
    }
    let (a, b) = (cast_to(F, &args[1], &t)?, cast_to(F, &args[2], &t)?);
    // A NULL condition selects `b`, like CASE WHEN.
    zip(&cond, &a, &b).map_err(arrow_err(F))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        Array, AsArray, BooleanArray, Decimal128Array, Int32Array, Int64Array, StringArray,
    };
    use arrow::datatypes::{Decimal128Type, Int32Type, Int64Type};

    fn call(name: &str, args: Vec<ArrayRef>) -> Result<ArrayRef, KernelError> {
        let f = crate::lookup(name).expect("function exists");
        let n = args.first().map_or(1, |a| a.len());
        (f.kernel)(&args, n)
    }

    fn i64s(v: &[Option<i64>]) -> ArrayRef {
        Arc::new(Int64Array::from(v.to_vec()))
    }

    fn i32s(v: &[Option<i32>]) -> ArrayRef {
        Arc::new(Int32Array::from(v.to_vec()))
    }

    fn ints(a: &ArrayRef) -> Vec<Option<i64>> {
        a.as_primitive::<Int64Type>().iter().collect()
    }

    fn nulls(n: usize) -> ArrayRef {
        new_null_array(&DataType::Null, n)
    }

    #[test]
    fn coalesce_picks_first_non_null() {
        let out = call(
            "coalesce",
            vec![
                i64s(&[None, Some(1), None]),
                i32s(&[Some(2), Some(3), None]),
                i64s(&[Some(9), Some(9), None]),
            ],
        )
        .expect("coalesce");
        assert_eq!(out.data_type(), &DataType::Int64);
        assert_eq!(ints(&out), vec![Some(2), Some(1), None]);
        let out = call("coalesce", vec![nulls(2), i64s(&[Some(4), None])]).expect("coalesce");
        assert_eq!(ints(&out), vec![Some(4), None]);
        let out = call("coalesce", vec![nulls(2)]).expect("coalesce");
        assert_eq!(out.data_type(), &DataType::Null);
        assert_eq!(out.logical_null_count(), 2);
        assert!(call("coalesce", vec![]).is_err());
        let s: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
        assert!(call("coalesce", vec![i64s(&[None]), s]).is_err());
        assert_eq!(
            common(&[DataType::Int32, DataType::Null]),
            Ok(DataType::Int32)
        );
    }

    #[test]
    fn ifnull_two_arguments() {
        let out = call(
            "ifnull",
            vec![i32s(&[None, Some(1)]), i64s(&[Some(5), Some(5)])],
        )
        .expect("ifnull");
        assert_eq!(ints(&out), vec![Some(5), Some(1)]);
        assert!(call("ifnull", vec![i32s(&[None])]).is_err());
        let f = crate::lookup("ifnull").expect("ifnull");
        assert!((f.return_type)(&[DataType::Int32]).is_err());
        assert_eq!(
            (f.return_type)(&[DataType::Int32, DataType::Int64]),
            Ok(DataType::Int64)
        );
    }

    #[test]
    fn nullif_keeps_first_type() {
        let out = call(
            "nullif",
            vec![
                i32s(&[Some(5), Some(4), None]),
                i64s(&[Some(5), Some(5), Some(5)]),
            ],
        )
        .expect("nullif");
        assert_eq!(out.data_type(), &DataType::Int32);
        assert_eq!(
            out.as_primitive::<Int32Type>().iter().collect::<Vec<_>>(),
            vec![None, Some(4), None]
        );
        let out = call("nullif", vec![i64s(&[Some(5)]), nulls(1)]).expect("nullif");
        assert_eq!(ints(&out), vec![Some(5)]);
        let out = call("nullif", vec![nulls(1), i64s(&[Some(5)])]).expect("nullif");
        assert_eq!(out.data_type(), &DataType::Int64);
        assert!(out.is_null(0));
        let s: ArrayRef = Arc::new(StringArray::from(vec!["a"]));
        assert!(call("nullif", vec![i64s(&[Some(1)]), s]).is_err());
        assert!(call("nullif", vec![i64s(&[Some(1)])]).is_err());
    }

    #[test]
    fn if_selects_and_widens() {
        let cond: ArrayRef = Arc::new(BooleanArray::from(vec![Some(true), Some(false), None]));
        let out = call(
            "if",
            vec![
                Arc::clone(&cond),
                i32s(&[Some(1), Some(1), Some(1)]),
                i64s(&[Some(2), Some(2), Some(2)]),
            ],
        )
        .expect("if");
        assert_eq!(out.data_type(), &DataType::Int64);
        assert_eq!(ints(&out), vec![Some(1), Some(2), Some(2)]);
        let d: ArrayRef = Arc::new(
            Decimal128Array::from(vec![25, 25, 25])
                .with_precision_and_scale(2, 1)
                .expect("decimal"),
        );
        let out = call(
            "if",
            vec![Arc::clone(&cond), i32s(&[Some(1), None, Some(1)]), d],
        )
        .expect("if");
        assert_eq!(out.data_type(), &DataType::Decimal128(11, 1));
        assert_eq!(
            out.as_primitive::<Decimal128Type>()
                .iter()
                .collect::<Vec<_>>(),
            vec![Some(10), Some(25), Some(25)]
        );
        let out = call(
            "if",
            vec![
                Arc::clone(&cond),
                nulls(3),
                i64s(&[Some(7), Some(7), Some(7)]),
            ],
        )
        .expect("if");
        assert_eq!(ints(&out), vec![None, Some(7), Some(7)]);
        assert!(
            call(
                "if",
                vec![i64s(&[Some(1)]), i64s(&[Some(1)]), i64s(&[Some(1)])]
            )
            .is_err()
        );
        assert!(if_type(&[DataType::Int32, DataType::Int32, DataType::Int32]).is_err());
        assert!(if_type(&[DataType::Boolean, DataType::Utf8, DataType::Int32]).is_err());
        assert_eq!(
            if_type(&[DataType::Null, DataType::Utf8, DataType::Utf8]),
            Ok(DataType::Utf8)
        );
    }
}

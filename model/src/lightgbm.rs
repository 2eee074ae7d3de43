//! The reference scorer: the LightGBM library itself (4.7, vendored by `lightgbm3-sys`), through
//! its C API. Rows are passed as one row-major f64 matrix per batch; results are written into the
//! caller's buffer, so scoring allocates nothing per row.

use std::ffi::{CStr, CString, c_void};
use std::os::raw::c_int;

use lightgbm3_sys as sys;

use crate::ModelError;
use crate::ensemble::Ensemble;

const DTYPE_FLOAT64: c_int = 1;

/// What a prediction returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// The summed tree outputs, before the objective's transform.
    Raw,
    /// The transformed prediction (probability for binary and multiclass).
    Transformed,
}

impl Output {
    fn predict_type(self) -> c_int {
        match self {
            Output::Raw => 1,
            Output::Transformed => 0,
        }
    }
}

/// A LightGBM booster loaded from a model's text.
pub struct LightGbm {
    handle: sys::BoosterHandle,
    features: usize,
    classes: usize,
    /// Single-row prediction configs (`PredictForMatSingleRowFast`), one per output kind,
    /// created on first use.
    fast: [Option<sys::FastConfigHandle>; 2],
}

// SAFETY: a booster handle is an owned heap object of the LightGBM library, which is usable from any
// thread; `LightGbm` is not `Sync`, so it is never used by two threads at once.
unsafe impl Send for LightGbm {}

fn last_error() -> String {
    // SAFETY: LGBM_GetLastError returns a pointer to a thread-local NUL-terminated buffer.
    unsafe { CStr::from_ptr(sys::LGBM_GetLastError()) }
        .to_string_lossy()
        .into_owned()
}

fn check(code: c_int) -> Result<(), ModelError> {
    if code == 0 {
        Ok(())
    } else {
        Err(ModelError::LightGbm(last_error()))
    }
}

/// LightGBM logs to stdout, errors included (which the C API also returns): fsql's output
/// streams are its own, so the library's log goes nowhere.
fn silence_log() {
    extern "C" fn discard(_: *const std::os::raw::c_char) {}
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: `discard` is a valid callback for the lifetime of the process.
    ONCE.call_once(|| unsafe {
        sys::LGBM_RegisterLogCallback(Some(discard));
    });
}

impl LightGbm {
    /// Loads `ensemble` into LightGBM, as the canonical text [`crate::text_format::render`] writes
    /// (never a file's own text: LightGBM's loader trusts what it reads).
    pub fn load(ensemble: &Ensemble) -> Result<LightGbm, ModelError> {
        silence_log();
        let text = CString::new(crate::text_format::render(ensemble))
            .map_err(|_| ModelError::format(0, "the model text contains a NUL byte"))?;
        let mut handle: sys::BoosterHandle = std::ptr::null_mut();
        let mut iterations: c_int = 0;
        // SAFETY: `text` is NUL-terminated and outlives the call; outputs are valid pointers.
        check(unsafe {
            sys::LGBM_BoosterLoadModelFromString(text.as_ptr(), &mut iterations, &mut handle)
        })?;
        let mut booster = LightGbm {
            handle,
            features: 0,
            classes: 0,
            fast: [None, None],
        };
        let (mut features, mut classes): (c_int, c_int) = (0, 0);
        // SAFETY: `handle` is a live booster; outputs are valid pointers.
        check(unsafe { sys::LGBM_BoosterGetNumFeature(booster.handle, &mut features) })?;
        check(unsafe { sys::LGBM_BoosterGetNumClasses(booster.handle, &mut classes) })?;
        booster.features = usize::try_from(features).unwrap_or(0);
        booster.classes = usize::try_from(classes).unwrap_or(0);
        if booster.features == 0 || booster.classes == 0 {
            return Err(ModelError::LightGbm(
                "LightGBM loaded a model with no features or classes".into(),
            ));
        }
        Ok(booster)
    }

    /// The number of input features.
    pub fn features(&self) -> usize {
        self.features
    }

    /// The number of outputs per row.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Scores `rows` (row-major, `features()` values per row) into `out` (`classes()` values per
    /// row).
    pub fn predict(
        &mut self,
        rows: &[f64],
        output: Output,
        out: &mut [f64],
    ) -> Result<(), ModelError> {
        let n = crate::row_count(rows, self.features, out, self.classes)?;
        if n == 0 {
            return Ok(());
        }
        if n == 1 {
            return self.predict_one(rows, output, out);
        }
        let nrow = i32::try_from(n).map_err(|_| ModelError::LightGbm("batch too large".into()))?;
        let mut out_len: i64 = 0;
        // SAFETY: `rows` holds nrow × features f64 values, `out` has room for nrow × classes
        // results (checked above); the parameter string is NUL-terminated.
        check(unsafe {
            sys::LGBM_BoosterPredictForMat(
                self.handle,
                rows.as_ptr() as *const c_void,
                DTYPE_FLOAT64,
                nrow,
                self.features as i32,
                1,
                output.predict_type(),
                0,
                -1,
                c"".as_ptr(),
                &mut out_len,
                out.as_mut_ptr(),
            )
        })
    }

    /// One row through LightGBM's fastest single-row path (`PredictForMatSingleRowFast`).
    fn predict_one(
        &mut self,
        row: &[f64],
        output: Output,
        out: &mut [f64],
    ) -> Result<(), ModelError> {
        let slot = output.predict_type() as usize;
        let config = match self.fast[slot] {
            Some(c) => c,
            None => {
                let mut config: sys::FastConfigHandle = std::ptr::null_mut();
                // SAFETY: `handle` is a live booster; the parameter string is NUL-terminated.
                check(unsafe {
                    sys::LGBM_BoosterPredictForMatSingleRowFastInit(
                        self.handle,
                        output.predict_type(),
                        0,
                        -1,
                        DTYPE_FLOAT64,
                        self.features as i32,
                        c"".as_ptr(),
                        &mut config,
                    )
                })?;
                self.fast[slot] = Some(config);
                config
            }
        };
        let mut out_len: i64 = 0;
        // SAFETY: `row` holds `features` values and `out` room for `classes` results (checked by
        // the caller), `config` was made for this booster and this row width.
        check(unsafe {
            sys::LGBM_BoosterPredictForMatSingleRowFast(
                config,
                row.as_ptr() as *const c_void,
                &mut out_len,
                out.as_mut_ptr(),
            )
        })
    }
}

impl Drop for LightGbm {
    fn drop(&mut self) {
        // SAFETY: the configs and the booster were created by LightGBM and are freed once.
        unsafe {
            for config in self.fast.iter().flatten() {
                sys::LGBM_FastConfigFree(*config);
            }
            sys::LGBM_BoosterFree(self.handle);
        }
    }
}

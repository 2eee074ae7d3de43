//! The compiled variants of one kernel spec, chosen per batch by which slots hold NULLs: a column
//! without NULLs in this batch is read without its validity bitmap, which is most of the work of
//! a simple comparison.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef};

use crate::JitError;
use crate::kernel::{Kernel, shared};
use crate::split::KernelSpec;

/// At most this many null patterns get their own code; others use the all-nullable variant.
const MAX_VARIANTS: usize = 4;

/// Kernels for one spec, compiled on first use of each null pattern.
#[derive(Debug)]
pub struct Kernels {
    spec: KernelSpec,
    variants: Vec<(Vec<bool>, Arc<Kernel>)>,
}

impl Kernels {
    /// Nothing is compiled until the first batch.
    pub fn new(spec: KernelSpec) -> Kernels {
        Kernels {
            spec,
            variants: Vec::new(),
        }
    }

    pub fn spec(&self) -> &KernelSpec {
        &self.spec
    }

    /// The kernel for inputs `slots`: the variant for their null pattern, compiled if new.
    pub fn for_inputs(&mut self, slots: &[ArrayRef]) -> Result<Arc<Kernel>, JitError> {
        let mut nullable: Vec<bool> = slots.iter().map(|a| a.null_count() > 0).collect();
        nullable.resize(self.spec.slots.len(), true);
        if let Some((_, k)) = self.variants.iter().find(|(n, _)| *n == nullable) {
            return Ok(k.clone());
        }
        if self.variants.len() >= MAX_VARIANTS {
            nullable.iter_mut().for_each(|n| *n = true);
            if let Some((_, k)) = self.variants.iter().find(|(n, _)| *n == nullable) {
                return Ok(k.clone());
            }
        }
        let kernel = shared(&self.spec, &nullable)?;
        self.variants.push((nullable, kernel.clone()));
        Ok(kernel)
    }
}

//! An operator's checkpoint state as it leaves the pipeline: parts written one after the other
//! into its state file, some encoded while the pipeline waited ([`StatePart::Ready`]), others
//! encoded later by the checkpoint's writer thread from a view of the state frozen when the
//! checkpoint was taken ([`StatePart::Deferred`]), while the pipeline goes on.
//!
//! The parts' bytes concatenated are exactly what [`crate::operator::Operator::snapshot`] writes,
//! so restores read one encoding whichever way it was taken.

use super::codec::StateError;

/// Encodes a deferred part on the checkpoint's writer thread, handing its bytes to the sink it
/// is given in pieces (so a large part need not be held in memory whole).
pub type DeferredPart = Box<dyn FnOnce(&mut dyn FnMut(&[u8])) -> Result<(), StateError> + Send>;

/// One part of a state file.
pub enum StatePart {
    /// Bytes encoded when the checkpoint was taken.
    Ready(Vec<u8>),
    /// Bytes encoded later, from state frozen when the checkpoint was taken.
    Deferred(DeferredPart),
}

/// An operator's state for one checkpoint: its parts, in file order.
#[derive(Default)]
pub struct StateSnapshot {
    parts: Vec<StatePart>,
}

impl StateSnapshot {
    /// A snapshot of bytes encoded already.
    pub fn ready(bytes: Vec<u8>) -> StateSnapshot {
        StateSnapshot {
            parts: vec![StatePart::Ready(bytes)],
        }
    }

    /// Appends bytes encoded already.
    pub fn push_ready(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.parts.push(StatePart::Ready(bytes));
        }
    }

    /// Appends a part the writer thread encodes.
    pub fn push_deferred(
        &mut self,
        part: impl FnOnce(&mut dyn FnMut(&[u8])) -> Result<(), StateError> + Send + 'static,
    ) {
        self.parts.push(StatePart::Deferred(Box::new(part)));
    }

    /// Whether some part is still to be encoded.
    pub fn is_deferred(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, StatePart::Deferred(_)))
    }

    /// Encodes the deferred parts and hands every part's bytes to `out`, in order; `fail` turns
    /// a part that could not be encoded into `out`'s error. After `out` failed once it is not
    /// called again, and its first error is returned.
    pub fn write_to<E>(
        self,
        mut out: impl FnMut(&[u8]) -> Result<(), E>,
        fail: impl Fn(StateError) -> E,
    ) -> Result<(), E> {
        let mut error = None;
        let mut sink = |bytes: &[u8]| {
            if error.is_none()
                && let Err(e) = out(bytes)
            {
                error = Some(e);
            }
        };
        for part in self.parts {
            match part {
                StatePart::Ready(bytes) => sink(&bytes),
                StatePart::Deferred(encode) => encode(&mut sink).map_err(&fail)?,
            }
        }
        error.map_or(Ok(()), Err)
    }

    /// The whole state file's bytes (the deferred parts encoded on this thread).
    pub fn into_bytes(self) -> Result<Vec<u8>, StateError> {
        let mut all = Vec::new();
        self.write_to(
            |b: &[u8]| {
                all.extend_from_slice(b);
                Ok(())
            },
            |e| e,
        )?;
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_written_in_order_and_a_failing_part_fails_the_file() {
        let mut s = StateSnapshot::ready(vec![1, 2]);
        s.push_deferred(|out| {
            out(&[3]);
            Ok(())
        });
        s.push_ready(vec![]);
        s.push_ready(vec![4]);
        assert!(s.is_deferred());
        assert_eq!(s.into_bytes().unwrap(), [1, 2, 3, 4]);
        let mut s = StateSnapshot::ready(vec![1]);
        s.push_deferred(|_| Err(StateError("frozen state was dropped".into())));
        let e = s.into_bytes().unwrap_err();
        assert_eq!(e.0, "frozen state was dropped");
    }
}

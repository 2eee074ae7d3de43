//! Operator state.
//!
//! Stateful operators (OVER, the window aggregations, MATCH_RECOGNIZE) keep their per-key state
//! in [`KeyedState`] tables: key bytes → a dense id → the key's value, plus whatever the operator
//! stores flat in vectors indexed by that id. That table is the state interface: the in-memory
//! backend (Flink's `hashmap`, the default) is the table itself, every entry resident; the RocksDB
//! backend ([`StateBackend`]) keeps the same table as a bounded resident set over a key range of
//! one RocksDB instance per run.
//! Checkpoints snapshot each operator's state in the byte encoding of [`codec`].
//!
//! Memory is measured per live (key, window) entry by `benches/state_size.rs`.

mod backend;
mod chunked;
pub mod codec;
mod keyed;
pub(crate) mod row_codec;
pub mod snapshot;

pub use backend::{RocksCheckpoint, StateBackend};
pub(crate) use keyed::{KeyedState, SharedEncode, ValueCodec, prefetch};
pub use snapshot::{StatePart, StateSnapshot};

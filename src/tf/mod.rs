//! Reading TensorFlow checkpoints without TensorFlow: the tensor-bundle format written by
//! `tf.compat.v1.train.Saver` (`PREFIX.index` + `PREFIX.data-0000k-of-0000n`), which holds the
//! released selfie2anime weights (docs/tensorflow.md).
//!
//! - `PREFIX.index` is a sorted string table ([`table`]): the empty key maps to a
//!   `BundleHeaderProto`, every other key (a variable name) to a `BundleEntryProto` ([`proto`]).
//! - Each entry says which data shard holds the tensor's bytes, where, how many, and their
//!   masked CRC-32C ([`crc32c`]); tensors are read one at a time ([`bundle`]).

pub mod bundle;
pub mod convert;
pub mod crc32c;
pub mod proto;
pub mod table;

pub use bundle::{resolve_prefix, TfCheckpoint, TfEntry};

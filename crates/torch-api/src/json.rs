//! How the typed fields that used to be `serde_json::Value` keep their bytes.

use serde::{Serialize, Serializer};

/// Serialises `v` through a JSON value, so that object keys come out sorted
/// at every level, as they did when the field was a `serde_json::Value`
/// (read from the store's JSON, or converted from the core type): the
/// bytes on the wire, and in the CLI's `--json` output, stay the same.
pub(crate) fn sorted<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(v)
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}

//! How records are encoded at rest and in Raft entries: postcard, compact and fast, with no
//! JSON anywhere on the hot path.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::StorageError;

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StorageError> {
    Ok(postcard::to_stdvec(value)?)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    Ok(postcard::from_bytes(bytes)?)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::state::{Limits, NewTask, TaskOutput, TaskSpec};

    /// The records as they were before their byte fields were marked `serde_bytes`.
    #[derive(Serialize, Deserialize)]
    struct OldOutput {
        output: Vec<u8>,
        stderr: Vec<u8>,
    }

    /// Data dirs and snapshots written before keep reading: in postcard, a byte string and a
    /// sequence of u8 are the same bytes.
    #[test]
    fn byte_fields_encode_as_they_did_as_sequences() {
        let output: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let old = OldOutput { output: output.clone(), stderr: b"warning".to_vec() };
        let new = TaskOutput { output, stderr: b"warning".to_vec() };
        assert_eq!(encode(&old).unwrap(), encode(&new).unwrap());
        assert_eq!(decode::<TaskOutput>(&encode(&old).unwrap()).unwrap(), new);

        let spec = TaskSpec {
            module: wasmgrid_common::Digest::of(b"m"),
            limits: Limits { fuel: 1, memory: 2, timeout_ms: 3 },
            max_attempts: 3,
            priority: 0,
            args: vec![],
            env: vec![],
        };
        let task = NewTask { spec, input: vec![1, 2, 250] };
        let mut old_task = encode(&task.spec).unwrap();
        old_task.extend(encode(&vec![1u8, 2, 250]).unwrap());
        assert_eq!(encode(&task).unwrap(), old_task);
    }
}

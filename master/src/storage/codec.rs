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

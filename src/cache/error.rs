//! The errors of the cache block, each with the stable `code` JS code can test.
//!
//! Bad input (an option, a key, a tag) reuses the shared [`InvalidInput`]; the two failures
//! that are the cache's own are a directory held by another open cache (`ERR_CACHE_LOCKED`) and
//! a call on a closed cache (`ERR_CACHE_CLOSED`). Disk failures after construction are not
//! errors of a call: they are counted in the stats and the cache keeps serving from memory.

use std::fmt;

use crate::common::error::InvalidInput;

/// `code` of [`CacheError::Locked`].
pub const ERR_CACHE_LOCKED: &str = "ERR_CACHE_LOCKED";
/// `code` of [`CacheError::Closed`].
pub const ERR_CACHE_CLOSED: &str = "ERR_CACHE_CLOSED";
/// `code` of [`CacheError::Disk`].
pub const ERR_CACHE_DISK: &str = "ERR_CACHE_DISK";

/// Why a cache call failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheError {
    /// An option, key, tag or prefix is of the wrong type or out of range; the message names it.
    Invalid(InvalidInput),
    /// The directory is already in use by another open cache, in this process or another.
    Locked {
        /// The directory, as given.
        dir: String,
    },
    /// The cache was closed.
    Closed,
    /// The disk tier failed where a caller must be told: opening its database, or a flush that
    /// could not be made durable.
    Disk {
        /// What failed, naming `dir` when the directory is at fault.
        message: String,
    },
}

impl CacheError {
    /// The `code` property JS sees.
    pub fn code(&self) -> &'static str {
        match self {
            CacheError::Invalid(invalid) => invalid.code.as_str(),
            CacheError::Locked { .. } => ERR_CACHE_LOCKED,
            CacheError::Closed => ERR_CACHE_CLOSED,
            CacheError::Disk { .. } => ERR_CACHE_DISK,
        }
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Invalid(invalid) => f.write_str(&invalid.message),
            CacheError::Locked { dir } => write!(
                f,
                "dir \"{dir}\" is already in use by another open cache (in this process or another); close it first"
            ),
            CacheError::Closed => f.write_str("the cache is closed"),
            CacheError::Disk { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for CacheError {}

impl From<InvalidInput> for CacheError {
    fn from(invalid: InvalidInput) -> Self {
        CacheError::Invalid(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(
            CacheError::Locked { dir: "d".into() }.code(),
            "ERR_CACHE_LOCKED"
        );
        assert_eq!(CacheError::Closed.code(), "ERR_CACHE_CLOSED");
        let invalid = CacheError::from(InvalidInput::option_range("maxEntries must be ..."));
        assert_eq!(invalid.code(), "ERR_BULWARK_INVALID_OPTION");
        assert!(CacheError::Locked { dir: "/x".into() }
            .to_string()
            .contains("/x"));
    }
}

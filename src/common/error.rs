//! Error kinds shared by the blocks, each with the stable `code` JS code can test.
//!
//! Cores return these plain Rust values; `common::binding` turns them into JS errors in one
//! place, so every block reports bad input the same way.

use std::fmt;

/// The stable `code` of every error the package throws or rejects with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// An option passed to a constructor (or a limits object) is missing, of the wrong type or
    /// out of range.
    InvalidOption,
    /// An argument of a method call (a key, a cost, a duration) is of the wrong type or out of
    /// range.
    InvalidArgument,
    /// A request was refused by a rate limiter.
    RateLimited,
}

impl ErrorCode {
    /// The `code` property JS sees.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidOption => "ERR_BULWARK_INVALID_OPTION",
            ErrorCode::InvalidArgument => "ERR_BULWARK_INVALID_ARGUMENT",
            ErrorCode::RateLimited => "ERR_RATE_LIMITED",
        }
    }
}

/// Whether bad input is of the wrong type (`TypeError`) or out of range (`RangeError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidKind {
    /// Becomes a JS `TypeError`.
    Type,
    /// Becomes a JS `RangeError`.
    Range,
}

/// Bad input: which kind, which code, and a message that names the option or argument and the
/// value received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidInput {
    /// `TypeError` or `RangeError`.
    pub kind: InvalidKind,
    /// `ERR_BULWARK_INVALID_OPTION` or `ERR_BULWARK_INVALID_ARGUMENT`.
    pub code: ErrorCode,
    /// The full message.
    pub message: String,
}

impl InvalidInput {
    /// An option of the wrong type.
    pub fn option_type(message: impl Into<String>) -> Self {
        InvalidInput {
            kind: InvalidKind::Type,
            code: ErrorCode::InvalidOption,
            message: message.into(),
        }
    }

    /// An option out of range.
    pub fn option_range(message: impl Into<String>) -> Self {
        InvalidInput {
            kind: InvalidKind::Range,
            code: ErrorCode::InvalidOption,
            message: message.into(),
        }
    }

    /// An argument of the wrong type.
    pub fn argument_type(message: impl Into<String>) -> Self {
        InvalidInput {
            kind: InvalidKind::Type,
            code: ErrorCode::InvalidArgument,
            message: message.into(),
        }
    }

    /// An argument out of range.
    pub fn argument_range(message: impl Into<String>) -> Self {
        InvalidInput {
            kind: InvalidKind::Range,
            code: ErrorCode::InvalidArgument,
            message: message.into(),
        }
    }
}

impl fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InvalidInput {}

/// Formats a number the way JS prints it in messages (`NaN`, `Infinity`, `1.5`, `3`).
pub fn describe_number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        format!("{value}")
    }
}

/// Checks that `value` is a finite number above zero; `name` is the option's full path.
pub fn positive_finite(name: &str, value: f64) -> Result<f64, InvalidInput> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(InvalidInput::option_range(format!(
            "{name} must be a finite number greater than 0, received {}",
            describe_number(value)
        )))
    }
}

/// Checks that `value` is an integer of at least `min`; `name` is the option's full path.
pub fn integer_at_least(name: &str, value: f64, min: u64) -> Result<u64, InvalidInput> {
    if value.is_finite() && value.fract() == 0.0 && value >= min as f64 && value <= 2f64.powi(53) {
        Ok(value as u64)
    } else {
        Err(InvalidInput::option_range(format!(
            "{name} must be an integer >= {min}, received {}",
            describe_number(value)
        )))
    }
}

/// The message a panic carried (its payload as text, or an empty string when it was not text):
/// for the places that catch a panic from a dependency and report it as an error instead of
/// letting it unwind into Node, which aborts the process.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_described_as_js_prints_them() {
        assert_eq!(describe_number(f64::NAN), "NaN");
        assert_eq!(describe_number(f64::INFINITY), "Infinity");
        assert_eq!(describe_number(f64::NEG_INFINITY), "-Infinity");
        assert_eq!(describe_number(3.0), "3");
        assert_eq!(describe_number(1.5), "1.5");
    }

    #[test]
    fn validators_name_the_option_and_the_value() {
        let err = positive_finite("capacity", 0.0).unwrap_err();
        assert_eq!(err.kind, InvalidKind::Range);
        assert_eq!(err.code.as_str(), "ERR_BULWARK_INVALID_OPTION");
        assert!(err.message.contains("capacity") && err.message.contains('0'));
        assert!(positive_finite("x", f64::NAN).is_err());
        assert!(positive_finite("x", f64::INFINITY).is_err());
        assert_eq!(positive_finite("x", 2.5), Ok(2.5));
        assert!(integer_at_least("maxKeys", 1.5, 1).is_err());
        assert!(integer_at_least("maxKeys", 0.0, 1).is_err());
        assert_eq!(integer_at_least("maxKeys", 7.0, 1), Ok(7));
    }
}

//! Errors on their way to JavaScript. Every thrown error carries a stable `code` (see src/errors.ts):
//! frame faults are `MG_ERR_CODEC`, misuse of the addon or an OS failure is `MG_ERR_NATIVE`.

pub const CODE_CODEC: &str = "MG_ERR_CODEC";
pub const CODE_NATIVE: &str = "MG_ERR_NATIVE";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Error,
    TypeError,
    RangeError,
}

#[derive(Debug)]
pub enum Fail {
    /// A JavaScript exception is already pending (a getter threw, …): let it propagate as is.
    Pending,
    Throw {
        kind: Kind,
        code: &'static str,
        message: String,
        /// For OS failures, Node's usual `syscall` and (negative) `errno` properties.
        os: Option<(&'static str, i32)>,
    },
}

impl Fail {
    pub fn new(kind: Kind, code: &'static str, message: impl Into<String>) -> Fail {
        Fail::Throw {
            kind,
            code,
            message: message.into(),
            os: None,
        }
    }

    /// A malformed, truncated or tampered frame (message worded like src/codec/frame.ts).
    pub fn codec(reason: impl std::fmt::Display) -> Fail {
        Fail::new(Kind::Error, CODE_CODEC, format!("frame: {reason}"))
    }

    /// An OS call failed: `errno` is the positive errno value.
    pub fn os(syscall: &'static str, errno: i32, message: impl Into<String>) -> Fail {
        Fail::Throw {
            kind: Kind::Error,
            code: CODE_NATIVE,
            message: message.into(),
            os: Some((syscall, -errno)),
        }
    }
}

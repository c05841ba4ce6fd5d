//! Errors of the filesystem core, and the one place where they become errno
//! values. An `Error` carries the errno the caller gets, a message written
//! for users (what logs and `err` show), and the error it came from.

use crate::engine::IoError;
use crate::initiator::{DeviceError, LinkError};
use crate::wire::AoeError;

/// An errno value (`libc::EIO`, ...).
pub type Errno = i32;

/// An error of a filesystem operation.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    errno: Errno,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub fn new(errno: Errno, message: impl Into<String>) -> Error {
        Error { errno, message: message.into(), source: None }
    }

    /// The errno the caller gets.
    pub fn errno(&self) -> Errno {
        self.errno
    }
}

/// `fs_err!(libc::EINVAL, "bad name {name}")`: an [`Error`] with a formatted message.
#[macro_export]
macro_rules! fs_err {
    ($errno:expr, $($arg:tt)*) => {
        $crate::blockfs::Error::new($errno, format!($($arg)*))
    };
}

/// Every failed exchange with a target is an I/O error to the caller, as
/// with the kernel driver; what went wrong is in the message and on `err`.
impl From<IoError> for Error {
    fn from(e: IoError) -> Error {
        Error { errno: libc::EIO, message: e.to_string(), source: Some(Box::new(e)) }
    }
}

/// Control-file and attribute errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtlError {
    /// Malformed input, unknown interface, unknown command.
    #[error("{0}")]
    Invalid(String),
    /// The initiator did not forget the device, or a command to it failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("write too long")]
    TooLong,
    #[error("not writable")]
    NotWritable,
    /// The target answered a `TargetCommand` (config, masks, reserve) with
    /// an AoE error.
    #[error("target refused: AoE error {}: {}", .0.to_u8(), .0.describe())]
    Refused(AoeError),
    /// A config string was not set: the target holds another one (AoE error 4).
    #[error("the target holds another config string; a leading ! (aoefs config --force) overrides it")]
    ConfigPresent,
    /// MAC mask list full.
    #[error("MAC mask list full")]
    ListFull,
}

impl CtlError {
    pub fn errno(&self) -> Errno {
        match self {
            CtlError::Invalid(_) => libc::EINVAL,
            CtlError::Device(DeviceError::NoSuchDevice) => libc::ENXIO,
            CtlError::Device(DeviceError::Busy) | CtlError::ConfigPresent => libc::EBUSY,
            CtlError::Device(DeviceError::Timeout) => libc::ETIMEDOUT,
            CtlError::TooLong => libc::EFBIG,
            CtlError::NotWritable => libc::EBADF,
            CtlError::Refused(AoeError::ConfigStringPresent) | CtlError::Refused(AoeError::TargetReserved) => {
                libc::EBUSY
            }
            CtlError::Refused(AoeError::BadArgument) | CtlError::Refused(AoeError::BadCommand) => libc::EINVAL,
            CtlError::Refused(_) => libc::EIO,
            CtlError::ListFull => libc::ENOSPC,
        }
    }
}

impl From<CtlError> for Error {
    fn from(e: CtlError) -> Error {
        Error { errno: e.errno(), message: e.to_string(), source: Some(Box::new(e)) }
    }
}

impl From<LinkError> for CtlError {
    fn from(e: LinkError) -> CtlError {
        CtlError::Invalid(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_for_users_and_errnos_follow_the_driver() {
        let e = Error::from(CtlError::Invalid("bad MAC \"zz\"".into()));
        assert_eq!((e.errno(), e.to_string().as_str()), (libc::EINVAL, "bad MAC \"zz\""));
        let e = Error::from(CtlError::Refused(AoeError::ConfigStringPresent));
        assert_eq!(
            (e.errno(), e.to_string().as_str()),
            (libc::EBUSY, "target refused: AoE error 4: config string present")
        );
        let e = Error::from(CtlError::ConfigPresent);
        assert_eq!(e.errno(), libc::EBUSY);
        assert!(e.to_string().contains("another config string") && e.to_string().contains("--force"));
        let e = Error::from(IoError::Dead);
        assert_eq!(e.errno(), libc::EIO);
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(fs_err!(libc::ENOSPC, "past the end at {}", 7).to_string(), "past the end at 7");
        assert_eq!(CtlError::from(DeviceError::Timeout).errno(), libc::ETIMEDOUT);
        assert_eq!(CtlError::from(DeviceError::Busy).errno(), libc::EBUSY);
    }
}

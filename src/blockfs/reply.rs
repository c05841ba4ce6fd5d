//! How the core answers the filesystem adapter: one callback per request,
//! called exactly once, possibly from another thread. A read is answered
//! with a borrowed slice, so data goes to FUSE straight from the buffer it
//! was received into.

use super::Error;

pub type ReadReply = Box<dyn for<'a> FnOnce(Result<&'a [u8], Error>) + Send>;
pub type WriteReply = Box<dyn FnOnce(Result<u32, Error>) + Send>;
pub type EmptyReply = Box<dyn FnOnce(Result<(), Error>) + Send>;

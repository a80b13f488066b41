//! The body type every request and response voxproxy makes carries, and its error type. The
//! ground floor: it imports nothing of voxproxy's, so every module can use it.

use bytes::Bytes;
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;

/// Errors inside bodies (and other boxed causes).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response voxproxy makes.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body with nothing in it.
pub fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

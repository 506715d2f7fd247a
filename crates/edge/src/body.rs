//! The response body type the proxy returns: whole buffers (cache hits, errors), streams
//! (fills in progress) and upstream bodies passed through, behind one boxed type.

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;

/// Errors inside a body stream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Any response body.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

pub fn stream<S>(s: S) -> Body
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    StreamBody::new(s.map_ok(Frame::data).map_err(|e| Box::new(e) as BoxError)).boxed_unsync()
}

/// Passes an incoming (client or upstream) body through.
pub fn incoming(b: hyper::body::Incoming) -> Body {
    b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()
}

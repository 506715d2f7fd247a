//! The response body type the proxy returns: whole buffers (cache hits, errors), streams
//! (fills in progress) and upstream bodies passed through, behind one boxed type; and
//! [`counted`], which reports the body bytes as they are handed to the connection (what
//! usage and metrics count: a chunked body counts, an aborted download counts what was
//! written, not its `Content-Length`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
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

/// `body`, calling `sent` with the length of each data frame as the connection takes it.
pub fn counted(body: Body, sent: impl FnMut(u64) + Send + 'static) -> Body {
    Counted {
        inner: body,
        sent: Box::new(sent),
    }
    .boxed_unsync()
}

struct Counted {
    inner: Body,
    sent: Box<dyn FnMut(u64) + Send>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let n = data.remaining() as u64;
            if n > 0 {
                (self.sent)(n);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[tokio::test]
    async fn counted_reports_each_data_frame() {
        let total = Arc::new(AtomicU64::new(0));
        let t = total.clone();
        let chunks = futures::stream::iter(vec![
            Ok::<_, std::io::Error>(Bytes::from_static(b"abc")),
            Ok(Bytes::new()),
            Ok(Bytes::from_static(b"de")),
        ]);
        let body = counted(stream(chunks), move |n| {
            t.fetch_add(n, Ordering::Relaxed);
        });
        let collected = body.collect().await.expect("body").to_bytes();
        assert_eq!(collected, Bytes::from_static(b"abcde"));
        assert_eq!(total.load(Ordering::Relaxed), 5);
    }
}

//! The upstream side of a cache fill, shared by whole objects (`crate::proxy`) and slices
//! (`crate::slice`):
//!
//! * [`fetch`]: one `GET` to the parent tier or the origins (`crate::upstream`), made
//!   conditional when a stale stored response is revalidated, and sent again without the
//!   conditionals when the 304 that comes back is for another representation
//!   (RFC 9111 §4.3.4). The head it returns is normalised (hop-by-hop fields and `X-Cache`
//!   removed) and comes with the target that answered and the request and response
//!   times (RFC 9111 §4.2.3).
//! * [`freshen`]: a stored response merged with a matching 304's headers, and whether it
//!   may still be stored; what differs between whole objects and slices (the status and
//!   headers storability is judged on) is a parameter.
//! * [`pump`]: the body read frame by frame, handed to a [`Sink`] (the fill's readers, a
//!   direct channel, a slicer) while a copy is kept for the store within the node's
//!   store-buffer budget (`crate::cache::budget`); the bytes received are counted per
//!   upstream tier.
//!
//! What a fill then does with the response (share it, store it, cut it into slices) stays
//! with its caller.

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::response::Parts;
use http::{Method, StatusCode};
use hyper::body::Incoming;

use crate::cache::budget::StoreBuffer;
use crate::cache::policy::{self, Freshness, RuleOverride, Storability};
use crate::cache::store::CachedResponse;
use crate::node::Edge;
use crate::upstream::{Target, UpstreamError, strip_hop_by_hop};

/// A response from upstream, its head normalised, its body not read yet.
pub(crate) struct Fetched {
    /// Status and headers, hop-by-hop fields and `X-Cache` removed.
    pub head: Parts,
    pub body: Incoming,
    /// The upstream that answered.
    pub target: Target,
    /// When the request was sent (the first one, when a mismatched 304 made it send
    /// again) and when the response head arrived (RFC 9111 §4.2.3).
    pub request_time: SystemTime,
    pub response_time: SystemTime,
}

/// Sends `GET pq` with `headers` (forwarding headers set, conditionals removed) to the
/// first of `targets` that answers. With `stale` (the headers of a stored response being
/// revalidated), the request carries its validators (`If-None-Match`,
/// `If-Modified-Since`); a 304 that does not match `stale` is for another representation
/// (RFC 9111 §4.3.4), and the request is sent again without them.
pub(crate) async fn fetch(
    edge: &Edge,
    targets: &[Target],
    pq: &str,
    headers: &HeaderMap,
    stale: Option<&HeaderMap>,
) -> Result<Fetched, UpstreamError> {
    let send = async |headers: &HeaderMap| {
        edge.upstream
            .send(targets, &Method::GET, pq, headers, None, &edge.metrics)
            .await
    };
    let request_time = SystemTime::now();
    let mut sent = match stale {
        Some(stale) => {
            let mut conditional = headers.clone();
            conditional.extend(policy::revalidation_headers(stale));
            send(&conditional).await
        }
        None => send(headers).await,
    };
    if let (Ok((res, _)), Some(stale)) = (&sent, stale)
        && res.status() == StatusCode::NOT_MODIFIED
        && !policy::not_modified_matches(stale, res.headers())
    {
        sent = send(headers).await;
    }
    let (res, target) = sent?;
    let response_time = SystemTime::now();
    let (mut head, body) = res.into_parts();
    strip_hop_by_hop(&mut head.headers);
    head.headers.remove("x-cache");
    Ok(Fetched {
        head,
        body,
        target,
        request_time,
        response_time,
    })
}

impl Fetched {
    /// Whether this is a 304 that freshens `stored` (its validators match).
    pub fn freshens(&self, stored: &HeaderMap) -> bool {
        self.head.status == StatusCode::NOT_MODIFIED
            && policy::not_modified_matches(stored, &self.head.headers)
    }
}

/// A stored response freshened by a matching 304 ([`freshen`]).
pub(crate) struct Freshened {
    /// The freshened response to store; `None` when it may no longer be stored (it is
    /// served once, to the clients of this fill, then dropped).
    pub updated: Option<CachedResponse>,
    /// The 304's `Set-Cookie` values: never stored nor shared, for the client whose
    /// request revalidated only (if the caller gives them to anyone).
    pub set_cookie: Vec<HeaderValue>,
}

/// `old` freshened with the headers of the matching 304 `not_modified` (RFC 9111
/// §4.3.4): the merged headers lose the 304's `Set-Cookie` and the fields a qualified
/// `no-cache`/`private` lists, and get new freshness (from `not_modified`'s request and
/// response times). A 304 that sets a cookie leaves the response storable only as a 200
/// that sets one would be (`policy::stored_without_cookie`). `judged_as` gives, from the merged headers, the status and headers
/// storability is judged on for `req_headers` under `rule` (a whole object: its own; a
/// slice: those of the whole object it is part of).
pub(crate) fn freshen(
    old: &CachedResponse,
    not_modified: &Fetched,
    req_headers: &HeaderMap,
    rule: &RuleOverride,
    judged_as: impl FnOnce(&HeaderMap) -> (StatusCode, HeaderMap),
) -> Freshened {
    let (request_time, response_time) = (not_modified.request_time, not_modified.response_time);
    let mut merged = old.headers.clone();
    policy::apply_304(&mut merged, &not_modified.head.headers);
    let set_cookie: Vec<HeaderValue> = merged.get_all(header::SET_COOKIE).iter().cloned().collect();
    // The 304 sets a cookie: stored (without it) only as a 200 that sets one would be.
    let (cc, _) = policy::ResponseCacheControl::parse_targeted(&merged, &rule.targeted);
    let cookie_kept_out = !set_cookie.is_empty() && !policy::stored_without_cookie(&cc, rule);
    merged.remove(header::SET_COOKIE);
    policy::remove_fields_not_to_store(&mut merged, rule);
    let (status, judged) = judged_as(&merged);
    let updated = match policy::storability(
        &Method::GET,
        req_headers,
        status,
        &judged,
        rule,
        response_time,
    ) {
        Storability::Yes(params) => Some(CachedResponse {
            freshness: Freshness::new(
                &params,
                policy::initial_age(&merged, request_time, response_time),
                response_time,
            ),
            headers: merged,
            stored_at: response_time,
            ..old.clone()
        }),
        Storability::No(_) => None,
    }
    .filter(|_| !cookie_kept_out);
    Freshened {
        updated,
        set_cookie,
    }
}

/// Where [`pump`] hands the body chunks of a fill (besides the store copy).
pub(crate) trait Sink {
    /// Takes the next chunk; `received`: the body bytes so far, this chunk included. An
    /// error ends the pump with it.
    async fn take(&mut self, data: Bytes, received: u64) -> Result<(), String>;

    /// The upstream body failed with `why` (the pump then returns that error).
    fn failed(&mut self, why: &str) {
        let _ = why;
    }

    /// The body ended after `received` bytes: `Err` when that is not a complete body.
    fn end(&mut self, received: u64) -> Result<(), String> {
        let _ = received;
        Ok(())
    }
}

/// What [`pump`] did.
pub(crate) struct Pumped {
    /// `Ok` when the whole body arrived and the sink took it.
    pub result: Result<(), String>,
    /// The store copy, if it was kept to the end.
    pub copy: Option<StoreBuffer>,
    /// Body bytes received.
    pub received: u64,
}

/// Reads `fetched`'s body frame by frame into `sink`, keeping `copy` (the copy to store,
/// if any) up to `max_copy` bytes: a body that outgrows it, or the node's store-buffer
/// budget, drops the copy and keeps streaming. Counts the bytes received per tier
/// (`bytes_in`).
pub(crate) async fn pump(
    edge: &Edge,
    fetched: &mut Fetched,
    mut copy: Option<StoreBuffer>,
    max_copy: u64,
    sink: &mut impl Sink,
) -> Pumped {
    let mut received: u64 = 0;
    let result = loop {
        match futures::future::poll_fn(|cx| {
            hyper::body::Body::poll_frame(std::pin::Pin::new(&mut fetched.body), cx)
        })
        .await
        {
            None => break sink.end(received),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                received += data.len() as u64;
                if let Some(buf) = &mut copy
                    && (received > max_copy || !buf.push(&data))
                {
                    copy = None;
                }
                if let Err(e) = sink.take(data, received).await {
                    break Err(e);
                }
            }
            Some(Err(e)) => {
                let why = e.to_string();
                sink.failed(&why);
                break Err(format!("upstream body failed: {why}"));
            }
        }
    };
    edge.metrics
        .tier(fetched.target.tier)
        .bytes_in
        .inc_by(received);
    Pumped {
        result,
        copy,
        received,
    }
}

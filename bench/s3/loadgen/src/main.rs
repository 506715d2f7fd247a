//! s3load: the S3 load generator of `bench/s3.sh`, the same client for every server.
//!
//! Path-style requests over HTTP/1.1 keep-alive (one connection per worker), signed with
//! AWS Signature V4 in the `Authorization` header; PUT bodies are sent as
//! `UNSIGNED-PAYLOAD` (no client-side hash of the body, as `aws s3` does over TLS).
//!
//!   s3load mkbucket --endpoint 127.0.0.1:9000 --access-key AK --secret-key SK --bucket b
//!   s3load put --endpoint ... --bucket b --size 4096 --concurrency 8 --duration 10
//!   s3load get --endpoint ... --bucket b --size 4096 --concurrency 8 --duration 10 --objects 64
//!   s3load fill --endpoint ... --bucket b --size 4096 --concurrency 8 --objects 64
//!
//! `put`: each worker PUTs new keys (`PREFIX/put-SIZE/WORKER/SEQ`) back to back. Every
//! body is unique: a 16-byte tag (run, request, piece) every 64 KiB over a random buffer,
//! so content-addressed stores (Lingjing's, Garage's) cannot deduplicate a block.
//! `get`: first makes sure `--objects` objects `PREFIX/get-SIZE/I` exist (PUT the
//! missing ones; not timed; `--fill 0` skips this), then each worker GETs them in turn
//! and reads every body to the end, checking its length. `fill` only makes sure they exist.
//! The window is `--duration` seconds after `--warmup` seconds; a request is counted (and
//! its latency kept) when it ends inside the window, so completions over the window's
//! length are the rate in steady state, however long one request takes. Workers start
//! no request after the window and wait for those in flight (not counted).
//!
//! Prints one line to stdout:
//!   S3LOAD op=put size=4096 conc=8 secs=10.02 ops=12345 errors=0 ops_s=1232.1
//!     mib_s=4.81 ttfb_p50_ms=... ttfb_p99_ms=... lat_p50_ms=... lat_p99_ms=...
//! TTFB: for GET the time to the response head; for PUT the same (the head comes after
//! the whole body was sent and stored), so for PUT it equals the latency. Errors (non-2xx,
//! connection failures, short bodies, timeouts) are counted, not timed; the first few are
//! printed to stderr.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const PIECE: usize = 64 * 1024;
const TAG: usize = 16;
const RANDOM_BYTES: usize = 1024 * 1024;
const MAX_ERRORS_SHOWN: usize = 5;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    MkBucket,
    Put,
    Get,
    Fill,
}

#[derive(Clone, Debug)]
struct Args {
    op: Op,
    endpoint: String,
    access_key: String,
    secret_key: String,
    region: String,
    bucket: String,
    prefix: String,
    size: usize,
    concurrency: usize,
    duration: f64,
    warmup: f64,
    objects: usize,
    threads: usize,
    timeout: f64,
    fill: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: s3load mkbucket|put|get|fill --endpoint HOST:PORT --access-key AK --secret-key SK \
         --bucket B [--region us-east-1] [--prefix bench] [--size BYTES] [--concurrency N] \
         [--duration SECS] [--warmup SECS] [--objects N] [--threads N] [--timeout SECS] [--fill 0|1]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let op = match it.next().as_deref() {
        Some("mkbucket") => Op::MkBucket,
        Some("put") => Op::Put,
        Some("get") => Op::Get,
        Some("fill") => Op::Fill,
        _ => usage(),
    };
    let mut a = Args {
        op,
        endpoint: String::new(),
        access_key: String::new(),
        secret_key: String::new(),
        region: "us-east-1".into(),
        bucket: String::new(),
        prefix: "bench".into(),
        size: 4096,
        concurrency: 1,
        duration: 10.0,
        warmup: 1.0,
        objects: 32,
        threads: 2,
        timeout: 120.0,
        fill: true,
    };
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| usage());
        let num = |v: &str| -> f64 { v.parse().unwrap_or_else(|_| usage()) };
        match flag.as_str() {
            "--endpoint" => a.endpoint = value,
            "--access-key" => a.access_key = value,
            "--secret-key" => a.secret_key = value,
            "--region" => a.region = value,
            "--bucket" => a.bucket = value,
            "--prefix" => a.prefix = value,
            "--size" => a.size = num(&value) as usize,
            "--concurrency" => a.concurrency = (num(&value) as usize).max(1),
            "--duration" => a.duration = num(&value),
            "--warmup" => a.warmup = num(&value),
            "--objects" => a.objects = (num(&value) as usize).max(1),
            "--threads" => a.threads = (num(&value) as usize).max(1),
            "--timeout" => a.timeout = num(&value),
            "--fill" => a.fill = num(&value) != 0.0,
            _ => usage(),
        }
    }
    if a.endpoint.is_empty() || a.access_key.is_empty() || a.bucket.is_empty() {
        usage();
    }
    a
}

// ---------------------------------------------------------------------------------------
// SigV4
// ---------------------------------------------------------------------------------------

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// (YYYYMMDD, YYYYMMDDTHHMMSSZ) of now, UTC.
fn amz_dates() -> (String, String) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = format!("{y:04}{m:02}{d:02}");
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    (date, stamp)
}

struct Signer {
    access_key: String,
    secret_key: String,
    region: String,
    host: String,
}

impl Signer {
    /// The headers to add to a request of METHOD on PATH (already URI-encoded, no query)
    /// with the given payload hash.
    fn headers(&self, method: &Method, path: &str, payload_hash: &str) -> [(String, String); 4] {
        let (date, stamp) = amz_dates();
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let signed = "host;x-amz-content-sha256;x-amz-date";
        let canonical = format!(
            "{method}\n{path}\n\nhost:{}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{stamp}\n\n{signed}\n{payload_hash}",
            self.host
        );
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let k = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            date.as_bytes(),
        );
        let k = hmac(&k, self.region.as_bytes());
        let k = hmac(&k, b"s3");
        let k = hmac(&k, b"aws4_request");
        let sig = hex::encode(hmac(&k, to_sign.as_bytes()));
        [
            ("host".into(), self.host.clone()),
            ("x-amz-content-sha256".into(), payload_hash.into()),
            ("x-amz-date".into(), stamp),
            (
                "authorization".into(),
                format!(
                    "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={sig}",
                    self.access_key
                ),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------

/// A request body made of shared pieces (no copy of the payload per request).
struct Payload {
    parts: VecDeque<Bytes>,
    remaining: u64,
}

impl Body for Payload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.parts.pop_front() {
            Some(b) => {
                self.remaining -= b.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A unique body of SIZE bytes: per 64 KiB piece, a 16-byte tag (RUN, ID, piece index)
/// then a slice of the shared random buffer.
fn unique_body(random: &Bytes, size: usize, run: u32, id: u64) -> Payload {
    let mut parts = VecDeque::with_capacity(2 * size.div_ceil(PIECE));
    let mut off = 0usize;
    let mut piece = 0u32;
    while off < size {
        let len = PIECE.min(size - off);
        let mut tag = [0u8; TAG];
        tag[..4].copy_from_slice(&run.to_le_bytes());
        tag[4..12].copy_from_slice(&id.to_le_bytes());
        tag[12..].copy_from_slice(&piece.to_le_bytes());
        let t = TAG.min(len);
        parts.push_back(Bytes::copy_from_slice(&tag[..t]));
        if len > t {
            let start = (piece as usize * 4099 + (id as usize % 977) * 61) % (RANDOM_BYTES - PIECE);
            parts.push_back(random.slice(start..start + len - t));
        }
        off += len;
        piece += 1;
    }
    Payload {
        parts,
        remaining: size as u64,
    }
}

fn random_bytes(n: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(n);
    Bytes::from(v)
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

type HttpClient = Client<HttpConnector, Payload>;

struct Ctx {
    args: Args,
    client: HttpClient,
    signer: Signer,
    random: Bytes,
    run: u32,
    next_id: AtomicU64,
    errors_shown: AtomicUsize,
}

/// What one request took: time to the response head and to its end, bytes moved.
struct Timing {
    ttfb: Duration,
    total: Duration,
}

impl Ctx {
    fn path(&self, key: &str) -> String {
        format!("/{}/{}", self.args.bucket, key)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Payload,
        payload_hash: &str,
    ) -> Request<Payload> {
        let mut b = Request::builder()
            .method(method.clone())
            .uri(format!("http://{}{}", self.args.endpoint, path));
        for (k, v) in self.signer.headers(&method, path, payload_hash) {
            b = b.header(k, v);
        }
        if body.remaining > 0 || method == Method::PUT {
            b = b.header("content-length", body.remaining.to_string());
        }
        b.body(body).expect("valid request")
    }

    fn empty() -> Payload {
        Payload {
            parts: VecDeque::new(),
            remaining: 0,
        }
    }

    /// Sends REQ; reads the whole answer. Ok((status, body length, timing)).
    async fn send(
        &self,
        req: Request<Payload>,
    ) -> Result<(StatusCode, u64, Timing, Bytes), String> {
        let start = Instant::now();
        let timeout = Duration::from_secs_f64(self.args.timeout);
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("request: {e:?}"))?;
            let ttfb = start.elapsed();
            let status = resp.status();
            let mut body = resp.into_body();
            let mut n = 0u64;
            let mut head = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| format!("body: {e}"))?;
                if let Some(d) = frame.data_ref() {
                    n += d.len() as u64;
                    if !status.is_success() && head.len() < 512 {
                        head.extend_from_slice(&d[..d.len().min(512 - head.len())]);
                    }
                }
            }
            Ok((
                status,
                n,
                Timing {
                    ttfb,
                    total: start.elapsed(),
                },
                Bytes::from(head),
            ))
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {timeout:?}")),
        }
    }

    async fn put(&self, key: &str) -> Result<Timing, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = unique_body(&self.random, self.args.size, self.run, id);
        let path = self.path(key);
        let req = self.request(Method::PUT, &path, body, "UNSIGNED-PAYLOAD");
        let (status, _, t, head) = self.send(req).await?;
        if !status.is_success() {
            return Err(format!(
                "PUT {path}: {status}: {}",
                String::from_utf8_lossy(&head)
            ));
        }
        Ok(t)
    }

    async fn get(&self, key: &str) -> Result<Timing, String> {
        let path = self.path(key);
        let req = self.request(Method::GET, &path, Self::empty(), EMPTY_SHA256);
        let (status, n, t, head) = self.send(req).await?;
        if !status.is_success() {
            return Err(format!(
                "GET {path}: {status}: {}",
                String::from_utf8_lossy(&head)
            ));
        }
        if n != self.args.size as u64 {
            return Err(format!(
                "GET {path}: {n} bytes, expected {}",
                self.args.size
            ));
        }
        Ok(t)
    }

    /// HEAD KEY: Some(content length) when it exists.
    async fn head_len(&self, key: &str) -> Result<Option<u64>, String> {
        let path = self.path(key);
        let req = self.request(Method::HEAD, &path, Self::empty(), EMPTY_SHA256);
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| format!("HEAD {path}: {e:?}"))?;
        let status = resp.status();
        let len = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let _ = resp.into_body().collect().await;
        match status {
            s if s.is_success() => Ok(len),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(format!("HEAD {path}: {s}")),
        }
    }

    async fn mkbucket(&self) -> Result<(), String> {
        let path = format!("/{}", self.args.bucket);
        let req = self.request(Method::PUT, &path, Self::empty(), EMPTY_SHA256);
        let (status, _, _, head) = self.send(req).await?;
        let text = String::from_utf8_lossy(&head);
        if status.is_success() || text.contains("BucketAlreadyOwnedByYou") {
            return Ok(());
        }
        Err(format!("PUT {path}: {status}: {text}"))
    }

    fn report_error(&self, e: &str) {
        if self.errors_shown.fetch_add(1, Ordering::Relaxed) < MAX_ERRORS_SHOWN {
            eprintln!("s3load: error: {e}");
        }
    }
}

fn get_key(args: &Args, i: usize) -> String {
    format!("{}/get-{}/{i}", args.prefix, args.size)
}

/// Makes sure the GET objects exist with the right size (PUT the others, CONCURRENCY at
/// a time).
async fn prepare_get(ctx: Arc<Ctx>) -> Result<(), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..ctx.args.concurrency.min(ctx.args.objects) {
        let (ctx, next) = (ctx.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ctx.args.objects {
                    return Ok::<(), String>(());
                }
                let key = get_key(&ctx.args, i);
                if ctx.head_len(&key).await? != Some(ctx.args.size as u64) {
                    ctx.put(&key).await?;
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

struct WorkerResult {
    ttfb_us: Vec<u32>,
    total_us: Vec<u32>,
    errors: u64,
}

async fn worker(ctx: Arc<Ctx>, w: usize, measure_from: Instant, stop_at: Instant) -> WorkerResult {
    let mut r = WorkerResult {
        ttfb_us: Vec::new(),
        total_us: Vec::new(),
        errors: 0,
    };
    // Spread the workers over the GET objects.
    let mut i = (w * 7919 + ctx.run as usize) % ctx.args.objects;
    let mut seq = 0u64;
    loop {
        let start = Instant::now();
        if start >= stop_at {
            break;
        }
        let res = match ctx.args.op {
            Op::Put => {
                seq += 1;
                let key = format!(
                    "{}/put-{}/{:x}/{w}/{seq}",
                    ctx.args.prefix, ctx.args.size, ctx.run
                );
                ctx.put(&key).await
            }
            Op::Get => {
                i = (i + 1) % ctx.args.objects;
                ctx.get(&get_key(&ctx.args, i)).await
            }
            Op::MkBucket | Op::Fill => unreachable!(),
        };
        // Counted when it ends inside the window: completions per second over the window
        // is the rate, whatever a request's length (a request that started in the warm-up
        // or ends after the window is not counted).
        let end = Instant::now();
        let timed = end >= measure_from && end <= stop_at;
        match res {
            Ok(t) if timed => {
                r.ttfb_us
                    .push(t.ttfb.as_micros().min(u32::MAX as u128) as u32);
                r.total_us
                    .push(t.total.as_micros().min(u32::MAX as u128) as u32);
            }
            Ok(_) => {}
            Err(e) => {
                if timed {
                    r.errors += 1;
                }
                ctx.report_error(&e);
                // Do not spin on a dead server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    r
}

fn pct_ms(sorted: &[u32], p: f64) -> String {
    if sorted.is_empty() {
        return "n/a".into();
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    format!(
        "{:.3}",
        f64::from(sorted[rank.min(sorted.len()) - 1]) / 1000.0
    )
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(run(args));
    std::process::exit(code);
}

async fn run(args: Args) -> i32 {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency.max(4))
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let run = (nanos ^ (u64::from(std::process::id()) << 32)) as u32;
    let ctx = Arc::new(Ctx {
        signer: Signer {
            access_key: args.access_key.clone(),
            secret_key: args.secret_key.clone(),
            region: args.region.clone(),
            host: args.endpoint.clone(),
        },
        random: random_bytes(RANDOM_BYTES, nanos),
        run,
        next_id: AtomicU64::new(0),
        errors_shown: AtomicUsize::new(0),
        client,
        args,
    });
    match ctx.args.op {
        Op::MkBucket => {
            return match ctx.mkbucket().await {
                Ok(()) => {
                    println!("S3LOAD op=mkbucket bucket={} ok=1", ctx.args.bucket);
                    0
                }
                Err(e) => {
                    eprintln!("s3load: {e}");
                    1
                }
            };
        }
        Op::Get | Op::Fill if ctx.args.fill || ctx.args.op == Op::Fill => {
            let t = Instant::now();
            if let Err(e) = prepare_get(ctx.clone()).await {
                eprintln!("s3load: preparing the GET objects failed: {e}");
                return 1;
            }
            eprintln!(
                "s3load: {} objects of {} bytes ready in {:.1} s",
                ctx.args.objects,
                ctx.args.size,
                t.elapsed().as_secs_f64()
            );
            if ctx.args.op == Op::Fill {
                println!(
                    "S3LOAD op=fill size={} objects={} ok=1",
                    ctx.args.size, ctx.args.objects
                );
                return 0;
            }
        }
        Op::Put | Op::Get | Op::Fill => {}
    }
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(ctx.args.warmup);
    let stop_at = measure_from + Duration::from_secs_f64(ctx.args.duration);
    let mut tasks = Vec::new();
    for w in 0..ctx.args.concurrency {
        tasks.push(tokio::spawn(worker(ctx.clone(), w, measure_from, stop_at)));
    }
    let (mut ttfb, mut total, mut errors) = (Vec::new(), Vec::new(), 0u64);
    for t in tasks {
        let r = t.await.expect("worker panicked");
        ttfb.extend(r.ttfb_us);
        total.extend(r.total_us);
        errors += r.errors;
    }
    ttfb.sort_unstable();
    total.sort_unstable();
    let secs = stop_at.duration_since(measure_from).as_secs_f64().max(1e-9);
    let ops = total.len() as f64;
    let a = &ctx.args;
    println!(
        "S3LOAD op={} size={} conc={} secs={:.2} ops={} errors={} ops_s={:.1} mib_s={:.2} \
         ttfb_p50_ms={} ttfb_p99_ms={} lat_p50_ms={} lat_p99_ms={}",
        if a.op == Op::Put { "put" } else { "get" },
        a.size,
        a.concurrency,
        secs,
        total.len(),
        errors,
        ops / secs,
        ops * a.size as f64 / secs / (1024.0 * 1024.0),
        pct_ms(&ttfb, 50.0),
        pct_ms(&ttfb, 99.0),
        pct_ms(&total, 50.0),
        pct_ms(&total, 99.0),
    );
    0
}

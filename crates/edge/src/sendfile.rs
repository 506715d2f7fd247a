//! Zero-copy sends of large cached bodies, as nginx does with `sendfile` for its cached
//! files.
//!
//! **Storing:** [`shareable`] copies a body of at least [`MIN_BYTES`] once, when the cache
//! stores it, into a memfd (an anonymous in-memory file), seals the file so that nobody
//! can change or resize it again, and maps it read-only; the `Bytes` it returns point into
//! that mapping and keep it alive. The memory is the same as before (the pages of the
//! memfd instead of the heap), and a body that cannot be placed so (no memfd, too many
//! open files) stays on the heap as it was.
//!
//! **Sending:** [`Stream`], the connection type of the plain-TCP public listeners, looks at
//! each slice hyper hands it to write. A slice inside a mapping of [`shareable`] is sent
//! with `sendfile(2)` from its memfd: the kernel links the file's pages into the socket
//! instead of copying the bytes from our memory (on 100 KiB hits that copy was 28% of the
//! edge's CPU). Other slices (headers, small bodies) go out with one `sendmsg(2)`, flagged
//! `MSG_MORE` when a file part follows, so headers and body still share packets.
//!
//! Invariants: a registered region is exactly one live mapping (registered after it is
//! mapped, unregistered before it is unmapped), so a slice of live `Bytes` that falls in a
//! region is that mapping's bytes; a sealed memfd can never change, so the bytes
//! `sendfile` sends are the bytes the slice shows. TLS connections never see these slices
//! (rustls encrypts into its own buffer), and for them nothing changes.

use std::collections::BTreeMap;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::net::SendFlags;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Bodies at least this long are kept in memfds and sent with `sendfile`; shorter ones
/// cost less to copy than the extra system calls.
pub const MIN_BYTES: usize = 32 * 1024;

/// A slice shorter than this is written as it is, without looking it up: headers, the
/// tail of a body after a partial write, and HTTP/2 DATA frames (16 KiB unless the client
/// asks for more), where a `sendmsg` for the frame head and a `sendfile` for each
/// payload would cost more system calls than the copy they save.
const LOOKUP_MIN_BYTES: usize = MIN_BYTES;

/// Mapped regions by start address: their length and the memfd behind them.
type Regions = BTreeMap<usize, (usize, Arc<OwnedFd>)>;

static REGIONS: LazyLock<RwLock<Regions>> = LazyLock::new(|| RwLock::new(BTreeMap::new()));

/// Live mappings (the number of open memfds this module holds).
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Most mappings held at once: half of the open-file limit (raised to its hard limit at
/// first use), so the sockets keep the other half.
static MAX_LIVE: LazyLock<usize> = LazyLock::new(|| {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current.is_some_and(|soft| soft < hard)
    {
        limit.current = Some(hard.min(1 << 20));
        let _ = setrlimit(Resource::Nofile, limit);
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(1 << 20);
    usize::try_from(soft / 2).unwrap_or(usize::MAX)
});

/// Whether [`shareable`] places bodies in memfds (`lingjing edge --no-sendfile` turns it
/// off; bodies already placed stay so until they leave the cache).
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns zero-copy sends of new bodies on or off for this process.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Live mappings now (for tests and metrics).
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// `body` as bytes that [`Stream`] sends without copying, when it is long enough and a
/// memfd can hold it; otherwise `body` unchanged.
pub fn shareable(body: Bytes) -> Bytes {
    if body.len() < MIN_BYTES
        || !ENABLED.load(Ordering::Relaxed)
        || LIVE.load(Ordering::Relaxed) >= *MAX_LIVE
    {
        return body;
    }
    match Mapped::new(&body) {
        Ok(mapped) => Bytes::from_owner(mapped),
        Err(e) => {
            tracing::debug!(error = %e, "body kept on the heap: no memfd for it");
            body
        }
    }
}

/// A sealed memfd holding one body, mapped read-only and registered in [`REGIONS`].
struct Mapped {
    map: memmap2::Mmap,
}

impl Mapped {
    fn new(body: &[u8]) -> io::Result<Mapped> {
        let fd = rustix::fs::memfd_create(
            "lingjing-body",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let mut file = std::fs::File::from(fd);
        io::Write::write_all(&mut file, body)?;
        rustix::fs::fcntl_add_seals(
            &file,
            SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL,
        )?;
        let map = map_sealed(&file)?;
        if map.len() != body.len() {
            return Err(io::Error::other("memfd mapping has the wrong length"));
        }
        let fd = Arc::new(OwnedFd::from(file));
        LIVE.fetch_add(1, Ordering::Relaxed);
        regions_write().insert(map.as_ptr() as usize, (map.len(), fd));
        Ok(Mapped { map })
    }
}

/// Maps the whole of `file` read-only.
#[allow(unsafe_code)]
fn map_sealed(file: &std::fs::File) -> io::Result<memmap2::Mmap> {
    // SAFETY: memmap2 asks that the file not change while mapped. The file is a memfd
    // this module created and sealed against writing, shrinking and growing (and against
    // removing those seals) before mapping it; no other process has it.
    unsafe { memmap2::MmapOptions::new().populate().map(file) }
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // Unregistered before `map` is unmapped (fields drop after this), so no lookup
        // finds a region whose memory may already be someone else's.
        regions_write().remove(&(self.map.as_ptr() as usize));
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

fn regions_write() -> std::sync::RwLockWriteGuard<'static, Regions> {
    REGIONS.write().unwrap_or_else(PoisonError::into_inner)
}

/// The memfd and offset behind `slice`, when it lies wholly inside a registered mapping.
fn lookup(slice: &[u8]) -> Option<(Arc<OwnedFd>, u64)> {
    if slice.len() < LOOKUP_MIN_BYTES {
        return None;
    }
    let start = slice.as_ptr() as usize;
    let regions = REGIONS.read().unwrap_or_else(PoisonError::into_inner);
    let (&base, (len, fd)) = regions.range(..=start).next_back()?;
    let end = start.checked_add(slice.len())?;
    (end <= base + len).then(|| (fd.clone(), (start - base) as u64))
}

/// A plain TCP connection whose writes send registered slices with `sendfile`.
pub struct Stream {
    inner: TcpStream,
}

impl Stream {
    pub fn new(inner: TcpStream) -> Stream {
        Stream { inner }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let worth_looking =
            LIVE.load(Ordering::Relaxed) > 0 && bufs.iter().any(|b| b.len() >= LOOKUP_MIN_BYTES);
        if !worth_looking {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        loop {
            ready!(self.inner.poll_write_ready(cx))?;
            match self
                .inner
                .try_io(Interest::WRITABLE, || send_mixed(&self.inner, bufs))
            {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Writes `bufs` in order to `socket` (non-blocking): runs of plain slices with one
/// `sendmsg`, registered slices with `sendfile`. Stops at the first short write; an error
/// after some bytes went out is reported as those bytes (the next call sees it again).
fn send_mixed(socket: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let mut total = 0usize;
    let mut i = 0;
    while i < bufs.len() {
        let mut j = i;
        let mut file = None;
        while j < bufs.len() {
            if let Some(found) = lookup(&bufs[j]) {
                file = Some(found);
                break;
            }
            j += 1;
        }
        if j > i {
            let run = &bufs[i..j];
            let want: usize = run.iter().map(|b| b.len()).sum();
            let flags = if file.is_some() {
                SendFlags::MORE | SendFlags::NOSIGNAL
            } else {
                SendFlags::NOSIGNAL
            };
            let sent = rustix::net::sendmsg(
                socket.as_fd(),
                run,
                &mut rustix::net::SendAncillaryBuffer::default(),
                flags,
            );
            if let Some(done) = stop_after(&mut total, sent, want) {
                return done;
            }
        }
        let Some((fd, offset)) = file else { break };
        let want = bufs[j].len();
        let mut offset = offset;
        let sent = rustix::fs::sendfile(socket.as_fd(), fd.as_fd(), Some(&mut offset), want);
        if let Some(done) = stop_after(&mut total, sent, want) {
            return done;
        }
        i = j + 1;
    }
    Ok(total)
}

/// Adds one send of `want` bytes to `total`; `Some` when the write stops there: a short
/// send, or an error (reported as the bytes already sent, when there are any).
fn stop_after(
    total: &mut usize,
    sent: rustix::io::Result<usize>,
    want: usize,
) -> Option<io::Result<usize>> {
    match sent {
        Ok(n) => {
            *total += n;
            (n < want).then_some(Ok(*total))
        }
        Err(_) if *total > 0 => Some(Ok(*total)),
        Err(e) => Some(Err(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn long_bodies_are_mapped_short_ones_stay_on_the_heap() {
        let long = body(2 * MIN_BYTES + 5);
        let shared = shareable(Bytes::from(long.clone()));
        assert_eq!(&shared[..], &long[..]);
        assert!(
            lookup(&shared[10..]).is_some(),
            "a long body is in a mapping"
        );
        let slice = shared.slice(100..MIN_BYTES + 100);
        let (_, offset) = lookup(&slice).expect("a slice of it is found");
        assert_eq!(offset, 100);
        assert!(
            lookup(&shared[..MIN_BYTES - 1]).is_none(),
            "short slices are copied"
        );

        let short = shareable(Bytes::from(body(MIN_BYTES - 1)));
        assert!(lookup(&short).is_none(), "a short body is left on the heap");
    }

    #[test]
    fn a_dropped_body_is_unregistered() {
        let shared = shareable(Bytes::from(body(MIN_BYTES * 2)));
        let (fd, _) = lookup(&shared).expect("registered");
        let copy = shared.clone();
        drop(shared);
        assert!(lookup(&copy).is_some(), "kept alive by its last clone");
        drop(copy);
        // Neither the registry nor a mapping holds the memfd any more.
        assert_eq!(Arc::strong_count(&fd), 1);
    }

    /// Headers, a mapped body, a heap tail and a slice of the body, in one vectored write,
    /// arrive byte-exact and in order, whatever the socket takes per call.
    #[tokio::test]
    async fn mixed_writes_arrive_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let big = shareable(Bytes::from(body(3 * 1024 * 1024)));
        assert!(lookup(&big).is_some());
        let head = Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n");
        let tail = Bytes::from(vec![b'z'; 5000]);
        let part = big.slice(1000..9000);
        let mut expected = Vec::new();
        for piece in [&head, &big, &tail, &part] {
            expected.extend_from_slice(piece);
        }

        let reader = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut got = Vec::new();
            socket.read_to_end(&mut got).await.expect("read");
            got
        });
        let mut stream = Stream::new(TcpStream::connect(addr).await.expect("connect"));
        let mut pieces = vec![head, big, tail, part];
        // Write as hyper does: vectored, advancing past what each call took.
        while !pieces.is_empty() {
            let slices: Vec<IoSlice<'_>> = pieces.iter().map(|p| IoSlice::new(p)).collect();
            let mut n = stream.write_vectored(&slices).await.expect("write");
            assert!(n > 0);
            while n > 0 {
                if n >= pieces[0].len() {
                    n -= pieces[0].len();
                    pieces.remove(0);
                } else {
                    bytes::Buf::advance(&mut pieces[0], n);
                    n = 0;
                }
            }
        }
        stream.shutdown().await.expect("shutdown");
        let got = reader.await.expect("reader");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "bytes differ");
    }
}

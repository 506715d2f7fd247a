//! The forwarder of an [`Outbox`]: sends its records to the control plane in batches
//! (`{"node", "stream", "records"}` POSTed to the outbox's endpoint, answered with a
//! [`FrameAck`]) and acknowledges them in the outbox only through what the control plane
//! says it took. After a failure it waits [`FIRST_BACKOFF`], doubling to [`MAX_BACKOFF`];
//! idle, it waits for its `wake`. A lasting problem is logged once; a refusal (a 4xx
//! other than 408 and 429) is logged every time, and the records stay in the outbox.

use std::sync::Arc;
use std::time::Duration;

use lingjing_model::inspect::FrameAck;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::outbox::{Outbox, Record};
use crate::rest::Client;

/// The first wait after a failed send; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest wait for the control plane's answer to a batch.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// An idle forwarder looks at the outbox this often even if nothing woke it.
const IDLE_RECHECK: Duration = Duration::from_secs(30);

/// Called after each acknowledgement with how many records it took off the outbox and
/// how many are left.
pub type OnSent = Box<dyn Fn(u64, u64) + Send + Sync>;

/// One forwarder's setup.
pub struct Forwarder<R> {
    pub outbox: Arc<Outbox<R>>,
    pub client: Client,
    pub node: String,
    /// The control plane's endpoint, e.g. `/v1/inspect/frames`.
    pub path: &'static str,
    /// What the records are, for logs: `patrol frames`.
    pub what: &'static str,
    pub wake: Arc<Notify>,
    /// Most records in a batch, and about the most bytes (one record always goes).
    pub batch_records: usize,
    pub batch_bytes: usize,
    pub on_sent: OnSent,
}

#[derive(Serialize)]
struct Batch<'a, R> {
    node: &'a str,
    stream: &'a str,
    records: Vec<R>,
}

impl<R: Record + Send + Sync + 'static> Forwarder<R> {
    /// Runs it until aborted.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }
}

/// What the forwarder last reported, so that a lasting problem is logged once.
struct Problem {
    what: &'static str,
    last: Option<String>,
}

impl Problem {
    /// Logs `message` as a warning if it is not the one last logged.
    fn warn(&mut self, message: String) {
        if self.last.as_deref() != Some(message.as_str()) {
            tracing::warn!(problem = %message, "{} are not reaching the control plane; retrying", self.what);
            self.last = Some(message);
        }
    }

    /// Logs `message` as an error (every time: it needs someone to look).
    fn error(&mut self, message: String) {
        tracing::error!(problem = %message, "the control plane refuses this node's {}; they stay in the outbox", self.what);
        self.last = Some(message);
    }

    fn solved(&mut self) {
        if self.last.take().is_some() {
            tracing::info!("{} are reaching the control plane again", self.what);
        }
    }
}

impl<R: Record + Send + Sync + 'static> Forwarder<R> {
    async fn run(self) {
        let Forwarder {
            outbox,
            client,
            node,
            path,
            what,
            wake,
            batch_records,
            batch_bytes,
            on_sent,
        } = self;
        let mut backoff = FIRST_BACKOFF;
        let mut problem = Problem { what, last: None };
        on_sent(0, outbox.depth());
        loop {
            let o = outbox.clone();
            let pending =
                tokio::task::spawn_blocking(move || o.pending(batch_records, batch_bytes))
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .and_then(|r| r);
            let records = match pending {
                Ok(r) => r,
                Err(e) => {
                    problem.error(format!("cannot read the outbox: {e}"));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let (Some(first), Some(last)) = (
                records.first().map(Record::seq),
                records.last().map(Record::seq),
            ) else {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(IDLE_RECHECK) => {}
                }
                continue;
            };
            let count = records.len();
            let batch = Batch {
                node: &node,
                stream: outbox.stream(),
                records,
            };
            let sent = tokio::time::timeout(
                SEND_TIMEOUT,
                client.post::<Batch<'_, R>, FrameAck>(path, &batch),
            )
            .await;
            drop(batch);
            let failed = match sent {
                Ok(Ok(ack)) if ack.through < first => {
                    problem.error(format!(
                    "the control plane acknowledged through seq {} a batch of seq {first}..={last}: nothing moves (has stream {} been reset there?)",
                    ack.through,
                    outbox.stream()
                ));
                    true
                }
                Ok(Ok(ack)) => {
                    if ack.through > last {
                        tracing::warn!(
                            through = ack.through,
                            last,
                            "the control plane acknowledged more than it was sent; taken as through the batch"
                        );
                    }
                    for r in &ack.rejected {
                        tracing::error!(
                            seq = r.seq,
                            field = %r.field,
                            "the control plane refused one of the {what} ({}); it is dropped",
                            r.message
                        );
                    }
                    let through = ack.through.min(last);
                    let o = outbox.clone();
                    match tokio::task::spawn_blocking(move || o.ack(through)).await {
                        Ok(Ok(n)) => {
                            on_sent(n, outbox.depth());
                            tracing::debug!(
                                count,
                                first,
                                through,
                                accepted = ack.accepted,
                                "{what} forwarded"
                            );
                            problem.solved();
                            backoff = FIRST_BACKOFF;
                            false
                        }
                        // Sent again later: the control plane skips what it has.
                        Ok(Err(e)) => {
                            problem.error(format!("cannot record the acknowledgement: {e}"));
                            true
                        }
                        Err(e) => {
                            problem.error(format!("cannot record the acknowledgement: {e}"));
                            true
                        }
                    }
                }
                Ok(Err(e)) => {
                    match e.status() {
                        Some(status)
                            if (400..500).contains(&status) && status != 408 && status != 429 =>
                        {
                            problem.error(format!(
                            "HTTP {status} for a batch of seq {first}..={last}{}: {e} (the node's records should always be taken: report this)",
                            e.field().map(|f| format!(" (field {f})")).unwrap_or_default()
                        ));
                        }
                        _ => problem.warn(e.to_string()),
                    }
                    true
                }
                Err(_) => {
                    problem.warn(format!(
                        "no answer from the control plane within {} s",
                        SEND_TIMEOUT.as_secs()
                    ));
                    true
                }
            };
            if failed {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

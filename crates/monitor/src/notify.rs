//! The notifier: sends each alert transition in the notices' outbox (firing, resolved,
//! escalated) to every receiver whose route matches (site, tenant, severity), as a
//! webhook (`POST` of the [`Notification`] JSON with `X-Lingjing-Signature:
//! sha256=HEX(HMAC-SHA256(receiver secret, body))` and `X-Lingjing-Event: {id}`) or as
//! an email through the receiver's SMTP relay (one plain-text message to all its
//! addresses; STARTTLS required when asked, credentials only then).
//!
//! A receiver that fails (no answer within [`SEND_TIMEOUT`], not 2xx, a transient SMTP
//! error) is tried again after 1 s, doubling to [`MAX_BACKOFF`], up to [`MAX_ATTEMPTS`]
//! times, then given up (logged, counted `failed`; an SMTP 5xx at once); one record is done when every receiver took it or was given
//! up, and only then is it acknowledged in the outbox, so a node that restarts sends
//! what it had not finished again. The ids of the last [`REMEMBERED`] transitions sent
//! are kept (`notified.json`), so a transition the engine computed twice (see `site`) is
//! sent once; a receiver should still keep one per `X-Lingjing-Event` (a crash between
//! sending and remembering sends again). Silenced transitions are not sent.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use lingjing_model::monitor::{AlertEvent, EmailRoute, MonitorEvent, Receiver};
use serde::Serialize;
use sha2::Sha256;

use crate::metrics::Metrics;
use crate::site::Monitor;

pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
pub const MAX_ATTEMPTS: u32 = 12;
pub const REMEMBERED: usize = 4096;

/// What a receiver is sent.
#[derive(Debug, Clone, Serialize)]
pub struct Notification<'a> {
    /// The transition's id: one per transition.
    pub id: String,
    /// The node that saw it.
    pub node: &'a str,
    #[serde(flatten)]
    pub alert: &'a AlertEvent,
}

/// The signature header's value for `body`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any size");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

struct Remembered {
    path: PathBuf,
    ids: VecDeque<String>,
}

impl Remembered {
    fn load(path: PathBuf) -> Remembered {
        let ids = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Remembered { path, ids }
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.iter().any(|x| x == id)
    }

    fn add(&mut self, id: String) {
        self.ids.push_back(id);
        while self.ids.len() > REMEMBERED {
            self.ids.pop_front();
        }
        match serde_json::to_vec(&self.ids) {
            Ok(bytes) => {
                if let Err(e) = lingjing_client::fs::write_private(&self.path, &bytes) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot remember the notifications sent");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode the notifications sent"),
        }
    }
}

/// Runs the notifier until aborted.
pub fn spawn(monitor: Arc<Monitor>, dir: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(monitor, dir))
}

async fn run(monitor: Arc<Monitor>, dir: PathBuf) {
    let client = match http_client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot make the notifier's HTTP client: no notifications");
            return;
        }
    };
    let mut remembered = Remembered::load(dir.join("notified.json"));
    let notices = monitor.notices().clone();
    loop {
        let o = notices.clone();
        let next = tokio::task::spawn_blocking(move || o.pending(1, 1 << 20))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r);
        let record = match next {
            Ok(mut r) if !r.is_empty() => r.remove(0),
            Ok(_) => {
                tokio::select! {
                    () = monitor.notify_wake().notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(30)) => {}
                }
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the notices' outbox; trying again");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let seq = record.seq;
        if let MonitorEvent::Alert(alert) = &record.event {
            let id = alert.id();
            if alert.silenced {
                monitor.metrics().notification("silenced");
            } else if remembered.contains(&id) {
                monitor.metrics().notification("duplicate");
            } else {
                let receivers: Vec<Receiver> = monitor
                    .receivers()
                    .into_iter()
                    .filter(|r| r.routes(&alert.site, alert.tenant(), alert.severity))
                    .collect();
                let note = Notification {
                    id: id.clone(),
                    node: monitor.node(),
                    alert,
                };
                for r in &receivers {
                    deliver(&client, monitor.metrics(), r, &note).await;
                }
                remembered.add(id);
            }
        }
        let o = notices.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || o.ack(seq))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
        {
            tracing::error!(error = %e, "cannot acknowledge a notification in the outbox");
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    }
}

/// Why one try failed, and whether trying again may help.
struct Failed {
    problem: String,
    permanent: bool,
}

/// Sends one notification to one receiver (its webhook or its email), with retries;
/// gives up after [`MAX_ATTEMPTS`], or at once on a permanent refusal (an SMTP 5xx)
/// (true: delivered). The control plane's own alerts go out through it too.
pub async fn deliver(
    client: &reqwest::Client,
    metrics: &Metrics,
    receiver: &Receiver,
    note: &Notification<'_>,
) -> bool {
    let id = note.id.as_str();
    let mut backoff = Duration::from_secs(1);
    for attempt in 1..=MAX_ATTEMPTS {
        let tried = match (&receiver.url, &receiver.email) {
            (Some(url), _) => webhook(client, url, &receiver.secret, note).await,
            (None, Some(route)) => email(route, note).await,
            (None, None) => Err(Failed {
                problem: "the receiver has neither a url nor an email route".into(),
                permanent: true,
            }),
        };
        let failed = match tried {
            Ok(()) => {
                metrics.notification("sent");
                tracing::info!(receiver = %receiver.id, event = %id, attempt, "notified");
                return true;
            }
            Err(f) => f,
        };
        if attempt == MAX_ATTEMPTS || failed.permanent {
            metrics.notification("failed");
            tracing::error!(receiver = %receiver.id, event = %id, attempts = attempt, problem = %failed.problem, "gave up notifying a receiver: check its URL (it must answer 2xx) or its email route");
            return false;
        }
        metrics.notification("retried");
        tracing::warn!(receiver = %receiver.id, event = %id, attempt, problem = %failed.problem, "a receiver did not take a notification; trying again");
        // A change of receivers while waiting (one removed) is seen on the next record.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    false
}

async fn webhook(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    note: &Notification<'_>,
) -> Result<(), Failed> {
    let body = serde_json::to_vec(note).map_err(|e| Failed {
        problem: format!("cannot encode the notification: {e}"),
        permanent: true,
    })?;
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-lingjing-signature", signature(secret, &body))
        .header("x-lingjing-event", &note.id)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(Failed {
            problem: format!("HTTP {}", resp.status()),
            permanent: false,
        }),
        Err(e) => Err(Failed {
            problem: e.to_string(),
            permanent: false,
        }),
    }
}

/// The subject and text of an alert's email.
pub fn email_text(note: &Notification<'_>) -> (String, String) {
    let a = note.alert;
    let severity = match a.severity {
        lingjing_alerts::Severity::Warning => "WARNING",
        lingjing_alerts::Severity::Critical => "CRITICAL",
    };
    let subject = format!("[{severity}] {} {} at {}", a.key, a.state.as_str(), a.site);
    let mut text = format!(
        "Alert {}\nstate: {}\nseverity: {severity}\nsite: {}\nrule: {}\nsensor: {}\nsince (ms): {}\nat (ms): {}\n",
        a.key,
        a.state.as_str(),
        a.site,
        a.rule,
        a.sensor,
        a.since_ms,
        a.at_ms
    );
    if let Some(v) = a.value {
        text.push_str(&format!("value: {v}\n"));
    }
    for (k, v) in &a.labels {
        text.push_str(&format!("{k}: {v}\n"));
    }
    text.push_str(&format!(
        "\nevent {} (seen by {}): one message per transition.\n",
        note.id, note.node
    ));
    (subject, text)
}

async fn email(route: &EmailRoute, note: &Notification<'_>) -> Result<(), Failed> {
    use lettre::message::Mailbox;
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::{Credentials, Mechanism};
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let bad = |problem: String| Failed {
        problem,
        permanent: true,
    };
    let (host, port) = lingjing_model::monitor::smtp_relay(&route.relay).map_err(bad)?;
    let (subject, text) = email_text(note);
    let mut b = Message::builder()
        .from(
            route
                .from
                .parse::<Mailbox>()
                .map_err(|e| bad(format!("from `{}`: {e}", route.from)))?,
        )
        .subject(subject)
        .header(ContentType::TEXT_PLAIN);
    for to in &route.to {
        b = b.to(to
            .parse::<Mailbox>()
            .map_err(|e| bad(format!("to `{to}`: {e}")))?);
    }
    let message = b
        .body(text)
        .map_err(|e| bad(format!("cannot build the message: {e}")))?;
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
        .port(port)
        .timeout(Some(SEND_TIMEOUT));
    if route.starttls {
        let tls = TlsParameters::builder(host.clone())
            .build()
            .map_err(|e| bad(format!("TLS for {host}: {e}")))?;
        transport = transport.tls(Tls::Required(tls));
        if let Some(user) = &route.username {
            transport = transport
                .credentials(Credentials::new(user.clone(), route.password.clone()))
                .authentication(vec![Mechanism::Plain]);
        }
    }
    match transport.build().send(message).await {
        Ok(_) => Ok(()),
        Err(e) => Err(Failed {
            problem: e.to_string(),
            permanent: e.is_permanent(),
        }),
    }
}

/// The HTTP client notifications go out with (no redirects followed).
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

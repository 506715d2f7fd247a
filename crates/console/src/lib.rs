//! The web console: server-rendered pages for the operator and for tenants, served by
//! the control plane at `/` beside its REST API.
//!
//! Every page is a client of the REST API, called in-process (no socket) with the
//! signed-in user's own credential, so a page can show or change exactly what that
//! credential may through the API, by the very same checks: a tenant's session that asks
//! for another tenant's service gets the API's 404, rendered. The credential never
//! reaches the browser: it stays in the server-side session, which the browser names
//! with an HttpOnly, SameSite=Strict cookie (Secure under TLS).
//!
//! Pages work without JavaScript (forms post, tables sort and page by links); htmx
//! refreshes live parts and uPlot draws charts, both vendored (`assets/vendor`, licences
//! kept) and served from here, as is everything a page loads: the Content-Security-Policy
//! allows nothing else.

mod api;
mod assets;
mod csrf;
mod format;
mod listing;
mod pages;
mod s3;
mod session;

use std::sync::Arc;

use axum::Router;

pub use session::{SESSION_COOKIE, SESSION_TTL};

/// Console uploads held in memory at once (4 x 64 MiB at most).
const UPLOADS_AT_ONCE: usize = 4;

/// What the console's handlers share.
pub(crate) struct Console {
    pub api: api::InProcess,
    pub sessions: session::Sessions,
    /// Reaches the S3 gateways for the bucket pages.
    pub s3: s3::Client,
    /// The DNS explain page's GSLB, rebuilt when the DNS snapshot changes.
    pub dns: std::sync::Mutex<Option<Arc<pages::BuiltGslb>>>,
    /// Uploads held in memory at once (each up to `pages::MAX_UPLOAD`); more wait.
    pub uploads: tokio::sync::Semaphore,
    /// Served over TLS: cookies get `Secure`.
    pub secure: bool,
}

/// The API's router with the console's routes beside it (`/`, `/sign-in`, `/fleet`,
/// `/services`, `/assets/...`): what the control plane serves. `secure`: the control
/// plane serves HTTPS.
pub fn beside(api: Router, secure: bool) -> Router {
    let console = Arc::new(Console {
        api: api::InProcess::new(api.clone()),
        sessions: session::Sessions::new(),
        s3: s3::Client::new(),
        dns: std::sync::Mutex::new(None),
        uploads: tokio::sync::Semaphore::new(UPLOADS_AT_ONCE),
        secure,
    });
    api.merge(pages::routes().with_state(console))
}

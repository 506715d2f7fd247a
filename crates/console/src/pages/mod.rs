//! The console's routes and what every page shares: the frame around it ([`Chrome`]),
//! the sign-in guard, the form guard (session, origin, CSRF token), rendering, error
//! pages and the security headers on every answer.

mod alerts;
mod billing;
mod buckets;
mod defence;
mod dns;
mod fleet;
mod inspect;
mod models;
mod network;
mod purges;
mod service_edit;
mod services;
mod sign_in;
mod sla;
mod storage;

use std::sync::Arc;

use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::de::DeserializeOwned;

use crate::Console;
use crate::api::Failure;
use crate::session::Session;

pub(crate) type Shared = Arc<Console>;
pub(crate) use dns::BuiltGslb;

/// The console's routes (the API's stay under `/v1`).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(sign_in::form).post(sign_in::submit))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/fleet", get(fleet::overview))
        .route("/fleet/live", get(fleet::live))
        .route("/nodes/{id}", get(fleet::node))
        .route("/nodes/{id}/drain", post(fleet::drain))
        .route("/services", get(services::list).post(services::create))
        .route("/services/new", get(services::new_form))
        .route("/services/{id}", get(services::show))
        .route("/services/{id}/verify", post(services::verify))
        .route(
            "/services/{id}/edit",
            get(service_edit::form).post(service_edit::save),
        )
        .route("/purges", get(purges::list).post(purges::create))
        .route("/purges/{id}", get(purges::show))
        .route("/purges/{id}/live", get(purges::live))
        .route("/sla", get(sla::report))
        .route("/buckets", get(buckets::list).post(buckets::create))
        .route("/buckets/{bucket}", get(buckets::show))
        .route(
            "/buckets/{bucket}/upload",
            post(buckets::upload).layer(axum::extract::DefaultBodyLimit::max(
                buckets::MAX_UPLOAD + 64 * 1024,
            )),
        )
        .route("/buckets/{bucket}/download", get(buckets::download))
        .route("/buckets/{bucket}/delete", post(buckets::delete))
        .route("/defence", get(defence::overview))
        .route("/defence/rules", post(defence::add))
        .route("/defence/rules/{id}/remove", post(defence::remove))
        .route("/models", get(models::list))
        .route("/models/{model}", get(models::show))
        .route("/invoices", get(billing::list))
        .route("/invoices/{number}", get(billing::show))
        .route("/invoices/{number}/csv", get(billing::csv))
        .route("/reports/segments", get(billing::segments))
        .route("/network", get(network::overview))
        .route("/dns", get(dns::explain))
        .route("/storage", get(storage::status))
        .route("/pools/{id}", get(network::pool))
        .route("/alerts", get(alerts::list))
        .route("/alerts/ack", post(alerts::ack))
        .route("/sensors/{id}", get(alerts::sensor))
        .route("/roads", get(inspect::roads))
        .route("/roads/orders/{id}", get(inspect::order))
        .route("/roads/orders/{id}/act", post(inspect::act))
        .route("/roads/crews/{crew}", get(inspect::crew))
        .route(
            "/roads/defects/{id}/evidence/{stream}/{seq}",
            get(inspect::evidence),
        )
        .route("/assets/{*path}", get(crate::assets::serve))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::map_request(host_from_authority))
}

/// An HTTP/2 request (a browser over TLS) names its host in the `:authority`
/// pseudo-header, not in `Host`: copied into `Host`, so the `Origin` check compares the
/// same thing under either version.
async fn host_from_authority(mut request: Request) -> Request {
    if !request.headers().contains_key(header::HOST)
        && let Some(value) = request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        request.headers_mut().insert(header::HOST, value);
    }
    request
}

/// `/`: the operator's fleet, a tenant's services, or the sign-in form.
async fn home(
    axum::extract::State(console): axum::extract::State<Shared>,
    headers: HeaderMap,
) -> Response {
    match console.sessions.find(&headers) {
        Some(s) if s.is_operator() => Redirect::to("/fleet").into_response(),
        Some(_) => Redirect::to("/services").into_response(),
        None => Redirect::to("/sign-in").into_response(),
    }
}

/// The frame of a page: its title, who is signed in, the navigation, and the session's
/// CSRF token for the forms on it.
pub(crate) struct Chrome {
    pub title: String,
    /// `operator` or `tenant alpha`; empty when nobody is signed in.
    pub who: String,
    pub operator: bool,
    pub signed_in: bool,
    pub csrf: String,
    /// The navigation entry to mark current (`fleet`, `services`, `purges`).
    pub section: &'static str,
}

impl Chrome {
    pub fn new(session: &Session, title: impl Into<String>, section: &'static str) -> Chrome {
        Chrome {
            title: title.into(),
            who: match session.tenant() {
                Some(t) => format!("tenant {t}"),
                None => "operator".into(),
            },
            operator: session.is_operator(),
            signed_in: true,
            csrf: session.csrf.clone(),
            section,
        }
    }

    /// A page seen signed out.
    pub fn anonymous(title: impl Into<String>) -> Chrome {
        Chrome {
            title: title.into(),
            who: String::new(),
            operator: false,
            signed_in: false,
            csrf: String::new(),
            section: "",
        }
    }
}

/// `template` as an HTML answer with `status`.
pub(crate) fn render_status(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console: a template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render; see the control plane's log\n",
            )
                .into_response()
        }
    }
}

/// `template` as a 200 HTML answer.
pub(crate) fn render(template: &impl Template) -> Response {
    render_status(StatusCode::OK, template)
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    message: String,
}

/// An error page with `status` saying `message`.
pub(crate) fn error_page(
    session: Option<&Session>,
    status: StatusCode,
    message: String,
) -> Response {
    let title = match status {
        StatusCode::NOT_FOUND => "Not found".to_owned(),
        StatusCode::FORBIDDEN => "Not allowed".to_owned(),
        s => format!("Error {}", s.as_u16()),
    };
    let chrome = match session {
        Some(s) => Chrome::new(s, title, ""),
        None => Chrome::anonymous(title),
    };
    render_status(status, &ErrorPage { chrome, message })
}

/// The page for an API call that failed: the API's own status and message.
pub(crate) fn failure_page(session: &Session, failure: Failure) -> Response {
    if failure.status.is_server_error() {
        tracing::error!(code = %failure.code, message = %failure.message, "console: API call failed");
    }
    error_page(Some(session), failure.status, failure.message)
}

/// The request's session, or the answer that sends the browser to sign in (for an htmx
/// request, an `HX-Redirect`, so a live fragment does not turn into a sign-in form).
#[allow(
    clippy::result_large_err,
    reason = "the refusal is the answer to send, once per request"
)]
pub(crate) fn signed_in(console: &Console, headers: &HeaderMap) -> Result<Session, Response> {
    console.sessions.find(headers).ok_or_else(|| {
        if headers.contains_key("hx-request") {
            ([("hx-redirect", "/sign-in")], StatusCode::UNAUTHORIZED).into_response()
        } else {
            Redirect::to("/sign-in").into_response()
        }
    })
}

/// The session of a form post, checked: signed in, sent from this console's own origin,
/// carrying the session's CSRF token. Anything else is refused before the form does
/// anything.
#[allow(
    clippy::result_large_err,
    reason = "the refusal is the answer to send, once per request"
)]
pub(crate) fn form_session(
    console: &Console,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Session, Response> {
    let session = signed_in(console, headers)?;
    if !crate::csrf::same_origin(headers) || !crate::csrf::token_matches(csrf, &session.csrf) {
        return Err(error_page(
            Some(&session),
            StatusCode::FORBIDDEN,
            "this form did not come from a page of this console (or the page is older than your session): reload it and try again".into(),
        ));
    }
    Ok(session)
}

/// The signed-in user's session (an extractor): anyone else is sent to sign in.
pub(crate) struct Signed(pub Session);

impl FromRequestParts<Shared> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Shared) -> Result<Signed, Response> {
        signed_in(console, &parts.headers).map(Signed)
    }
}

/// The operator's session (an extractor): a tenant gets the 403 page.
pub(crate) struct Operator(pub Session);

impl FromRequestParts<Shared> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Shared) -> Result<Operator, Response> {
        let session = signed_in(console, &parts.headers)?;
        operator_only(&session)?;
        Ok(Operator(session))
    }
}

/// A form that carries the session's CSRF token (field `csrf`).
pub(crate) trait WithCsrf {
    fn csrf(&self) -> &str;
}

/// `WithCsrf` for forms whose token is their `csrf` field.
macro_rules! csrf_field {
    ($($form:ty),+ $(,)?) => {
        $(impl $crate::pages::WithCsrf for $form {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        })+
    };
}
pub(crate) use csrf_field;

/// A form post and its session, checked by [`form_session`] (an extractor, the last of a
/// handler's): signed in, from this console's origin, with the session's token.
pub(crate) struct Posted<T>(pub Session, pub T);

impl<T: DeserializeOwned + WithCsrf + Send> FromRequest<Shared> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, console: &Shared) -> Result<Posted<T>, Response> {
        let headers = req.headers().clone();
        signed_in(console, &headers)?;
        let Form(form) = Form::<T>::from_request(req, console)
            .await
            .map_err(IntoResponse::into_response)?;
        let session = form_session(console, &headers, form.csrf())?;
        Ok(Posted(session, form))
    }
}

/// The operator's session, or a 403 page.
#[allow(
    clippy::result_large_err,
    reason = "the refusal is the answer to send, once per request"
)]
pub(crate) fn operator_only(session: &Session) -> Result<(), Response> {
    if session.is_operator() {
        Ok(())
    } else {
        Err(error_page(
            Some(session),
            StatusCode::FORBIDDEN,
            "this page is the operator's: tenants see their own services and purges".into(),
        ))
    }
}

/// What a browser may load and do on the console's pages: only this origin's files, no
/// inline script, no framing; pages are not cached, nor sent as a referrer to other sites.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    // A page may set a stricter policy of its own (a download does).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        );
    }
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not `no-referrer`: under it browsers send `Origin: null` on form posts.
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The form field an API error names: `hostnames[2]` and `origins[0].address` are about
/// the `hostnames` and `origins` fields of a form.
pub(crate) fn form_field(api_field: &str) -> &str {
    api_field.split(['[', '.']).next().unwrap_or(api_field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_fields_map_to_form_fields() {
        assert_eq!(form_field("hostnames[2]"), "hostnames");
        assert_eq!(form_field("origins[0].address"), "origins");
        assert_eq!(form_field("id"), "id");
    }
}

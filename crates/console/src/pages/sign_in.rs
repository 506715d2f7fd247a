//! Signing in (an operator token or a tenant API key, checked by asking the API whom it
//! speaks for) and out.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Chrome, Shared, error_page, render_status};
use crate::csrf::{SIGN_IN_COOKIE, same_origin, token_matches};
use crate::session::{SESSION_COOKIE, SESSION_TTL, Who, cookie, random_token, set_cookie};

/// How long a sign-in form stays good (its token's cookie).
const SIGN_IN_FORM_TTL_S: u64 = 1800;

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    chrome: Chrome,
    /// Prefilled (a sign-in link from `lingjing up`).
    token: String,
    form_csrf: String,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SignInQuery {
    #[serde(default)]
    token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The form with a fresh token, bound to the browser by a short-lived cookie.
fn form_page(
    console: &Shared,
    status: StatusCode,
    token: String,
    error: Option<String>,
) -> Response {
    let form_csrf = random_token();
    let mut response = render_status(
        status,
        &SignInPage {
            chrome: Chrome::anonymous("Sign in"),
            token,
            form_csrf: form_csrf.clone(),
            error,
        },
    );
    if let Ok(v) = set_cookie(
        SIGN_IN_COOKIE,
        &form_csrf,
        SIGN_IN_FORM_TTL_S,
        console.secure,
    )
    .parse()
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// `GET /sign-in[?token=...]`: the form (the token prefilled, never submitted by itself).
pub async fn form(
    State(console): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<SignInQuery>,
) -> Response {
    if query.token.is_none() && console.sessions.find(&headers).is_some() {
        return Redirect::to("/").into_response();
    }
    form_page(
        &console,
        StatusCode::OK,
        query.token.unwrap_or_default(),
        None,
    )
}

/// `POST /sign-in`: a credential the API knows starts a session.
pub async fn submit(
    State(console): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or("");
    if !same_origin(&headers) || !token_matches(&form.csrf, expected) {
        return form_page(
            &console,
            StatusCode::FORBIDDEN,
            String::new(),
            Some("the sign-in form expired or came from elsewhere: sign in again here".into()),
        );
    }
    let token = form.token.trim().to_owned();
    if token.is_empty() {
        return form_page(
            &console,
            StatusCode::UNPROCESSABLE_ENTITY,
            String::new(),
            Some("give the operator token or a tenant API key".into()),
        );
    }
    let who: lingjing_model::tenant::WhoAmI = match console.api.get(&token, "/v1/whoami").await {
        Ok(who) => who,
        Err(f) if f.status == StatusCode::UNAUTHORIZED || f.status == StatusCode::FORBIDDEN => {
            return form_page(
                &console,
                StatusCode::UNAUTHORIZED,
                String::new(),
                Some(
                    "that is neither the operator token nor a tenant API key of this platform"
                        .into(),
                ),
            );
        }
        Err(f) => return error_page(None, f.status, f.message),
    };
    let who = match (who.role.as_str(), who.tenant) {
        ("operator", _) => Who::Operator,
        ("tenant", Some(t)) => Who::Tenant(t),
        (role, _) => {
            return error_page(
                None,
                StatusCode::FORBIDDEN,
                format!("a `{role}` credential cannot sign in to the console"),
            );
        }
    };
    tracing::info!(who = ?who, "console: signed in");
    let id = console.sessions.start(token, who);
    let mut response = Redirect::to("/").into_response();
    for c in [
        set_cookie(SESSION_COOKIE, &id, SESSION_TTL.as_secs(), console.secure),
        set_cookie(SIGN_IN_COOKIE, "", 0, console.secure),
    ] {
        if let Ok(v) = c.parse() {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// `POST /sign-out`: ends the session (a form with the session's token, so another site
/// cannot sign a user out either).
pub async fn sign_out(
    State(console): State<Shared>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Err(refused) = super::form_session(&console, &headers, &form.csrf) {
        return refused;
    }
    console.sessions.end(&headers);
    let mut response = Redirect::to("/sign-in").into_response();
    if let Ok(v) = set_cookie(SESSION_COOKIE, "", 0, console.secure).parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

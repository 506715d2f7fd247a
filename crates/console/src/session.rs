//! Sessions: a signed-in user's credential (operator token or tenant API key) kept on the
//! server under a random id that the browser holds in an HttpOnly, SameSite=Strict
//! cookie. A session ends at sign-out or [`SESSION_TTL`] after sign-in, whichever comes
//! first; at most [`MAX_SESSIONS`] live at once (the oldest go first), so a flood of
//! sign-ins cannot grow memory without bound.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use http::header::COOKIE;

/// The cookie naming the session.
pub const SESSION_COOKIE: &str = "lj_session";

/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// Most sessions kept at once.
pub const MAX_SESSIONS: usize = 10_000;

/// Whom a session speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Operator,
    Tenant(String),
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    /// The bearer credential the API calls are made with.
    pub credential: String,
    pub who: Who,
    /// The token every form of this session carries (see [`crate::csrf`]).
    pub csrf: String,
    pub expires: Instant,
}

impl Session {
    pub fn is_operator(&self) -> bool {
        self.who == Who::Operator
    }

    /// The tenant, for a tenant's session.
    pub fn tenant(&self) -> Option<&str> {
        match &self.who {
            Who::Tenant(t) => Some(t),
            Who::Operator => None,
        }
    }
}

/// The live sessions.
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions {
            by_id: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a session; returns its id (for the cookie).
    pub fn start(&self, credential: String, who: Who) -> String {
        let id = random_token();
        let session = Session {
            credential,
            who,
            csrf: random_token(),
            expires: Instant::now() + SESSION_TTL,
        };
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        while map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(id.clone(), session);
        id
    }

    /// The live session the request's cookie names.
    pub fn find(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let mut map = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends the session the request's cookie names.
    pub fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            self.by_id
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
        }
    }
}

/// 32 random bytes, hex-encoded.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path `/`, `Secure` when `secure`;
/// `max_age` seconds (0 deletes it).
pub fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_and_ends_at_sign_out() {
        let sessions = Sessions::new();
        let id = sessions.start("secret".into(), Who::Tenant("alpha".into()));
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            format!("other=1; {SESSION_COOKIE}={id}")
                .parse()
                .expect("header"),
        );
        let found = sessions.find(&headers).expect("session");
        assert_eq!(found.tenant(), Some("alpha"));
        assert_eq!(found.credential, "secret");
        let mut wrong = HeaderMap::new();
        wrong.insert(
            COOKIE,
            format!("{SESSION_COOKIE}=nope").parse().expect("header"),
        );
        assert!(sessions.find(&wrong).is_none());
        sessions.end(&headers);
        assert!(sessions.find(&headers).is_none());
    }

    #[test]
    fn sessions_are_bounded_and_the_oldest_go_first() {
        let sessions = Sessions::new();
        let first = sessions.start("a".into(), Who::Operator);
        for _ in 0..MAX_SESSIONS {
            sessions.start("b".into(), Who::Operator);
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            format!("{SESSION_COOKIE}={first}").parse().expect("header"),
        );
        assert!(sessions.find(&headers).is_none());
        assert_eq!(sessions.by_id.lock().expect("lock").len(), MAX_SESSIONS);
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_under_tls() {
        let c = set_cookie(SESSION_COOKIE, "x", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie(SESSION_COOKIE, "x", 60, false).contains("Secure"));
    }
}

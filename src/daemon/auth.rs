//! The listener's safety: it only reads (every method but GET and HEAD is refused, 405, on
//! every route), binds loopback unless a bearer token is given (`--auth-token-file`), and with
//! a token lets a request through only with `Authorization: Bearer TOKEN` (or the session
//! cookie a browser got by opening a URL with `?token=TOKEN` once), `/healthz` excepted.
//!
//! Comparisons are constant-time over SHA-256 digests, so neither the token's bytes nor its
//! length can be timed. The token is never logged, shown or part of an error; the cookie holds
//! a value derived from it, not the token itself.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The cookie a browser gets for `?token=`: HttpOnly, SameSite=Strict, this listener only.
pub const SESSION_COOKIE: &str = "sdop_session";
/// The query parameter a browser may pass the token in once.
pub const TOKEN_PARAMETER: &str = "token";
/// The one route open without the token: liveness probes.
pub const OPEN_ROUTE: &str = "/healthz";

/// The bearer token of `--auth-token-file`: only its digests are kept; `Debug` is redacted.
#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
    /// The session cookie's value: hex SHA-256 of a fixed label and the token.
    session: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equal digests, in time independent of where they differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Token {
    pub fn new(token: &[u8]) -> Token {
        let mut labelled = b"sdop session\0".to_vec();
        labelled.extend_from_slice(token);
        Token {
            digest: sha256(token),
            session: crate::model::naming::hex(&sha256(&labelled)),
        }
    }

    /// Reads `--auth-token-file`: the file less one trailing newline, printable ASCII without
    /// spaces (it travels in a header).
    pub fn read(path: &Path) -> Result<Token> {
        const FIX: &str = "write a token into it, e.g. `openssl rand -hex 32 > FILE` (readable by sdop only: chmod 600)";
        let bytes =
            super::notifications::read_secret_file(path, "--auth-token-file", "the token", FIX)?;
        if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(Error::Terminal(format!(
                "--auth-token-file {}: the token must be printable ASCII without spaces (it is sent in an HTTP header); {FIX}",
                path.display()
            )));
        }
        Ok(Token::new(&bytes))
    }

    /// The token presented (a header's, a query's), compared in constant time.
    pub fn matches(&self, presented: &[u8]) -> bool {
        same(&sha256(presented), &self.digest)
    }

    fn session_matches(&self, cookie: &str) -> bool {
        same(&sha256(cookie.as_bytes()), &sha256(self.session.as_bytes()))
    }
}

/// `sdop run`'s rule: a listener that is not loopback needs a token. Returns the token, read
/// from its file, when one is given (on loopback too).
pub fn check_listen(listen: SocketAddr, token_file: Option<&Path>) -> Result<Option<Token>> {
    match token_file {
        Some(path) => Token::read(path).map(Some),
        None if listen.ip().is_loopback() => Ok(None),
        None => Err(Error::Terminal(format!(
            "refusing to listen on {listen} without --auth-token-file: it is not a loopback \
             address, so anyone who reaches it could read every status, plan and evidence image. \
             Pass --auth-token-file PATH (a file holding a token, e.g. `openssl rand -hex 32 > \
             PATH`; every route but {OPEN_ROUTE} then needs `Authorization: Bearer TOKEN`), or \
             listen on loopback (--listen 127.0.0.1:9750, the default)"
        ))),
    }
}

/// Every method but GET and HEAD is refused, on every route: the page and the API change
/// nothing (approving stays a commit or `sdop approve`).
pub async fn only_reads(request: Request, next: Next) -> Response {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        return next.run(request).await;
    }
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "GET, HEAD")],
        "method not allowed: this listener only reads (GET, HEAD); to approve a model version, commit it or run `sdop approve`\n",
    )
        .into_response()
}

/// With a token, every route but [`OPEN_ROUTE`] needs it: `Authorization: Bearer TOKEN`, the
/// session cookie, or `?token=TOKEN`, which sets the cookie and redirects to the same URL
/// without it.
pub async fn require_token(
    State(token): State<Option<Arc<Token>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token else {
        return next.run(request).await;
    };
    if request.uri().path() == OPEN_ROUTE {
        return next.run(request).await;
    }
    let headers = request.headers();
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (scheme, value) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| value.trim().to_string())
        })
        .any(|presented| token.matches(presented.as_bytes()));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .any(|(name, value)| name == SESSION_COOKIE && token.session_matches(value));
    if bearer || cookie {
        return next.run(request).await;
    }
    let query = request.uri().query().unwrap_or_default();
    let (presented, rest) = take_token(query);
    match presented {
        Some(presented) if token.matches(&presented) => {
            // Back to the same URL without the token, so it leaves the address bar (and
            // history from here on); `//host` would read as another host: one slash.
            let path = format!("/{}", request.uri().path().trim_start_matches('/'));
            let location = if rest.is_empty() {
                path
            } else {
                format!("{path}?{rest}")
            };
            let cookie = format!(
                "{SESSION_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
                token.session
            );
            let mut response = StatusCode::SEE_OTHER.into_response();
            let headers = response.headers_mut();
            if let (Ok(location), Ok(cookie)) = (
                HeaderValue::from_str(&location),
                HeaderValue::from_str(&cookie),
            ) {
                headers.insert(header::LOCATION, location);
                headers.insert(header::SET_COOKIE, cookie);
            }
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            response
        }
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"sdop\"")],
            "unauthorized: this daemon needs its token (--auth-token-file): send \
             `Authorization: Bearer TOKEN`, or open the page once as /?token=TOKEN in a browser\n",
        )
            .into_response(),
    }
}

/// The (percent-decoded) value of the first `token` parameter, and the query without any.
fn take_token(query: &str) -> (Option<Vec<u8>>, String) {
    let mut token = None;
    let mut rest: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(name) == TOKEN_PARAMETER.as_bytes() {
            token.get_or_insert_with(|| percent_decode(value));
        } else {
            rest.push(pair);
        }
    }
    (token, rest.join("&"))
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_listener_needs_no_token_any_other_does() {
        let loopback: SocketAddr = "127.0.0.1:9750".parse().unwrap();
        assert!(check_listen(loopback, None).unwrap().is_none());
        assert!(check_listen("[::1]:9750".parse().unwrap(), None)
            .unwrap()
            .is_none());
        for other in ["0.0.0.0:9750", "10.0.0.5:9750", "[::]:9750"] {
            let err = check_listen(other.parse().unwrap(), None)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("refusing to listen on") && err.contains("--auth-token-file"),
                "{err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret-token\n").unwrap();
        let token = check_listen("0.0.0.0:9750".parse().unwrap(), Some(&file))
            .unwrap()
            .unwrap();
        assert!(token.matches(b"s3cret-token"));
        assert!(!token.matches(b"s3cret-token\n") && !token.matches(b"s3cret"));
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        // A token that cannot travel in a header is refused, without being shown.
        std::fs::write(&file, "two words\n").unwrap();
        let err = Token::read(&file).unwrap_err().to_string();
        assert!(
            err.contains("printable ASCII") && !err.contains("two words"),
            "{err}"
        );
        std::fs::write(&file, "\n").unwrap();
        let err = Token::read(&file).unwrap_err().to_string();
        assert!(
            err.contains("--auth-token-file") && err.contains("empty"),
            "{err}"
        );
    }

    #[test]
    fn the_token_parameter_is_taken_out_of_the_query() {
        assert_eq!(take_token(""), (None, String::new()));
        assert_eq!(
            take_token("token=a%2Bb+c&x=1"),
            (Some(b"a+b c".to_vec()), "x=1".to_string())
        );
        assert_eq!(
            take_token("x=1&%74oken=t&token=u&y"),
            (Some(b"t".to_vec()), "x=1&y".to_string())
        );
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
    }
}

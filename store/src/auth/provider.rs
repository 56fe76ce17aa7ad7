//! The token kind a member issues and accepts, from etcd's `--auth-token` flag:
//! `simple` (the default; TTL from `--auth-token-ttl`) or
//! `jwt,pub-key=<file>,priv-key=<file>,sign-method=<method>[,ttl=<Go duration>]`.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use super::Authenticated;
use super::jwt::{DEFAULT_JWT_TTL, JwtSignError, JwtTokens};
use super::tokens::TokenLookup;
use crate::backend::{Backend, BackendError, GroupId};
use crate::store::Store;

/// Why an `--auth-token` value was refused (etcd's option errors, with what was wrong).
#[derive(Debug, thiserror::Error)]
pub enum TokenConfigError {
    /// Not `type[,key=value...]`, a repeated key, or an unknown type.
    #[error("auth: invalid auth options: {0}")]
    Options(String),
    /// An unknown or unsupported `sign-method`.
    #[error("auth: invalid auth signature method: {0:?}")]
    SignMethod(String),
    /// A key the method needs was not given.
    #[error("auth: missing key data")]
    MissingKey,
    /// A key file could not be read.
    #[error("auth: reading key file {path}: {error}")]
    ReadKey {
        /// The file.
        path: String,
        /// What failed.
        error: std::io::Error,
    },
    /// A key did not parse.
    #[error("auth: invalid key: {0}")]
    Key(String),
    /// A `ttl` that is not a Go duration.
    #[error("auth: invalid ttl {0:?}")]
    Ttl(String),
}

/// The tokens this member issues and accepts.
#[derive(Debug)]
pub enum TokenProvider {
    /// etcd's simple tokens, kept per member in the store's token table.
    Simple {
        /// How long an unused token lives (`--auth-token-ttl`).
        ttl: Duration,
    },
    /// Signed JWTs.
    Jwt(Box<JwtTokens>),
}

impl TokenProvider {
    /// Parses etcd's `--auth-token` value; `simple_ttl` is `--auth-token-ttl`.
    pub fn parse(value: &str, simple_ttl: Duration) -> Result<Self, TokenConfigError> {
        let mut parts = value.split(',');
        let kind = parts.next().unwrap_or_default();
        let mut options = HashMap::new();
        for part in parts {
            let (k, v) = match part.split('=').collect::<Vec<_>>()[..] {
                [k, v] => (k, v),
                _ => {
                    return Err(TokenConfigError::Options(format!(
                        "{part:?} is not key=value"
                    )));
                }
            };
            if options.insert(k, v).is_some() {
                return Err(TokenConfigError::Options(format!("{k:?} given twice")));
            }
        }
        match kind {
            "simple" => Ok(TokenProvider::Simple { ttl: simple_ttl }),
            "jwt" => {
                let read = |key: &str| -> Result<Option<Vec<u8>>, TokenConfigError> {
                    match options.get(key) {
                        None | Some(&"") => Ok(None),
                        Some(path) => std::fs::read(path).map(Some).map_err(|error| {
                            TokenConfigError::ReadKey {
                                path: (*path).to_string(),
                                error,
                            }
                        }),
                    }
                };
                let ttl = match options.get("ttl") {
                    None | Some(&"") => DEFAULT_JWT_TTL,
                    Some(t) => parse_go_duration(t).ok_or(TokenConfigError::Ttl(t.to_string()))?,
                };
                let method = options.get("sign-method").copied().unwrap_or_default();
                let private = read("priv-key")?;
                let public = read("pub-key")?;
                Ok(TokenProvider::Jwt(Box::new(JwtTokens::new(
                    method,
                    private.as_deref(),
                    public.as_deref(),
                    ttl,
                )?)))
            }
            other => Err(TokenConfigError::Options(format!(
                "unknown token type {other:?}"
            ))),
        }
    }

    /// What the proposing member puts in `InternalAuthenticateRequest.simple_token`: a fresh
    /// random prefix with simple tokens, nothing with JWTs.
    pub fn authenticate_prefix(&self) -> Result<String, ring::error::Unspecified> {
        match self {
            TokenProvider::Simple { .. } => super::tokens::simple_token_prefix(),
            TokenProvider::Jwt(_) => Ok(String::new()),
        }
    }

    /// The token to answer an applied Authenticate with: the simple token the apply made, or
    /// a JWT signed now for the user and auth revision it applied at.
    pub fn token_for(
        &self,
        authenticated: &Authenticated,
        now: SystemTime,
    ) -> Result<String, JwtSignError> {
        match self {
            TokenProvider::Simple { .. } => Ok(authenticated.response.token.clone()),
            TokenProvider::Jwt(jwt) => {
                jwt.sign(&authenticated.username, authenticated.auth_revision, now)
            }
        }
    }

    /// What `token` resolves to on this member for `group` (a simple token's use refreshes
    /// its TTL at `now`). `Pending` asks the caller to wait until the group applied that
    /// index, then resolve again (etcd waits the same way).
    pub fn resolve<B: Backend>(
        &self,
        store: &Store<B>,
        group: GroupId,
        token: &str,
        now: Instant,
    ) -> Result<TokenLookup, BackendError> {
        match self {
            TokenProvider::Simple { .. } => store.simple_token(group, token, now),
            TokenProvider::Jwt(jwt) => Ok(match jwt.verify(token) {
                Some(info) => TokenLookup::Valid(info),
                None => TokenLookup::Invalid,
            }),
        }
    }

    /// The TTL of simple tokens (what to pass to [`Store::expire_tokens`]), if this member
    /// uses them.
    pub fn simple_ttl(&self) -> Option<Duration> {
        match self {
            TokenProvider::Simple { ttl } => Some(*ttl),
            TokenProvider::Jwt(_) => None,
        }
    }
}

/// Parses a Go duration (`300s`, `5m`, `1h30m`, `1.5h`, `250ms`; `0`), as etcd's `ttl`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let value: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("300s"), Some(Duration::from_secs(300)));
        assert_eq!(parse_go_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("5d"), None);
    }

    #[test]
    fn flag_values() {
        let ttl = Duration::from_secs(10);
        assert!(matches!(
            TokenProvider::parse("simple", ttl),
            Ok(TokenProvider::Simple { ttl: t }) if t == ttl
        ));
        assert!(matches!(
            TokenProvider::parse("bogus", ttl),
            Err(TokenConfigError::Options(_))
        ));
        assert!(matches!(
            TokenProvider::parse("jwt,sign-method", ttl),
            Err(TokenConfigError::Options(_))
        ));
        assert!(matches!(
            TokenProvider::parse("jwt,ttl=1m,ttl=2m", ttl),
            Err(TokenConfigError::Options(_))
        ));
        assert!(matches!(
            TokenProvider::parse("jwt,sign-method=RS256", ttl),
            Err(TokenConfigError::MissingKey)
        ));
        assert!(matches!(
            TokenProvider::parse("jwt,sign-method=RS256,pub-key=/nonexistent", ttl),
            Err(TokenConfigError::ReadKey { .. })
        ));
        assert!(matches!(
            TokenProvider::parse("jwt,sign-method=HS256,ttl=1y", ttl),
            Err(TokenConfigError::Ttl(_))
        ));
    }
}

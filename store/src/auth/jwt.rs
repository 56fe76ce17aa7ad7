//! etcd's JWT tokens (`--auth-token jwt,...`): stateless, signed by the member that answers
//! Authenticate, verified by any member holding the public key. Claims are etcd's:
//! `username`, `revision` (the auth revision at Authenticate; a token older than the current
//! auth state is refused with "revision of auth store is old" when used) and `exp`.
//!
//! Prefer ES256: the RS*/PS* methods sign with the `rsa` crate, whose private-key operations
//! are not constant-time (RUSTSEC-2023-0071, no fixed release; verification is not affected).
//!
//! Differences from etcd: the public key is required (etcd derives it from the private key),
//! EC private keys must be PKCS#8 (etcd also reads SEC1), and ES512 and EdDSA are not
//! offered (the JWT crate has no ES512).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::provider::TokenConfigError;
use super::state::AuthInfo;

/// The PEM label of a SEC1 EC private key, which the JWT crate does not read.
const SEC1: &[u8] = b"BEGIN EC PRIVATE KEY";

/// etcd's default JWT lifetime (`ttl` option).
pub const DEFAULT_JWT_TTL: Duration = Duration::from_secs(300);

/// What an etcd JWT carries.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The authenticated user.
    username: String,
    /// The auth revision the token was issued at.
    revision: u64,
    /// Expiry, in seconds since the Unix epoch.
    exp: u64,
}

/// Signs and verifies etcd's JWTs.
pub struct JwtTokens {
    /// The signature method (etcd's `sign-method`).
    algorithm: Algorithm,
    /// The signing key; `None` on a verify-only member (public key only).
    signing: Option<EncodingKey>,
    /// The verifying key.
    verifying: DecodingKey,
    /// How long a token is valid (etcd's `ttl`).
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens")
            .field("algorithm", &self.algorithm)
            .field("can_sign", &self.signing.is_some())
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum JwtSignError {
    /// This member has only the public key.
    #[error("auth: token signing attempted with verify-only key")]
    VerifyOnly,
    /// The signature failed.
    #[error("auth: signing a token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

impl JwtTokens {
    /// Builds a signer and verifier from PEM keys (for HMAC methods, `private` is the
    /// secret). `sign_method` is etcd's name (`RS256`, `PS384`, `ES256`, `HS512`, ...).
    pub fn new(
        sign_method: &str,
        private: Option<&[u8]>,
        public: Option<&[u8]>,
        ttl: Duration,
    ) -> Result<Self, TokenConfigError> {
        let algorithm: Algorithm = sign_method
            .parse()
            .map_err(|_| TokenConfigError::SignMethod(sign_method.to_string()))?;
        let bad = |e: jsonwebtoken::errors::Error| TokenConfigError::Key(e.to_string());
        let (signing, verifying) = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = private.ok_or(TokenConfigError::MissingKey)?;
                (
                    Some(EncodingKey::from_secret(secret).map_err(bad)?),
                    DecodingKey::from_secret(secret).map_err(bad)?,
                )
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => (
                private
                    .map(|k| EncodingKey::from_rsa_pem(k).map_err(bad))
                    .transpose()?,
                DecodingKey::from_rsa_pem(public.ok_or(TokenConfigError::MissingKey)?)
                    .map_err(bad)?,
            ),
            Algorithm::ES256 | Algorithm::ES384 => (
                private
                    .map(|k| {
                        if k.windows(SEC1.len()).any(|w| w == SEC1) {
                            return Err(TokenConfigError::Key(
                                "an EC private key must be PKCS#8 (\"PRIVATE KEY\"); convert a \
                                 SEC1 one with `openssl pkcs8 -topk8 -nocrypt`"
                                    .into(),
                            ));
                        }
                        EncodingKey::from_ec_pem(k).map_err(bad)
                    })
                    .transpose()?,
                DecodingKey::from_ec_pem(public.ok_or(TokenConfigError::MissingKey)?)
                    .map_err(bad)?,
            ),
            _ => return Err(TokenConfigError::SignMethod(sign_method.to_string())),
        };
        Ok(Self {
            algorithm,
            signing,
            verifying,
            ttl,
        })
    }

    /// A token for `username` at auth revision `revision`, valid for the TTL from `now`.
    pub fn sign(
        &self,
        username: &str,
        revision: u64,
        now: SystemTime,
    ) -> Result<String, JwtSignError> {
        let key = self.signing.as_ref().ok_or(JwtSignError::VerifyOnly)?;
        let exp = now
            .checked_add(self.ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            username: username.to_string(),
            revision,
            exp,
        };
        Ok(jsonwebtoken::encode(
            &Header::new(self.algorithm),
            &claims,
            key,
        )?)
    }

    /// The credentials `token` carries, if it verifies with this method and key and has not
    /// expired (no leeway, as etcd).
    pub fn verify(&self, token: &str) -> Option<AuthInfo> {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Claims>(token, &self.verifying, &validation).ok()?;
        Some(AuthInfo {
            username: data.claims.username,
            revision: data.claims.revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_tokens_round_trip_and_expire() {
        let t = JwtTokens::new("HS256", Some(b"secret"), None, Duration::from_secs(60))
            .expect("config");
        let token = t.sign("alice", 7, SystemTime::now()).expect("sign");
        assert_eq!(
            t.verify(&token),
            Some(AuthInfo {
                username: "alice".into(),
                revision: 7
            })
        );
        let old = SystemTime::now() - Duration::from_secs(120);
        let expired = t.sign("alice", 7, old).expect("sign");
        assert_eq!(t.verify(&expired), None);
        let other =
            JwtTokens::new("HS256", Some(b"other"), None, Duration::from_secs(60)).expect("config");
        assert_eq!(other.verify(&token), None);
        let method = JwtTokens::new("HS384", Some(b"secret"), None, Duration::from_secs(60))
            .expect("config");
        assert_eq!(method.verify(&token), None);
        assert_eq!(t.verify("not.a.token"), None);
    }

    #[test]
    fn unknown_methods_and_missing_keys_are_refused() {
        assert!(matches!(
            JwtTokens::new("XX256", Some(b"k"), None, DEFAULT_JWT_TTL),
            Err(TokenConfigError::SignMethod(_))
        ));
        assert!(matches!(
            JwtTokens::new("RS256", None, None, DEFAULT_JWT_TTL),
            Err(TokenConfigError::MissingKey)
        ));
        assert!(matches!(
            JwtTokens::new("HS256", None, None, DEFAULT_JWT_TTL),
            Err(TokenConfigError::MissingKey)
        ));
    }
}

//! etcd's JWT tokens (`--auth-token jwt,...`): stateless, signed by the member that answers
//! Authenticate, verified by any member holding the key. Claims are etcd's: `username`,
//! `revision` (the auth revision at Authenticate; a token older than the current auth state is
//! refused with "revision of auth store is old" when used) and `exp`.
//!
//! Signed and verified with ring, the one crypto library in the tree (rustls uses it):
//! RS256/384/512, PS256/384/512, ES256/384 and HS256/384/512. As etcd, the public key may be
//! left out when the private key is given (it is derived); a member with only the public key
//! verifies but cannot sign. Keys are PEM: private keys PKCS#8 (`PRIVATE KEY`), or PKCS#1 for
//! RSA (`RSA PRIVATE KEY`); public keys SubjectPublicKeyInfo (`PUBLIC KEY`). EC keys in SEC1
//! (`EC PRIVATE KEY`) are refused with how to convert them; ES512 and EdDSA are not offered.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::hmac;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use serde::{Deserialize, Serialize};

use super::provider::TokenConfigError;
use super::state::AuthInfo;

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

/// The JOSE header: only the algorithm matters.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

/// A method's family and digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Rs(u16),
    Ps(u16),
    Es(u16),
    Hs(u16),
}

impl Method {
    fn parse(name: &str) -> Option<Self> {
        let (family, bits) = name.split_at_checked(2)?;
        let bits: u16 = bits.parse().ok()?;
        let m = match family {
            "RS" => Method::Rs(bits),
            "PS" => Method::Ps(bits),
            "ES" if bits == 256 || bits == 384 => Method::Es(bits),
            "HS" => Method::Hs(bits),
            _ => return None,
        };
        matches!(bits, 256 | 384 | 512).then_some(m)
    }

    fn rsa_encoding(self) -> Option<&'static dyn signature::RsaEncoding> {
        Some(match self {
            Method::Rs(256) => &signature::RSA_PKCS1_SHA256,
            Method::Rs(384) => &signature::RSA_PKCS1_SHA384,
            Method::Rs(512) => &signature::RSA_PKCS1_SHA512,
            Method::Ps(256) => &signature::RSA_PSS_SHA256,
            Method::Ps(384) => &signature::RSA_PSS_SHA384,
            Method::Ps(512) => &signature::RSA_PSS_SHA512,
            _ => return None,
        })
    }

    fn verification(self) -> Option<&'static dyn signature::VerificationAlgorithm> {
        Some(match self {
            Method::Rs(256) => &signature::RSA_PKCS1_2048_8192_SHA256,
            Method::Rs(384) => &signature::RSA_PKCS1_2048_8192_SHA384,
            Method::Rs(512) => &signature::RSA_PKCS1_2048_8192_SHA512,
            Method::Ps(256) => &signature::RSA_PSS_2048_8192_SHA256,
            Method::Ps(384) => &signature::RSA_PSS_2048_8192_SHA384,
            Method::Ps(512) => &signature::RSA_PSS_2048_8192_SHA512,
            Method::Es(256) => &signature::ECDSA_P256_SHA256_FIXED,
            Method::Es(384) => &signature::ECDSA_P384_SHA384_FIXED,
            _ => return None,
        })
    }

    fn ecdsa_signing(self) -> Option<&'static signature::EcdsaSigningAlgorithm> {
        match self {
            Method::Es(256) => Some(&signature::ECDSA_P256_SHA256_FIXED_SIGNING),
            Method::Es(384) => Some(&signature::ECDSA_P384_SHA384_FIXED_SIGNING),
            _ => None,
        }
    }

    fn hmac(self) -> Option<hmac::Algorithm> {
        match self {
            Method::Hs(256) => Some(hmac::HMAC_SHA256),
            Method::Hs(384) => Some(hmac::HMAC_SHA384),
            Method::Hs(512) => Some(hmac::HMAC_SHA512),
            _ => None,
        }
    }
}

/// The signing half of a key.
enum Signer {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Hmac(hmac::Key),
}

/// The verifying half.
enum Verifier {
    /// A public key: the RSAPublicKey DER, or the EC point.
    Public(Vec<u8>),
    Hmac(hmac::Key),
}

/// Signs and verifies etcd's JWTs.
pub struct JwtTokens {
    /// etcd's `sign-method`, as given (the JOSE `alg`).
    name: String,
    method: Method,
    /// `None` on a verify-only member (public key only).
    signer: Option<Signer>,
    verifier: Verifier,
    /// How long a token is valid (etcd's `ttl`).
    ttl: Duration,
    rng: SystemRandom,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens")
            .field("method", &self.name)
            .field("can_sign", &self.signer.is_some())
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
    #[error("auth: signing a token failed")]
    Sign,
    /// The claims did not encode.
    #[error("auth: encoding a token: {0}")]
    Encode(String),
}

fn key_err(message: impl Into<String>) -> TokenConfigError {
    TokenConfigError::Key(message.into())
}

/// The subjectPublicKey BIT STRING's bytes of a SubjectPublicKeyInfo.
fn spki_key(spki: &[u8]) -> Option<Vec<u8>> {
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |a, &b| (a << 8) | usize::from(b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    let (0x30, inner, _) = tlv(spki)? else {
        return None;
    };
    let (0x30, _algorithm, rest) = tlv(inner)? else {
        return None;
    };
    let (0x03, bits, _) = tlv(rest)? else {
        return None;
    };
    let (&unused, key) = bits.split_first()?;
    (unused == 0).then(|| key.to_vec())
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
        let method = Method::parse(sign_method)
            .ok_or_else(|| TokenConfigError::SignMethod(sign_method.to_string()))?;
        let rng = SystemRandom::new();
        let (signer, derived) = match (method.hmac(), private) {
            (Some(alg), Some(secret)) => {
                let key = hmac::Key::new(alg, secret);
                (Some(Signer::Hmac(key.clone())), Some(Verifier::Hmac(key)))
            }
            (Some(_), None) => return Err(TokenConfigError::MissingKey),
            (None, Some(pem)) => {
                let der = PrivateKeyDer::from_pem_slice(pem)
                    .map_err(|e| key_err(format!("private key: {e}")))?;
                let signer = match (&der, method.ecdsa_signing()) {
                    (PrivateKeyDer::Sec1(_), _) => {
                        return Err(key_err(
                            "an EC private key must be PKCS#8 (\"PRIVATE KEY\"); convert a \
                             SEC1 one with `openssl pkcs8 -topk8 -nocrypt`",
                        ));
                    }
                    (PrivateKeyDer::Pkcs8(k), Some(alg)) => Signer::Ecdsa(
                        EcdsaKeyPair::from_pkcs8(alg, k.secret_pkcs8_der(), &rng)
                            .map_err(|e| key_err(format!("EC private key: {e}")))?,
                    ),
                    (PrivateKeyDer::Pkcs8(k), None) => Signer::Rsa(
                        RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
                            .map_err(|e| key_err(format!("RSA private key: {e}")))?,
                    ),
                    (PrivateKeyDer::Pkcs1(k), None) => Signer::Rsa(
                        RsaKeyPair::from_der(k.secret_pkcs1_der())
                            .map_err(|e| key_err(format!("RSA private key: {e}")))?,
                    ),
                    _ => return Err(key_err("the private key does not fit the sign-method")),
                };
                let public = match &signer {
                    Signer::Rsa(k) => k.public().as_ref().to_vec(),
                    Signer::Ecdsa(k) => k.public_key().as_ref().to_vec(),
                    Signer::Hmac(_) => Vec::new(),
                };
                (Some(signer), Some(Verifier::Public(public)))
            }
            (None, None) => (None, None),
        };
        let verifier = match (public, method.hmac()) {
            (Some(pem), None) => {
                let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem)
                    .map_err(|e| key_err(format!("public key: {e}")))?;
                Verifier::Public(
                    spki_key(spki.as_ref())
                        .ok_or_else(|| key_err("public key: not a SubjectPublicKeyInfo"))?,
                )
            }
            _ => derived.ok_or(TokenConfigError::MissingKey)?,
        };
        Ok(Self {
            name: sign_method.to_string(),
            method,
            signer,
            verifier,
            ttl,
            rng,
        })
    }

    /// A token for `username` at auth revision `revision`, valid for the TTL from `now`.
    pub fn sign(
        &self,
        username: &str,
        revision: u64,
        now: SystemTime,
    ) -> Result<String, JwtSignError> {
        let signer = self.signer.as_ref().ok_or(JwtSignError::VerifyOnly)?;
        let exp = now
            .checked_add(self.ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let header = Header {
            alg: self.name.clone(),
            typ: Some("JWT".into()),
        };
        let claims = Claims {
            username: username.to_string(),
            revision,
            exp,
        };
        let enc = |v: &dyn erased::Json| v.json().map_err(JwtSignError::Encode);
        let input = format!(
            "{}.{}",
            B64.encode(enc(&header)?),
            B64.encode(enc(&claims)?)
        );
        let sig = match signer {
            Signer::Hmac(key) => hmac::sign(key, input.as_bytes()).as_ref().to_vec(),
            Signer::Ecdsa(key) => key
                .sign(&self.rng, input.as_bytes())
                .map_err(|_| JwtSignError::Sign)?
                .as_ref()
                .to_vec(),
            Signer::Rsa(key) => {
                let encoding = self.method.rsa_encoding().ok_or(JwtSignError::Sign)?;
                let mut sig = vec![0; key.public().modulus_len()];
                key.sign(encoding, &self.rng, input.as_bytes(), &mut sig)
                    .map_err(|_| JwtSignError::Sign)?;
                sig
            }
        };
        Ok(format!("{input}.{}", B64.encode(sig)))
    }

    /// The credentials `token` carries, if it verifies with this method and key and has not
    /// expired (no leeway, as etcd).
    pub fn verify(&self, token: &str) -> Option<AuthInfo> {
        self.verify_at(token, SystemTime::now())
    }

    fn verify_at(&self, token: &str, now: SystemTime) -> Option<AuthInfo> {
        let (input, sig) = token.rsplit_once('.')?;
        let (header, claims) = input.split_once('.')?;
        let header: Header = serde_json::from_slice(&B64.decode(header).ok()?).ok()?;
        if header.alg != self.name {
            return None;
        }
        let sig = B64.decode(sig).ok()?;
        let ok = match &self.verifier {
            Verifier::Hmac(key) => hmac::verify(key, input.as_bytes(), &sig).is_ok(),
            Verifier::Public(public) => {
                let alg = self.method.verification()?;
                signature::UnparsedPublicKey::new(alg, public)
                    .verify(input.as_bytes(), &sig)
                    .is_ok()
            }
        };
        if !ok {
            return None;
        }
        let claims: Claims = serde_json::from_slice(&B64.decode(claims).ok()?).ok()?;
        let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        (claims.exp > now).then_some(AuthInfo {
            username: claims.username,
            revision: claims.revision,
        })
    }
}

/// JSON encoding of the two token parts through one function.
mod erased {
    pub trait Json {
        fn json(&self) -> Result<Vec<u8>, String>;
    }

    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> Result<Vec<u8>, String> {
            serde_json::to_vec(self).map_err(|e| e.to_string())
        }
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
        // A tampered payload fails the signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(br#"{"username":"root","revision":7,"exp":99999999999}"#);
        parts[1] = &forged;
        assert_eq!(t.verify(&parts.join(".")), None);
    }

    #[test]
    fn unknown_methods_and_missing_keys_are_refused() {
        assert!(matches!(
            JwtTokens::new("XX256", Some(b"k"), None, DEFAULT_JWT_TTL),
            Err(TokenConfigError::SignMethod(_))
        ));
        assert!(matches!(
            JwtTokens::new("ES512", Some(b"k"), None, DEFAULT_JWT_TTL),
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

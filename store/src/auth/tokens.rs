//! etcd's simple tokens: `<16 random letters>.<Raft index>`, valid on every member.
//!
//! How they work (as etcd 3.4's `simple_token.go`, over the log):
//! 1. The member that receives Authenticate checks the password against its applied state
//!    ([`AuthState::check_password`](super::AuthState::check_password)), draws a prefix
//!    ([`simple_token_prefix`]) and proposes `InternalAuthenticateRequest{name, simple_token}`.
//! 2. Every member (voters and learners alike) applies it: the token is `<prefix>.<index>`
//!    of the entry, and once the batch commits each member records token -> user in its own
//!    [`TokenTable`]. So a client may present the token to any member; a member that has not
//!    applied that index yet tells the caller to wait for it ([`TokenLookup::Pending`]).
//! 3. Expiry is node-local, as etcd's TTL keeper: each use refreshes a token, and
//!    [`Store::expire_tokens`](crate::Store::expire_tokens), which the node calls about every
//!    second with its own clock, drops tokens unused for the TTL (etcd's `--auth-token-ttl`,
//!    300 s by default). A token's clock starts at the first sweep or use after it applied,
//!    so the store itself never reads a clock.
//!
//! The table is memory only: like etcd, a member that restarts or installs a snapshot forgets
//! the tokens it knew, and clients authenticate again. Deleting a user or changing its
//! password drops its tokens; disabling auth drops them all.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::state::AuthInfo;

/// etcd's default `--auth-token-ttl`.
pub const DEFAULT_SIMPLE_TOKEN_TTL: Duration = Duration::from_secs(300);

/// Letters a simple token's prefix is drawn from (etcd's).
const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Length of the prefix (etcd's `defaultSimpleTokenLength`).
const PREFIX_LEN: usize = 16;

/// A fresh random prefix for a simple token, drawn by the proposing member (the apply path
/// must not draw random numbers: every member must compute the same token).
pub fn simple_token_prefix() -> Result<String, ring::error::Unspecified> {
    use ring::rand::SecureRandom as _;
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(PREFIX_LEN);
    // Rejection sampling keeps the letters uniform: 208 = 4 * 52.
    let limit = (256 / LETTERS.len() * LETTERS.len()) as u8;
    while out.len() < PREFIX_LEN {
        let mut buf = [0u8; 32];
        rng.fill(&mut buf)?;
        for b in buf {
            if b < limit && out.len() < PREFIX_LEN {
                out.push(char::from(LETTERS[usize::from(b) % LETTERS.len()]));
            }
        }
    }
    Ok(out)
}

/// The Raft index a simple token was issued at, if `token` has a simple token's shape
/// (`<prefix>.<index>`, as etcd's `isValidSimpleToken` reads it).
pub fn simple_token_index(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_, index, None) = (parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    index.parse().ok()
}

/// A change to a node's token table, made by an applied entry once its batch commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TokenChange {
    /// An Authenticate issued `token` to `user`.
    Assign {
        /// The token.
        token: String,
        /// Who it names.
        user: String,
    },
    /// The user was deleted or changed password: its tokens go.
    InvalidateUser(String),
    /// Auth was disabled: every token goes.
    Clear,
}

/// What a simple token resolves to on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenLookup {
    /// A known token: the user, with the auth revision of the node's current state (a simple
    /// token stays valid across auth changes, as in etcd).
    Valid(AuthInfo),
    /// Issued at an index this node has not applied yet: wait until it has, then look again.
    Pending {
        /// The index to wait for.
        index: u64,
    },
    /// Unknown, expired or malformed (etcd's "invalid auth token").
    Invalid,
}

/// One issued token.
#[derive(Clone, Debug)]
struct Entry {
    /// Who it names.
    user: String,
    /// When it was last used or swept; `None` until the first use or sweep after it applied.
    seen: Option<Instant>,
}

/// One group's simple tokens on this node.
#[derive(Debug, Default)]
pub(crate) struct TokenTable {
    /// Token -> its user and last use.
    tokens: HashMap<String, Entry>,
}

impl TokenTable {
    /// Applies the token changes of a committed batch.
    pub(crate) fn apply(&mut self, changes: Vec<TokenChange>) {
        for change in changes {
            match change {
                TokenChange::Assign { token, user } => {
                    self.tokens.insert(token, Entry { user, seen: None });
                }
                TokenChange::InvalidateUser(user) => self.tokens.retain(|_, e| e.user != user),
                TokenChange::Clear => self.tokens.clear(),
            }
        }
    }

    /// The user of `token`, refreshing its TTL clock to `now`.
    pub(crate) fn user(&mut self, token: &str, now: Instant) -> Option<String> {
        let entry = self.tokens.get_mut(token)?;
        entry.seen = Some(now);
        Some(entry.user.clone())
    }

    /// Drops tokens unused for longer than `ttl`; starts the clock of new ones. Returns how
    /// many were dropped.
    pub(crate) fn expire(&mut self, ttl: Duration, now: Instant) -> usize {
        let before = self.tokens.len();
        self.tokens.retain(|_, e| match e.seen {
            None => {
                e.seen = Some(now);
                true
            }
            Some(seen) => now.saturating_duration_since(seen) <= ttl,
        });
        before - self.tokens.len()
    }

    /// Keeps only tokens whose user `keep` accepts (after a snapshot replaced the state).
    pub(crate) fn retain_users(&mut self, keep: impl Fn(&str) -> bool) {
        self.tokens.retain(|_, e| keep(&e.user));
    }

    /// How many tokens are known.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_sixteen_random_letters() {
        let a = simple_token_prefix().expect("random");
        let b = simple_token_prefix().expect("random");
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_alphabetic()));
        assert_ne!(a, b);
    }

    #[test]
    fn token_index_is_etcds_reading() {
        assert_eq!(simple_token_index("abcdefghijklmnop.42"), Some(42));
        assert_eq!(simple_token_index("abc"), None);
        assert_eq!(simple_token_index("a.b.1"), None);
        assert_eq!(simple_token_index("a.x"), None);
    }

    #[test]
    fn tokens_expire_unless_used_and_go_with_their_user() {
        let mut t = TokenTable::default();
        let assign = |token: &str, user: &str| TokenChange::Assign {
            token: token.into(),
            user: user.into(),
        };
        t.apply(vec![assign("a.1", "alice"), assign("b.2", "bob")]);
        let ttl = Duration::from_secs(300);
        let t0 = Instant::now();
        assert_eq!(t.expire(ttl, t0), 0);
        assert_eq!(
            t.user("a.1", t0 + Duration::from_secs(200)),
            Some("alice".into())
        );
        assert_eq!(t.expire(ttl, t0 + Duration::from_secs(301)), 1);
        assert_eq!(t.user("b.2", t0), None);
        assert_eq!(
            t.user("a.1", t0 + Duration::from_secs(400)),
            Some("alice".into())
        );
        t.apply(vec![TokenChange::InvalidateUser("alice".into())]);
        assert_eq!(t.len(), 0);
        t.apply(vec![assign("c.3", "carol"), TokenChange::Clear]);
        assert_eq!(t.len(), 0);
    }
}

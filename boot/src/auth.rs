//! etcd's auth flags, taken alike by the voter and the learner (both issue and check tokens
//! from their own copy of the replicated auth state).

/// etcd's `--auth-token`, `--auth-token-ttl` and `--bcrypt-cost`.
#[derive(Clone, Debug, clap::Args, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AuthFlags {
    /// The tokens Authenticate issues: `simple`, or
    /// `jwt,pub-key=<file>,priv-key=<file>,sign-method=<RS256|ES256|...>[,ttl=<duration>]`.
    #[arg(long, default_value = "simple")]
    pub auth_token: String,
    /// Seconds an unused simple token lives.
    #[arg(long, default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// bcrypt's cost for the passwords hashed here (4 to 31; others mean 10).
    #[arg(long, default_value_t = 10)]
    pub bcrypt_cost: u32,
}

impl Default for AuthFlags {
    fn default() -> Self {
        Self {
            auth_token: "simple".into(),
            auth_token_ttl: 300,
            bcrypt_cost: 10,
        }
    }
}

/// The flags' names, for a binary's list of etcd's flags (`ETCD_` environment variables).
pub const AUTH_FLAGS: &[&str] = &["auth-token", "auth-token-ttl", "bcrypt-cost"];

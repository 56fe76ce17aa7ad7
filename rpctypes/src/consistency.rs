//! The consistency level a client picked for a read, and the gRPC metadata names mango
//! reads and writes: `mango-consistency: linearizable | learner-linearizable | stale |
//! bounded=<ms>`, else etcd's own `serializable` flag (true: stale, false: linearizable).

use std::time::Duration;

/// The metadata key naming a read's consistency level.
pub const CONSISTENCY_HEADER: &str = "mango-consistency";
/// The metadata key with the lowest revision a read may be served at (read-your-writes
/// through the proxy: the revision the client connection has already seen).
pub const MIN_REVISION_HEADER: &str = "mango-min-revision";
/// The metadata key naming the keyspace a request is for.
pub const KEYSPACE_HEADER: &str = "mango-keyspace";
/// Response metadata: how far behind the leader a learner's answer was, in milliseconds.
pub const LAG_MS_HEADER: &str = "mango-lag-ms";
/// Response metadata: how far behind the leader a learner's answer was, in log entries.
pub const LAG_ENTRIES_HEADER: &str = "mango-lag-entries";
/// Status response metadata, `true` while auth is enabled: the proxy stops serving its
/// shared stale-read cache (one user's answers must not reach another, or anonymous clients).
pub const AUTH_ENABLED_HEADER: &str = "mango-auth-enabled";

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began (a Raft ReadIndex round).
    Linearizable,
    /// Linearizable, served by a learner: it waits until it has applied an index a leader
    /// confirmed after the read arrived. The same guarantee as `Linearizable`.
    LearnerLinearizable,
    /// Whatever this member has applied (etcd's `serializable`).
    Stale,
    /// No older than this: the member's data was known to be current at most this long ago,
    /// else the read is refused.
    Bounded(Duration),
}

impl Consistency {
    /// Parses a metadata value.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "linearizable" => Some(Consistency::Linearizable),
            "learner-linearizable" => Some(Consistency::LearnerLinearizable),
            "stale" | "serializable" => Some(Consistency::Stale),
            other => {
                let ms = other.strip_prefix("bounded=")?.trim().parse::<u64>().ok()?;
                Some(Consistency::Bounded(Duration::from_millis(ms)))
            }
        }
    }

    /// The level etcd's `serializable` flag means when no metadata names one.
    pub fn of_flag(serializable: bool) -> Self {
        if serializable {
            Consistency::Stale
        } else {
            Consistency::Linearizable
        }
    }

    /// The metadata value naming this level.
    pub fn header_value(&self) -> String {
        match self {
            Consistency::Linearizable => "linearizable".into(),
            Consistency::LearnerLinearizable => "learner-linearizable".into(),
            Consistency::Stale => "stale".into(),
            Consistency::Bounded(d) => format!("bounded={}", d.as_millis()),
        }
    }

    /// The error text for a metadata value that names no level.
    pub fn bad_value_message(value: &str) -> String {
        format!(
            "mango: bad {CONSISTENCY_HEADER} {value:?}: expected linearizable, \
             learner-linearizable, stale or bounded=<ms>"
        )
    }
}

#[cfg(feature = "tonic")]
impl Consistency {
    /// The level of a read: the metadata if present, else etcd's `serializable` flag. A value
    /// that names no level is `InvalidArgument`.
    pub fn of(
        metadata: &tonic::metadata::MetadataMap,
        serializable: bool,
    ) -> Result<Self, tonic::Status> {
        let Some(value) = metadata.get(CONSISTENCY_HEADER) else {
            return Ok(Self::of_flag(serializable));
        };
        let text = value.to_str().map_err(|_| {
            tonic::Status::invalid_argument(Self::bad_value_message(&String::from_utf8_lossy(
                value.as_bytes(),
            )))
        })?;
        Self::parse(text)
            .ok_or_else(|| tonic::Status::invalid_argument(Self::bad_value_message(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_level_and_round_trips() {
        for level in [
            Consistency::Linearizable,
            Consistency::LearnerLinearizable,
            Consistency::Stale,
            Consistency::Bounded(Duration::from_millis(250)),
        ] {
            assert_eq!(Consistency::parse(&level.header_value()), Some(level));
        }
        assert_eq!(Consistency::parse("serializable"), Some(Consistency::Stale));
        assert_eq!(Consistency::parse("bounded=x"), None);
        assert_eq!(Consistency::parse("fast"), None);
        assert_eq!(Consistency::of_flag(true), Consistency::Stale);
    }

    #[cfg(feature = "tonic")]
    #[test]
    fn metadata_wins_over_the_flag_and_bad_values_are_refused() {
        let mut md = tonic::metadata::MetadataMap::new();
        assert_eq!(
            Consistency::of(&md, false).ok(),
            Some(Consistency::Linearizable)
        );
        md.insert(CONSISTENCY_HEADER, "stale".parse().expect("ascii"));
        assert_eq!(Consistency::of(&md, false).ok(), Some(Consistency::Stale));
        md.insert(CONSISTENCY_HEADER, "nope".parse().expect("ascii"));
        let err = Consistency::of(&md, false).err().map(|s| s.code());
        assert_eq!(err, Some(tonic::Code::InvalidArgument));
    }
}

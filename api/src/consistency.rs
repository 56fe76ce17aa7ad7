//! The consistency level a client picked for a read: gRPC metadata
//! `mango-consistency: linearizable | learner-linearizable | stale | bounded=<ms>`, else etcd's
//! own `serializable` flag (true: stale, false: linearizable).

use std::time::Duration;

use tonic::Status;
use tonic::metadata::MetadataMap;

/// The metadata key.
pub const CONSISTENCY_HEADER: &str = "mango-consistency";

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began (a Raft ReadIndex round).
    Linearizable,
    /// Linearizable, served by a learner: its upstream gets the read index from the leader and
    /// the learner waits until it has applied that far. The same guarantee as `Linearizable`.
    LearnerLinearizable,
    /// Whatever this member has applied (etcd's `serializable`).
    Stale,
    /// No older than this: the member's data was known to be current at most this long ago,
    /// else the read is refused.
    Bounded(Duration),
}

impl Consistency {
    /// The level of a read: the metadata if present, else etcd's `serializable` flag.
    pub fn of(metadata: &MetadataMap, serializable: bool) -> Result<Self, Status> {
        let Some(value) = metadata.get(CONSISTENCY_HEADER) else {
            return Ok(if serializable {
                Consistency::Stale
            } else {
                Consistency::Linearizable
            });
        };
        let text = value
            .to_str()
            .map_err(|_| bad(&String::from_utf8_lossy(value.as_bytes())))?;
        Self::parse(text).ok_or_else(|| bad(text))
    }

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
}

fn bad(value: &str) -> Status {
    Status::invalid_argument(format!(
        "mango: bad {CONSISTENCY_HEADER} {value:?}: expected linearizable, \
         learner-linearizable, stale or bounded=<ms>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_level_and_falls_back_to_serializable() {
        assert_eq!(
            Consistency::parse("linearizable"),
            Some(Consistency::Linearizable)
        );
        assert_eq!(
            Consistency::parse("learner-linearizable"),
            Some(Consistency::LearnerLinearizable)
        );
        assert_eq!(Consistency::parse("stale"), Some(Consistency::Stale));
        assert_eq!(
            Consistency::parse("bounded=250"),
            Some(Consistency::Bounded(Duration::from_millis(250)))
        );
        assert_eq!(Consistency::parse("bounded=x"), None);
        assert_eq!(Consistency::parse("fresh"), None);

        let mut md = MetadataMap::new();
        assert_eq!(Consistency::of(&md, true).ok(), Some(Consistency::Stale));
        assert_eq!(
            Consistency::of(&md, false).ok(),
            Some(Consistency::Linearizable)
        );
        md.insert(
            CONSISTENCY_HEADER,
            "bounded=5".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(
            Consistency::of(&md, false).ok(),
            Some(Consistency::Bounded(Duration::from_millis(5)))
        );
        md.insert(
            CONSISTENCY_HEADER,
            "nope".parse().unwrap_or_else(|_| unreachable!()),
        );
        let err = Consistency::of(&md, false).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
}

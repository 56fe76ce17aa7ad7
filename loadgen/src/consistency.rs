//! Read consistency levels: etcd's own (`l`, `s`) and mango's, which travel as gRPC metadata.

use std::fmt;
use std::str::FromStr;

use tonic::metadata::{AsciiMetadataValue, MetadataMap};

/// The gRPC metadata key that carries mango's consistency level; etcd ignores it.
pub const METADATA_KEY: &str = "mango-consistency";

/// A read consistency level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// etcd linearizable: `serializable = false`.
    Linearizable,
    /// etcd serializable: `serializable = true`.
    Serializable,
    /// mango: linearizable read served by a learner (metadata only).
    LearnerLinearizable,
    /// mango: stale read from any learner (metadata only).
    Stale,
    /// mango: no staler than this many milliseconds (metadata only).
    Bounded(u64),
}

impl Consistency {
    /// The value of `RangeRequest.serializable`: only etcd's `s` sets it; mango's levels are
    /// carried by the metadata alone.
    pub fn serializable(self) -> bool {
        matches!(self, Consistency::Serializable)
    }

    /// The `mango-consistency` metadata value to send, if any.
    pub fn metadata_value(self) -> Option<AsciiMetadataValue> {
        let text = match self {
            Consistency::Linearizable | Consistency::Serializable => return None,
            Consistency::LearnerLinearizable => "learner-linearizable".to_owned(),
            Consistency::Stale => "stale".to_owned(),
            Consistency::Bounded(ms) => format!("bounded={ms}"),
        };
        AsciiMetadataValue::try_from(text).ok()
    }

    /// Adds the metadata for this level (if any) to a request's metadata.
    pub fn apply(value: &Option<AsciiMetadataValue>, metadata: &mut MetadataMap) {
        if let Some(v) = value {
            metadata.insert(METADATA_KEY, v.clone());
        }
    }
}

impl FromStr for Consistency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "l" | "linearizable" => Ok(Consistency::Linearizable),
            "s" | "serializable" => Ok(Consistency::Serializable),
            "learner-linearizable" => Ok(Consistency::LearnerLinearizable),
            "stale" => Ok(Consistency::Stale),
            _ => match s.strip_prefix("bounded=").map(str::parse::<u64>) {
                Some(Ok(ms)) => Ok(Consistency::Bounded(ms)),
                _ => Err(format!(
                    "unknown consistency {s:?}: expected l, s, learner-linearizable, stale or \
                     bounded=<ms>"
                )),
            },
        }
    }
}

impl fmt::Display for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Consistency::Linearizable => f.write_str("l"),
            Consistency::Serializable => f.write_str("s"),
            Consistency::LearnerLinearizable => f.write_str("learner-linearizable"),
            Consistency::Stale => f.write_str("stale"),
            Consistency::Bounded(ms) => write!(f, "bounded={ms}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_level_and_round_trips() {
        for s in [
            "l",
            "s",
            "learner-linearizable",
            "stale",
            "bounded=0",
            "bounded=1500",
        ] {
            let c: Consistency = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
        }
        assert_eq!("linearizable".parse(), Ok(Consistency::Linearizable));
        assert!("bounded=".parse::<Consistency>().is_err());
        assert!("bounded=-1".parse::<Consistency>().is_err());
        assert!("L".parse::<Consistency>().is_err());
    }

    #[test]
    fn only_s_sets_serializable_and_only_mango_levels_send_metadata() {
        let cases = [
            ("l", false, None),
            ("s", true, None),
            ("learner-linearizable", false, Some("learner-linearizable")),
            ("stale", false, Some("stale")),
            ("bounded=250", false, Some("bounded=250")),
        ];
        for (s, serializable, meta) in cases {
            let c: Consistency = s.parse().unwrap();
            assert_eq!(c.serializable(), serializable, "{s}");
            let v = c.metadata_value();
            assert_eq!(v.as_ref().map(|v| v.to_str().unwrap()), meta, "{s}");
            let mut map = MetadataMap::new();
            Consistency::apply(&v, &mut map);
            assert_eq!(
                map.get(METADATA_KEY).map(|v| v.to_str().unwrap()),
                meta,
                "{s}"
            );
        }
    }
}

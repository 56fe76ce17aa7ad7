//! The simulated network's datagrams: Raft messages between nodes, and client requests and
//! answers. One datagram, one message, so the network's drops and delays are Raft's message
//! loss and delay, as in the model Raft is proven in.

use protobuf::Message as _;
use raft::eraftpb::Message;

/// The port every simulated node listens on (peers and clients alike).
pub const PORT: u16 = 9000;

/// What a client asks a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Put `value` at `key` in Raft group `group`.
    Put {
        group: u64,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// A linearizable read of `key` in `group` (ReadIndex, then the local store).
    Get { group: u64, key: Vec<u8> },
    /// A membership change of `group`: node `node` added as a voter, or removed.
    Member { group: u64, add: bool, node: u64 },
}

/// What a node answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The put applied at this revision.
    Put { revision: i64 },
    /// The key's value (None: absent), read at this revision.
    Get {
        value: Option<Vec<u8>>,
        revision: i64,
    },
    /// The membership change was applied.
    Changed,
    /// The request failed; it may or may not have taken effect (a put), or did not (a get).
    Failed(String),
}

/// One datagram.
#[derive(Debug)]
pub enum Datagram {
    /// A Raft message of `group` from node `from`.
    Raft {
        from: u64,
        group: u64,
        message: Box<Message>,
    },
    /// A Raft snapshot message of `group` from node `from`, with the state machine's bytes
    /// (a voter streams them beside the message; here they travel in one datagram).
    Snapshot {
        from: u64,
        group: u64,
        message: Box<Message>,
        data: Vec<u8>,
    },
    /// A client's request `id`.
    Request { id: u64, request: Request },
    /// The answer to request `id`.
    Answer { id: u64, answer: Answer },
}

const RAFT: u8 = 1;
const PUT: u8 = 2;
const GET: u8 = 3;
const PUT_OK: u8 = 4;
const GET_OK: u8 = 5;
const GET_NONE: u8 = 6;
const FAILED: u8 = 7;
const SNAPSHOT: u8 = 8;
const MEMBER: u8 = 9;
const CHANGED: u8 = 10;

impl Datagram {
    /// The bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Datagram::Raft {
                from,
                group,
                message,
            } => {
                out.push(RAFT);
                out.extend_from_slice(&from.to_be_bytes());
                out.extend_from_slice(&group.to_be_bytes());
                // Encoding a message we built cannot fail; an empty body is dropped by the
                // receiver as malformed.
                out.extend(message.write_to_bytes().unwrap_or_default());
            }
            Datagram::Snapshot {
                from,
                group,
                message,
                data,
            } => {
                out.push(SNAPSHOT);
                out.extend_from_slice(&from.to_be_bytes());
                out.extend_from_slice(&group.to_be_bytes());
                field(&mut out, &message.write_to_bytes().unwrap_or_default());
                out.extend_from_slice(data);
            }
            Datagram::Request { id, request } => match request {
                Request::Put { group, key, value } => {
                    head(&mut out, PUT, *id);
                    out.extend_from_slice(&group.to_be_bytes());
                    field(&mut out, key);
                    field(&mut out, value);
                }
                Request::Get { group, key } => {
                    head(&mut out, GET, *id);
                    out.extend_from_slice(&group.to_be_bytes());
                    field(&mut out, key);
                }
                Request::Member { group, add, node } => {
                    head(&mut out, MEMBER, *id);
                    out.extend_from_slice(&group.to_be_bytes());
                    out.push(u8::from(*add));
                    out.extend_from_slice(&node.to_be_bytes());
                }
            },
            Datagram::Answer { id, answer } => match answer {
                Answer::Put { revision } => {
                    head(&mut out, PUT_OK, *id);
                    out.extend_from_slice(&revision.to_be_bytes());
                }
                Answer::Get { value, revision } => {
                    head(
                        &mut out,
                        if value.is_some() { GET_OK } else { GET_NONE },
                        *id,
                    );
                    out.extend_from_slice(&revision.to_be_bytes());
                    if let Some(v) = value {
                        field(&mut out, v);
                    }
                }
                Answer::Changed => head(&mut out, CHANGED, *id),
                Answer::Failed(why) => {
                    head(&mut out, FAILED, *id);
                    field(&mut out, why.as_bytes());
                }
            },
        }
        out
    }

    /// Parses a datagram; None if it is malformed.
    pub fn decode(bytes: &[u8]) -> Option<Datagram> {
        let (&kind, rest) = bytes.split_first()?;
        let mut r = Reader(rest);
        Some(match kind {
            RAFT => {
                let from = r.u64()?;
                let group = r.u64()?;
                let message = Message::parse_from_bytes(r.0).ok()?;
                Datagram::Raft {
                    from,
                    group,
                    message: Box::new(message),
                }
            }
            SNAPSHOT => {
                let from = r.u64()?;
                let group = r.u64()?;
                let message = Message::parse_from_bytes(&r.field()?).ok()?;
                Datagram::Snapshot {
                    from,
                    group,
                    message: Box::new(message),
                    data: r.0.to_vec(),
                }
            }
            PUT => {
                let id = r.u64()?;
                let group = r.u64()?;
                let key = r.field()?;
                let value = r.field()?;
                Datagram::Request {
                    id,
                    request: Request::Put { group, key, value },
                }
            }
            GET => {
                let id = r.u64()?;
                let group = r.u64()?;
                let key = r.field()?;
                Datagram::Request {
                    id,
                    request: Request::Get { group, key },
                }
            }
            MEMBER => {
                let id = r.u64()?;
                let group = r.u64()?;
                let add = r.take(1)?[0] == 1;
                let node = r.u64()?;
                Datagram::Request {
                    id,
                    request: Request::Member { group, add, node },
                }
            }
            CHANGED => Datagram::Answer {
                id: r.u64()?,
                answer: Answer::Changed,
            },
            PUT_OK => {
                let id = r.u64()?;
                let revision = r.i64()?;
                Datagram::Answer {
                    id,
                    answer: Answer::Put { revision },
                }
            }
            GET_OK | GET_NONE => {
                let id = r.u64()?;
                let revision = r.i64()?;
                let value = if kind == GET_OK {
                    Some(r.field()?)
                } else {
                    None
                };
                Datagram::Answer {
                    id,
                    answer: Answer::Get { value, revision },
                }
            }
            FAILED => {
                let id = r.u64()?;
                let why = String::from_utf8_lossy(&r.field()?).into_owned();
                Datagram::Answer {
                    id,
                    answer: Answer::Failed(why),
                }
            }
            _ => return None,
        })
    }
}

fn head(out: &mut Vec<u8>, kind: u8, id: u64) {
    out.push(kind);
    out.extend_from_slice(&id.to_be_bytes());
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes[..len as usize]);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn field(&mut self) -> Option<Vec<u8>> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().ok()?) as usize;
        Some(self.take(len)?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(d: Datagram) -> Datagram {
        Datagram::decode(&d.encode()).expect("decodes")
    }

    #[test]
    fn requests_and_answers_round_trip() {
        for request in [
            Request::Put {
                group: 0,
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
            Request::Get {
                group: 2,
                key: vec![],
            },
            Request::Member {
                group: 0,
                add: true,
                node: 11,
            },
            Request::Member {
                group: 1,
                add: false,
                node: 2,
            },
        ] {
            let Datagram::Request { id, request: back } = roundtrip(Datagram::Request {
                id: 7,
                request: request.clone(),
            }) else {
                panic!("not a request");
            };
            assert_eq!((id, back), (7, request));
        }
        for answer in [
            Answer::Put { revision: 3 },
            Answer::Get {
                value: None,
                revision: 4,
            },
            Answer::Get {
                value: Some(b"x".to_vec()),
                revision: 5,
            },
            Answer::Changed,
            Answer::Failed("no leader".into()),
        ] {
            let Datagram::Answer { id, answer: back } = roundtrip(Datagram::Answer {
                id: 9,
                answer: answer.clone(),
            }) else {
                panic!("not an answer");
            };
            assert_eq!((id, back), (9, answer));
        }
    }

    #[test]
    fn raft_messages_round_trip_and_garbage_is_refused() {
        let mut m = Message::default();
        m.set_to(2);
        m.set_term(5);
        let Datagram::Raft {
            from,
            group,
            message,
        } = roundtrip(Datagram::Raft {
            from: 1,
            group: 0,
            message: Box::new(m.clone()),
        })
        else {
            panic!("not raft");
        };
        assert_eq!((from, group, *message), (1, 0, m.clone()));
        let Datagram::Snapshot { message, data, .. } = roundtrip(Datagram::Snapshot {
            from: 2,
            group: 0,
            message: Box::new(m.clone()),
            data: b"state".to_vec(),
        }) else {
            panic!("not a snapshot");
        };
        assert_eq!((*message, data), (m, b"state".to_vec()));
        assert!(Datagram::decode(&[]).is_none());
        assert!(Datagram::decode(&[PUT, 0, 0]).is_none());
        assert!(Datagram::decode(&[99]).is_none());
    }
}

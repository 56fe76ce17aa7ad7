//! A simulated client: puts and linearizable gets on a few keys of each Raft group, each
//! sent to a node picked at random, recorded as a history of invocations and completions. A put whose answer does
//! not come (or that failed: the node may have proposed it anyway) has an unknown outcome; a
//! get that failed observed nothing and is left out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use mango_checker::{Op, Operation};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use turmoil::net::UdpSocket;

use crate::record::{Shared, now_us};
use crate::wire::{Answer, Datagram, PORT, Request};

/// How long a client waits for an answer (a little longer than a node works on one).
const ANSWER_TIMEOUT: Duration = Duration::from_millis(1_500);

#[derive(Clone, Debug)]
pub struct ClientSpec {
    /// Client number (0..).
    pub index: usize,
    /// The nodes' host names.
    pub nodes: Vec<String>,
    /// The keys it works on, with the group each belongs to.
    pub keys: Vec<(u64, Vec<u8>)>,
    pub seed: u64,
    /// It starts no operation after this much simulated time.
    pub until: Duration,
    pub record: Shared,
}

pub async fn run(spec: ClientSpec) -> turmoil::Result {
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT)).await?;
    let mut buf = vec![0u8; 1 << 16];
    let mut n: u64 = 0;
    while turmoil::sim_elapsed().unwrap_or_default() < spec.until {
        n += 1;
        let id = ((spec.index as u64) << 32) | n;
        let (group, key) = spec.keys[rng.random_range(0..spec.keys.len())].clone();
        let node = &spec.nodes[rng.random_range(0..spec.nodes.len())];
        let put = rng.random_bool(0.5);
        let request = if put {
            Request::Put {
                group,
                key: key.clone(),
                value: format!("c{}-{n}", spec.index).into_bytes(),
            }
        } else {
            Request::Get {
                group,
                key: key.clone(),
            }
        };
        let to = SocketAddr::new(turmoil::lookup(node.as_str()), PORT);
        let call = now_us();
        let _ = sock.try_send_to(
            &Datagram::Request {
                id,
                request: request.clone(),
            }
            .encode(),
            to,
        );
        let answer = await_answer(&sock, &mut buf, id).await;
        let ret = now_us();
        let (op, ret, line) = match (&request, &answer) {
            (Request::Put { value, .. }, Some(Answer::Put { revision })) => (
                Some(Op::Write(Some(value.clone()))),
                Some(ret),
                format!("put ok rev {revision}"),
            ),
            // Raft refused it before proposing: it never took effect.
            (Request::Put { .. }, Some(Answer::Failed(e)))
                if e == "no leader" || e == "proposal dropped" =>
            {
                (None, None, format!("put failed ({e})"))
            }
            (Request::Put { value, .. }, other) => (
                Some(Op::Write(Some(value.clone()))),
                None,
                format!("put unknown ({})", why(other)),
            ),
            (Request::Get { .. }, Some(Answer::Get { value, revision })) => (
                Some(Op::Read(value.clone())),
                Some(ret),
                format!(
                    "get ok rev {revision} = {}",
                    value
                        .as_deref()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default()
                ),
            ),
            (Request::Get { .. }, other) => (None, None, format!("get failed ({})", why(other))),
            // Clients make no membership changes.
            (Request::Member { .. }, _) => (None, None, "membership change".into()),
        };
        spec.record.event(format!(
            "c{} #{n} {} {node}: {line}",
            spec.index,
            String::from_utf8_lossy(&key)
        ));
        if let Some(op) = op {
            let mut r = spec.record.lock();
            if ret.is_some() {
                *r.completed_by_group.entry(group).or_default() += 1;
            }
            r.history.record(
                &key,
                Operation {
                    client: spec.index,
                    call,
                    ret,
                    op,
                },
            );
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..5))).await;
    }
    Ok(())
}

fn why(answer: &Option<Answer>) -> String {
    match answer {
        None => "no answer".into(),
        Some(Answer::Failed(e)) => e.clone(),
        Some(other) => format!("{other:?}"),
    }
}

/// The answer to request `id`, if it comes in time (answers to earlier requests that come
/// late are dropped).
async fn await_answer(sock: &UdpSocket, buf: &mut [u8], id: u64) -> Option<Answer> {
    let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
    loop {
        let got = tokio::time::timeout_at(deadline, sock.recv_from(buf))
            .await
            .ok()?;
        let Ok((n, _)) = got else {
            return None;
        };
        if let Some(Datagram::Answer { id: got, answer }) = Datagram::decode(&buf[..n])
            && got == id
        {
            return Some(answer);
        }
    }
}

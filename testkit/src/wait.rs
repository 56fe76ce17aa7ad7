//! Waiting on observable state instead of sleeping a fixed time: poll a condition until it
//! holds, and panic naming what was awaited (and the last thing seen) when it never does.
//!
//! A condition is a closure returning a [`Ready`]: `bool`, `Option<T>` (ready with the value)
//! or `Result<T, E>` (ready with the value; the last error is shown if time runs out).

use std::fmt::{Debug, Display};
use std::time::{Duration, Instant};

/// What a polled condition answers: ready (with a value), or not yet (with what was seen).
pub trait Ready {
    /// What a wait returns once the condition holds.
    type Output;
    /// `Ok(output)` when ready; `Err(seen)` (what to show if time runs out) otherwise.
    fn ready(self) -> Result<Self::Output, Option<String>>;
}

impl Ready for bool {
    type Output = ();
    fn ready(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Ready for Option<T> {
    type Output = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Debug> Ready for Result<T, E> {
    type Output = T;
    fn ready(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(format!("{e:?}")))
    }
}

/// The pause between two polls: short at first (most waits end within milliseconds), then
/// longer (a poll may start a process, such as etcdctl).
fn pause(polls: u32) -> Duration {
    Duration::from_millis(match polls {
        0..=4 => 10,
        5..=14 => 25,
        _ => 50,
    })
}

fn timed_out(timeout: Duration, what: &dyn Display, seen: Option<String>) -> ! {
    match seen {
        Some(seen) => panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}"),
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Polls `condition` until it is ready and returns its value; panics after `timeout` with
/// `what` (say what is awaited: "a leader", "v2 on the old leader").
pub fn wait_until<R: Ready>(
    timeout: Duration,
    what: impl Display,
    mut condition: impl FnMut() -> R,
) -> R::Output {
    let start = Instant::now();
    let mut polls = 0;
    loop {
        match condition().ready() {
            Ok(out) => return out,
            Err(seen) if start.elapsed() >= timeout => timed_out(timeout, &what, seen),
            Err(_) => {}
        }
        std::thread::sleep(pause(polls));
        polls += 1;
    }
}

/// [`wait_until`] for async tests: the condition is a closure returning a future (clone
/// what it needs into it: clients are cheap to clone), and the pauses do not block the
/// runtime. `what` is rendered at once, so the wait is `Send` whenever the condition's
/// futures are (for waits in spawned tasks).
pub fn wait_until_async<R: Ready, F: Future<Output = R>>(
    timeout: Duration,
    what: impl Display,
    mut condition: impl FnMut() -> F,
) -> impl Future<Output = R::Output> {
    let what = what.to_string();
    async move {
        let start = Instant::now();
        let mut polls = 0;
        loop {
            match condition().await.ready() {
                Ok(out) => return out,
                Err(seen) if start.elapsed() >= timeout => timed_out(timeout, &what, seen),
                Err(_) => {}
            }
            tokio::time::sleep(pause(polls)).await;
            polls += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_ready() {
        let mut n = 0;
        let got = wait_until(Duration::from_secs(5), "n to reach 3", || {
            n += 1;
            (n >= 3).then_some(n)
        });
        assert_eq!(got, 3);
    }

    #[test]
    #[should_panic(expected = "waiting for the impossible; last seen: \"nope\"")]
    fn names_what_was_awaited_and_the_last_error() {
        wait_until(Duration::from_millis(30), "the impossible", || {
            Err::<(), _>("nope")
        });
    }

    #[tokio::test]
    async fn async_waits_can_run_in_spawned_tasks() {
        let polls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = polls.clone();
        tokio::spawn(wait_until_async(
            Duration::from_secs(5),
            "three polls",
            move || {
                let polls = counted.clone();
                async move { polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 2 }
            },
        ))
        .await
        .unwrap();
        assert_eq!(polls.load(std::sync::atomic::Ordering::Relaxed), 3);
    }
}

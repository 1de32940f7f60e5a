//! Identical misses in flight together: the first goes upstream, the others wait for its
//! answer (at most `cache.coalesce_wait`) and are served it as hits. If the first fails,
//! or its answer is not stored, or the wait runs out, each goes upstream itself. Per
//! replica: another replica's identical request is not waited for.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;

use crate::cache::entry::Entry;

/// Where a flight stands.
#[derive(Clone)]
pub enum Outcome {
    Pending,
    Stored(Arc<Entry>),
    Failed,
}

#[derive(Default)]
pub struct Flights {
    pending: Mutex<HashMap<[u8; 32], watch::Receiver<Outcome>>>,
}

/// How a miss joins the flights.
pub enum Join {
    /// The first: it goes upstream and reports through the flight.
    Leader(Flight),
    /// Another is on its way: wait for it.
    Follower(watch::Receiver<Outcome>),
}

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], watch::Receiver<Outcome>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn join(self: &Arc<Self>, key: [u8; 32]) -> Join {
        let mut pending = self.lock();
        if let Some(waiting) = pending.get(&key) {
            return Join::Follower(waiting.clone());
        }
        let (sender, receiver) = watch::channel(Outcome::Pending);
        pending.insert(key, receiver);
        Join::Leader(Flight {
            key,
            sender,
            flights: self.clone(),
        })
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.lock().len()
    }
}

/// Waits for the leader's stored answer; `None` when it failed, was not stored, or took
/// longer than `wait`.
pub async fn follow(mut waiting: watch::Receiver<Outcome>, wait: Duration) -> Option<Arc<Entry>> {
    let settled = waiting.wait_for(|o| !matches!(o, Outcome::Pending));
    match tokio::time::timeout(wait, settled).await {
        Ok(Ok(outcome)) => match &*outcome {
            Outcome::Stored(entry) => Some(entry.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// A leader's miss in flight. Dropped without [`Flight::stored`] (the request failed or
/// its answer was not cacheable), its followers go upstream themselves.
pub struct Flight {
    key: [u8; 32],
    sender: watch::Sender<Outcome>,
    flights: Arc<Flights>,
}

impl Flight {
    /// The answer was stored: the followers are served it.
    pub fn stored(self, entry: Arc<Entry>) {
        self.sender.send_replace(Outcome::Stored(entry));
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.flights.lock().remove(&self.key);
        if matches!(*self.sender.borrow(), Outcome::Pending) {
            self.sender.send_replace(Outcome::Failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Arc<Entry> {
        crate::cache::entry::sample("m", 0, 2)
    }

    #[tokio::test]
    async fn followers_get_the_leaders_answer_or_go_themselves() {
        let flights = Arc::new(Flights::default());
        let Join::Leader(leader) = flights.join([1; 32]) else {
            panic!("the first is the leader");
        };
        let followers: Vec<_> = (0..5)
            .map(|_| match flights.join([1; 32]) {
                Join::Follower(w) => tokio::spawn(follow(w, Duration::from_secs(5))),
                Join::Leader(_) => panic!("one leader per key"),
            })
            .collect();
        leader.stored(entry());
        for follower in followers {
            assert!(follower.await.unwrap().is_some());
        }
        assert_eq!(flights.in_flight(), 0);

        // A leader that fails releases its followers at once, empty-handed.
        let Join::Leader(leader) = flights.join([2; 32]) else {
            panic!("the first is the leader");
        };
        let Join::Follower(waiting) = flights.join([2; 32]) else {
            panic!("a follower");
        };
        let follower = tokio::spawn(follow(waiting, Duration::from_secs(60)));
        drop(leader);
        assert!(follower.await.unwrap().is_none());
        assert!(matches!(flights.join([2; 32]), Join::Leader(_)));
    }
}

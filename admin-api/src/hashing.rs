//! Password hashing away from the proxy's CPU: hashes (Argon2id, tens of ms and ~19 MiB
//! each) run on a thread of their own at a low scheduling priority, one or two at a time,
//! behind a bounded queue. A login flood then slows logins (and is answered 503 beyond the
//! queue), not the requests the gateway proxies, and its memory stays bounded.

use std::sync::{Arc, Mutex, OnceLock, mpsc};

use tokio::sync::oneshot;

use crate::error::{ApiError, ApiResult};

/// Hashes waiting beyond the ones running; more are refused at once.
const QUEUE: usize = 64;
/// How much less CPU the hashing threads get than the proxy's when both want it
/// (nice 10: about a tenth of a core's share).
const NICENESS: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

pub struct Hasher {
    jobs: mpsc::SyncSender<Job>,
}

impl Hasher {
    /// Starts the hashing threads: one, or two on hosts with more than four cores.
    pub fn start() -> Arc<Hasher> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let workers = if cores > 4 { 2 } else { 1 };
        for i in 0..workers {
            let queue = queue.clone();
            let started = std::thread::Builder::new()
                .name(format!("tollgate-hash-{i}"))
                .spawn(move || work(&queue));
            if let Err(e) = started {
                tracing::error!("no password hashing thread: {e}");
            }
        }
        let hasher = Hasher { jobs };
        // Made now, so the first login for an unknown email takes no longer than others.
        let _ = hasher.jobs.try_send(Box::new(|| {
            decoy_hash();
        }));
        Arc::new(hasher)
    }

    /// Runs `f` (a password hash or check) on the hashing threads: queued at once (or
    /// refused, when the queue is full), its result awaited.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> impl Future<Output = ApiResult<T>> + Send + 'static {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(f());
        });
        let queued = self.jobs.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => {
                ApiError::Busy("too many password checks at once; try again in a moment".into())
            }
            mpsc::TrySendError::Disconnected(_) => {
                ApiError::Internal("the password hashing threads ended".into())
            }
        });
        async move {
            queued?;
            result
                .await
                .map_err(|_| ApiError::Internal("a password hash was dropped".into()))
        }
    }
}

/// A hash to check unknown emails against, so a login takes as long whether or not the
/// email exists.
pub fn decoy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        tollgate_core::secrets::hash_password("tollgate-decoy-password").unwrap_or_default()
    })
}

fn work(queue: &Mutex<mpsc::Receiver<Job>>) {
    lower_priority();
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Lowers this thread's scheduling priority (on Linux `nice` is per thread).
fn lower_priority() {
    let thread = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(thread), NICENESS) {
        tracing::debug!("the password hashing thread keeps its priority: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        let hasher = Hasher::start();
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let blocked = Arc::new(Mutex::new(blocked));
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        let mut started = Some(started);
        // One job holds the thread (once it runs, QUEUE more fill the queue).
        let mut waiting = Vec::new();
        for i in 0..=QUEUE {
            let blocked = blocked.clone();
            let started = started.take();
            let job = hasher.run(move || {
                if let Some(started) = started {
                    let _ = started.send(());
                }
                let _ = blocked.lock().unwrap().recv();
            });
            waiting.push(tokio::spawn(job));
            if i == 0 {
                running.await.unwrap();
                break;
            }
        }
        for _ in 0..QUEUE {
            let blocked = blocked.clone();
            waiting.push(tokio::spawn(hasher.run(move || {
                let _ = blocked.lock().unwrap().recv();
            })));
        }
        let refused = tokio::time::timeout(std::time::Duration::from_secs(5), hasher.run(|| ()))
            .await
            .expect("queued instead of refused");
        assert!(matches!(refused, Err(ApiError::Busy(_))), "{refused:?}");
        for _ in 0..=QUEUE {
            let _ = release.send(());
        }
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        assert_eq!(hasher.run(|| 7).await.unwrap(), 7);
    }
}

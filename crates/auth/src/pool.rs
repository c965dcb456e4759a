//! Argon2 on a fixed set of threads, each reusing one working memory (issue 14, finding 7).
//!
//! Before, every check ran on tokio's blocking pool, and the argon2 crate allocated and freed
//! its 19 MiB for each one. glibc serves such a buffer from the thread's arena and keeps it
//! there after the free, so every blocking thread that ever verified a password held 19 MiB
//! more: an idle server grew from 19 MB to 490 MB after 120 logins, and unauthenticated
//! clients could drive it. Here `workers` threads each own one [`sasl::Argon2Memory`], reused
//! for every check, so the memory Argon2 uses is `workers` × 19 MiB, whatever the number of
//! logins (more only if a stored hash asks for more memory than ours: the worker's memory then
//! grows to that size, at most `sasl::MAX_MEMORY_KIB`).
//!
//! The memory is taken and touched when the pool starts (the constructor waits for it), so
//! what a server holds at idle is what it holds under a login storm: memory is flat from the
//! start rather than growing with the first logins.
//!
//! In front of the workers is a bounded queue (`workers` × [`QUEUE_PER_WORKER`] checks
//! waiting or running). A check that finds it full waits up to [`QUEUE_WAIT`] for room, then
//! fails temporarily ([`PoolError::Busy`]): the login is answered "try again later", and
//! nothing grows without bound. A check whose caller went away (the client disconnected) is
//! skipped by the worker that takes it.

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};

/// Checks that may wait per worker, counting the one it runs.
pub const QUEUE_PER_WORKER: usize = 32;

/// How long a check waits for room in a full queue before failing temporarily.
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// Why a check did not run.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The queue stayed full for [`QUEUE_WAIT`].
    #[error("password checks are queued up; try again later")]
    Busy,
    /// A worker failed while checking (it should not happen; the worker survives it).
    #[error("password check failed unexpectedly")]
    Failed,
}

struct Job {
    password: String,
    phc: String,
    reply: oneshot::Sender<Result<bool, sasl::HashError>>,
}

pub struct HashPool {
    jobs: mpsc::Sender<Job>,
    room: Semaphore,
    workers: usize,
}

impl HashPool {
    /// Starts `workers` threads (at least one). They end when the pool is dropped.
    pub fn new(workers: usize, dummy_hash: &str) -> HashPool {
        let workers = workers.max(1);
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let (ready, started) = mpsc::channel();
        for n in 0..workers {
            let receiver = receiver.clone();
            let dummy = dummy_hash.to_owned();
            let ready = ready.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    let memory = sasl::Argon2Memory::for_default_params();
                    let _ = ready.send(());
                    work(&receiver, &dummy, memory)
                })
                .expect("start an Argon2 worker thread");
        }
        for _ in 0..workers {
            // A worker that failed to start its memory panicked; the others still serve.
            let _ = started.recv();
        }
        HashPool {
            jobs,
            room: Semaphore::new(workers * QUEUE_PER_WORKER),
            workers,
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Checks `password` against the PHC string `phc` on a worker. An unusable stored hash
    /// costs a full check too (against the dummy hash) and comes back as `Err` inside.
    pub async fn verify(
        &self,
        password: &str,
        phc: &str,
    ) -> Result<Result<bool, sasl::HashError>, PoolError> {
        let _room = match tokio::time::timeout(QUEUE_WAIT, self.room.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) | Err(_) => return Err(PoolError::Busy),
        };
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                password: password.to_owned(),
                phc: phc.to_owned(),
                reply,
            })
            .map_err(|_| PoolError::Failed)?;
        answer.await.map_err(|_| PoolError::Failed)
    }
}

fn work(receiver: &Mutex<mpsc::Receiver<Job>>, dummy_hash: &str, mut memory: sasl::Argon2Memory) {
    loop {
        // The lock is held only while waiting for the next job (other workers wait on it).
        let job = match receiver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .recv()
        {
            Ok(job) => job,
            Err(_) => return, // the pool was dropped
        };
        if job.reply.is_closed() {
            continue;
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match sasl::verify_password_in(&mut memory, &job.password, &job.phc) {
                Err(e @ sasl::HashError::Unusable(_)) => {
                    // Spend what a real check costs, so a broken account answers no faster.
                    let _ = sasl::verify_password_in(&mut memory, &job.password, dummy_hash);
                    Err(e)
                }
                other => other,
            }
        }));
        match outcome {
            Ok(result) => {
                let _ = job.reply.send(result);
            }
            // Dropping the reply tells the caller (PoolError::Failed); the worker goes on with
            // fresh memory.
            Err(_) => memory = sasl::Argon2Memory::for_default_params(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_run_on_the_workers_and_answer_right() {
        let dummy = sasl::dummy_hash();
        let pool = Arc::new(HashPool::new(2, &dummy));
        let hash = sasl::hash_password("pw", &[4; sasl::SALT_LEN]).unwrap();
        let mut tasks = Vec::new();
        for i in 0..6 {
            let pool = pool.clone();
            let hash = hash.clone();
            tasks.push(tokio::spawn(async move {
                let password = if i % 2 == 0 { "pw" } else { "nope" };
                (i, pool.verify(password, &hash).await.unwrap().unwrap())
            }));
        }
        for task in tasks {
            let (i, ok) = task.await.unwrap();
            assert_eq!(ok, i % 2 == 0);
        }
        assert!(!pool.verify("pw", &dummy).await.unwrap().unwrap());
        assert!(matches!(
            pool.verify("pw", "not a hash").await.unwrap(),
            Err(sasl::HashError::Unusable(_))
        ));
    }
}

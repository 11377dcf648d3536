//! Room passcodes: argon2id verifiers (PHC strings), computed by a small,
//! fixed pool of worker threads.
//!
//! Each argon2 run fills 19 MiB of memory and takes tens of milliseconds on
//! purpose, and anyone can ask for one (a self-made room's passcode, or a
//! guess). So the work never runs on demand: [`Passcodes`] has
//! [`HASH_THREADS`] workers, each owning its argon2 memory for the life of
//! the process (allocated once, on its first job), and a queue of at most
//! [`HASH_QUEUE`] jobs; a job that finds the queue full is refused at once
//! with [`Busy`]. Memory is therefore fixed at about `HASH_THREADS` × 19 MiB
//! whatever the load, and a burst costs others a short wait, never the server.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;
use tokio::sync::oneshot;

/// argon2 runs at once, server-wide.
pub const HASH_THREADS: usize = 2;
/// Jobs waiting for a worker before more are refused.
pub const HASH_QUEUE: usize = 16;

/// Every worker is busy and the queue is full: try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

enum Work {
    Hash(String),
    Verify(String, Arc<str>),
}

enum Done {
    Hashed(Arc<str>),
    Verified(bool),
    Failed,
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Done>,
}

/// The pool of argon2 workers. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Passcodes {
    jobs: SyncSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job(..)")
    }
}

impl Passcodes {
    /// Starts the workers. They stop when the pool is dropped.
    pub fn start() -> Self {
        let (jobs, rx) = sync_channel::<Job>(HASH_QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..HASH_THREADS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("aparte-argon2-{i}"))
                .spawn(move || work(&rx));
            if let Err(e) = spawned {
                tracing::error!(%e, "passcode worker not started");
            }
        }
        Passcodes { jobs }
    }

    /// The verifier of `passcode`, with a fresh random salt.
    pub async fn hash(&self, passcode: String) -> Result<Option<Arc<str>>, Busy> {
        match self.run(Work::Hash(passcode)).await? {
            Done::Hashed(v) => Ok(Some(v)),
            _ => Ok(None),
        }
    }

    /// Whether `passcode` matches `verifier`.
    pub async fn verify(&self, passcode: String, verifier: Arc<str>) -> Result<bool, Busy> {
        Ok(matches!(
            self.run(Work::Verify(passcode, verifier)).await?,
            Done::Verified(true)
        ))
    }

    async fn run(&self, work: Work) -> Result<Done, Busy> {
        let (reply, done) = oneshot::channel();
        match self.jobs.try_send(Job { work, reply }) {
            Ok(()) => Ok(done.await.unwrap_or(Done::Failed)),
            Err(TrySendError::Full(_)) => Err(Busy),
            Err(TrySendError::Disconnected(_)) => Ok(Done::Failed),
        }
    }
}

/// One worker: takes jobs until the pool is gone, with its argon2 memory
/// kept from one job to the next.
fn work(rx: &Mutex<Receiver<Job>>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if memory.is_empty() {
            memory = vec![Block::default(); Params::DEFAULT.block_count()];
        }
        let done = match job.work {
            Work::Hash(p) => hash_with(&p, &mut memory).map_or(Done::Failed, Done::Hashed),
            Work::Verify(p, v) => Done::Verified(verify_with(&p, &v, &mut memory)),
        };
        let _ = job.reply.send(done);
    }
}

fn hash_with(passcode: &str, memory: &mut [Block]) -> anyhow::Result<Arc<str>> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2()
        .hash_password_into_with_memory(passcode.as_bytes(), &salt, &mut out, memory)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&Params::DEFAULT)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
        salt: Some(Salt::new(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?),
        hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("output: {e}"))?),
    };
    Ok(Arc::from(phc.to_string()))
}

/// Recomputes the hash with the verifier's salt and compares in constant
/// time. Only verifiers with this build's parameters are accepted (they are
/// all made here), so a tampered record cannot ask for more memory.
fn verify_with(passcode: &str, verifier: &str, memory: &mut [Block]) -> bool {
    let Ok(parsed) = PasswordHash::new(verifier) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let same_params = Params::try_from(&parsed.params).is_ok_and(|p| p == Params::DEFAULT);
    if parsed.algorithm != Algorithm::Argon2id.ident()
        || !same_params
        || expected.len() != Params::DEFAULT_OUTPUT_LEN
    {
        return false;
    }
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    if argon2()
        .hash_password_into_with_memory(passcode.as_bytes(), salt.as_ref(), &mut out, memory)
        .is_err()
    {
        return false;
    }
    Output::new(&out).is_ok_and(|o| &o == expected)
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    // One-off helpers with memory of their own; the server only ever hashes
    // through the pool.
    fn hash(passcode: &str) -> anyhow::Result<Arc<str>> {
        let mut memory = vec![Block::default(); Params::DEFAULT.block_count()];
        hash_with(passcode, &mut memory)
    }

    fn verify(passcode: &str, verifier: &str) -> bool {
        let mut memory = vec![Block::default(); Params::DEFAULT.block_count()];
        verify_with(passcode, verifier, &mut memory)
    }

    #[test]
    fn verifies_only_the_passcode() {
        let v = hash("4711 cologne").expect("hash");
        assert!(v.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{v}");
        assert!(!v.contains("4711"));
        assert!(verify("4711 cologne", &v));
        assert!(!verify("4711 Cologne", &v));
        assert!(!verify("4711 cologne", "not a verifier"));
        assert_ne!(hash("4711 cologne").expect("hash"), v, "salted");
        // A verifier asking for other parameters is refused, not computed.
        let greedy = v.replace("m=19456", "m=4000000");
        assert!(!verify("4711 cologne", &greedy));
    }

    #[test]
    fn verifiers_of_the_argon2_crate_still_verify() {
        use argon2::password_hash::PasswordHasher;
        let old = Argon2::default()
            .hash_password(b"room 12")
            .expect("hash")
            .to_string();
        assert!(verify("room 12", &old));
        assert!(!verify("room 13", &old));
    }

    #[tokio::test]
    async fn the_pool_refuses_past_its_queue() {
        let pool = Arc::new(Passcodes::start());
        let v = pool
            .hash("abc".into())
            .await
            .expect("not busy")
            .expect("hashed");
        assert!(
            pool.verify("abc".into(), v.clone())
                .await
                .expect("not busy")
        );
        let many = (0..(HASH_THREADS + HASH_QUEUE) * 3).map(|_| {
            let (pool, v) = (pool.clone(), v.clone());
            tokio::spawn(async move { pool.verify("x".into(), v).await })
        });
        let results = futures_util::future::join_all(many).await;
        let busy = results
            .iter()
            .filter(|r| matches!(r, Ok(Err(Busy))))
            .count();
        assert!(busy > 0, "a full queue refuses");
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Ok(Ok(false) | Err(Busy)))),
            "wrong guesses never verify"
        );
    }
}

//! Group commit: ingest requests hand their batch to one writer task, which commits
//! everything queued meanwhile in a single transaction and then answers each request.
//! One fsync serves many requests, and incident updates are applied by one writer in
//! event order, so concurrent requests never race on an incident row.

use super::IngestError;
use crate::clock::Clock;
use crate::incidents::EngineHandle;
use crate::store::{BatchOutcome, DynStore, StoreError, WriteBatch};
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};

type Reply = oneshot::Sender<Result<BatchOutcome, IngestError>>;

struct Job {
    batch: WriteBatch,
    reply: Reply,
}

#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
}

/// Queue depth in requests; senders wait when it is full, which bounds memory.
const QUEUE: usize = 1024;

impl Committer {
    pub fn spawn(
        store: DynStore,
        engine: EngineHandle,
        clock: Arc<dyn Clock>,
        max_events: usize,
    ) -> Committer {
        let (tx, rx) = mpsc::channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        // Supervisor: should the writer ever panic, start it again on the same queue
        // rather than leave every later request waiting for nobody.
        tokio::spawn(async move {
            loop {
                let run = tokio::spawn(run(
                    rx.clone(),
                    store.clone(),
                    engine.clone(),
                    clock.clone(),
                    max_events,
                ));
                match run.await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "group commit writer crashed; restarting")
                    }
                }
            }
        });
        Committer { tx }
    }

    /// Returns once the batch is committed (or failed as a whole).
    pub async fn submit(&self, batch: WriteBatch) -> Result<BatchOutcome, IngestError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { batch, reply })
            .await
            .map_err(|_| IngestError::Unavailable("the writer is shutting down".into()))?;
        rx.await
            .map_err(|_| IngestError::Unavailable("the writer stopped before committing".into()))?
    }
}

fn to_ingest(e: &StoreError) -> IngestError {
    match e {
        StoreError::Unavailable(m) => IngestError::Unavailable(m.clone()),
        other => IngestError::Store(other.to_string()),
    }
}

async fn run(
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    store: DynStore,
    engine: EngineHandle,
    clock: Arc<dyn Clock>,
    max_events: usize,
) {
    let mut rx = rx.lock().await;
    while let Some(first) = rx.recv().await {
        let mut size = first.batch.events.len() + first.batch.rejects.len();
        let mut jobs = vec![first];
        while size < max_events {
            match rx.try_recv() {
                Ok(job) => {
                    size += job.batch.events.len() + job.batch.rejects.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let (batches, replies): (Vec<WriteBatch>, Vec<Reply>) =
            jobs.into_iter().map(|j| (j.batch, j.reply)).unzip();
        let started = std::time::Instant::now();
        match store
            .record_events(&batches, &engine.get(), clock.now())
            .await
        {
            Ok(outcomes) => {
                tracing::debug!(
                    requests = batches.len(),
                    events = size,
                    ms = started.elapsed().as_millis() as u64,
                    "group commit"
                );
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(StoreError::Unavailable(m)) => {
                tracing::warn!(error = %m, requests = batches.len(), "database unavailable; batch not written");
                for reply in replies {
                    let _ = reply.send(Err(IngestError::Unavailable(m.clone())));
                }
            }
            Err(e) if batches.len() > 1 => {
                // One request's data must not fail the others it was grouped with:
                // commit them one by one so only the culprit gets the error.
                tracing::warn!(error = %e, "group commit failed; retrying requests one by one");
                for (batch, reply) in batches.into_iter().zip(replies) {
                    let r = store
                        .record_events(std::slice::from_ref(&batch), &engine.get(), clock.now())
                        .await
                        .map(|mut o| o.pop().unwrap_or_default())
                        .map_err(|e| to_ingest(&e));
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(to_ingest(&e)));
                }
            }
        }
    }
}

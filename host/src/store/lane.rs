//! One connection's lane: the connection (on its own thread) and a bound on the work queued in
//! front of it.

use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::StoreError;

/// Units of work waiting for or running on one connection at most. Past this a caller waits,
/// in turn, before its work is handed over: the connection's own queue never grows without
/// bound, and work a caller gave up on while waiting is never run.
const QUEUE_BOUND: usize = 64;

/// A connection and the room left in front of it.
#[derive(Clone)]
pub(super) struct Lane {
    pub(super) conn: tokio_rusqlite::Connection,
    room: Arc<Semaphore>,
}

impl Lane {
    pub(super) fn new(conn: tokio_rusqlite::Connection) -> Self {
        Self {
            conn,
            room: Arc::new(Semaphore::new(QUEUE_BOUND)),
        }
    }

    /// Runs `work` on the connection once there is room in front of it. The room is given
    /// back when the work has run (on the connection's thread), not when the caller stops
    /// waiting, so the bound holds for abandoned calls too.
    pub(super) async fn call<R, F>(&self, work: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let room = self
            .room
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(self
            .conn
            .call(move |conn| {
                let _room = room;
                work(conn)
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;
    use crate::store::Store;

    /// The queue in front of a connection is bounded: past it a caller waits before its work
    /// is handed over, so work a caller gave up on while waiting is never run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_beyond_the_queue_bound_waits_instead_of_queueing() {
        use std::sync::atomic::AtomicBool;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
        let (unblock, blocked) = std::sync::mpsc::channel::<()>();
        let held = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(move |_| {
                        let _ = blocked.recv();
                        Ok(())
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let queued: Vec<_> = (1..QUEUE_BOUND)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.write(|_| Ok(())).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let gave_up = tokio::time::timeout(
            Duration::from_millis(100),
            store.write(move |_| {
                flag.store(true, Ordering::SeqCst);
                Ok(())
            }),
        )
        .await;
        assert!(gave_up.is_err(), "the writer is busy: the call waits");
        unblock.send(()).unwrap();
        held.await.unwrap().unwrap();
        for q in queued {
            q.await.unwrap().unwrap();
        }
        store.write(|_| Ok(())).await.unwrap();
        assert!(
            !ran.load(Ordering::SeqCst),
            "work abandoned while waiting for room was queued anyway"
        );
    }
}

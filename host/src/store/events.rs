//! Event ingest with group commit: concurrent `POST /v1/events` requests queue here, and one
//! writer commits whatever has queued — events and their delivery rows — in one transaction,
//! then answers each request. One fsync and a handful of statements per batch instead of per
//! event; an event is answered only after its commit.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use tokio::sync::{Notify, mpsc, oneshot};

use super::{Delivery, Event, Store, StoreError, Subscription, SubscriptionStatus, new_id, now_ms};

/// Requests committed together at most.
const MAX_BATCH: usize = 512;
/// Rows per multi-row INSERT (SQLite allows 32766 bound values per statement).
const ROWS_PER_INSERT: usize = 1000;

/// An event to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// e.g. `post.published` (validated by the caller).
    pub event_type: String,
    /// The data as JSON text.
    pub data: String,
    /// The producer's idempotency key.
    pub idempotency_key: Option<String>,
    /// Deliver to this subscription only, whatever its filter (test events).
    pub only_subscription: Option<String>,
}

/// What ingest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    /// The event's id (the earlier one when the idempotency key was seen before).
    pub event_id: String,
    /// Deliveries created for it (or created back then).
    pub deliveries: usize,
    /// The first delivery's id, if any (used by test events).
    pub first_delivery: Option<String>,
    /// Whether the idempotency key matched an earlier event.
    pub duplicate: bool,
}

struct Request {
    event: NewEvent,
    reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

/// Handle to the group-commit writer.
#[derive(Clone)]
pub struct Ingestor {
    tx: mpsc::Sender<Request>,
}

impl Ingestor {
    /// Starts the writer task. `delivered` is notified after each commit that created
    /// deliveries, so dispatch starts at once rather than on its next timer.
    pub fn start(store: Store, delivered: Arc<Notify>) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let task = tokio::spawn(writer(store, rx, delivered));
        (Self { tx }, task)
    }

    /// Stores an event and its deliveries; returns once they are committed.
    ///
    /// # Errors
    /// Database errors, or [`StoreError::Closed`] while shutting down.
    pub async fn ingest(&self, event: NewEvent) -> Result<IngestOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request { event, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn writer(store: Store, mut rx: mpsc::Receiver<Request>, delivered: Arc<Notify>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let events: Vec<&NewEvent> = batch.iter().map(|r| &r.event).collect();
        match commit_batch(&store, &events).await {
            Ok(outcomes) => {
                if outcomes.iter().any(|o| o.deliveries > 0 && !o.duplicate) {
                    delivered.notify_one();
                }
                for (request, outcome) in batch.drain(..).zip(outcomes) {
                    let _ = request.reply.send(Ok(outcome));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "event batch failed to commit");
                let message = err.to_string();
                for request in batch.drain(..) {
                    let _ = request
                        .reply
                        .send(Err(StoreError::Corrupt(message.clone())));
                }
            }
        }
    }
}

/// A delivery row to insert.
struct NewDelivery {
    id: String,
    event_id: String,
    subscription_id: String,
}

async fn commit_batch(
    store: &Store,
    events: &[&NewEvent],
) -> Result<Vec<IngestOutcome>, StoreError> {
    let now = now_ms();
    let subscriptions = store.subscriptions();
    let mut tx = store.begin_write().await?;
    let mut known = existing_keys(&mut tx, events).await?;
    let mut outcomes = Vec::with_capacity(events.len());
    let mut new_events: Vec<(String, &NewEvent)> = Vec::new();
    let mut new_deliveries: Vec<NewDelivery> = Vec::new();
    for event in events {
        if let Some(key) = &event.idempotency_key
            && let Some(earlier) = known.get(key)
        {
            outcomes.push(IngestOutcome {
                duplicate: true,
                ..earlier.clone()
            });
            continue;
        }
        let event_id = new_id("evt");
        let targets = targets(&subscriptions, event);
        let first = new_deliveries.len();
        new_deliveries.extend(targets.iter().map(|s| NewDelivery {
            id: new_id("dlv"),
            event_id: event_id.clone(),
            subscription_id: s.id.clone(),
        }));
        let outcome = IngestOutcome {
            event_id: event_id.clone(),
            deliveries: targets.len(),
            first_delivery: new_deliveries
                .get(first)
                .filter(|_| !targets.is_empty())
                .map(|d| d.id.clone()),
            duplicate: false,
        };
        if let Some(key) = &event.idempotency_key {
            known.insert(key.clone(), outcome.clone());
        }
        outcomes.push(outcome);
        new_events.push((event_id, event));
    }
    insert_events(&mut tx, &new_events, now).await?;
    insert_deliveries(&mut tx, &new_deliveries, now).await?;
    tx.commit().await?;
    Ok(outcomes)
}

/// Subscriptions an event goes to: enabled ones whose patterns match, or the one named.
fn targets<'a>(
    subscriptions: &'a [Arc<Subscription>],
    event: &NewEvent,
) -> Vec<&'a Arc<Subscription>> {
    match &event.only_subscription {
        Some(id) => subscriptions.iter().filter(|s| &s.id == id).collect(),
        None => subscriptions
            .iter()
            .filter(|s| s.status == SubscriptionStatus::Enabled && s.matches(&event.event_type))
            .collect(),
    }
}

/// Earlier events for the batch's idempotency keys, with their delivery counts.
async fn existing_keys(
    tx: &mut Transaction<'static, Sqlite>,
    events: &[&NewEvent],
) -> Result<HashMap<String, IngestOutcome>, StoreError> {
    let keys: Vec<&String> = events
        .iter()
        .filter_map(|e| e.idempotency_key.as_ref())
        .collect();
    let mut known = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_INSERT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT e.id, e.idempotency_key, (SELECT COUNT(*) FROM deliveries d WHERE d.event_id = e.id) AS n,
             (SELECT MIN(d.id) FROM deliveries d WHERE d.event_id = e.id) AS first
             FROM events e WHERE e.idempotency_key IN (",
        );
        let mut list = query.separated(", ");
        for key in chunk {
            list.push_bind((*key).clone());
        }
        query.push(")");
        for row in query.build().persistent(false).fetch_all(&mut **tx).await? {
            let n: i64 = row.try_get("n")?;
            known.insert(
                row.try_get("idempotency_key")?,
                IngestOutcome {
                    event_id: row.try_get("id")?,
                    deliveries: usize::try_from(n).unwrap_or(0),
                    first_delivery: row.try_get("first")?,
                    duplicate: true,
                },
            );
        }
    }
    Ok(known)
}

async fn insert_events(
    tx: &mut Transaction<'static, Sqlite>,
    events: &[(String, &NewEvent)],
    now: i64,
) -> Result<(), StoreError> {
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO events (id, idempotency_key, type, data, created_at) ",
        );
        query.push_values(chunk, |mut row, (id, event)| {
            row.push_bind(id.clone())
                .push_bind(event.idempotency_key.clone())
                .push_bind(event.event_type.clone())
                .push_bind(event.data.clone())
                .push_bind(now);
        });
        query.build().persistent(false).execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_deliveries(
    tx: &mut Transaction<'static, Sqlite>,
    rows: &[NewDelivery],
    now: i64,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO deliveries (id, event_id, subscription_id, status, attempts, next_attempt_at, created_at, updated_at) ",
        );
        query.push_values(chunk, |mut row, d| {
            row.push_bind(d.id.clone())
                .push_bind(d.event_id.clone())
                .push_bind(d.subscription_id.clone())
                .push_bind("pending")
                .push_bind(0_i64)
                .push_bind(now)
                .push_bind(now)
                .push_bind(now);
        });
        query.build().persistent(false).execute(&mut **tx).await?;
    }
    Ok(())
}

impl Store {
    /// An event by id, with its deliveries.
    ///
    /// # Errors
    /// Database errors.
    pub async fn event(&self, id: &str) -> Result<Option<(Event, Vec<Delivery>)>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT id, idempotency_key, type, data, created_at FROM events WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(self.reader())
        .await?
        else {
            return Ok(None);
        };
        let event = Event::from_row(&row)?;
        let deliveries = self
            .list_deliveries(
                &super::DeliveryFilter {
                    event_id: Some(id.to_owned()),
                    ..Default::default()
                },
                1000,
            )
            .await?;
        Ok(Some((event, deliveries)))
    }

    /// Events by id (for a leased batch).
    ///
    /// # Errors
    /// Database errors.
    pub async fn events_by_id(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, Arc<Event>>, StoreError> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(ROWS_PER_INSERT) {
            let mut query = QueryBuilder::<Sqlite>::new(
                "SELECT id, idempotency_key, type, data, created_at FROM events WHERE id IN (",
            );
            let mut list = query.separated(", ");
            for id in chunk {
                list.push_bind(id.clone());
            }
            query.push(")");
            for row in query
                .build()
                .persistent(false)
                .fetch_all(self.reader())
                .await?
            {
                let event = Event::from_row(&row)?;
                found.insert(event.id.clone(), Arc::new(event));
            }
        }
        Ok(found)
    }
}

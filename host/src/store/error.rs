//! What can go wrong in the store, with storage failures (a full disk, I/O, a locked,
//! read-only, deleted or replaced file) told apart from the rest, so the API can answer them
//! with `503` and `Retry-After` rather than a bare `500`.

/// A store failure that is not the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no.
    #[error("database error: {0}")]
    Database(rusqlite::Error),
    /// The disk holding the database is full: nothing more can be committed until space
    /// frees (SQLite rolls the transaction back; the next one may succeed).
    #[error("the disk holding the database is full")]
    Full,
    /// The database cannot be written or read: an I/O error, a read-only or locked file, or
    /// the file was deleted or replaced while the service ran.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The key for the subscription secrets is missing, malformed or not the one they were
    /// encrypted with.
    #[error("{0}")]
    SecretKey(String),
    /// A stored value did not parse (a bug or a hand-edited database).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A shared batch failed to commit (the message of the underlying error).
    #[error("database error: {0}")]
    Batch(String),
    /// Too many events are already waiting for their commit (the producer should retry).
    #[error("too many events are waiting to be stored; retry shortly")]
    Overloaded,
    /// The connection's thread is gone (shutting down).
    #[error("the store is shutting down")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    /// Storage failures (disk full, I/O, a locked or read-only file) are told apart from
    /// errors in what was asked, so the API can answer 503 rather than 500.
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match err.sqlite_error_code() {
            Some(C::DiskFull) => Self::Full,
            Some(
                C::SystemIoFailure
                | C::ReadOnly
                | C::CannotOpen
                | C::DatabaseBusy
                | C::DatabaseLocked
                | C::DatabaseCorrupt
                | C::NotADatabase
                | C::FileLockingProtocolFailed
                | C::OutOfMemory,
            ) => Self::Unavailable(err.to_string()),
            _ => Self::Database(err),
        }
    }
}

impl From<tokio_rusqlite::Error<StoreError>> for StoreError {
    fn from(err: tokio_rusqlite::Error<StoreError>) -> Self {
        match err {
            tokio_rusqlite::Error::Error(e) => e,
            tokio_rusqlite::Error::Close((_, e)) => Self::from(e),
            _ => Self::Closed,
        }
    }
}

impl StoreError {
    /// The same failure for each of several waiters (a shared batch): storage failures keep
    /// their kind, others become [`StoreError::Batch`] with the message.
    pub(crate) fn for_each_waiter(&self) -> Self {
        match self {
            Self::Full => Self::Full,
            Self::Unavailable(why) => Self::Unavailable(why.clone()),
            Self::Overloaded => Self::Overloaded,
            Self::Closed => Self::Closed,
            other => Self::Batch(other.to_string()),
        }
    }

    /// Whether this is a failure of the storage itself (answered 503).
    pub fn is_storage_fault(&self) -> bool {
        matches!(self, Self::Full | Self::Unavailable(_))
    }
}

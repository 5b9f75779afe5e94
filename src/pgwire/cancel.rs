//! Cancel requests: psql's Ctrl-C, JDBC's `Statement.cancel()`,
//! `pg_cancel_backend` from a driver's cancel token, and the session's
//! `statement_timeout`.
//!
//! A client cancels by opening a second connection that carries only the
//! process id and secret key it got at start-up (BackendKeyData). Those find
//! the connection's `Canceller` here, which ends the query that connection
//! is running with SQLSTATE 57014, as PostgreSQL does; the connection stays
//! usable.
//!
//! pgwire's own cancel support only covers planning (until `do_query`
//! returns); weir's queries do their work while their rows stream to the
//! socket, so the signal is also raced against each row here.
//!
//! A client that hangs up cancels the same way (`Canceller::hang_up`, fired
//! by the connection loop): nobody is left to read the rows.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::Stream;
use futures::future::{FutureExt, Shared};
use pgwire::api::ClientInfo;
use pgwire::api::cancel::CancelHandler;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use tokio::sync::oneshot;

/// A connection's (process id, secret key), as BackendKeyData gave them.
type CancelKey = (i32, Vec<u8>);

/// Connections by the (process id, secret key) they were given.
#[derive(Default)]
pub struct Cancellers {
    by_key: Mutex<HashMap<CancelKey, Arc<Canceller>>>,
}

/// One connection's cancel signal: a fresh one per statement.
#[derive(Default)]
pub struct Canceller {
    current: Mutex<Option<oneshot::Sender<()>>>,
    /// The client hung up: what is running now is cancelled, and so is
    /// anything that starts later (it could only be pipelined work that
    /// nobody will read).
    hung_up: AtomicBool,
}

impl Canceller {
    /// Cancels the running statement, and every later one, because the
    /// client has gone.
    pub fn hang_up(&self) {
        self.hung_up.store(true, Ordering::SeqCst);
        if let Some(tx) = lock(&self.current).take() {
            let _ = tx.send(());
        }
    }
}

/// Keeps a connection registered while the connection lives (it sits in
/// the connection's session extensions, dropped with them).
struct Registration {
    key: CancelKey,
    canceller: Arc<Canceller>,
    cancellers: Arc<Cancellers>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.cancellers.by_key).remove(&self.key);
    }
}

/// The lock guards plain maps and slots: a panic elsewhere cannot leave them
/// half-updated, so a poisoned lock is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cancellers {
    /// The signal for what `client` is about to run: one statement, or every
    /// statement of one simple query (their rows stream after all of them
    /// have started, so each keeps a clone). Registers the connection on
    /// its first use.
    pub fn begin<C: ClientInfo>(self: &Arc<Self>, client: &C) -> CancelSignal {
        let canceller = self.connection(client);
        let (tx, rx) = oneshot::channel();
        // Replacing the previous statement's sender retires its signal.
        *lock(&canceller.current) = Some(tx);
        // Checked after the sender is in place, so a hang-up racing with
        // this statement's start fires it one way or the other.
        if canceller.hung_up.load(Ordering::SeqCst) {
            canceller.hang_up();
        }
        let deadline = crate::session::statement_timeout(client.metadata()).map(|t| tokio::time::Instant::now() + t);
        CancelSignal { rx: Some(rx.shared()), deadline, timer: None }
    }

    /// `client`'s canceller, registered under its (process id, secret key)
    /// on first use; call it only once start-up has assigned those.
    pub fn connection<C: ClientInfo>(self: &Arc<Self>, client: &C) -> Arc<Canceller> {
        let registration = client.session_extensions().get_or_insert_with(|| {
            let (pid, secret) = client.pid_and_secret_key();
            let key = (pid, secret.to_bytes().to_vec());
            let canceller = Arc::new(Canceller::default());
            lock(&self.by_key).insert(key.clone(), canceller.clone());
            Registration { key, canceller, cancellers: self.clone() }
        });
        registration.canceller.clone()
    }

    fn cancel(&self, pid: i32, secret: &[u8]) -> bool {
        let canceller = lock(&self.by_key).get(&(pid, secret.to_vec())).cloned();
        match canceller.and_then(|c| lock(&c.current).take()) {
            Some(tx) => tx.send(()).is_ok(),
            None => false,
        }
    }
}

#[async_trait]
impl CancelHandler for Cancellers {
    async fn on_cancel_request(&self, request: CancelRequest) {
        // A wrong key or an idle connection is ignored, as in PostgreSQL
        // (which never tells the canceller either way).
        let cancelled = self.cancel(request.pid, &request.secret_key.to_bytes());
        tracing::info!(pid = request.pid, cancelled, "cancel request");
    }
}

/// Fires when what it was made for is cancelled, by a cancel request, a
/// hang-up or the session's `statement_timeout`; a cancel request never
/// reaches it once the connection's next query has begun. Clones fire
/// together.
pub struct CancelSignal {
    rx: Option<Shared<oneshot::Receiver<()>>>,
    /// When `statement_timeout` runs out, counted from the query's start.
    deadline: Option<tokio::time::Instant>,
    /// The timer for `deadline`, armed on first poll (a clone arms its own).
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Clone for CancelSignal {
    fn clone(&self) -> Self {
        CancelSignal { rx: self.rx.clone(), deadline: self.deadline, timer: None }
    }
}

/// PostgreSQL's error when `statement_timeout` ends a statement.
fn statement_timeout_error() -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        "57014".to_string(),
        "canceling statement due to statement timeout".to_string(),
    )))
}

impl CancelSignal {
    /// Ready with the error to report once cancelled (and from then on).
    fn poll_cancelled(&mut self, cx: &mut Context<'_>) -> Poll<PgWireError> {
        if let Some(deadline) = self.deadline {
            let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(statement_timeout_error());
            }
        }
        let Some(rx) = self.rx.as_mut() else { return Poll::Pending };
        match Pin::new(rx).poll(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(PgWireError::QueryCanceled),
            // The sender was replaced or dropped: this statement can no
            // longer be cancelled.
            Poll::Ready(Err(_)) => {
                self.rx = None;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Runs `work` unless the statement is cancelled first.
    pub async fn race<T>(&mut self, work: impl Future<Output = T>) -> Result<T, PgWireError> {
        let mut work = std::pin::pin!(work);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            self.poll_cancelled(cx).map(Err)
        })
        .await
    }

    /// `rows`, ended by a 57014 error if the statement is cancelled while
    /// they stream.
    pub fn guard<S, T>(self, rows: S) -> CancellableRows<S>
    where
        S: Stream<Item = PgWireResult<T>> + Unpin,
    {
        CancellableRows { rows, signal: self, done: false }
    }
}

pub struct CancellableRows<S> {
    rows: S,
    signal: CancelSignal,
    done: bool,
}

impl<S, T> Stream for CancellableRows<S>
where
    S: Stream<Item = PgWireResult<T>> + Unpin,
{
    type Item = PgWireResult<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(error) = self.signal.poll_cancelled(cx) {
            // Dropping the rows' stream stops the query's work.
            self.done = true;
            return Poll::Ready(Some(Err(error)));
        }
        Pin::new(&mut self.rows).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn signal_pair() -> (Arc<Canceller>, CancelSignal) {
        let canceller = Arc::new(Canceller::default());
        let (tx, rx) = oneshot::channel();
        *lock(&canceller.current) = Some(tx);
        (canceller, CancelSignal { rx: Some(rx.shared()), deadline: None, timer: None })
    }

    #[tokio::test]
    async fn a_cancel_ends_endless_rows_with_57014() {
        let (canceller, signal) = signal_pair();
        let endless = futures::stream::repeat_with(|| PgWireResult::Ok(1u8));
        let mut rows = signal.guard(Box::pin(endless));
        assert!(matches!(rows.next().await, Some(Ok(1))));
        lock(&canceller.current).take().unwrap().send(()).unwrap();
        let err = rows.next().await.unwrap().unwrap_err();
        assert!(matches!(err, PgWireError::QueryCanceled), "{err:?}");
        assert!(rows.next().await.is_none());
    }

    #[tokio::test]
    async fn a_cancel_interrupts_work_that_never_finishes() {
        let (canceller, mut signal) = signal_pair();
        let cancel = tokio::spawn(async move {
            tokio::task::yield_now().await;
            lock(&canceller.current).take().unwrap().send(()).unwrap();
        });
        let result = signal.race(std::future::pending::<()>()).await;
        assert!(matches!(result, Err(PgWireError::QueryCanceled)));
        cancel.await.unwrap();
    }

    #[tokio::test]
    async fn a_retired_signal_never_fires() {
        let (canceller, signal) = signal_pair();
        // The next statement begins: the old sender is dropped.
        *lock(&canceller.current) = None;
        let rows: Vec<_> = signal.guard(futures::stream::iter(vec![PgWireResult::Ok(1u8), Ok(2)])).collect().await;
        assert_eq!(rows.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[tokio::test]
    async fn clones_of_a_signal_fire_together() {
        let (canceller, signal) = signal_pair();
        fn endless() -> Pin<Box<dyn Stream<Item = PgWireResult<u8>> + Send>> {
            Box::pin(futures::stream::repeat_with(|| PgWireResult::Ok(1u8)))
        }
        let first = signal.clone().guard(endless());
        let second = signal.guard(endless());
        lock(&canceller.current).take().unwrap().send(()).unwrap();
        for rows in [first, second] {
            let got: Vec<_> = rows.collect().await;
            assert!(matches!(got.as_slice(), [Err(PgWireError::QueryCanceled)]), "{got:?}");
        }
    }

    #[tokio::test]
    async fn a_hang_up_cancels_what_runs_and_what_comes_later() {
        let (canceller, mut signal) = signal_pair();
        canceller.hang_up();
        assert!(matches!(signal.race(std::future::pending::<()>()).await, Err(PgWireError::QueryCanceled)));
        // A statement that starts after the hang-up is cancelled at once.
        let (tx, rx) = oneshot::channel();
        *lock(&canceller.current) = Some(tx);
        canceller.hang_up();
        let mut later = CancelSignal { rx: Some(rx.shared()), deadline: None, timer: None };
        assert!(matches!(later.race(std::future::pending::<()>()).await, Err(PgWireError::QueryCanceled)));
    }

    #[test]
    fn a_wrong_key_cancels_nothing() {
        let cancellers = Cancellers::default();
        let (canceller, _signal) = signal_pair();
        lock(&cancellers.by_key).insert((7, vec![1, 2, 3, 4]), canceller.clone());
        assert!(!cancellers.cancel(7, &[9, 9, 9, 9]));
        assert!(!cancellers.cancel(8, &[1, 2, 3, 4]));
        assert!(cancellers.cancel(7, &[1, 2, 3, 4]));
    }
}

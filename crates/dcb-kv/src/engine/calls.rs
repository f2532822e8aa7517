//! Every write is one *call*, fenced by a random commit token `b/<token>`:
//!
//! - every attempt first reads the token **serializably**; found, an earlier attempt of this
//!   call committed and its outcome is returned (for an append: the positions in the token's
//!   value). Every attempt also writes the token, so two attempts of one call can never both
//!   commit, and an attempt that timed out (1031) or whose future was dropped, and that
//!   FoundationDB may still commit later, conflicts with the attempt that succeeded;
//! - when the retry budget runs out after an attempt whose outcome is unknown, the call is
//!   **settled** before it returns: a fencing transaction reads the token (found: the call
//!   committed) or writes a tombstone there, after which no abandoned attempt can commit
//!   (each read the token before the tombstone was written). Only if even that cannot be
//!   settled does the call fail with a `Storage` error saying the outcome is unknown;
//! - once the outcome is known, the token is cleared in the background (safe: every attempt
//!   that could still arrive read the key before it was written, and conflicts).

use dcb_core::{Appended, InputError, StateCommit, StoreError, Uuid};

use super::KvStore;
use super::append::{AppendPlan, batch_positions, stamp_of};
use super::retry::{AttemptErr, Backoff, is_too_large, kv_fatal, timed_out};
use crate::kv::{FDB_TX_SIZE_LIMIT, KvDatabase, KvError, KvErrorKind, KvTransaction, Versionstamp};

/// The value of a token that settled a call as not committed.
const TOMBSTONE: &[u8] = b"fenced";
/// The value of a state call's token.
const DONE: &[u8] = b"done";
/// Attempts of the settling transaction.
const SETTLE_ATTEMPTS: u32 = 5;

/// One write call.
pub(crate) enum Call<'a> {
    Append(&'a AppendPlan),
    State(&'a StateCommit),
    Reset(&'a str),
    Destroy,
}

/// What a call returns.
pub(crate) enum Outcome {
    Appended(Appended),
    Done,
}

impl Outcome {
    pub(crate) fn appended(self) -> Result<Appended, StoreError> {
        match self {
            Outcome::Appended(a) => Ok(a),
            Outcome::Done => Err(StoreError::storage_msg("append call returned no positions")),
        }
    }
}

/// What the token says about the call.
enum Token {
    Committed(Outcome),
    Fenced,
}

impl<D: KvDatabase> KvStore<D> {
    fn token_outcome(&self, call: &Call<'_>, value: &[u8]) -> Result<Token, StoreError> {
        if value == TOMBSTONE {
            return Ok(Token::Fenced);
        }
        Ok(Token::Committed(match call {
            Call::Append(plan) => Outcome::Appended(Appended {
                positions: batch_positions(stamp_of(value)?, plan.request.events.len()),
                replayed: false,
            }),
            _ => Outcome::Done,
        }))
    }

    /// The reads and writes of one attempt; `Some` when the call is answered without a commit.
    async fn attempt(
        &self,
        tx: &D::Tx,
        call: &Call<'_>,
        token: &[u8],
    ) -> Result<Option<Outcome>, AttemptErr> {
        match call {
            Call::Append(plan) => {
                if let Some(done) = self.append_attempt(tx, plan).await? {
                    return Ok(Some(Outcome::Appended(done)));
                }
                self.write_batch(tx, plan, token);
            }
            Call::State(commit) => {
                self.state_attempt(tx, commit).await?;
                tx.set(token, DONE);
            }
            Call::Reset(consumer) => {
                self.reset_attempt(tx, consumer).await?;
                tx.set(token, DONE);
            }
            Call::Destroy => {
                let (begin, end) = self.inner.keys.namespace_range();
                tx.clear_range(&begin, &end);
                // After the clear: the token outlives it until it is swept.
                tx.set(token, DONE);
            }
        }
        Ok(None)
    }

    fn committed(
        &self,
        call: &Call<'_>,
        stamp: Option<Versionstamp>,
    ) -> Result<Outcome, StoreError> {
        match call {
            Call::Append(plan) => match stamp {
                Some(stamp) => Ok(Outcome::Appended(Appended {
                    positions: batch_positions(stamp, plan.request.events.len()),
                    replayed: false,
                })),
                None => Err(StoreError::storage_msg(
                    "commit of an append returned no versionstamp",
                )),
            },
            _ => Ok(Outcome::Done),
        }
    }

    /// The typed input error for a size refusal of the store.
    fn too_large(&self, call: &Call<'_>, e: &KvError) -> StoreError {
        let (len, max) = match call {
            Call::Append(plan) => (plan.estimate, FDB_TX_SIZE_LIMIT),
            Call::State(commit) => (self.estimate_state_bytes(commit), FDB_TX_SIZE_LIMIT),
            _ => (0, FDB_TX_SIZE_LIMIT),
        };
        let field = match e.kind {
            KvErrorKind::KeyTooLarge => "key",
            KvErrorKind::ValueTooLarge => "value",
            _ => "transaction",
        };
        tracing::warn!(error = %e, "the store refused a transaction for its size");
        StoreError::InvalidInput(InputError::TooLong { field, len, max })
    }

    /// Runs a write call to a known outcome (see the module docs).
    pub(crate) async fn run(&self, call: &Call<'_>) -> Result<Outcome, StoreError> {
        let token = self.inner.keys.batch(&Uuid::new_v4());
        let opts = self.inner.opts;
        let mut backoff = Backoff::new(opts.max_retries);
        let mut unknown = false;
        let mut wrote = false;
        let result = loop {
            let tx = self.inner.db.begin().map_err(kv_fatal)?;
            let checked = tokio::time::timeout(opts.tx_timeout, async {
                if let Some(v) = tx.get(&token, false).await? {
                    return match self.token_outcome(call, &v)? {
                        Token::Committed(o) => Ok(Some(o)),
                        Token::Fenced => Err(AttemptErr::Store(StoreError::storage_msg(
                            "commit token fenced while its call was running",
                        ))),
                    };
                }
                self.attempt(&tx, call, &token).await
            })
            .await
            .unwrap_or(Err(AttemptErr::Kv(timed_out())));
            match checked {
                Ok(Some(done)) => break Ok(done),
                Ok(None) => {}
                Err(AttemptErr::Store(e)) => break Err(e),
                Err(AttemptErr::Kv(e)) => match backoff.retry(e).await {
                    Ok(()) => continue,
                    Err(e) => break Err(e),
                },
            }
            wrote = true;
            let committed = tokio::time::timeout(opts.tx_timeout, tx.commit())
                .await
                .unwrap_or(Err(timed_out()));
            match committed {
                Ok(stamp) => break self.committed(call, stamp),
                Err(e) if is_too_large(e.kind) => break Err(self.too_large(call, &e)),
                Err(e) => {
                    // A timed-out commit may still land: its outcome is unknown.
                    let e = if e.kind == KvErrorKind::Timeout {
                        KvError::new(KvErrorKind::MaybeCommitted, e.message)
                    } else {
                        e
                    };
                    unknown |= e.kind == KvErrorKind::MaybeCommitted;
                    tracing::debug!(error = %e, "commit failed");
                    if let Err(gave_up) = backoff.retry(e).await {
                        break Err(gave_up);
                    }
                }
            }
        };
        let result = match result {
            Err(StoreError::Unavailable(msg)) if unknown => self.settle(call, &token, msg).await,
            other => other,
        };
        let settled = !matches!(&result, Err(StoreError::Storage(_)));
        if wrote && settled {
            self.sweep_token(token);
        }
        result
    }

    /// Settles a call whose retries ran out after unknown outcomes.
    async fn settle(
        &self,
        call: &Call<'_>,
        token: &[u8],
        msg: String,
    ) -> Result<Outcome, StoreError> {
        let opts = self.inner.opts;
        let mut backoff = Backoff::new(SETTLE_ATTEMPTS);
        loop {
            let tx = self.inner.db.begin().map_err(kv_fatal)?;
            let fenced = tokio::time::timeout(opts.tx_timeout, async {
                match tx.get(token, false).await? {
                    Some(v) => Ok(Some(self.token_outcome(call, &v)?)),
                    None => {
                        tx.set(token, TOMBSTONE);
                        Ok(None)
                    }
                }
            })
            .await
            .unwrap_or(Err(AttemptErr::Kv(timed_out())));
            let e = match fenced {
                Ok(Some(Token::Committed(o))) => return Ok(o),
                Ok(Some(Token::Fenced)) => return Err(not_committed(&msg)),
                Err(AttemptErr::Store(e)) => return Err(e),
                Err(AttemptErr::Kv(e)) => e,
                Ok(None) => match tokio::time::timeout(opts.tx_timeout, tx.commit())
                    .await
                    .unwrap_or(Err(timed_out()))
                {
                    Ok(_) => return Err(not_committed(&msg)),
                    Err(e) => e,
                },
            };
            let e = if e.kind == KvErrorKind::Fatal {
                KvError::new(KvErrorKind::Retryable, e.message)
            } else {
                e
            };
            if backoff.retry(e).await.is_err() {
                return Err(StoreError::storage_msg(format!(
                    "outcome unknown: {msg}; the write may or may not have happened and could not be settled (retry with event ids to be safe)"
                )));
            }
        }
    }

    /// Clears a settled call's token in the background.
    fn sweep_token(&self, token: Vec<u8>) {
        let store = self.clone();
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            let opts = store.inner.opts;
            let mut backoff = Backoff::new(opts.max_retries.min(5));
            loop {
                let Ok(tx) = store.inner.db.begin() else {
                    return;
                };
                tx.clear(&token);
                match tokio::time::timeout(opts.tx_timeout, tx.commit())
                    .await
                    .unwrap_or(Err(timed_out()))
                {
                    Ok(_) => return,
                    Err(e) => {
                        if backoff.retry(e).await.is_err() {
                            tracing::debug!("commit token left behind");
                            return;
                        }
                    }
                }
            }
        });
    }
}

fn not_committed(msg: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "{msg}; settled: no attempt committed, retrying is safe"
    ))
}

impl<D: KvDatabase> KvStore<D> {
    /// The append call of `request`.
    pub(crate) async fn append_call(
        &self,
        request: dcb_core::AppendRequest,
    ) -> Result<Appended, StoreError> {
        let plan = self.plan_append(request)?;
        self.run(&Call::Append(&plan)).await?.appended()
    }
}

//! Time, ids and randomness: the only way modules see the outside world's clock and entropy, so
//! tests control them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// The source of time, ids and randomness for decisions, leases and backoff.
pub trait Environment: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
    /// A fresh unique id.
    fn new_id(&self) -> Uuid;
    /// A random number.
    fn random_u64(&self) -> u64;
}

/// The real clock, random v4 ids and a per-process random generator.
#[derive(Debug, Default)]
pub struct SystemEnv {
    state: AtomicU64,
}

impl SystemEnv {
    /// The real environment.
    pub fn new() -> SystemEnv {
        SystemEnv {
            state: AtomicU64::new(Uuid::new_v4().as_u64_pair().0 | 1),
        }
    }
}

impl Environment for SystemEnv {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn new_id(&self) -> Uuid {
        Uuid::new_v4()
    }
    fn random_u64(&self) -> u64 {
        splitmix(
            self.state
                .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed),
        )
    }
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic environment for tests: a manual clock (starting at 2024-01-01T00:00:00Z),
/// sequential ids and a seeded generator.
#[derive(Debug)]
pub struct TestEnv {
    now: Mutex<SystemTime>,
    ids: AtomicU64,
    rng: AtomicU64,
}

impl Default for TestEnv {
    fn default() -> Self {
        TestEnv::new()
    }
}

impl TestEnv {
    /// 2024-01-01T00:00:00Z, ids from 1, seed 0.
    pub fn new() -> TestEnv {
        TestEnv {
            now: Mutex::new(test_epoch()),
            ids: AtomicU64::new(1),
            rng: AtomicU64::new(0),
        }
    }

    /// Sets the clock.
    pub fn set_now(&self, now: SystemTime) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Environment for TestEnv {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn new_id(&self) -> Uuid {
        Uuid::from_u64_pair(0, self.ids.fetch_add(1, Ordering::Relaxed))
    }
    fn random_u64(&self) -> u64 {
        splitmix(self.rng.fetch_add(1, Ordering::Relaxed))
    }
}

/// Milliseconds since the Unix epoch (0 before it, `u64::MAX` past the year 584 million): the
/// form times take in event data and metadata (the runtime stamps `recorded_at_ms` with it).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use fairway_runtime::{from_millis, millis};
/// let t = UNIX_EPOCH + Duration::from_millis(1_704_067_200_000);
/// assert_eq!(millis(t), 1_704_067_200_000);
/// assert_eq!(from_millis(millis(t)), t);
/// ```
pub fn millis(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

/// The time `ms` milliseconds after the Unix epoch (the inverse of [`millis`]).
pub fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The test clock's starting time, 2024-01-01T00:00:00Z (what [`TestEnv::new`] starts at).
pub fn test_epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_704_067_200)
}

/// Exponential backoff with "equal jitter": half the delay fixed, half random.
pub(crate) fn backoff(
    env: &dyn Environment,
    attempt: u32,
    base: Duration,
    max: Duration,
) -> Duration {
    let exp = base
        .saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        )
        .min(max);
    let half = exp / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let jitter = if nanos == 0 {
        0
    } else {
        env.random_u64() % (nanos + 1)
    };
    half + Duration::from_nanos(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let env = TestEnv::new();
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for attempt in 1..10 {
            let d = backoff(&env, attempt, base, max);
            let exp = (base * 2u32.pow(attempt - 1)).min(max);
            assert!(
                d >= exp / 2 && d <= exp,
                "attempt {attempt}: {d:?} not in [{:?}, {exp:?}]",
                exp / 2
            );
        }
        assert_eq!(backoff(&env, 1, Duration::ZERO, max), Duration::ZERO);
        assert!(backoff(&env, 200, base, max) <= max);
    }

    #[test]
    fn test_env_is_deterministic() {
        let a = TestEnv::new();
        let b = TestEnv::new();
        assert_eq!(a.new_id(), b.new_id());
        assert_eq!(a.random_u64(), b.random_u64());
        let t = a.now();
        a.advance(Duration::from_secs(5));
        assert_eq!(a.now(), t + Duration::from_secs(5));
    }
}

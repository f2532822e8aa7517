//! Login throttling: every password check (a login, the current password of a password change)
//! first takes a cell from the bucket of the client's address, then from the bucket of the
//! account, both GCRA rate limits from the `governor` crate. An empty bucket is 429
//! `too_many_requests` with `Retry-After`, answered before any hashing.
//!
//! Defaults ([`ThrottleLimits::default`]): per client address a burst of 20, then one attempt
//! per second; per account a burst of 10, then one every 6 seconds. The client address is the
//! TCP peer (IPv6 addresses by their /64 prefix); `X-Forwarded-For` is never trusted. Behind a
//! reverse proxy every client shares the proxy's address: register a [`LoginThrottle`] with
//! other limits as a service (`Arc<LoginThrottle>`) in that case. The account is the email's
//! confusable key, so lookalikes share one bucket, and known and unknown emails are throttled
//! alike (the answer reveals nothing about which exist).
//!
//! The buckets use a monotonic clock: rate limiting measures elapsed real time, it makes no
//! decision. Memory is bounded by forgetting buckets that are full again (every 4 096 checks).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use fairway_runtime::Runtime;
use fairway_runtime::http::ApiError;
use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

/// One bucket: a burst, then one attempt per `replenish`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Attempts allowed at once.
    pub burst: NonZeroU32,
    /// After the burst, one more attempt per this period.
    pub replenish: Duration,
}

impl Limit {
    fn quota(self) -> Quota {
        Quota::with_period(self.replenish)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(self.burst)
    }
}

/// The two limits of a [`LoginThrottle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Per client address.
    pub per_address: Limit,
    /// Per account (email key or user id).
    pub per_account: Limit,
}

impl Default for ThrottleLimits {
    fn default() -> ThrottleLimits {
        ThrottleLimits {
            per_address: Limit {
                burst: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
                replenish: Duration::from_secs(1),
            },
            per_account: Limit {
                burst: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
                replenish: Duration::from_secs(6),
            },
        }
    }
}

type Buckets<K, C> = RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Rate limits on password checks, per client address and per account.
pub struct LoginThrottle<C: Clock + Clone = MonotonicClock> {
    by_address: Buckets<IpAddr, C>,
    by_account: Buckets<String, C>,
    clock: C,
    checks: AtomicU64,
}

impl<C: Clock + Clone> std::fmt::Debug for LoginThrottle<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("addresses", &self.by_address.len())
            .field("accounts", &self.by_account.len())
            .finish()
    }
}

impl LoginThrottle {
    /// A throttle with `limits` on the monotonic clock.
    pub fn new(limits: ThrottleLimits) -> LoginThrottle {
        LoginThrottle::with_clock(limits, MonotonicClock)
    }
}

/// How often buckets that are full again are forgotten.
const RETAIN_EVERY: u64 = 4096;

impl<C: Clock + Clone> LoginThrottle<C> {
    /// A throttle with `limits` on `clock` (tests pass a fake one).
    pub fn with_clock(limits: ThrottleLimits, clock: C) -> LoginThrottle<C> {
        LoginThrottle {
            by_address: RateLimiter::dashmap_with_clock(limits.per_address.quota(), clock.clone()),
            by_account: RateLimiter::dashmap_with_clock(limits.per_account.quota(), clock.clone()),
            clock,
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one attempt from `address`'s bucket (when the address is known), then from
    /// `account`'s; 429 with `Retry-After` when either is empty (the account's is then left
    /// untouched).
    pub fn check(&self, address: Option<IpAddr>, account: &str) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            self.by_address.retain_recent();
            self.by_account.retain_recent();
        }
        if let Some(ip) = address
            && let Err(not_until) = self.by_address.check_key(&client_key(ip))
        {
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(ApiError::too_many_requests(
                "too many login attempts from this address; retry later",
                ceil_secs(wait),
            ));
        }
        if let Err(not_until) = self.by_account.check_key(&account.to_owned()) {
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(ApiError::too_many_requests(
                "too many login attempts for this account; retry later",
                ceil_secs(wait),
            ));
        }
        Ok(())
    }

    /// How many addresses and accounts have a bucket now.
    pub fn tracked(&self) -> (usize, usize) {
        (self.by_address.len(), self.by_account.len())
    }
}

fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

/// The bucket an address falls in: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64 prefix
/// (one host usually holds a whole /64).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// The process-wide default throttle, for hosts that register none.
static DEFAULT: std::sync::LazyLock<Arc<LoginThrottle>> =
    std::sync::LazyLock::new(|| Arc::new(LoginThrottle::new(ThrottleLimits::default())));

/// The throttle of `rt`: the `Arc<LoginThrottle>` service when the host registered one, else
/// the process-wide default.
pub fn throttle(rt: &Runtime) -> Arc<LoginThrottle> {
    rt.service::<Arc<LoginThrottle>>()
        .unwrap_or_else(|| Arc::clone(&DEFAULT))
}

/// The client's address: the TCP peer, when the host serves with connect info (`fairway serve`
/// does); `None` otherwise (then only the per-account limit applies). Never read from headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Nothing to document: the address comes from the connection, not from the request. The
/// throttle's 429 is part of the default error response.
impl fairway_runtime::openapi::OperationInput for ClientAddr {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limits(address: (u32, u64), account: (u32, u64)) -> ThrottleLimits {
        let limit = |(burst, secs): (u32, u64)| Limit {
            burst: NonZeroU32::new(burst).unwrap(),
            replenish: Duration::from_secs(secs),
        };
        ThrottleLimits {
            per_address: limit(address),
            per_account: limit(account),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_account_is_throttled_from_every_address_and_refills() {
        let clock = FakeRelativeClock::default();
        let t = LoginThrottle::with_clock(limits((100, 1), (3, 6)), clock.clone());
        for a in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            assert!(t.check(ip(a), "ann").is_ok());
        }
        let e = t.check(ip("10.0.0.4"), "ann").unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.code.as_str()),
            (429, "too_many_requests")
        );
        assert_eq!(e.retry_after, Some(6));
        // Other accounts are not affected.
        assert!(t.check(ip("10.0.0.4"), "bob").is_ok());
        clock.advance(Duration::from_secs(5));
        assert_eq!(t.check(None, "ann").unwrap_err().retry_after, Some(1));
        clock.advance(Duration::from_secs(1));
        assert!(t.check(None, "ann").is_ok());
        assert!(t.check(None, "ann").is_err());
    }

    #[test]
    fn an_address_is_throttled_across_accounts_without_using_theirs() {
        let clock = FakeRelativeClock::default();
        let t = LoginThrottle::with_clock(limits((2, 1), (2, 60)), clock.clone());
        assert!(t.check(ip("10.0.0.1"), "a").is_ok());
        assert!(t.check(ip("10.0.0.1"), "b").is_ok());
        let e = t.check(ip("10.0.0.1"), "c").unwrap_err();
        assert_eq!(e.retry_after, Some(1));
        // "c" lost nothing to the refused attempt: two tries from elsewhere.
        assert!(t.check(ip("10.0.0.2"), "c").is_ok());
        assert!(t.check(ip("10.0.0.3"), "c").is_ok());
        assert!(t.check(ip("10.0.0.4"), "c").is_err());
        clock.advance(Duration::from_secs(1));
        assert!(t.check(ip("10.0.0.1"), "d").is_ok());
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_prefix() {
        let clock = FakeRelativeClock::default();
        let t = LoginThrottle::with_clock(limits((1, 60), (100, 1)), clock);
        assert!(t.check(ip("2001:db8:1:2::1"), "a").is_ok());
        assert!(t.check(ip("2001:db8:1:2:ffff::9"), "b").is_err());
        assert!(t.check(ip("2001:db8:1:3::1"), "c").is_ok());
        assert_eq!(
            client_key("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn buckets_that_refilled_are_forgotten() {
        let clock = FakeRelativeClock::default();
        let t = LoginThrottle::with_clock(limits((5, 1), (5, 1)), clock.clone());
        for i in 0..1000u32 {
            let a = IpAddr::from(i.to_be_bytes());
            assert!(t.check(Some(a), &format!("user{i}")).is_ok());
        }
        assert_eq!(t.tracked(), (1000, 1000));
        clock.advance(Duration::from_secs(10));
        for _ in 0..RETAIN_EVERY {
            let _ = t.check(None, "again");
        }
        assert_eq!(t.tracked(), (0, 1));
    }
}

//! The quota stores' shared suite, run against the in-process store and against Redis (a
//! key prefix of its own per test): the two must behave the same. Time is passed in, so nothing sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{TimeZone, Utc};

use tollgate_proxy::quota::*;

const T0: u64 = 1_800_000_000_000;

fn reservation(
    scope: &str,
    n: usize,
    now_ms: u64,
    limits: &Limits,
    tokens: u64,
    cost: i64,
) -> Reservation {
    Reservation {
        id: format!("r{n}"),
        now_ms,
        scopes: vec![Scoped {
            scope: scope.to_string(),
            limits: limits.clone(),
            owner: Owner::Key(1),
        }],
        tokens,
        cost,
        lease_ms: 600_000,
    }
}

fn allowed(d: &Decision) -> bool {
    matches!(d, Decision::Allowed(_))
}

fn rejected_by(d: &Decision) -> Option<Dimension> {
    match d {
        Decision::Rejected { dimension, .. } => Some(*dimension),
        Decision::Allowed(_) | Decision::Unseeded(_) => None,
    }
}

/// Settles a reservation that used no tokens at `cost`.
async fn settle_cost(store: &dyn QuotaStore, r: &Reservation, cost: i64) {
    store.settle(r, Usage { tokens: 0, cost }).await.unwrap();
}

/// A Redis store under a key prefix of its own, the client it uses, and the prefix.
async fn redis_store() -> (Arc<RedisStore>, fred::clients::Client, String) {
    let url =
        std::env::var("TOLLGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = tollgate_proxy::backend::redis::connect(&url).await.unwrap();
    let prefix = format!("tgtest{}", fastrand::u64(..));
    let store = Arc::new(RedisStore::new(
        client.clone(),
        &prefix,
        &tokio::runtime::Handle::current(),
    ));
    (store, client, prefix)
}

async fn stores() -> Vec<(&'static str, Arc<dyn QuotaStore>)> {
    let (redis, _, _) = redis_store().await;
    vec![
        (
            "memory",
            Arc::new(MemoryStore::new()) as Arc<dyn QuotaStore>,
        ),
        ("redis", redis),
    ]
}

#[tokio::test]
async fn requests_per_minute_drain_steadily() {
    for (name, store) in stores().await {
        // 5 a minute: a full burst, then one more every 12 s.
        let limits = Limits {
            rpm: Some(5),
            ..Default::default()
        };
        for i in 0..5 {
            let d = store
                .reserve(&reservation("k:1", i, T0 + i as u64 * 1000, &limits, 0, 0))
                .await
                .unwrap();
            assert!(allowed(&d), "{name}: {i}");
            if let Decision::Allowed(s) = d {
                assert_eq!(s.requests_remaining, 4 - i as u64, "{name}");
                assert_eq!(s.requests_limit, Some(5));
            }
        }
        let d = store
            .reserve(&reservation("k:1", 5, T0 + 10_000, &limits, 0, 0))
            .await
            .unwrap();
        match d {
            Decision::Rejected {
                dimension,
                retry_after_ms,
                snapshot,
                scope,
            } => {
                assert_eq!((dimension, scope), (Dimension::Requests, 0), "{name}");
                // 10 s have drained 0.83 of the 5 admitted: the next fits in 2 s...
                assert_eq!(retry_after_ms, Some(2_000), "{name}");
                assert_eq!(snapshot.requests_remaining, 0);
                // ...and the bucket is empty in 50 s.
                assert_eq!(snapshot.requests_reset_ms, 50_000, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        // Once a request's worth has drained, one more fits, and only one.
        assert!(
            allowed(
                &store
                    .reserve(&reservation("k:1", 6, T0 + 12_001, &limits, 0, 0))
                    .await
                    .unwrap()
            ),
            "{name}"
        );
        assert!(
            !allowed(
                &store
                    .reserve(&reservation("k:1", 7, T0 + 12_002, &limits, 0, 0))
                    .await
                    .unwrap()
            ),
            "{name}"
        );
        // A minute after the last, the whole burst is back.
        for i in 0..5 {
            let d = store
                .reserve(&reservation("k:1", 8 + i, T0 + 72_001, &limits, 0, 0))
                .await
                .unwrap();
            assert!(allowed(&d), "{name}: {i}");
        }
        // Scopes are independent.
        assert!(
            allowed(
                &store
                    .reserve(&reservation("k:2", 20, T0 + 72_001, &limits, 0, 0))
                    .await
                    .unwrap()
            ),
            "{name}"
        );
    }
}

#[tokio::test]
async fn tokens_per_minute_are_reserved_then_settled() {
    for (name, store) in stores().await {
        let limits = Limits {
            tpm: Some(1000),
            ..Default::default()
        };
        let first = reservation("k:1", 1, T0, &limits, 600, 0);
        assert!(allowed(&store.reserve(&first).await.unwrap()), "{name}");
        let second = reservation("k:1", 2, T0 + 1000, &limits, 600, 0);
        let d = store.reserve(&second).await.unwrap();
        assert_eq!(rejected_by(&d), Some(Dimension::Tokens), "{name}");
        if let Decision::Rejected { retry_after_ms, .. } = d {
            // 1 s drained 16.7 tokens of the 600: 183.3 more must drain, at 1000 a minute.
            assert_eq!(retry_after_ms, Some(11_000), "{name}");
        }
        // The first used only 100 of its 600: now the second fits.
        store
            .settle(
                &first,
                Usage {
                    tokens: 100,
                    cost: 0,
                },
            )
            .await
            .unwrap();
        let d = store.reserve(&second).await.unwrap();
        match d {
            Decision::Allowed(s) => {
                // 100 - 16.7 drained + 600.
                assert_eq!(s.tokens_remaining, 316, "{name}");
                assert_eq!(s.tokens_reset_ms, 41_000, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
        // More than the whole limit can never fit: no retry-after.
        let huge = reservation("k:1", 3, T0 + 2000, &limits, 5000, 0);
        match store.reserve(&huge).await.unwrap() {
            Decision::Rejected {
                dimension: Dimension::Tokens,
                retry_after_ms: None,
                ..
            } => {}
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn concurrency_slots_are_released_or_expire() {
    for (name, store) in stores().await {
        let limits = Limits {
            concurrency: Some(2),
            ..Default::default()
        };
        let mut a = reservation("k:1", 1, T0, &limits, 0, 0);
        a.lease_ms = 5_000;
        let b = reservation("k:1", 2, T0, &limits, 0, 0);
        assert!(allowed(&store.reserve(&a).await.unwrap()));
        assert!(allowed(&store.reserve(&b).await.unwrap()));
        let c = reservation("k:1", 3, T0 + 10, &limits, 0, 0);
        assert_eq!(
            rejected_by(&store.reserve(&c).await.unwrap()),
            Some(Dimension::Concurrency),
            "{name}"
        );
        store.settle(&b, Usage::default()).await.unwrap();
        assert!(allowed(&store.reserve(&c).await.unwrap()), "{name}");
        // `a` never settles (its replica crashed): its lease frees the slot.
        let d = reservation("k:1", 4, T0 + 20, &limits, 0, 0);
        assert!(!allowed(&store.reserve(&d).await.unwrap()), "{name}");
        let e = reservation("k:1", 5, T0 + 5_001, &limits, 0, 0);
        assert!(allowed(&store.reserve(&e).await.unwrap()), "{name}");
    }
}

#[tokio::test]
async fn budgets_hold_reservations_and_settle_to_real_cost() {
    for (name, store) in stores().await {
        let budget = Budget::new(1000, Period::Day, Utc::now());
        let limits = Limits {
            budget: Some(budget),
            ..Default::default()
        };
        let a = reservation("k:1", 1, T0, &limits, 0, 400);
        // A counter that does not exist yet must be seeded first: nothing is decided.
        assert_eq!(
            store.reserve(&a).await.unwrap(),
            Decision::Unseeded(0),
            "{name}"
        );
        store.seed_spend(&a.scopes[0], 0).await.unwrap();
        // Seeding again does not overwrite what is counted.
        store.seed_spend(&a.scopes[0], 999).await.unwrap();
        let b = reservation("k:1", 2, T0, &limits, 0, 400);
        let c = reservation("k:1", 3, T0, &limits, 0, 400);
        assert!(allowed(&store.reserve(&a).await.unwrap()));
        assert!(allowed(&store.reserve(&b).await.unwrap()));
        match store.reserve(&c).await.unwrap() {
            Decision::Rejected {
                dimension: Dimension::Budget,
                retry_after_ms: Some(ms),
                ..
            } => {
                assert!(ms > 0 && ms <= 86_400_000, "{name}: resets at midnight UTC");
            }
            other => panic!("{name}: {other:?}"),
        }
        settle_cost(store.as_ref(), &a, 100).await;
        assert!(allowed(&store.reserve(&c).await.unwrap()), "{name}");
        // 100 + 400 + 400 reserved: 100 left, so a 150 request does not fit.
        let d = reservation("k:1", 4, T0, &limits, 0, 150);
        assert_eq!(
            rejected_by(&store.reserve(&d).await.unwrap()),
            Some(Dimension::Budget),
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_expired_lease_releases_its_budget_hold_once() {
    for (name, store) in stores().await {
        let limits = Limits {
            budget: Some(Budget::new(1000, Period::Day, Utc::now())),
            ..Default::default()
        };
        let mut a = reservation("k:1", 1, T0, &limits, 0, 400);
        a.lease_ms = 5_000;
        store.seed_spend(&a.scopes[0], 0).await.unwrap();
        assert!(allowed(&store.reserve(&a).await.unwrap()), "{name}");
        let b = reservation("k:1", 2, T0, &limits, 0, 400);
        assert!(allowed(&store.reserve(&b).await.unwrap()), "{name}");
        let c = reservation("k:1", 3, T0 + 10, &limits, 0, 400);
        assert_eq!(
            rejected_by(&store.reserve(&c).await.unwrap()),
            Some(Dimension::Budget),
            "{name}"
        );
        // `a` never settled in time: its lease ended and its hold with it.
        let c = reservation("k:1", 3, T0 + 6_000, &limits, 0, 400);
        assert!(allowed(&store.reserve(&c).await.unwrap()), "{name}");
        // Its late settlement counts its spend but does not release the hold again:
        // 100 spent + 800 held.
        settle_cost(store.as_ref(), &a, 100).await;
        let d = reservation("k:1", 4, T0 + 6_001, &limits, 0, 150);
        assert_eq!(
            rejected_by(&store.reserve(&d).await.unwrap()),
            Some(Dimension::Budget),
            "{name}"
        );
        let d = reservation("k:1", 4, T0 + 6_001, &limits, 0, 100);
        assert!(allowed(&store.reserve(&d).await.unwrap()), "{name}");
        // Once nothing runs, nothing is held: 100 + 500 spent.
        for (r, cost) in [(&b, 500), (&c, 0), (&d, 0)] {
            settle_cost(store.as_ref(), r, cost).await;
        }
        let e = reservation("k:1", 5, T0 + 6_002, &limits, 0, 400);
        assert!(allowed(&store.reserve(&e).await.unwrap()), "{name}");
        let f = reservation("k:1", 6, T0 + 6_002, &limits, 0, 1);
        assert_eq!(
            rejected_by(&store.reserve(&f).await.unwrap()),
            Some(Dimension::Budget),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_budget_set_later_releases_only_the_holds_it_counted() {
    for (name, store) in stores().await {
        let slots = Limits {
            concurrency: Some(5),
            ..Default::default()
        };
        let budgeted = Limits {
            budget: Some(Budget::new(1000, Period::Day, Utc::now())),
            ..slots.clone()
        };
        // Admitted before the key had a budget; it never settles (its replica crashed).
        let mut a = reservation("k:1", 1, T0, &slots, 0, 400);
        a.lease_ms = 5_000;
        assert!(allowed(&store.reserve(&a).await.unwrap()), "{name}");
        let b = reservation("k:1", 2, T0 + 10, &budgeted, 0, 400);
        store.seed_spend(&b.scopes[0], 0).await.unwrap();
        assert!(allowed(&store.reserve(&b).await.unwrap()), "{name}");
        let c = reservation("k:1", 3, T0 + 6_000, &budgeted, 0, 400);
        assert!(allowed(&store.reserve(&c).await.unwrap()), "{name}");
        // `a`'s lease has ended, but it never held budget: 800 stay held, 400 more do not fit.
        let d = reservation("k:1", 4, T0 + 6_001, &budgeted, 0, 400);
        assert_eq!(
            rejected_by(&store.reserve(&d).await.unwrap()),
            Some(Dimension::Budget),
            "{name}"
        );
    }
}

#[tokio::test]
async fn concurrent_reservations_are_exact() {
    for (name, store) in stores().await {
        let limits = Limits {
            rpm: Some(20),
            ..Default::default()
        };
        let mut tasks = Vec::new();
        for i in 0..60 {
            let store = store.clone();
            let r = reservation("k:race", i, T0, &limits, 0, 0);
            tasks.push(tokio::spawn(async move {
                allowed(&store.reserve(&r).await.unwrap())
            }));
        }
        let mut admitted = 0;
        for t in tasks {
            admitted += usize::from(t.await.unwrap());
        }
        assert_eq!(admitted, 20, "{name}");
    }
}

/// Settlements made at once (the Redis store sends them in batches) are each applied once.
#[tokio::test]
async fn concurrent_settlements_each_count_once() {
    for (name, store) in stores().await {
        let limits = Limits {
            tpm: Some(1_000_000),
            concurrency: Some(40),
            budget: Some(Budget::new(1_000_000, Period::Day, Utc::now())),
            ..Default::default()
        };
        let first = reservation("k:batch", 0, T0, &limits, 10, 100);
        store.seed_spend(&first.scopes[0], 0).await.unwrap();
        let mut running = Vec::new();
        for i in 0..40 {
            let r = reservation("k:batch", i, T0, &limits, 10, 100);
            assert!(allowed(&store.reserve(&r).await.unwrap()), "{name}: {i}");
            running.push(r);
        }
        let full = reservation("k:batch", 40, T0, &limits, 0, 0);
        assert_eq!(
            rejected_by(&store.reserve(&full).await.unwrap()),
            Some(Dimension::Concurrency),
            "{name}"
        );
        let settling: Vec<_> = running
            .into_iter()
            .map(|r| {
                let store = store.clone();
                tokio::spawn(async move {
                    let used = Usage {
                        tokens: 4,
                        cost: 30,
                    };
                    store.settle(&r, used).await.unwrap();
                })
            })
            .collect();
        for s in settling {
            s.await.unwrap();
        }
        // Every slot is free again, 40 × 4 tokens are counted and 40 × 30 spent, nothing held.
        let probe = reservation("k:batch", 41, T0, &limits, 0, 1_000_000 - 1_200);
        match store.reserve(&probe).await.unwrap() {
            Decision::Allowed(s) => assert_eq!(s.tokens_remaining, 1_000_000 - 160, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
        let over = reservation("k:batch", 42, T0, &limits, 0, 1);
        assert_eq!(
            rejected_by(&store.reserve(&over).await.unwrap()),
            Some(Dimension::Budget),
            "{name}"
        );
        for i in 43..82 {
            let r = reservation("k:batch", i, T0, &limits, 0, 0);
            assert!(allowed(&store.reserve(&r).await.unwrap()), "{name}: {i}");
        }
    }
}

/// A reservation whose state Redis cannot read fails alone: the requests checked in the
/// same script call are decided, and a second try fails again instead of hanging.
#[tokio::test]
async fn a_corrupt_scope_fails_only_its_own_reservations() {
    use fred::interfaces::KeysInterface;
    let (store, client, prefix) = redis_store().await;
    let _: () = client
        .set(
            format!("{prefix}:q:{{k:bad}}:levels"),
            "not a packed state",
            None,
            None,
            false,
        )
        .await
        .unwrap();
    let limits = Limits {
        rpm: Some(10),
        ..Default::default()
    };
    // Queued together, so most share one script call.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let scope = if i % 2 == 0 { "k:bad" } else { "k:good" };
            let r = reservation(scope, i, T0, &limits, 0, 0);
            tokio::spawn(async move { (scope, store.reserve(&r).await) })
        })
        .collect();
    for t in tasks {
        match t.await.unwrap() {
            ("k:bad", Err(QuotaError::Unavailable(message))) => {
                assert!(message.contains("quota script failed"), "{message}");
            }
            ("k:good", Ok(d)) => assert!(allowed(&d)),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn every_scope_must_fit_and_all_are_reserved_together() {
    for (name, store) in stores().await {
        // Two keys of one user: each may do 3 a minute, the user 4 in all.
        let key = Limits {
            rpm: Some(3),
            ..Default::default()
        };
        let user = Limits {
            rpm: Some(4),
            ..Default::default()
        };
        let claim = |key_scope: &str, n: usize| Reservation {
            id: format!("r{n}"),
            now_ms: T0 + n as u64,
            scopes: vec![
                Scoped {
                    scope: key_scope.into(),
                    limits: key.clone(),
                    owner: Owner::Key(1),
                },
                Scoped {
                    scope: "u:1".into(),
                    limits: user.clone(),
                    owner: Owner::User(1),
                },
            ],
            tokens: 0,
            cost: 0,
            lease_ms: 600_000,
        };
        for n in 0..3 {
            assert!(
                allowed(&store.reserve(&claim("k:a", n)).await.unwrap()),
                "{name}"
            );
        }
        match store.reserve(&claim("k:a", 3)).await.unwrap() {
            Decision::Rejected {
                scope: 0,
                dimension: Dimension::Requests,
                ..
            } => {}
            other => panic!("{name}: the key's own limit: {other:?}"),
        }
        // The refused request reserved nothing in the user's scope: one more fits there.
        let d = store.reserve(&claim("k:b", 4)).await.unwrap();
        match d {
            Decision::Allowed(s) => {
                // The tightest scope speaks in the headers: the user, with none left.
                assert_eq!(
                    (s.requests_limit, s.requests_remaining),
                    (Some(4), 0),
                    "{name}"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
        match store.reserve(&claim("k:b", 5)).await.unwrap() {
            Decision::Rejected {
                scope: 1,
                dimension: Dimension::Requests,
                ..
            } => {}
            other => panic!("{name}: the user's limit: {other:?}"),
        }
    }
}

#[test]
fn budget_periods_reset_at_utc_boundaries() {
    let at = Utc.with_ymd_and_hms(2026, 12, 31, 23, 30, 0).unwrap();
    assert_eq!(
        Period::Day.resets_at(at),
        Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap())
    );
    assert_eq!(
        Period::Month.resets_at(at),
        Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap())
    );
    assert_eq!(Period::Total.resets_at(at), None);
    assert_eq!(Period::Day.id(at), "d2026-12-31");
    assert_eq!(Period::Month.id(at), "m2026-12");
    let b = Budget::new(5, Period::Day, at);
    assert_eq!(b.resets_in_ms, 30 * 60 * 1000);
    // A negative budget allows nothing.
    assert_eq!(Budget::new(-5, Period::Day, at).limit_micro_usd, 0);
}

/// Waits until the store's recovery task has put right the reservations `ids` (of `scope`).
async fn put_right(client: &fred::clients::Client, prefix: &str, scope: &str, ids: &[&str]) {
    use fred::interfaces::KeysInterface;
    for _ in 0..500 {
        let mut done = 0;
        for id in ids {
            let exists: i64 = client
                .exists(format!("{prefix}:q:{{{scope}}}:released:{id}"))
                .await
                .unwrap();
            done += exists;
        }
        if done == ids.len() as i64 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the reservations {ids:?} were never put right");
}

#[tokio::test]
async fn reservations_given_up_on_are_put_right_once() {
    let (store, client, prefix) = redis_store().await;
    let limits = Limits {
        rpm: Some(3),
        tpm: Some(100),
        concurrency: Some(2),
        ..Limits::default()
    };
    let r = |n| reservation("k:1", n, T0, &limits, 10, 0);
    let (a, b) = (r(1), r(2));
    assert!(allowed(&store.reserve(&a).await.unwrap()));
    assert!(allowed(&store.reserve(&b).await.unwrap()));
    // `a` was applied but its answer lost, and the request refused: its slot, request and
    // tokens are given back, once however often it is handed over.
    store.abandoned(&a, None);
    store.abandoned(&a, None);
    // `c` never reached Redis but was served under the local limiter: it counts once.
    let c = r(3);
    store.abandoned(
        &c,
        Some(Usage {
            tokens: 40,
            cost: 0,
        }),
    );
    // `e` was refused and never applied: nothing changes.
    store.abandoned(&r(5), None);
    put_right(&client, &prefix, "k:1", &["r1", "r3", "r5"]).await;
    // Requests: b and c count (2 of 3); tokens: 10 + 40 of 100; slots: only b runs.
    let d = r(4);
    let decision = store.reserve(&d).await.unwrap();
    let Decision::Allowed(snapshot) = decision else {
        panic!("{decision:?}");
    };
    assert_eq!(snapshot.requests_remaining, 0);
    assert_eq!(snapshot.tokens_remaining, 100 - 10 - 40 - 10);
    assert_eq!(
        rejected_by(&store.reserve(&r(6)).await.unwrap()),
        Some(Dimension::Requests)
    );
}

#[tokio::test]
async fn a_served_reservation_whose_answer_was_lost_counts_once_and_frees_its_slot() {
    let (store, client, prefix) = redis_store().await;
    let limits = Limits {
        rpm: Some(10),
        tpm: Some(1000),
        concurrency: Some(1),
        ..Limits::default()
    };
    let r = |n| reservation("k:2", n, T0, &limits, 100, 0);
    let a = r(1);
    assert!(allowed(&store.reserve(&a).await.unwrap()));
    // Served under the local limiter though Redis had it: tokens settle to what it used,
    // the request is not counted again, and the slot is free.
    store.abandoned(
        &a,
        Some(Usage {
            tokens: 30,
            cost: 0,
        }),
    );
    put_right(&client, &prefix, "k:2", &["r1"]).await;
    let Decision::Allowed(snapshot) = store.reserve(&r(2)).await.unwrap() else {
        panic!("the slot was not freed");
    };
    assert_eq!(snapshot.requests_remaining, 10 - 2);
    assert_eq!(snapshot.tokens_remaining, 1000 - 30 - 100);
}

//! The conformance suite: one set of checks, generic over `OrderedKv`, run against every
//! backend. SQLite always; FoundationDB when `HORDE_FDB_CLUSTER_FILE` names a cluster file
//! and the crate is built with `--features fdb` (see fdb-cluster/README.md).
//!
//! Each check works under its own tuple prefix, which it clears first, so that runs against
//! a shared cluster do not interfere.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures::TryStreamExt;
use horde_kv::tuple::{Element, Subspace, Versionstamp};
use horde_kv::{KeySelector, KvError, MaybeCommitted, OrderedKv, RangeOption, Transaction};

type Check<K> = for<'a> fn(&'a K, Subspace) -> futures::future::BoxFuture<'a, ()>;

/// Every check, by name.
fn checks<K: OrderedKv>() -> Vec<(&'static str, Check<K>)> {
    vec![
        ("tuple_order", |kv, s| Box::pin(tuple_order(kv, s))),
        ("ranges_and_selectors", |kv, s| {
            Box::pin(ranges_and_selectors(kv, s))
        }),
        ("streamed_ranges", |kv, s| Box::pin(streamed_ranges(kv, s))),
        ("read_your_writes", |kv, s| {
            Box::pin(read_your_writes(kv, s))
        }),
        ("versionstamps", |kv, s| Box::pin(versionstamps(kv, s))),
        ("concurrent_atomic_adds", |kv, s| {
            Box::pin(concurrent_atomic_adds(kv, s))
        }),
        ("limits", |kv, s| Box::pin(limits(kv, s))),
        ("conflicts", |kv, s| Box::pin(conflicts(kv, s))),
        ("retried_increments", |kv, s| {
            Box::pin(retried_increments(kv, s))
        }),
        ("too_old", |kv, s| Box::pin(too_old(kv, s))),
    ]
}

async fn fresh<K: OrderedKv>(kv: &K, name: &str) -> Subspace {
    let space = Subspace::from_bytes(b"conformance".to_vec()).subspace(&name);
    let (b, e) = space.range();
    kv.transact(|tx, _| {
        let (b, e) = (b.clone(), e.clone());
        async move {
            tx.clear_range(&b, &e);
            Ok::<_, KvError>(())
        }
    })
    .await
    .expect("clear the check's prefix");
    space
}

async fn write_all<K: OrderedKv>(kv: &K, pairs: Vec<(Vec<u8>, Vec<u8>)>) {
    for chunk in pairs.chunks(500) {
        kv.transact(|tx, _| async move {
            for (k, v) in chunk {
                tx.set(k, v);
            }
            Ok::<_, KvError>(())
        })
        .await
        .expect("write");
    }
}

fn range_of(space: &Subspace) -> RangeOption {
    let (b, e) = space.range();
    RangeOption::new(b, e)
}

/// Tuple keys of every type sort as the tuple layer says: by type code, then by value.
async fn tuple_order<K: OrderedKv>(kv: &K, space: Subspace) {
    let uuid_a = horde_kv::tuple::Uuid::from_u128(1);
    let uuid_b = horde_kv::tuple::Uuid::from_u128(u128::MAX - 1);
    let expected: Vec<Element<'static>> = vec![
        Element::Nil,
        Element::Bytes(b"".to_vec().into()),
        Element::Bytes(b"\x00".to_vec().into()),
        Element::Bytes(b"\x00\x00".to_vec().into()),
        Element::Bytes(b"a".to_vec().into()),
        Element::Bytes(b"\xff".to_vec().into()),
        Element::String("".into()),
        Element::String("A".into()),
        Element::String("a".into()),
        Element::String("a\u{0}b".into()),
        Element::String("é".into()),
        Element::Tuple(vec![]),
        Element::Tuple(vec![Element::Nil]),
        Element::Tuple(vec![Element::Int(1)]),
        Element::Int(i64::MIN),
        Element::Int(-70_000),
        Element::Int(-256),
        Element::Int(-255),
        Element::Int(-1),
        Element::Int(0),
        Element::Int(1),
        Element::Int(255),
        Element::Int(256),
        Element::Int(70_000),
        Element::Int(i64::MAX),
        Element::Float(-1.5),
        Element::Float(0.0),
        Element::Float(2.5),
        Element::Double(f64::NEG_INFINITY),
        Element::Double(-2.0),
        Element::Double(-0.0),
        Element::Double(0.0),
        Element::Double(1e-300),
        Element::Double(3.25),
        Element::Double(f64::INFINITY),
        Element::Bool(false),
        Element::Bool(true),
        Element::Uuid(uuid_a),
        Element::Uuid(uuid_b),
        Element::Versionstamp(Versionstamp::complete([0, 0, 0, 0, 0, 0, 0, 1, 0, 0], 0)),
        Element::Versionstamp(Versionstamp::complete([0, 0, 0, 0, 0, 0, 0, 1, 0, 0], 1)),
        Element::Versionstamp(Versionstamp::complete([0, 0, 0, 0, 0, 0, 0, 2, 0, 0], 0)),
    ];
    // Written in a scrambled order, with the index as the value.
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = expected
        .iter()
        .enumerate()
        .map(|(i, e)| (space.pack(&(e,)), (i as u32).to_be_bytes().to_vec()))
        .collect();
    pairs.reverse();
    pairs.rotate_left(7);
    write_all(kv, pairs).await;
    let tx = kv.begin().await.expect("begin");
    let got = tx.get_all(range_of(&space), false).await.expect("read");
    let order: Vec<u32> = got
        .iter()
        .map(|kv| u32::from_be_bytes(kv.value[..4].try_into().expect("4 bytes")))
        .collect();
    assert_eq!(
        order,
        (0..expected.len() as u32).collect::<Vec<_>>(),
        "tuple keys read back out of order"
    );
    for (kvp, want) in got.iter().zip(&expected) {
        let (elem,): (Element,) = space.unpack(&kvp.key).expect("unpack");
        match (&elem, want) {
            (Element::Double(a), Element::Double(b)) => assert_eq!(a.to_bits(), b.to_bits()),
            _ => assert_eq!(&elem, want),
        }
    }
}

async fn ranges_and_selectors<K: OrderedKv>(kv: &K, space: Subspace) {
    let key = |i: i64| space.pack(&(i,));
    write_all(
        kv,
        (0..100)
            .map(|i| (key(i * 2), i.to_be_bytes().to_vec()))
            .collect(),
    )
    .await;
    let tx = kv.begin().await.expect("begin");
    let ids = |kvs: &[horde_kv::KeyValue]| -> Vec<i64> {
        kvs.iter()
            .map(|p| space.unpack::<(i64,)>(&p.key).expect("unpack").0)
            .collect()
    };
    let all = range_of(&space);
    let first = tx
        .get_range(&all.clone().limit(10), false)
        .await
        .expect("forward");
    assert_eq!(ids(&first.kvs), (0..10).map(|i| i * 2).collect::<Vec<_>>());
    let last = tx
        .get_range(&all.clone().limit(10).reverse(), false)
        .await
        .expect("reverse");
    assert_eq!(
        ids(&last.kvs),
        (90..100).rev().map(|i| i * 2).collect::<Vec<_>>()
    );
    // [10, 20): 10 12 14 16 18.
    let mid = RangeOption::new(key(10), key(20));
    assert_eq!(
        ids(&tx.get_all(mid.clone(), false).await.expect("mid")),
        vec![10, 12, 14, 16, 18]
    );
    assert_eq!(
        ids(&tx
            .get_all(mid.clone().reverse().limit(2), false)
            .await
            .expect("mid rev")),
        vec![18, 16]
    );
    // Selectors on keys that exist and keys that do not.
    let sel = |begin: KeySelector, end: KeySelector| RangeOption {
        begin,
        end,
        limit: None,
        reverse: false,
    };
    let r = sel(
        KeySelector::first_greater_than(key(10)),
        KeySelector::first_greater_than(key(16)),
    );
    assert_eq!(
        ids(&tx.get_all(r, false).await.expect("gt")),
        vec![12, 14, 16]
    );
    let r = sel(
        KeySelector::last_less_than(key(11)),
        KeySelector::last_less_or_equal(key(16)),
    );
    assert_eq!(
        ids(&tx.get_all(r, false).await.expect("lt/le")),
        vec![10, 12, 14]
    );
    let r = sel(
        KeySelector::first_greater_or_equal(key(11)).moved(2),
        KeySelector::first_greater_or_equal(key(11)).moved(4),
    );
    assert_eq!(
        ids(&tx.get_all(r, false).await.expect("offsets")),
        vec![16, 18]
    );
    let r = sel(
        KeySelector::last_less_or_equal(key(30)).moved(-2),
        KeySelector::first_greater_or_equal(key(30)),
    );
    assert_eq!(
        ids(&tx.get_all(r, false).await.expect("negative offset")),
        vec![26, 28]
    );
    // Empty and inverted ranges.
    assert!(
        tx.get_all(RangeOption::new(key(11), key(11)), false)
            .await
            .expect("empty")
            .is_empty()
    );
    assert!(
        tx.get_all(RangeOption::new(key(20), key(10)), false)
            .await
            .expect("inverted")
            .is_empty()
    );
    assert!(
        tx.get_all(RangeOption::new(key(11), key(12)), false)
            .await
            .expect("gap")
            .is_empty()
    );
    // A point read of a missing key.
    assert_eq!(tx.get(&key(3), false).await.expect("get"), None);
    assert_eq!(
        tx.get(&key(4), false).await.expect("get"),
        Some(2i64.to_be_bytes().to_vec())
    );
}

async fn streamed_ranges<K: OrderedKv>(kv: &K, space: Subspace) {
    const N: i64 = 2_500;
    let value = vec![7u8; 600];
    write_all(
        kv,
        (0..N).map(|i| (space.pack(&(i,)), value.clone())).collect(),
    )
    .await;
    let tx = kv.begin().await.expect("begin");
    let batches: Vec<Vec<horde_kv::KeyValue>> = tx
        .get_ranges(range_of(&space), false)
        .try_collect()
        .await
        .expect("stream");
    assert!(
        batches.len() > 1,
        "a range of 1.5 MB arrives in more than one batch"
    );
    let ids: Vec<i64> = batches
        .iter()
        .flatten()
        .map(|p| space.unpack::<(i64,)>(&p.key).expect("unpack").0)
        .collect();
    assert_eq!(ids, (0..N).collect::<Vec<_>>());
    let rev: Vec<i64> = tx
        .get_all(range_of(&space).reverse().limit(1_500), true)
        .await
        .expect("reverse stream")
        .iter()
        .map(|p| space.unpack::<(i64,)>(&p.key).expect("unpack").0)
        .collect();
    assert_eq!(rev, (N - 1_500..N).rev().collect::<Vec<_>>());
}

async fn read_your_writes<K: OrderedKv>(kv: &K, space: Subspace) {
    let key = |i: i64| space.pack(&(i,));
    write_all(kv, (0..10).map(|i| (key(i), b"stored".to_vec())).collect()).await;
    let tx = kv.begin().await.expect("begin");
    tx.set(&key(3), b"mine");
    tx.set(&key(20), b"new");
    tx.clear(&key(4));
    tx.clear_range(&key(6), &key(8));
    tx.set(&key(7), b"back");
    tx.atomic_add(&key(30), &5u64.to_le_bytes());
    tx.atomic_add(&key(30), &6u64.to_le_bytes());
    assert_eq!(
        tx.get(&key(3), false).await.expect("get"),
        Some(b"mine".to_vec())
    );
    assert_eq!(tx.get(&key(4), false).await.expect("get"), None);
    assert_eq!(tx.get(&key(6), false).await.expect("get"), None);
    assert_eq!(
        tx.get(&key(30), false).await.expect("get"),
        Some(11u64.to_le_bytes().to_vec())
    );
    let seen: Vec<(i64, Vec<u8>)> = tx
        .get_all(range_of(&space), false)
        .await
        .expect("range")
        .into_iter()
        .map(|p| (space.unpack::<(i64,)>(&p.key).expect("unpack").0, p.value))
        .collect();
    let want: Vec<(i64, Vec<u8>)> = vec![
        (0, b"stored".to_vec()),
        (1, b"stored".to_vec()),
        (2, b"stored".to_vec()),
        (3, b"mine".to_vec()),
        (5, b"stored".to_vec()),
        (7, b"back".to_vec()),
        (8, b"stored".to_vec()),
        (9, b"stored".to_vec()),
        (20, b"new".to_vec()),
        (30, 11u64.to_le_bytes().to_vec()),
    ];
    assert_eq!(seen, want);
    let rev: Vec<i64> = tx
        .get_all(range_of(&space).reverse().limit(3), false)
        .await
        .expect("rev")
        .iter()
        .map(|p| space.unpack::<(i64,)>(&p.key).expect("unpack").0)
        .collect();
    assert_eq!(rev, vec![30, 20, 9]);
    // Another transaction sees none of it until commit.
    let other = kv.begin().await.expect("begin");
    assert_eq!(
        other.get(&key(3), false).await.expect("get"),
        Some(b"stored".to_vec())
    );
    tx.commit().await.expect("commit");
    // A snapshot taken before the commit keeps seeing the old state.
    assert_eq!(
        other.get(&key(4), false).await.expect("get"),
        Some(b"stored".to_vec())
    );
    let after = kv.begin().await.expect("begin");
    assert_eq!(after.get(&key(4), false).await.expect("get"), None);
    assert_eq!(
        after.get(&key(30), false).await.expect("get"),
        Some(11u64.to_le_bytes().to_vec())
    );
    // An atomic add onto a stored value (base not read in the transaction).
    kv.transact(|tx, _| {
        let k = key(30);
        async move {
            tx.atomic_add(&k, &1u64.to_le_bytes());
            tx.get(&k, false).await
        }
    })
    .await
    .map(|(v, _)| assert_eq!(v, Some(12u64.to_le_bytes().to_vec())))
    .expect("add onto stored");
}

async fn versionstamps<K: OrderedKv>(kv: &K, space: Subspace) {
    let log = space.subspace(&"log");
    let mut stamps = Vec::new();
    for round in 0..3u8 {
        let (_, committed) = kv
            .transact(|tx, _| {
                let log = log.clone();
                async move {
                    for user in 0..3u16 {
                        tx.set_versionstamped_key(
                            &log.pack_with_versionstamp(&(Versionstamp::incomplete(user),)),
                            &[round],
                        );
                    }
                    // Where the keys will land is unreadable before commit (as on FoundationDB).
                    assert_eq!(
                        tx.get_all(range_of(&log), false).await,
                        Err(KvError::AccessedUnreadable)
                    );
                    Ok::<_, KvError>(())
                }
            })
            .await
            .expect("versionstamped keys");
        let stamp = committed
            .versionstamp
            .expect("a writing transaction has a versionstamp");
        assert!(committed.version > 0);
        assert_eq!(stamp.version(), committed.version);
        stamps.push(stamp);
    }
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "versionstamps grow across commits: {stamps:?}"
    );
    let tx = kv.begin().await.expect("begin");
    assert!(tx.read_version().await.expect("read version") >= stamps[2].version());
    let keys: Vec<Versionstamp> = tx
        .get_all(range_of(&log), false)
        .await
        .expect("read")
        .iter()
        .map(|p| log.unpack::<(Versionstamp,)>(&p.key).expect("unpack").0)
        .collect();
    let want: Vec<Versionstamp> = stamps
        .iter()
        .flat_map(|s| (0..3).map(|u| s.with_user_version(u)))
        .collect();
    assert_eq!(keys, want, "one key per user version, in commit order");
    // A versionstamped value holds the commit's versionstamp; reading it before commit fails.
    let key = space.pack(&("value",));
    let (_, committed) = kv
        .transact(|tx, _| {
            let key = key.clone();
            async move {
                let mut value = b"at:".to_vec();
                let offset = value.len() as u32;
                value.extend_from_slice(&[0xff; 10]);
                value.extend_from_slice(&offset.to_le_bytes());
                tx.set_versionstamped_value(&key, &value);
                assert_eq!(tx.get(&key, false).await, Err(KvError::AccessedUnreadable));
                Ok::<_, KvError>(())
            }
        })
        .await
        .expect("versionstamped value");
    let tx = kv.begin().await.expect("begin");
    let mut want = b"at:".to_vec();
    want.extend_from_slice(&committed.versionstamp.expect("stamp").0);
    assert_eq!(tx.get(&key, false).await.expect("get"), Some(want));
    // A read-only transaction has no versionstamp.
    let committed = tx.commit().await.expect("read-only commit");
    assert_eq!(committed.versionstamp, None);
}

async fn concurrent_atomic_adds<K: OrderedKv>(kv: &K, space: Subspace) {
    let key = space.pack(&("counter",));
    let attempts = AtomicU32::new(0);
    let tasks = (0..16).map(|_| async {
        for _ in 0..10 {
            kv.transact(|tx, _| {
                attempts.fetch_add(1, Ordering::Relaxed);
                let key = key.clone();
                async move {
                    tx.atomic_add(&key, &1i64.to_le_bytes());
                    Ok::<_, KvError>(())
                }
            })
            .await
            .expect("add");
        }
    });
    futures::future::join_all(tasks).await;
    let tx = kv.begin().await.expect("begin");
    let v = tx
        .get(&key, false)
        .await
        .expect("get")
        .expect("counter exists");
    assert_eq!(i64::from_le_bytes(v.try_into().expect("8 bytes")), 160);
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        160,
        "blind atomic adds never conflict"
    );
}

/// A write that should make the commit fail.
type BadWrite<K> = Box<dyn Fn(&<K as OrderedKv>::Tx) + Send + Sync>;

async fn limits<K: OrderedKv>(kv: &K, space: Subspace) {
    let ok = space.pack(&("ok",));
    let try_write = |f: BadWrite<K>| {
        let ok = ok.clone();
        async move {
            let tx = kv.begin().await.expect("begin");
            tx.set(&ok, b"written with a bad write");
            f(&tx);
            tx.commit().await
        }
    };
    // Keys: 10,000 bytes pass, 10,001 fail.
    let mut big_key = space.pack(&("k",));
    big_key.resize(10_000, b'k');
    let at_limit = big_key.clone();
    kv.transact(|tx, _| {
        let k = at_limit.clone();
        async move {
            tx.set(&k, b"v");
            Ok::<_, KvError>(())
        }
    })
    .await
    .expect("a 10,000-byte key is allowed");
    big_key.push(b'k');
    let k = big_key.clone();
    let err = try_write(Box::new(move |tx| tx.set(&k, b"v")))
        .await
        .expect_err("key over the limit");
    assert!(matches!(err, KvError::KeyTooLarge { .. }), "{err:?}");
    assert_eq!(err.code(), 2102);
    // Values: 100,000 bytes pass, 100,001 fail.
    let vkey = space.pack(&("v",));
    let k = vkey.clone();
    try_write(Box::new(move |tx| tx.set(&k, &vec![1u8; 100_000])))
        .await
        .expect("a 100,000-byte value is allowed");
    let k = vkey.clone();
    let err = try_write(Box::new(move |tx| tx.set(&k, &vec![1u8; 100_001])))
        .await
        .expect_err("value over the limit");
    assert!(matches!(err, KvError::ValueTooLarge { .. }), "{err:?}");
    assert_eq!(err.code(), 2103);
    // Transactions: about 10.1 MB of values fail.
    let s = space.clone();
    let err = try_write(Box::new(move |tx| {
        for i in 0..101 {
            tx.set(&s.pack(&("big", i)), &vec![2u8; 100_000]);
        }
    }))
    .await
    .expect_err("transaction over the limit");
    assert!(
        matches!(err, KvError::TransactionTooLarge { .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), 2101);
    // The system key space is not writable.
    let err = try_write(Box::new(|tx| tx.set(b"\xff/horde", b"v")))
        .await
        .expect_err("system key");
    assert_eq!(err, KvError::KeyOutsideLegalRange);
    // None of the failed transactions wrote anything, not even their valid writes.
    let tx = kv.begin().await.expect("begin");
    assert_eq!(
        tx.get(&ok, false).await.expect("get").map(|v| v.len()),
        Some(b"written with a bad write".len()),
        "only the allowed 100,000-byte write committed `ok`"
    );
    let big: Vec<_> = tx
        .get_all(
            RangeOption::prefix(&space.pack(&("big",))[..space.pack(&("big",)).len()]),
            false,
        )
        .await
        .expect("range");
    assert!(big.is_empty());
    assert_eq!(
        tx.get(&vkey, false).await.expect("get").map(|v| v.len()),
        Some(100_000)
    );
    assert_eq!(tx.get(&big_key, false).await.expect("get"), None);
}

async fn conflicts<K: OrderedKv>(kv: &K, space: Subspace) {
    let a = space.pack(&("a",));
    let b = space.pack(&("b",));
    write_all(kv, vec![(a.clone(), b"0".to_vec())]).await;
    // t1 reads a, t2 writes a and commits, t1 writes b: t1 must fail with not_committed.
    let t1 = kv.begin().await.expect("begin");
    t1.get(&a, false).await.expect("read");
    let t2 = kv.begin().await.expect("begin");
    t2.set(&a, b"1");
    t2.commit().await.expect("t2 commits");
    t1.set(&b, b"from t1");
    let err = t1.commit().await.expect_err("t1 read a stale value");
    assert_eq!(err, KvError::NotCommitted);
    assert!(err.is_retryable());
    // A snapshot read adds no conflict.
    let t3 = kv.begin().await.expect("begin");
    t3.get(&a, true).await.expect("snapshot read");
    let t4 = kv.begin().await.expect("begin");
    t4.set(&a, b"2");
    t4.commit().await.expect("t4 commits");
    t3.set(&b, b"from t3");
    t3.commit().await.expect("snapshot reads do not conflict");
    // A range read conflicts with a write inside the range, not outside.
    let t5 = kv.begin().await.expect("begin");
    t5.get_all(
        RangeOption::new(space.pack(&("m",)), space.pack(&("n",))),
        false,
    )
    .await
    .expect("range");
    let t6 = kv.begin().await.expect("begin");
    t6.set(&space.pack(&("z",)), b"outside");
    t6.commit().await.expect("t6");
    t5.set(&b, b"from t5");
    t5.commit()
        .await
        .expect("a write outside the read range does not conflict");
    let t7 = kv.begin().await.expect("begin");
    t7.get_all(
        RangeOption::new(space.pack(&("m",)), space.pack(&("n",))),
        false,
    )
    .await
    .expect("range");
    let t8 = kv.begin().await.expect("begin");
    t8.set(&space.pack(&("m", 1)), b"inside");
    t8.commit().await.expect("t8");
    t7.set(&b, b"from t7");
    assert_eq!(t7.commit().await, Err(KvError::NotCommitted));
    let tx = kv.begin().await.expect("begin");
    assert_eq!(
        tx.get(&b, false).await.expect("get"),
        Some(b"from t5".to_vec())
    );
}

async fn retried_increments<K: OrderedKv>(kv: &K, space: Subspace) {
    let key = space.pack(&("n",));
    let attempts = Arc::new(AtomicU32::new(0));
    let tasks = (0..8).map(|_| {
        let key = key.clone();
        let attempts = attempts.clone();
        async move {
            for _ in 0..10 {
                kv.transact(|tx, _: MaybeCommitted| {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    let key = key.clone();
                    async move {
                        let n = tx
                            .get(&key, false)
                            .await?
                            .map(|v| u64::from_be_bytes(v.try_into().expect("8 bytes")))
                            .unwrap_or(0);
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        tx.set(&key, &(n + 1).to_be_bytes());
                        Ok::<_, KvError>(())
                    }
                })
                .await
                .expect("increment");
            }
        }
    });
    futures::future::join_all(tasks).await;
    let tx = kv.begin().await.expect("begin");
    let n = tx
        .get(&key, false)
        .await
        .expect("get")
        .map(|v| u64::from_be_bytes(v.try_into().expect("8 bytes")));
    assert_eq!(n, Some(80), "every increment applied exactly once");
    eprintln!(
        "retried_increments: 80 increments took {} attempts",
        attempts.load(Ordering::Relaxed)
    );
}

async fn too_old<K: OrderedKv>(kv: &K, space: Subspace) {
    let tx = kv.begin().await.expect("begin");
    tx.get(&space.pack(&("x",)), false).await.expect("read");
    tokio::time::sleep(Duration::from_millis(5_300)).await;
    let err = match tx.get(&space.pack(&("y",)), false).await {
        Err(e) => e,
        Ok(_) => {
            tx.set(&space.pack(&("y",)), b"late");
            tx.commit()
                .await
                .expect_err("a transaction older than 5 s cannot commit")
        }
    };
    assert_eq!(err, KvError::TransactionTooOld);
    assert!(err.is_retryable());
}

async fn run_all<K: OrderedKv>(kv: &K, only: Option<&str>) {
    for (name, check) in checks::<K>() {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let space = fresh(kv, name).await;
        check(kv, space).await;
    }
}

fn sqlite() -> (tempfile::TempDir, horde_kv::sqlite::SqliteKv) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = horde_kv::sqlite::SqliteKv::open(dir.path().join("kv.sqlite")).expect("open");
    (dir, kv)
}

macro_rules! sqlite_checks {
    ($($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (_dir, kv) = sqlite();
            run_all(&kv, Some(stringify!($name))).await;
        }
    )*};
}

mod sqlite_backend {
    use super::*;
    sqlite_checks!(
        tuple_order,
        ranges_and_selectors,
        streamed_ranges,
        read_your_writes,
        versionstamps,
        concurrent_atomic_adds,
        limits,
        conflicts,
        retried_increments,
        too_old
    );

    #[test]
    fn every_check_runs_on_sqlite() {
        // The macro above must list every check.
        assert_eq!(checks::<horde_kv::sqlite::SqliteKv>().len(), 10);
    }
}

/// Prints past the test harness's output capture, so the skip shows in every run.
macro_rules! skip_line {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foundationdb_backend() {
    let Some(cluster) = std::env::var_os("HORDE_FDB_CLUSTER_FILE") else {
        skip_line!(
            "skipped: FoundationDB conformance — HORDE_FDB_CLUSTER_FILE is not set (see fdb-cluster/README.md)"
        );
        return;
    };
    #[cfg(feature = "fdb")]
    {
        let kv = horde_kv::fdb::FdbKv::open(Some(std::path::Path::new(&cluster)))
            .expect("open the FoundationDB cluster");
        run_all(&kv, None).await;
    }
    #[cfg(not(feature = "fdb"))]
    {
        let _ = cluster;
        skip_line!("skipped: FoundationDB conformance — built without `--features fdb`");
    }
}

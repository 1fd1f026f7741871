//! The writer thread from the library's side: pipelined large batches, a failing request in
//! a group that rolls back alone, and signed heads at the interval.

use horde::store::writer::AppendRequest;
use horde::store::{Layout, Ledger, Store};
use horde_core::proto::{Observation, event_body::Payload};
use horde_core::{DeviceKey, Draft, MAX_EVENT_BYTES};

fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = Store::init(tmp.path(), DeviceKey::generate().expect("key")).expect("init");
    (tmp, s)
}

fn drafts(s: &Store, n: usize, summary_len: usize) -> Vec<Draft> {
    (0..n)
        .map(|i| {
            Draft::new(
                s.ledger.meta.timeline,
                "t",
                Payload::Observation(Observation {
                    kind: "stdout".into(),
                    summary: format!("{i}:{}", "x".repeat(summary_len)),
                    ..Default::default()
                }),
            )
        })
        .collect()
}

fn verify(tmp: &tempfile::TempDir, s: &Store) -> horde::verify::Report {
    let ledger = Ledger::open(Layout::new(tmp.path())).expect("open");
    horde::verify::verify(&ledger, Some((s.device, s.public_key))).expect("verify runs")
}

#[test]
fn large_pipelined_batches_chain_and_sign_heads() {
    let (tmp, s) = store();
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let r = s
            .writer
            .append(AppendRequest {
                drafts: drafts(&s, 2500, 200),
                ..Default::default()
            })
            .expect("append");
        seqs.extend(r.appended.iter().map(|a| a.seq));
    }
    assert_eq!(seqs, (1..=7500).collect::<Vec<u64>>());
    let report = verify(&tmp, &s);
    assert!(report.ok, "{report:?}");
    assert_eq!(report.devices[0].heads, 7, "a head at 1000, 2000, … 7000");
    assert_eq!(report.devices[0].last_signed_seq, Some(7000));
}

#[test]
fn a_failing_request_rolls_back_alone() {
    let (tmp, s) = store();
    // Submit without waiting so the writer is likely to take them as one group.
    let a = s.writer.submit(AppendRequest {
        drafts: drafts(&s, 100, 10),
        ..Default::default()
    });
    let mut bad = drafts(&s, 100, 10);
    bad[50] = drafts(&s, 1, MAX_EVENT_BYTES)[0].clone();
    let b = s.writer.submit(AppendRequest {
        drafts: bad,
        sign_head: true,
        ..Default::default()
    });
    let c = s.writer.submit(AppendRequest {
        drafts: drafts(&s, 100, 10),
        sign_head: true,
        ..Default::default()
    });
    let a = a.wait().expect("a commits");
    let err = b.wait().expect_err("b has an oversize event");
    assert!(err.to_string().contains("limit"), "{err}");
    let c = c.wait().expect("c commits");
    assert_eq!(a.appended.last().map(|x| x.seq), Some(100));
    assert_eq!(
        c.appended.first().map(|x| x.seq),
        Some(101),
        "b left no trace in the chain"
    );
    assert_eq!(c.appended.last().map(|x| x.seq), Some(200));
    let report = verify(&tmp, &s);
    assert!(report.ok, "{report:?}");
    assert_eq!(report.devices[0].events, 200);
}

#[test]
fn async_callers_can_await_appends() {
    let (_tmp, s) = store();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let r = rt.block_on(async {
        s.writer
            .submit(AppendRequest {
                drafts: drafts(&s, 3, 10),
                ..Default::default()
            })
            .rx
            .await
    });
    assert_eq!(r.expect("sent").expect("committed").appended.len(), 3);
}

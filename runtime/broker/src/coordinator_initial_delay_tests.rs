//! The first rebalance of an empty group waits `group.initial.rebalance.delay.ms` for more
//! members, as Kafka's does.

use super::*;
use sluice_log::sim::SimStorage;
use sluice_log::LogOptions;

fn coordinator(delay: Duration) -> Arc<Coordinator> {
    let options = LogOptions {
        read_only: false,
        maintenance_interval: None,
    };
    let log = Log::open_on(Arc::new(SimStorage::new()), "/data", options).unwrap();
    Arc::new(Coordinator::new(
        log,
        Duration::from_millis(1000),
        Duration::from_secs(60),
        delay,
    ))
}

fn join(group: &str, client: &str) -> JoinRequest {
    JoinRequest {
        group_id: group.into(),
        member_id: String::new(),
        instance_id: None,
        client_id: client.into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(5),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        require_member_id: false,
    }
}

/// Runs the coordinator's expiry ticks until the test ends.
fn tick(c: &Arc<Coordinator>) -> CancellationToken {
    let stop = CancellationToken::new();
    let (c, s) = (c.clone(), stop.clone());
    tokio::spawn(async move { c.run_expiry(s).await });
    stop
}

#[tokio::test]
async fn two_members_starting_together_share_the_first_generation() {
    let c = coordinator(Duration::from_millis(600));
    let stop = tick(&c);
    let started = Instant::now();
    let first = tokio::spawn({
        let c = c.clone();
        async move { c.join(join("g", "a")).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = c.join(join("g", "b")).await;
    let first = first.await.unwrap();
    stop.cancel();
    assert_eq!((first.error, second.error), (codes::NONE, codes::NONE));
    assert_eq!(
        (first.generation, second.generation),
        (1, 1),
        "one rebalance for both"
    );
    let leader = if first.members.is_empty() {
        &second
    } else {
        &first
    };
    assert_eq!(
        leader.members.len(),
        2,
        "the leader assigns to both members"
    );
    // The hold restarted when the second member came: 150 ms + 600 ms at least.
    assert!(started.elapsed() >= Duration::from_millis(700));
}

#[tokio::test]
async fn without_a_delay_the_first_member_is_answered_alone() {
    let c = coordinator(Duration::ZERO);
    let out = tokio::time::timeout(Duration::from_secs(1), c.join(join("g", "a")))
        .await
        .expect("answered at once");
    assert_eq!(
        (out.error, out.generation, out.members.len()),
        (codes::NONE, 1, 1)
    );
}

#[tokio::test]
async fn the_hold_never_outlasts_the_longest_rebalance_timeout() {
    // Members keep arriving every 300 ms with a 1 s delay: without the limit the group would
    // never settle; the limit is the first member's rebalance timeout (5 s here, 2 s below).
    let c = coordinator(Duration::from_secs(1));
    let stop = tick(&c);
    let started = Instant::now();
    let mut joins = Vec::new();
    for i in 0..12 {
        let c = c.clone();
        let mut req = join("g", &format!("m{i}"));
        req.rebalance_timeout = Duration::from_secs(2);
        joins.push(tokio::spawn(async move { c.join(req).await }));
        tokio::time::sleep(Duration::from_millis(300)).await;
        if joins.iter().any(|j| j.is_finished()) {
            break;
        }
    }
    let settled = started.elapsed();
    stop.cancel();
    assert!(
        settled < Duration::from_millis(2800),
        "settled after {settled:?}, past the 2 s limit"
    );
}

#[tokio::test]
async fn a_group_that_empties_waits_again() {
    let c = coordinator(Duration::from_millis(400));
    let stop = tick(&c);
    let out = c.join(join("g", "a")).await;
    assert_eq!(out.generation, 1);
    assert_eq!(
        c.leave("g", &[(out.member_id.clone(), None)]),
        vec![codes::NONE]
    );
    let again = Instant::now();
    let out = c.join(join("g", "b")).await;
    stop.cancel();
    assert_eq!(out.error, codes::NONE);
    assert!(
        again.elapsed() >= Duration::from_millis(400),
        "the emptied group held its first rebalance again"
    );
}

//! Several `roam serve` nodes on one PostgreSQL database, as behind a load balancer:
//! whatever matters across requests holds whichever node a request hits — a `/sync`
//! long-poll waiting on one node is woken by a write through another (LISTEN/NOTIFY), rate
//! limits and per-DID op windows count the requests of every node. (UIA sessions and login
//! challenges across nodes: `portable::two_nodes_share_uia_logins_and_keys`.)

use std::time::Duration;

use roam_server::config::{OpLimits, RateLimit, ServerConfig};
use serde_json::json;

mod common;
use common::{Backend, C, Owner, SERVER_NAME, TestServer, add_device, assert_err, start_on};

/// Two nodes on one fresh database, both configured by `tweak`.
async fn two_nodes(
    tweak: impl Fn(&mut ServerConfig),
) -> (TestServer, TestServer, [tempfile::TempDir; 2]) {
    let backend = Backend::postgres();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = start_on(&backend, dirs[0].path(), &tweak).await;
    let b = start_on(&backend, dirs[1].path(), &tweak).await;
    (a, b, dirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_to_device_message_sent_via_one_node_reaches_a_sync_waiting_on_the_other() {
    let (a, b, _dirs) = two_nodes(|_| {}).await;
    let alice = a.client().register("alice", "pw-alice-1").await;
    let (phone, _) = b.client().login("alice", "pw-alice-1", Some("PHONE")).await;
    let (s, v) = phone.get(&format!("{C}/sync?timeout=0")).await;
    assert_eq!(s, 200, "{v}");
    let since = v["next_batch"].as_str().unwrap().to_owned();
    let poll = phone.clone();
    let waiting = tokio::spawn(async move {
        poll.get(&format!("{C}/sync?since={since}&timeout=60000"))
            .await
    });
    // Let the long-poll reach its wait on node b (a message stored before it looked would
    // be answered at once, which would say nothing about wake-ups).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "the long-poll answered with nothing new"
    );
    let body = json!({"messages": {"@alice:roam.test": {"PHONE": {"ping": 1}}}});
    let (s, v) = alice
        .put(&format!("{C}/sendToDevice/m.roam.test/t1"), body)
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = waiting.await.unwrap();
    assert_eq!(s, 200, "{v}");
    let events = v["to_device"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(events.len(), 1, "{v}");
    assert_eq!(events[0]["content"], json!({"ping": 1}));
    assert_eq!(events[0]["sender"], "@alice:roam.test");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_reached_through_one_node_refuses_on_the_other() {
    // Three login attempts per address, refilled at one a day.
    let (a, b, _dirs) = two_nodes(|c| {
        c.rate_limits.login_per_ip = RateLimit {
            per_second: 1.0 / 86_400.0,
            burst: 3,
        }
    })
    .await;
    b.client().register("bea", "pw-bea-11").await;
    let attempt = |node: &TestServer| {
        let c = node.client();
        async move {
            c.post(
                &format!("{C}/login"),
                json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bea"}, "password": "wrong"}),
            )
            .await
        }
    };
    assert_err(&attempt(&a).await, 403, "M_FORBIDDEN");
    assert_err(&attempt(&b).await, 403, "M_FORBIDDEN");
    assert_err(&attempt(&a).await, 403, "M_FORBIDDEN");
    // The fourth, on either node: refused before the password is looked at.
    let refused = attempt(&b).await;
    assert_err(&refused, 429, "M_LIMIT_EXCEEDED");
    assert!(
        refused.1["retry_after_ms"].as_u64().unwrap() > 3_600_000,
        "{}",
        refused.1
    );
    assert_err(&attempt(&a).await, 429, "M_LIMIT_EXCEEDED");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_did_op_windows_count_the_ops_of_every_node() {
    let (a, b, _dirs) = two_nodes(|c| {
        c.op_limits = OpLimits {
            per_hour: 2,
            per_day: 100,
        }
    })
    .await;
    let mut owner = Owner::new(90, &format!("@olga:{SERVER_NAME}"), &[SERVER_NAME]);
    for (i, device) in ["DEV1", "DEV2", "DEV3"].iter().enumerate() {
        owner.sign(add_device(device, i as u8 + 1));
    }
    let ops = owner.values();
    let path = format!("/_roam/v1/accounts/{}/ops", owner.did());
    let post = |node: &TestServer, op: &serde_json::Value| {
        let (c, body) = (node.client(), json!({"ops": [op]}));
        let path = path.clone();
        async move { c.post(&path, body).await }
    };
    // The genesis (the registration limit's business, not the op window's), then one op
    // through each node: the hour's two.
    for (node, op) in [(&a, &ops[0]), (&b, &ops[1]), (&a, &ops[2])] {
        let (s, v) = post(node, op).await;
        assert_eq!(s, 200, "{v}");
    }
    // The third op of the hour is refused on either node.
    assert_err(&post(&a, &ops[3]).await, 429, "M_LIMIT_EXCEEDED");
    assert_err(&post(&b, &ops[3]).await, 429, "M_LIMIT_EXCEEDED");
    a.stop().await;
    b.stop().await;
}

//! The event stream over HTTP: Server-Sent Events with sequence numbers, resumable by
//! `Last-Event-ID` or `?after=`, per phone or for all, a JSON form, and a bounded buffer
//! that says when it lost events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_common;

use control_common::{Rig, RigOptions, bounded, read_sse, types};
use serde_json::json;

async fn open(rig: &Rig, path: &str, last_event_id: Option<u64>) -> reqwest::Response {
    let mut req = rig
        .http
        .get(rig.url(path))
        .header("accept", "text/event-stream")
        // The stream never ends; only the whole test is bounded.
        .timeout(std::time::Duration::from_secs(60));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_live_with_ids_and_resume_after_the_last_one_seen() {
    bounded(async {
        let rig = Rig::start().await;
        // Opened first: it sees the creation live.
        let mut live = open(&rig, "/events", None).await;
        rig.created("ev").await;
        let first = read_sse(&mut live, 2).await;
        assert_eq!(first[0].id, Some(1));
        assert_eq!(first[0].event.as_deref(), Some("sms_received"));
        assert_eq!(first[0].data["phone"], "ev");
        assert_eq!(first[0].data["seq"], 1);
        assert_eq!(first[1].event.as_deref(), Some("phone_created"));
        drop(live);

        // More happens while nobody listens.
        rig.post("/phones/ev/bind", json!({})).await;
        let all = rig.all_events().await;
        let last = all.last().unwrap()["seq"].as_u64().unwrap();
        assert!(last > 2);

        // Reconnecting with Last-Event-ID: 2 replays exactly what came after, in order.
        let mut again = open(&rig, "/events", Some(2)).await;
        let n = usize::try_from(last - 2).unwrap();
        let replay = read_sse(&mut again, n).await;
        let ids: Vec<u64> = replay.iter().map(|e| e.id.unwrap()).collect();
        assert_eq!(ids, (3..=last).collect::<Vec<_>>());
        assert!(
            replay
                .iter()
                .any(|e| e.event.as_deref() == Some("device_bound"))
        );
        // ... then goes on live.
        rig.put_policy("ev", json!({"prompt": "deny"})).await;
        let next = read_sse(&mut again, 1).await;
        assert_eq!(next[0].id, Some(last + 1));
        assert_eq!(next[0].event.as_deref(), Some("policy_changed"));

        // The query parameter resumes the same way.
        let mut by_query = open(&rig, &format!("/events?after={last}"), None).await;
        let one = read_sse(&mut by_query, 1).await;
        assert_eq!(one[0].id, Some(last + 1));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phones_stream_has_only_its_events_with_the_global_numbers() {
    bounded(async {
        let rig = Rig::start().await;
        rig.created("one").await;
        rig.created("two").await;
        rig.post("/phones/two/bind", json!({})).await;
        let mut stream = open(&rig, "/phones/two/events", None).await;
        let events = read_sse(&mut stream, 3).await;
        assert!(
            events.iter().all(|e| e.data["phone"] == "two"),
            "{events:?}"
        );
        let ids: Vec<u64> = events.iter().map(|e| e.id.unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert!(ids[0] > 2, "phone one's events come first: {ids:?}");
        // The JSON form answers the same events.
        let json_events = rig.events_after("/phones/two/events", 0).await;
        assert!(json_events.iter().all(|e| e["phone"] == "two"));
        assert_eq!(json_events[0]["seq"], ids[0]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_form_long_polls_for_the_next_event() {
    bounded(async {
        let rig = Rig::start().await;
        rig.created("poll").await;
        let last = rig.get("/info").await["last_event_seq"].as_u64().unwrap();
        let waiting = rig.events_after("/events", last);
        let trigger = rig.put_policy("poll", json!({"prompt": "manual"}));
        let (events, _) = tokio::join!(waiting, trigger);
        assert_eq!(types(&events), ["policy_changed"]);
        assert_eq!(events[0]["seq"], last + 1);
        assert_eq!(events[0]["data"]["policy"]["prompt"], "manual");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_behind_the_bounded_buffer_is_told_what_it_lost() {
    bounded(async {
        let rig = Rig::with(RigOptions {
            event_buffer: Some(4),
            ..RigOptions::default()
        })
        .await;
        rig.created("small").await;
        for prompt in ["deny", "approve", "manual", "deny", "approve"] {
            rig.put_policy("small", json!({"prompt": prompt})).await;
        }
        let last = rig.get("/info").await["last_event_seq"].as_u64().unwrap();
        let mut stream = open(&rig, "/events", Some(0)).await;
        let events = read_sse(&mut stream, 5).await;
        assert_eq!(events[0].event.as_deref(), Some("events_lost"));
        assert_eq!(events[0].data["data"]["first_lost"], 1);
        assert_eq!(events[0].data["data"]["last_lost"], last - 4);
        let ids: Vec<u64> = events[1..].iter().map(|e| e.id.unwrap()).collect();
        assert_eq!(ids, (last - 3..=last).collect::<Vec<_>>());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_last_event_id_is_a_usage_error() {
    bounded(async {
        let rig = Rig::start().await;
        let resp = rig
            .http
            .get(rig.url("/events"))
            .header("last-event-id", "yesterday")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["exit_code"], 2);
    })
    .await;
}

//! End-to-end tests of the rate-limit knobs: headers on every answer, the stats timeline and
//! the listening line.

use std::time::Duration;

use super::*;

fn header_count(answer: &Answer, name: &str) -> usize {
    answer
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .count()
}

#[tokio::test]
async fn rate_headers_ride_on_every_answer_without_duplicates() {
    let sim = start(SimConfig {
        rate_limit: Some(1.0),
        rate_burst: Some(3),
        rate_headers: true,
        rate_limit_style: RateLimitStyle::ResetSeconds,
        retry_after: Some(Duration::from_secs(1)),
        ..SimConfig::default()
    })
    .await;
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    };
    let before = unix();
    let ok = get(&sim, &format!("/api/v1/generation?id={ID}"), None)
        .await
        .expect("answer");
    let after = unix();
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(ok.header("x-ratelimit-remaining"), Some("2"));
    let reset: u64 = ok
        .header("x-ratelimit-reset")
        .expect("reset")
        .parse()
        .expect("epoch seconds");
    // One token spent at one per second: full again within a second, rounded up.
    assert!(
        (before + 1..=after + 2).contains(&reset),
        "{reset} {before}"
    );
    let bad = get(&sim, "/api/v1/generation", None).await.expect("answer");
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.header("x-ratelimit-remaining"),
        Some("2"),
        "a refused request spends no token"
    );
    let target = format!("/api/v1/generation/content?id={ID}");
    for _ in 0..2 {
        assert_eq!(get(&sim, &target, None).await.expect("answer").status, 200);
    }
    let limited = get(&sim, &target, None).await.expect("answer");
    assert_eq!(limited.status, 429);
    for name in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert_eq!(header_count(&limited, name), 1, "{name}");
    }
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(
        limited.header("x-ratelimit-limit"),
        Some("1"),
        "the style's"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn stats_carry_the_timeline_late_pauses_and_effective_rate() {
    let sim = start(SimConfig {
        rate_limit: Some(4.0),
        rate_burst: Some(2),
        rate_halve_after: Some(Duration::ZERO),
        retry_after: Some(Duration::from_secs(10)),
        ..SimConfig::default()
    })
    .await;
    let target = format!("/api/v1/generation?id={ID}");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(get(&sim, &target, None).await.expect("answer").status);
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    statuses.push(get(&sim, &target, None).await.expect("answer").status);
    assert_eq!(statuses, [200, 200, 429, 429]);
    let stats = sim.stats();
    assert_eq!(stats.effective_rate, Some(2.0));
    assert_eq!((stats.during_pause, stats.late_in_pause), (1, 1));
    let totals = stats
        .timeline
        .iter()
        .fold([0, 0], |[ok, limited], [a, b]| [ok + a, limited + b]);
    assert_eq!(totals, [2, 2]);
    let served = get(&sim, "/_sim/stats", None).await.expect("answer");
    let remote: Stats = serde_json::from_slice(&served.body).expect("stats JSON");
    assert_eq!(remote.timeline, stats.timeline);
    assert_eq!(remote.effective_rate, Some(2.0));
    sim.shutdown().await;
}

#[test]
fn announces_the_base_url_on_one_line() {
    let mut out = Vec::new();
    announce(&mut out, "http://127.0.0.1:4242/api/v1");
    assert_eq!(
        out,
        b"simulator listening on http://127.0.0.1:4242/api/v1\n"
    );
}

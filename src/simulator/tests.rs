//! End-to-end tests of the simulator over loopback TCP with a tiny raw HTTP/1.1 client.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

/// What came back on one connection, however broken.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The body is as long as `Content-Length` promised.
    complete: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// Sends one GET and reads until the server closes; None if nothing at all came back.
async fn get(sim: &SimHandle, target: &str, auth: Option<&str>) -> Option<Answer> {
    let mut stream = TcpStream::connect(sim.addr()).await.expect("connect");
    let auth = auth
        .map(|key| format!("Authorization: Bearer {key}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {target} HTTP/1.1\r\nHost: sim\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    // A cut connection may end in an error after some bytes: keep what arrived.
    let _ = stream.read_to_end(&mut raw).await;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8(raw[..split].to_vec()).expect("ASCII head");
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(": ")
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
        })
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    let complete = length.and_then(|(_, v)| v.parse::<usize>().ok()) == Some(body.len());
    Some(Answer {
        status,
        headers,
        body,
        complete,
    })
}

async fn start(config: SimConfig) -> SimHandle {
    Simulator::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("start")
}

const ID: &str = "gen-1764704027-YmgZuzDAKrAywxh1aHQW";

#[tokio::test]
async fn serves_the_deterministic_records_on_both_endpoints() {
    let sim = start(SimConfig::default()).await;
    assert!(sim.base_url().starts_with("http://127.0.0.1:"));
    let meta = get(&sim, &format!("/api/v1/generation?id={ID}"), None)
        .await
        .expect("answer");
    assert_eq!(meta.status, 200);
    assert_eq!(meta.header("content-type"), Some("application/json"));
    assert_eq!(
        meta.body,
        format!("{{\"data\":{}}}", generation(ID).to_json()).into_bytes()
    );
    let content_answer = get(&sim, &format!("/api/v1/generation/content?id={ID}"), None)
        .await
        .expect("answer");
    assert_eq!(
        content_answer.json()["data"],
        serde_json::from_str::<serde_json::Value>(&content(ID).to_json()).expect("JSON")
    );
    let again = get(&sim, &format!("/api/v1/generation?id={ID}"), None)
        .await
        .expect("answer");
    assert_eq!(again.body, meta.body);
    let stats = sim.stats();
    assert_eq!(
        (
            stats.requests,
            stats.metadata_requests,
            stats.content_requests
        ),
        (3, 2, 1)
    );
    assert_eq!(
        (stats.served_ok, stats.unique_ids_ok, stats.duplicate_ok),
        (3, 1, 1)
    );
    assert_eq!(sim.ok_count(ID), 2);
    let served = get(&sim, "/_sim/stats", None).await.expect("answer");
    let remote: Stats = serde_json::from_slice(&served.body).expect("stats JSON");
    assert_eq!(remote, stats);
    sim.shutdown().await;
}

#[tokio::test]
async fn decodes_ids_and_rejects_bad_requests() {
    let sim = start(SimConfig::default()).await;
    let answer = get(&sim, "/api/v1/generation?id=gen-1%2F2+x%C3%BC", None)
        .await
        .expect("answer");
    assert_eq!(answer.json()["data"]["id"], "gen-1/2 xü");
    let missing = get(&sim, "/api/v1/generation", None).await.expect("answer");
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json()["error"]["code"], 400);
    assert_eq!(
        get(&sim, "/api/v1/generation?id=", None)
            .await
            .expect("answer")
            .status,
        400
    );
    assert_eq!(
        get(&sim, "/api/v1/nope", None)
            .await
            .expect("answer")
            .status,
        404
    );
    let stats = sim.stats();
    assert_eq!(stats.requests, 3, "unknown paths are not counted");
    assert_eq!(stats.by_status.get(&400), Some(&2));
    sim.shutdown().await;
}

#[tokio::test]
async fn requires_the_api_key_and_turns_401_and_402_on_after_n() {
    let sim = start(SimConfig {
        api_key: Some("sk-test".into()),
        ..SimConfig::default()
    })
    .await;
    let target = format!("/api/v1/generation?id={ID}");
    assert_eq!(get(&sim, &target, None).await.expect("answer").status, 401);
    assert_eq!(
        get(&sim, &target, Some("wrong"))
            .await
            .expect("answer")
            .status,
        401
    );
    assert_eq!(
        get(&sim, &target, Some("sk-test"))
            .await
            .expect("answer")
            .status,
        200
    );
    sim.shutdown().await;

    let sim = start(SimConfig {
        unauthorized_after: Some(1),
        ..SimConfig::default()
    })
    .await;
    assert_eq!(get(&sim, &target, None).await.expect("answer").status, 200);
    assert_eq!(get(&sim, &target, None).await.expect("answer").status, 401);
    sim.shutdown().await;

    let sim = start(SimConfig {
        payment_required_after: Some(1),
        ..SimConfig::default()
    })
    .await;
    assert_eq!(get(&sim, &target, None).await.expect("answer").status, 200);
    assert_eq!(get(&sim, &target, None).await.expect("answer").status, 402);
    let content_target = format!("/api/v1/generation/content?id={ID}");
    assert_eq!(
        get(&sim, &content_target, None)
            .await
            .expect("answer")
            .status,
        200
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn scripted_429_holds_its_window_until_the_announced_instant() {
    let config = SimConfig {
        scripted_429_every: Some(3),
        scripted_pause: Duration::from_millis(150),
        ..SimConfig::default()
    };
    let sim = start(config).await;
    let target = format!("/api/v1/generation?id={ID}");
    for _ in 0..2 {
        assert_eq!(get(&sim, &target, None).await.expect("answer").status, 200);
    }
    let limited = get(&sim, &target, None).await.expect("answer");
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after-ms"), Some("150"));
    assert_eq!(limited.json()["error"]["message"], "Rate limit exceeded");
    let inside = get(&sim, &target, None).await.expect("answer");
    assert_eq!(inside.status, 429);
    let wait: u64 = inside
        .header("retry-after-ms")
        .expect("header")
        .parse()
        .expect("ms");
    assert!(wait <= 150);
    // A client that obeys the header never lands inside the window.
    tokio::time::sleep(Duration::from_millis(wait)).await;
    assert_eq!(get(&sim, &target, None).await.expect("answer").status, 200);
    let stats = sim.stats();
    assert_eq!((stats.rate_limited, stats.during_pause), (2, 1));
    assert_eq!(stats.by_status.get(&429), Some(&2));
    sim.shutdown().await;
}

#[tokio::test]
async fn token_bucket_answers_429_with_date_header() {
    let config = SimConfig {
        rate_limit: Some(1.0),
        rate_limit_style: RateLimitStyle::RetryAfterDate,
        ..SimConfig::default()
    };
    let sim = start(config).await;
    let target = format!("/api/v1/generation?id={ID}");
    assert_eq!(get(&sim, &target, None).await.expect("answer").status, 200);
    let limited = get(&sim, &target, None).await.expect("answer");
    assert_eq!(limited.status, 429);
    let date = httpdate::parse_http_date(limited.header("retry-after").expect("header"))
        .expect("IMF-fixdate");
    let wait = date
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(wait <= Duration::from_secs(2));
    sim.shutdown().await;
}

#[tokio::test]
async fn resets_truncations_and_server_errors_break_answers() {
    let target = format!("/api/v1/generation?id={ID}");
    let sim = start(SimConfig {
        reset_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    assert!(get(&sim, &target, None).await.is_none(), "no answer at all");
    assert_eq!(sim.stats().resets, 1);
    assert!(sim.stats().by_status.is_empty());
    sim.shutdown().await;

    let sim = start(SimConfig {
        truncate_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let full = format!("{{\"data\":{}}}", generation(ID).to_json());
    let (mut short, mut broken) = (0, 0);
    for _ in 0..12 {
        let answer = get(&sim, &target, None).await.expect("a head arrives");
        assert_eq!(answer.status, 200);
        assert!(serde_json::from_slice::<serde_json::Value>(&answer.body).is_err());
        assert_eq!(
            answer.body,
            full.as_bytes()[..full.len() / 2],
            "the first half arrives"
        );
        if answer.complete {
            broken += 1
        } else {
            short += 1
        }
    }
    assert!(short > 0 && broken > 0, "{short} {broken}");
    let stats = sim.stats();
    assert_eq!(
        (stats.truncated, stats.served_ok, stats.by_status.get(&200)),
        (12, 0, Some(&12))
    );
    sim.shutdown().await;

    let sim = start(SimConfig {
        error_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let answer = get(&sim, &target, None).await.expect("answer");
        seen.insert(answer.status);
        if answer.status == 524 {
            assert!(
                answer
                    .header("content-type")
                    .is_some_and(|t| t.starts_with("text/html"))
            );
        } else {
            assert_eq!(answer.json()["error"]["code"], answer.status);
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec![500, 502, 503, 524, 529]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn young_and_missing_ids_are_not_found_and_content_can_be_forbidden() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let config = SimConfig {
        young_not_found: Duration::from_secs(3_600),
        content_forbidden_rate: 1.0,
        ..SimConfig::default()
    };
    let sim = start(config).await;
    let young = format!("/api/v1/generation?id=gen-{now}-AAAAAAAAAAAAAAAAAAAA");
    assert_eq!(get(&sim, &young, None).await.expect("answer").status, 404);
    assert_eq!(
        get(&sim, &format!("/api/v1/generation?id={ID}"), None)
            .await
            .expect("answer")
            .status,
        200
    );
    let forbidden = get(&sim, &format!("/api/v1/generation/content?id={ID}"), None)
        .await
        .expect("answer");
    assert_eq!(forbidden.status, 403);
    sim.shutdown().await;

    let sim = start(SimConfig {
        missing_rate: 1.0,
        ..SimConfig::default()
    })
    .await;
    assert_eq!(
        get(&sim, &format!("/api/v1/generation?id={ID}"), None)
            .await
            .expect("answer")
            .status,
        404
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_delays_answers_and_invalid_config_is_refused() {
    let sim = start(SimConfig {
        latency: Duration::from_millis(30),
        ..SimConfig::default()
    })
    .await;
    let started = std::time::Instant::now();
    assert_eq!(
        get(&sim, "/api/v1/generation", None)
            .await
            .expect("answer")
            .status,
        400
    );
    assert!(started.elapsed() >= Duration::from_millis(30));
    sim.shutdown().await;
    let bad = SimConfig {
        reset_rate: -1.0,
        ..SimConfig::default()
    };
    let err = Simulator::start(bad, "127.0.0.1:0".parse().expect("addr"))
        .await
        .err()
        .expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

mod limits;

#[tokio::test]
async fn activity_totals_the_account_by_day_model_and_endpoint_for_a_management_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now().timestamp();
    // Two days back, ten days back, today (not a completed day) and 40 days back (too old).
    let ids: Vec<String> = [(2, 30), (10, 20), (0, 5), (40, 5)]
        .iter()
        .flat_map(|&(days, n)| {
            (0..n).map(move |i| format!("gen-{}-act{days:02}x{i:014}", now - days * 86_400))
        })
        .collect();
    let path = dir.path().join("ids.txt");
    std::fs::write(&path, ids.join("\n")).unwrap();
    let config = SimConfig {
        api_key: Some("sk-normal".into()),
        management_key: Some("mk-admin".into()),
        activity_ids: Some(path),
        ..SimConfig::default()
    };
    let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let target = "/api/v1/activity";
    assert_eq!(get(&sim, target, None).await.unwrap().status, 401);
    assert_eq!(
        get(&sim, target, Some("sk-normal")).await.unwrap().status,
        403
    );
    let answer = get(&sim, target, Some("mk-admin")).await.unwrap();
    assert_eq!(answer.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    let items = body["data"].as_array().unwrap();
    let requests: u64 = items.iter().map(|i| i["requests"].as_u64().unwrap()).sum();
    assert_eq!(requests, 50, "the two completed days in the window only");
    let expected_usage: f64 = ids[..50]
        .iter()
        .map(|id| generation(id).total_cost.unwrap().parse::<f64>().unwrap())
        .sum();
    let usage: f64 = items.iter().map(|i| i["usage"].as_f64().unwrap()).sum();
    assert!(
        (usage - expected_usage).abs() < 1e-9,
        "{usage} vs {expected_usage}"
    );
    let two_days_ago = chrono::Utc::now().date_naive() - chrono::Days::new(2);
    let one_day = format!("{target}?date={two_days_ago}");
    let body: serde_json::Value =
        serde_json::from_slice(&get(&sim, &one_day, Some("mk-admin")).await.unwrap().body).unwrap();
    let requests: u64 = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(requests, 30);
    let other_key = format!("{target}?api_key_hash=00ff");
    let body: serde_json::Value =
        serde_json::from_slice(&get(&sim, &other_key, Some("mk-admin")).await.unwrap().body)
            .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 0);
}

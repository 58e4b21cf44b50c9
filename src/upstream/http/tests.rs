use std::sync::atomic::{AtomicUsize, Ordering};

use axum::{Router, body::Body, routing::get};
use tokio::{io::AsyncReadExt, net::TcpListener, sync::Notify};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers::any};

use super::*;

/// Metrics and traces of these calls go under a route of their own.
const TEST_ROUTE: Route = Route {
    series: Series::Mosia,
    template: "/test",
};

/// An upstream that resets every connection once it has read the request, and counts them.
async fn resetting_upstream() -> (Url, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = stream.read(&mut [0; 4096]).await;
            // A zero linger closes with RST instead of FIN.
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    });
    (url, connections)
}

/// Serves `router` on loopback; its base URL.
async fn serve(router: Router) -> Url {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

fn settings() -> UpstreamSettings {
    UpstreamSettings {
        retry_backoff_ms: 1,
        ..UpstreamSettings::default()
    }
}

fn upstream(base: Url) -> HttpUpstream {
    HttpUpstream::new(Service::Mosia, base, &settings(), Arc::default()).unwrap()
}

async fn read(http: &HttpUpstream) -> Result<Answer, UpstreamError> {
    http.send(Idempotency::Read, TEST_ROUTE, |client| {
        client.get(http.url(&["r"]))
    })
    .await
}

fn kind(result: Result<Answer, UpstreamError>) -> Result<StatusCode, UpstreamErrorKind> {
    result.map(|answer| answer.status).map_err(|err| err.kind)
}

#[tokio::test]
async fn a_read_reset_before_any_answer_is_retried_and_a_write_is_not() {
    let (base, connections) = resetting_upstream().await;
    let http = upstream(base);

    let read = http
        .send(Idempotency::Read, TEST_ROUTE, |client| {
            client.get(http.url(&["read"]))
        })
        .await;
    assert!(matches!(read, Err(err) if err.kind == UpstreamErrorKind::Unavailable));
    assert_eq!(connections.swap(0, Ordering::SeqCst), 3);

    let write = http
        .send(Idempotency::Write, TEST_ROUTE, |client| {
            client.post(http.url(&["write"]))
        })
        .await;
    assert!(matches!(write, Err(err) if err.kind == UpstreamErrorKind::Unavailable));
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

/// A body of `len` bytes, sent in chunks without a `Content-Length`.
fn chunked(len: usize) -> Body {
    let chunks = (0..len.div_ceil(100)).map(move |i| {
        let size = 100.min(len - i * 100);
        Ok::<_, std::io::Error>(Bytes::from(vec![b' '; size]))
    });
    Body::from_stream(futures::stream::iter(chunks))
}

#[tokio::test]
async fn a_body_is_refused_past_max_response_bytes_announced_or_streamed() {
    let base =
        serve(
            Router::new()
                .route(
                    "/announced/{len}",
                    get(
                        |axum::extract::Path(len): axum::extract::Path<usize>| async move {
                            vec![b' '; len]
                        },
                    ),
                )
                .route(
                    "/chunked/{len}",
                    get(
                        |axum::extract::Path(len): axum::extract::Path<usize>| async move {
                            chunked(len)
                        },
                    ),
                ),
        )
        .await;
    let http = HttpUpstream::new(
        Service::Totvs,
        base,
        &UpstreamSettings {
            max_response_bytes: 1024,
            ..settings()
        },
        Arc::default(),
    )
    .unwrap();
    let fetch = |how: &'static str, len: usize| {
        let http = &http;
        async move {
            let url = http.url(&[how, &len.to_string()]);
            http.send(Idempotency::Read, TEST_ROUTE, |client| {
                client.get(url.clone())
            })
            .await
        }
    };

    for how in ["announced", "chunked"] {
        let at_limit = fetch(how, 1024).await.unwrap();
        assert_eq!(at_limit.body.len(), 1024, "{how}");
        let past = fetch(how, 1025).await.err().map(|err| err.kind);
        assert_eq!(past, Some(UpstreamErrorKind::Malformed), "{how}");
    }
}

/// An upstream that answers `status` to everything, and counts the calls.
async fn answering(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(status).set_body_string("{}"))
        .mount(&server)
        .await;
    server
}

async fn calls(server: &MockServer) -> usize {
    server.received_requests().await.unwrap_or_default().len()
}

#[tokio::test]
async fn the_in_flight_permit_is_released_on_every_path() {
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let arrived = Arc::new(Notify::new());
    let notify = arrived.clone();
    let base = serve(
        Router::new()
            .route("/big", get(|| async { vec![b' '; 4096] }))
            .route(
                "/fail",
                get(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .route("/ok", get(|| async { "{}" }))
            .route(
                "/hang",
                get(move || async move {
                    notify.notify_one();
                    std::future::pending::<()>().await
                }),
            ),
    )
    .await;
    let settings = UpstreamSettings {
        max_in_flight: 1,
        max_response_bytes: 1024,
        get_retries: 0,
        // Never opens here: this test is about the permit alone.
        breaker_failures: 100,
        ..settings()
    };
    let http = HttpUpstream::new(Service::Totvs, base, &settings, Arc::default()).unwrap();
    let to = |path: &str| {
        let url = http.url(&[path]);
        let http = &http;
        async move {
            kind(
                http.send(Idempotency::Read, TEST_ROUTE, |c| c.get(url.clone()))
                    .await,
            )
        }
    };

    assert_eq!(to("big").await, Err(UpstreamErrorKind::Malformed));
    assert_eq!(http.in_flight.available_permits(), 1);
    assert_eq!(to("fail").await, Err(UpstreamErrorKind::Unavailable));
    assert_eq!(http.in_flight.available_permits(), 1);
    let unreachable = http
        .send(Idempotency::Read, TEST_ROUTE, |c| {
            c.get(format!("http://{refused}/"))
        })
        .await;
    assert_eq!(kind(unreachable), Err(UpstreamErrorKind::Unavailable));
    assert_eq!(http.in_flight.available_permits(), 1);
    // Cancelled mid-call, as the request's deadline cancels it.
    tokio::select! {
        _ = to("hang") => unreachable!("the fake never answers"),
        () = arrived.notified() => {}
    }
    assert_eq!(http.in_flight.available_permits(), 1);
    assert_eq!(to("ok").await, Ok(StatusCode::OK));
    assert_eq!(http.in_flight.available_permits(), 1);
}

#[tokio::test]
async fn calls_in_flight_never_exceed_max_in_flight_however_many_are_sent() {
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (now, high) = (current.clone(), peak.clone());
    let base = serve(Router::new().route(
        "/r",
        get(move || {
            let (now, high) = (now.clone(), high.clone());
            async move {
                let inside = now.fetch_add(1, Ordering::SeqCst) + 1;
                high.fetch_max(inside, Ordering::SeqCst);
                // Long enough for the other callers to pile up behind the cap.
                tokio::time::sleep(Duration::from_millis(20)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                "{}"
            }
        }),
    ))
    .await;
    let http = HttpUpstream::new(
        Service::Totvs,
        base,
        &UpstreamSettings {
            max_in_flight: 3,
            ..settings()
        },
        Arc::default(),
    )
    .unwrap();

    let answers = futures::future::join_all((0..12).map(|_| read(&http))).await;

    assert!(answers.iter().all(Result::is_ok));
    assert_eq!(peak.load(Ordering::SeqCst), 3);
}

fn breaker_settings() -> UpstreamSettings {
    UpstreamSettings {
        breaker_failures: 5,
        breaker_cooldown_ms: 5_000,
        ..settings()
    }
}

#[tokio::test]
async fn after_five_failed_calls_the_breaker_fails_fast_then_probes_after_the_cooldown() {
    let server = answering(500).await;
    let clock = Clock::manual();
    let metrics = Arc::new(Metrics::default());
    let base = server.uri().parse().unwrap();
    let http = HttpUpstream::with_clock(
        Service::Totvs,
        base,
        &breaker_settings(),
        metrics.clone(),
        clock.clone(),
    )
    .unwrap();

    for _ in 0..5 {
        let failed = read(&http).await.unwrap_err();
        assert_eq!(failed.status, Some(500));
    }
    assert_eq!(http.breaker_state(), BreakerState::Open);
    let fast = read(&http).await.unwrap_err();
    assert_eq!(
        (fast.kind, fast.status),
        (UpstreamErrorKind::Unavailable, None)
    );
    assert_eq!(calls(&server).await, 5);

    clock.advance(Duration::from_secs(5));
    assert_eq!(read(&http).await.unwrap_err().status, Some(500));
    assert_eq!(calls(&server).await, 6, "one probe");
    assert_eq!(http.breaker_state(), BreakerState::Open);
    assert_eq!(metrics.snapshot().totvs_breaker_opened, 2);

    server.reset().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_string("{}"))
        .mount(&server)
        .await;
    clock.advance(Duration::from_secs(5));
    assert_eq!(kind(read(&http).await), Ok(StatusCode::OK));
    assert_eq!(http.breaker_state(), BreakerState::Closed);
    assert!(!metrics.snapshot().totvs_breaker_open);
}

#[tokio::test]
async fn answers_4xx_never_open_the_breaker() {
    let server = answering(404).await;
    let http = upstream(server.uri().parse().unwrap());

    for _ in 0..10 {
        assert_eq!(kind(read(&http).await), Ok(StatusCode::NOT_FOUND));
    }

    assert_eq!(http.breaker_state(), BreakerState::Closed);
    assert_eq!(calls(&server).await, 10);
}

#[tokio::test]
async fn a_429_never_opens_the_breaker() {
    let server = answering(429).await;
    let http = upstream(server.uri().parse().unwrap());

    for _ in 0..10 {
        assert_eq!(kind(read(&http).await), Err(UpstreamErrorKind::RateLimited));
    }

    assert_eq!(http.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn answers_the_client_finds_malformed_open_the_breaker() {
    let server = answering(200).await;
    let http = upstream(server.uri().parse().unwrap());

    for _ in 0..5 {
        let answer = read(&http).await.unwrap();
        http.malformed(&answer, &"not the documented shape");
    }

    assert_eq!(http.breaker_state(), BreakerState::Open);
    assert_eq!(calls(&server).await, 5);
}

#[tokio::test]
async fn a_retry_cut_short_by_the_breaker_keeps_the_status_it_saw() {
    let server = answering(503).await;
    let http = upstream(server.uri().parse().unwrap());

    // Each read is three attempts (two retries): the breaker opens during the second.
    assert_eq!(read(&http).await.unwrap_err().status, Some(503));
    let second = read(&http).await.unwrap_err();

    assert_eq!(second.status, Some(503));
    assert_eq!(calls(&server).await, 5);
    assert_eq!(http.breaker_state(), BreakerState::Open);
}

//! Connection bounds over raw TCP: the request-head deadline, the idle timeout, the connection
//! cap and the bounded graceful shutdown. Outcomes are asserted, not durations: the timeouts
//! below are safety nets several times the configured values.

use std::time::Duration;

use protocol_graph::{config::Settings, server::Application};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
    task::JoinHandle,
    time::{sleep, timeout},
};
use wiremock::ResponseTemplate;

use crate::helpers::{LATEST, TestApp, Upstreams, fixture, mosia_get};

/// Far longer than any configured timeout here: only a hung test reaches it.
const SAFETY: Duration = Duration::from_secs(15);
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n";
const HALF_HEAD: &[u8] = b"POST /graphql HTTP/1.1\r\nHost: gateway\r\nContent-Ty";

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.address.trim_start_matches("http://");
    TcpStream::connect(addr).await.unwrap()
}

/// Reads one response with a `Content-Length` body and returns it whole.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .expect("a Content-Length");
            if received.len() >= end + 4 + length {
                return text;
            }
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed mid-response: {text:?}");
        received.extend_from_slice(&chunk[..n]);
    }
}

/// Whether the server closed `stream` (EOF or reset) before `SAFETY`, discarding what it sent.
async fn closes(stream: &mut TcpStream) -> bool {
    timeout(SAFETY, async {
        let mut chunk = [0u8; 1024];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_normal_request_is_answered_over_http1_and_http2() {
    let upstreams = Upstreams::start().await;
    upstreams.mosia_documented(None).await;
    let app = upstreams.app().await;

    let body = app.query(LATEST).await;
    assert!(
        body["data"]["beneficiary"]["latestProtocols"].is_array(),
        "{body}"
    );

    let stream = connect(&app).await;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(format!("{}/healthz", app.address))
        .body(String::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_request_head_trickled_past_the_header_read_timeout_is_cut_off() {
    let upstreams = Upstreams::start().await;
    let app = upstreams
        .app_with(|s| {
            s.server.header_read_timeout_ms = 300;
            s.server.idle_timeout_ms = 3_600_000;
        })
        .await;
    let (mut reader, mut writer) = connect(&app).await.into_split();
    // One valid header byte at a time, well inside any per-read timer: only a deadline on the
    // whole head ends this.
    let trickle = tokio::spawn(async move {
        let _ = writer
            .write_all(b"POST /graphql HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")
            .await;
        while writer.write_all(b"a").await.is_ok() {
            sleep(Duration::from_millis(20)).await;
        }
    });
    let mut received = Vec::new();
    let closed = timeout(SAFETY, async {
        let mut chunk = [0u8; 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .is_ok();
    trickle.abort();
    assert!(closed, "a trickled head kept the connection open");
    // Dropped for lateness, not answered as a malformed request.
    assert_eq!(String::from_utf8_lossy(&received), "");
}

#[tokio::test]
async fn a_kept_alive_connection_may_idle_past_the_head_deadline_but_not_send_half_a_head() {
    let upstreams = Upstreams::start().await;
    let app = upstreams
        .app_with(|s| {
            s.server.header_read_timeout_ms = 300;
            s.server.idle_timeout_ms = 3_600_000;
        })
        .await;
    let mut stream = connect(&app).await;
    stream.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));

    // Waiting for the next request is idling, which the head deadline does not bound.
    sleep(Duration::from_millis(1_000)).await;
    stream.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));

    stream.write_all(HALF_HEAD).await.unwrap();
    assert!(
        closes(&mut stream).await,
        "a half-sent head kept the connection open"
    );
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let upstreams = Upstreams::start().await;
    let app = upstreams
        .app_with(|s| {
            s.server.header_read_timeout_ms = 600_000;
            s.server.idle_timeout_ms = 1_000;
        })
        .await;
    let mut stream = connect(&app).await;
    stream.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
    assert!(closes(&mut stream).await, "an idle connection stayed open");
}

#[tokio::test]
async fn past_max_connections_a_connection_waits_until_another_closes() {
    let upstreams = Upstreams::start().await;
    let app = upstreams.app_with(|s| s.server.max_connections = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&app).await;
        stream.write_all(HEALTHZ).await.unwrap();
        assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
        held.push(stream);
    }

    // The kernel completes the handshake; the gateway does not accept it yet.
    let mut third = connect(&app).await;
    third.write_all(HEALTHZ).await.unwrap();
    let mut byte = [0u8; 1];
    let early = timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(early.is_err(), "answered past the cap: {early:?}");

    drop(held.pop());
    let answer = timeout(SAFETY, read_response(&mut third))
        .await
        .expect("answered once a slot freed up");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// The gateway run as `main` runs it, with its `run_until` future in hand.
async fn run(settings: Settings) -> (String, oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
    let app = Application::build(settings).await.unwrap();
    let address = app.local_addr().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    (address, stop, server)
}

#[tokio::test]
async fn shutdown_waits_for_a_half_sent_request_only_for_the_grace_period() {
    let upstreams = Upstreams::start().await;
    let mut settings = upstreams.settings();
    settings.server.header_read_timeout_ms = 600_000;
    settings.server.shutdown_grace_ms = 500;
    let (address, stop, server) = run(settings).await;

    let mut stalled = TcpStream::connect(&address).await.unwrap();
    stalled.write_all(HALF_HEAD).await.unwrap();
    // Connections are accepted in order: once a later one is answered, the stalled one is
    // being served.
    let mut later = TcpStream::connect(&address).await.unwrap();
    later.write_all(HEALTHZ).await.unwrap();
    assert!(read_response(&mut later).await.starts_with("HTTP/1.1 200"));
    sleep(Duration::from_millis(100)).await;

    stop.send(()).unwrap();
    timeout(SAFETY, server)
        .await
        .expect("run_until returns once the grace period is over")
        .unwrap()
        .unwrap();
    let mut chunk = [0u8; 64];
    assert!(matches!(stalled.read(&mut chunk).await, Ok(0) | Err(_)));
    assert!(
        TcpStream::connect(&address).await.is_err(),
        "still listening after shutdown"
    );
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let upstreams = Upstreams::start().await;
    mosia_get()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("mosia/ultimos-protocolos.200.json"))
                .set_delay(Duration::from_millis(500)),
        )
        .mount(&upstreams.mosia)
        .await;
    let (address, stop, server) = run(upstreams.settings()).await;

    let request = tokio::spawn(
        reqwest::Client::new()
            .post(format!("http://{address}/graphql"))
            .json(&json!({ "query": LATEST }))
            .send(),
    );
    timeout(SAFETY, async {
        while upstreams
            .mosia
            .received_requests()
            .await
            .unwrap()
            .is_empty()
        {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the request reaches Mosia");

    stop.send(()).unwrap();
    let response = timeout(SAFETY, request).await.unwrap().unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["data"]["beneficiary"]["latestProtocols"].is_array(),
        "{body}"
    );
    timeout(SAFETY, server)
        .await
        .expect("run_until returns once the request is answered")
        .unwrap()
        .unwrap();
}

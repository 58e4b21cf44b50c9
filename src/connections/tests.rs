use super::*;

use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

fn limits() -> Limits {
    Limits::from(&ServerSettings::default())
}

#[test]
fn the_cap_fits_three_quarters_of_the_descriptor_limit() {
    assert_eq!(cap_for_descriptors(16_384, Some(1_024)), 768);
    assert_eq!(cap_for_descriptors(16_384, Some(1_048_576)), 16_384);
    assert_eq!(cap_for_descriptors(16_384, None), 16_384);
    assert_eq!(cap_for_descriptors(16_384, Some(1)), 1);
}

#[tokio::test]
async fn handlers_see_the_peer_address_as_connect_info() {
    let router = Router::new().route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, router, limits(), async {
        let _ = stopped.await;
    }));

    let mut client = TcpStream::connect(addr).await.unwrap();
    let peer = client.local_addr().unwrap();
    client
        .write_all(b"GET /peer HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        client.read_to_string(&mut response),
    )
    .await
    .expect("the server answers")
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(&format!("\r\n\r\n{peer}")), "{response}");

    drop(stop);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .unwrap();
}

//! Mutations across replicas: one submission per double submit wherever its halves land, and
//! a failure never remembered.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{method, path},
};

use super::{RedisServer, calls, replicas};
use crate::helpers::{API, Upstreams, fixture};

const ATTACH: &str = r#"mutation($input: AddAuthorizationAttachmentsInput!) {
    addAuthorizationAttachments(input: $input) { protocol subscriberId status } }"#;

fn attachments_path() -> String {
    format!("{API}/protocols/attachments")
}

fn input(href: &str) -> Value {
    json!({ "input": { "protocol": "41750520230620000004", "attachments": [{ "href": href }] } })
}

async fn totvs_answers(up: &Upstreams, template: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path(attachments_path()))
        .respond_with(template)
        .mount(&up.totvs)
        .await;
}

#[tokio::test]
async fn a_double_submit_across_replicas_reaches_totvs_once() {
    let redis = RedisServer::start().await;
    let up = Upstreams::start().await;
    totvs_answers(
        &up,
        ResponseTemplate::new(201)
            .set_body_json(fixture("totvs/attachments.201.json"))
            .set_delay(Duration::from_millis(300)),
    )
    .await;
    let fleet = replicas(&up, &redis, 3).await;
    let href = "https://files.example/pedido.pdf";

    // The two halves of a double click land on two replicas at once...
    let together = join_all(
        fleet[..2]
            .iter()
            .map(|app| app.query_with(ATTACH, input(href))),
    )
    .await;
    // ...and a third submit lands on the third replica just after.
    let after = fleet[2].query_with(ATTACH, input(href)).await;

    assert!(together[0].get("errors").is_none(), "{}", together[0]);
    assert_eq!(together[0], together[1]);
    assert_eq!(together[0], after);
    assert_eq!(calls(&up.totvs, &attachments_path()).await, 1);
    let deduplicated: u64 = fleet
        .iter()
        .map(|app| app.counts().mutations_deduplicated)
        .sum();
    assert_eq!(deduplicated, 2);

    // Another input is another submission.
    fleet[1]
        .query_with(ATTACH, input("https://files.example/laudo.pdf"))
        .await;
    assert_eq!(calls(&up.totvs, &attachments_path()).await, 2);
}

#[tokio::test]
async fn a_submission_that_failed_on_one_replica_can_be_sent_from_another() {
    let redis = RedisServer::start().await;
    let up = Upstreams::start().await;
    totvs_answers(
        &up,
        ResponseTemplate::new(400).set_body_json(fixture("totvs/attachments.400-download.json")),
    )
    .await;
    let fleet = replicas(&up, &redis, 2).await;
    let href = "https://files.example/missing.pdf";

    for app in &fleet {
        let response = app.query_with(ATTACH, input(href)).await;
        assert_eq!(
            response["errors"][0]["extensions"]["code"], "ATTACHMENT_DOWNLOAD_FAILED",
            "{response}"
        );
    }
    assert_eq!(calls(&up.totvs, &attachments_path()).await, 2);
}

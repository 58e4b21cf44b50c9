//! Unit tests of the dataset and of the documented bodies the sandbox must reproduce.

use axum::http::StatusCode;
use serde_json::Value;
use tokio::sync::watch;

use super::mosia_data::{MOSIA_FIXTURE, MOSIA_FIXTURE_KEY, epoch_ms, mosia_seed};
use super::state::Shared;
use super::totvs_data::{HERNANDES_SUBSCRIBER, StyledProtocol, Totvs};
use super::totvs_reads::{Paging, ProtocolQuery, SortField, parse_order};
use super::{Sandbox, SandboxOptions};

#[test]
fn dataset_covers_what_the_gateway_must_handle() {
    let totvs = Totvs::seed();
    assert!(totvs.protocols.len() >= 30);
    assert_eq!(
        totvs.by_number.len(),
        totvs.protocols.len(),
        "protocol numbers are unique"
    );
    for status in ["1", "2", "3", "5", "6", "7", "8", "9"] {
        assert!(
            totvs.protocols.iter().any(|p| p.status == status),
            "status {status}"
        );
    }
    for auth_type in ["", "2", "3", "4"] {
        assert!(totvs.protocols.iter().any(|p| p.auth_type == auth_type));
    }
    for p in &totvs.protocols {
        assert_eq!(p.number.len(), 20, "{}", p.number);
        assert_eq!(p.subscriber_id.len(), 17);
        assert!(!p.name.is_empty());
        assert!(p.interactions.len() <= 4);
        if p.status == "1" || p.status == "2" {
            assert!(!p.authorization.is_empty(), "{}", p.number);
        }
        if p.status == "9" {
            assert!(!p.interactions.is_empty(), "{}", p.number);
        }
    }
    assert!(totvs.subscribers.values().any(|s| s.protocols.len() >= 25));
    let example = Sandbox::examples();
    let awaiting = &totvs.protocols[totvs.by_number[example.protocol_awaiting_document]];
    assert_eq!(awaiting.status, "9");
    assert_eq!(awaiting.subscriber_id, example.subscriber_id);

    let mosia = mosia_seed();
    assert!(mosia.values().any(|b| b.items.len() == 12));
    assert!(mosia[example.unique_key].items.len() == 3);
    for beneficiary in mosia.values() {
        let dates: Vec<i64> = beneficiary
            .items
            .iter()
            .map(|i| epoch_ms(&i["data_registro"]))
            .collect();
        assert!(dates.windows(2).all(|w| w[0] >= w[1]), "newest first");
    }
}

#[test]
fn documented_bodies_are_reproduced() {
    let totvs = Totvs::seed();
    let fixture: Value =
        serde_json::from_str(include_str!("../../fixtures/totvs/protocols.200.json")).unwrap();
    let query =
        ProtocolQuery::parse(&[("page".into(), "1".into()), ("pageSize".into(), "1".into())])
            .unwrap_or_else(|_| panic!("valid query"));
    let subscriber = &totvs.subscribers[HERNANDES_SUBSCRIBER];
    let first = &totvs.protocols[subscriber.protocols[0]];
    let item = serde_json::to_value(StyledProtocol {
        protocol: first,
        names: subscriber.style.names(),
    })
    .unwrap();
    assert_eq!(item, fixture["items"][0]);
    let (page, remaining) = query.paging.slice(&subscriber.protocols);
    assert_eq!((page.len(), remaining), (1, 3));

    let interactions: Value =
        serde_json::from_str(include_str!("../../fixtures/totvs/interactions.200.json")).unwrap();
    assert_eq!(
        serde_json::to_value(&first.interactions).unwrap(),
        interactions["items"]
    );

    let token: Value =
        serde_json::from_str(include_str!("../../fixtures/totvs/token.201.json")).unwrap();
    let (stop_tx, stop) = watch::channel(false);
    let issued = Shared::new(&SandboxOptions::default(), stop).issue_tokens();
    drop(stop_tx);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&issued), keys(&token));
    assert_eq!(issued["expires_in"], 3600);

    let mosia: Value = serde_json::from_str(MOSIA_FIXTURE).unwrap();
    assert_eq!(
        Value::Array(mosia_seed()[MOSIA_FIXTURE_KEY].items.clone()),
        mosia["data"]
    );
}

#[test]
fn paging_and_order() {
    let items: Vec<u32> = (0..27).collect();
    let page = |page, page_size| Paging { page, page_size }.slice(&items);
    assert_eq!(page(1, 20), (&items[..20], 7));
    assert_eq!(page(2, 20), (&items[20..], 0));
    assert_eq!(page(3, 20), (&[][..], 0));
    assert_eq!(page(u64::MAX, u64::MAX), (&[][..], 0));
    assert_eq!(
        parse_order("-solicitation-date, status,bogus,+protocol"),
        vec![
            (SortField::SolicitationDate, true),
            (SortField::Status, false),
            (SortField::Protocol, false),
        ]
    );
    let bad = Paging::parse(&[("pageSize".into(), "0".into())]).unwrap_err();
    assert_eq!(bad.status, StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn a_delay_lasts_at_least_the_configured_latency() {
    let (_stop_tx, stop) = watch::channel(false);
    let latency = std::time::Duration::from_millis(20);
    let shared = Shared::new(
        &SandboxOptions {
            latency,
            ..SandboxOptions::default()
        },
        stop,
    );
    for _ in 0..5 {
        let started = std::time::Instant::now();
        shared.delay().await;
        // Never early: the benchmark's reference rows count on the full latency.
        assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
    }
}

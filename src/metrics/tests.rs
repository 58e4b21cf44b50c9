use super::*;

#[test]
fn operation_names_are_bounded_in_shape_and_number() {
    let metrics = Metrics::default();
    assert_eq!(metrics.operation_label(None), "anonymous");
    assert_eq!(metrics.operation_label(Some("Latest")), "Latest");
    assert_eq!(metrics.operation_label(Some("1bad")), "other");
    assert_eq!(metrics.operation_label(Some("with-dash")), "other");
    assert_eq!(metrics.operation_label(Some(&"a".repeat(65))), "other");
    assert_eq!(
        metrics.operation_label(Some(&"a".repeat(64))),
        "a".repeat(64)
    );
    for i in 0..MAX_OPERATION_NAMES {
        metrics.operation_label(Some(&format!("Op{i}")));
    }
    assert_eq!(metrics.operation_label(Some("Latest")), "Latest", "kept");
    assert_eq!(metrics.operation_label(Some("OneTooMany")), "other");
}

#[test]
fn the_breaker_hook_sets_one_state_per_upstream() {
    let metrics = Metrics::default();
    assert_eq!(metrics.breaker(Service::Totvs), BreakerState::Closed);
    metrics.breaker_state(Service::Totvs, BreakerState::Open);

    assert_eq!(metrics.breaker(Service::Totvs), BreakerState::Open);
    assert_eq!(metrics.breaker(Service::Mosia), BreakerState::Closed);
    let text = metrics.render_prometheus();
    for line in [
        "protocol_graph_upstream_breaker_state{service=\"totvs\",state=\"open\"} 1",
        "protocol_graph_upstream_breaker_state{service=\"totvs\",state=\"closed\"} 0",
        "protocol_graph_upstream_breaker_state{service=\"mosia\",state=\"closed\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
}

#[test]
fn token_calls_are_a_series_of_their_own() {
    let metrics = Metrics::default();
    let call = |series| {
        metrics.upstream_call(series, "/route", "200".into(), Duration::from_millis(3));
    };
    call(Series::TotvsToken);
    call(Series::Totvs);
    call(Series::Totvs);

    let counts = metrics.snapshot();
    assert_eq!((counts.totvs_calls, counts.totvs_token_calls), (2, 1));
    let text = metrics.render_prometheus();
    assert!(text.contains("protocol_graph_upstream_calls_total{service=\"totvs\"} 2"));
    assert!(text.contains("protocol_graph_upstream_calls_total{service=\"totvs_token\"} 1"));
    assert!(text.contains(
        "protocol_graph_upstream_call_duration_seconds_count{service=\"totvs\",route=\"/route\",status=\"200\"} 2"
    ));
}

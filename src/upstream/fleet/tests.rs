//! The fleet's rules that need no Redis: key names and the version check. What needs Redis
//! (leases, epochs, outages) is tested over a real one in tests/api/fleet.

use std::sync::Arc;

use super::{Mark, Stamp, View, keys};

fn stamp(epoch: &str, at_us: u64) -> Stamp {
    Stamp {
        epoch: Arc::from(epoch),
        at_us,
    }
}

#[test]
fn key_names_are_prefixed_digests_that_keep_identifiers_out() {
    let subscriber = Mark::Subscriber("00011008000027010".into()).key();
    assert!(subscriber.starts_with("pg:v1:mark:s:"), "{subscriber}");
    assert_eq!(subscriber.len(), "pg:v1:mark:s:".len() + 32);
    assert!(!subscriber.contains("00011008000027010"));
    // Stable across processes: every replica must name a resource alike.
    assert_eq!(
        subscriber,
        Mark::Subscriber("00011008000027010".into()).key()
    );
    // The kind is part of the digest: one id never names two kinds of key alike.
    let protocol = Mark::Protocol("00011008000027010".into()).key();
    assert_ne!(
        subscriber["pg:v1:mark:s:".len()..],
        protocol["pg:v1:mark:p:".len()..]
    );
    assert_ne!(keys::key("val", b"a"), keys::key("val", b"b"));
}

#[test]
fn an_entry_serves_only_when_newer_than_every_mark_it_depends_on() {
    let protocol = Mark::Protocol("41750520230601000030".into());
    let subscriber = Mark::Subscriber("00011008000027010".into());
    let view = View::answered(
        "e1",
        5_000,
        &[(protocol.clone(), 1_000), (subscriber.clone(), 0)],
    );
    let deps = [protocol.clone(), subscriber];

    assert!(view.allows(Some(&stamp("e1", 1_001)), &deps));
    // Fetched when the change was recorded, or before: outdated.
    assert!(!view.allows(Some(&stamp("e1", 1_000)), &deps));
    assert!(!view.allows(Some(&stamp("e1", 999)), &deps));
    // Another Redis's epoch, or fetched while Redis was out of reach: not provably current.
    assert!(!view.allows(Some(&stamp("e0", 9_999)), &deps));
    assert!(!view.allows(None, &deps));
    // An entry depending on nothing (Mosia's answers) needs only the epoch.
    assert!(view.allows(Some(&stamp("e1", 1)), &[]));
}

#[test]
fn marks_a_view_lacks_are_named_for_one_more_round_trip() {
    let known = Mark::Subscriber("00011008000027010".into());
    let unknown = Mark::Protocol("41750520230620000003".into());
    let view = View::answered("e1", 5_000, &[(known.clone(), 0)]);

    assert_eq!(view.missing(&[known, unknown.clone()]), [unknown]);
    assert_eq!(view.stamp(), stamp("e1", 5_000));
}

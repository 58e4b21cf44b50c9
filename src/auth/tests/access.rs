//! Which beneficiaries a caller may read or write.

use super::*;
use crate::auth::{Refusal, SCOPE_READ, SCOPE_WRITE, Scopes, caller::BeneficiaryKey};

fn caller(scope: &str, unique_key: Option<&str>, subscriber_id: Option<&str>) -> Caller {
    Caller {
        sub: "s".into(),
        scopes: Scopes::parse(scope),
        unique_key: unique_key.map(String::from),
        subscriber_id: subscriber_id.map(String::from),
    }
}

#[test]
fn staff_scopes_read_and_write_any_beneficiary_separately() {
    let reader = caller(SCOPE_READ, None, None);
    assert_eq!(reader.may_read(Some("UK-9"), Some("S-9")), Ok(()));
    assert_eq!(reader.may_read(None, None), Ok(()));
    assert_eq!(reader.may_write(Some("UK-9"), None), Err(Refusal::NoGrant));
    assert!(!reader.is_staff_writer());

    let writer = caller(SCOPE_WRITE, None, None);
    assert_eq!(writer.may_write(None, Some("S-9")), Ok(()));
    assert_eq!(writer.may_read(None, Some("S-9")), Err(Refusal::NoGrant));
    assert!(writer.is_staff_writer());

    let nobody = caller("openid protocols:admin PROTOCOLS:READ", None, None);
    assert_eq!(nobody.may_read(Some("UK-1"), None), Err(Refusal::NoGrant));
    assert_eq!(nobody.may_write(Some("UK-1"), None), Err(Refusal::NoGrant));
}

#[test]
fn a_beneficiary_reads_and_writes_only_its_own_keys() {
    let both = caller("", Some("UK-1"), Some("S-1"));
    for check in [Caller::may_read, Caller::may_write] {
        assert_eq!(check(&both, Some("UK-1"), None), Ok(()));
        assert_eq!(check(&both, None, Some("S-1")), Ok(()));
        assert_eq!(check(&both, Some("UK-1"), Some("S-1")), Ok(()));
        assert_eq!(
            check(&both, Some("UK-2"), None),
            Err(Refusal::NotOwn(BeneficiaryKey::UniqueKey))
        );
        assert_eq!(
            check(&both, Some("UK-1"), Some("S-2")),
            Err(Refusal::NotOwn(BeneficiaryKey::SubscriberId))
        );
        assert_eq!(
            check(&both, Some("uk-1"), None).map_err(|r| r.reason()),
            Err("not_own")
        );
        assert_eq!(check(&both, None, None), Err(Refusal::NoBeneficiaryNamed));
    }

    let mosia_only = caller("", Some("UK-1"), None);
    assert_eq!(
        mosia_only.may_read(Some("UK-1"), Some("S-1")),
        Err(Refusal::NoClaim(BeneficiaryKey::SubscriberId))
    );
    assert_eq!(
        mosia_only.may_write(None, Some("S-1")),
        Err(Refusal::NoClaim(BeneficiaryKey::SubscriberId))
    );
    assert_eq!(mosia_only.own_subscriber_id(), None);

    let totvs_only = caller("", None, Some("S-1"));
    assert_eq!(
        totvs_only.may_read(Some("UK-1"), None),
        Err(Refusal::NoClaim(BeneficiaryKey::UniqueKey))
    );
    assert_eq!(totvs_only.own_subscriber_id(), Some("S-1"));
    assert!(!totvs_only.is_staff_writer());
}

#[test]
fn a_beneficiary_with_a_read_scope_reads_anyone_but_writes_only_its_own() {
    let reader = caller(SCOPE_READ, Some("UK-1"), None);
    assert_eq!(reader.may_read(Some("UK-2"), None), Ok(()));
    assert_eq!(reader.may_write(Some("UK-1"), None), Ok(()));
    assert_eq!(
        reader.may_write(Some("UK-2"), None),
        Err(Refusal::NotOwn(BeneficiaryKey::UniqueKey))
    );
}

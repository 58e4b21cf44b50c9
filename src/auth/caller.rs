//! The verified caller, the scopes its token grants, and which beneficiaries it may read or
//! write.

use std::sync::Arc;

/// Reads any beneficiary (staff).
pub const SCOPE_READ: &str = "protocols:read";
/// Runs mutations for any beneficiary (staff).
pub const SCOPE_WRITE: &str = "protocols:write";

/// The scopes a token grants; other scopes are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Scopes {
    pub(crate) read: bool,
    pub(crate) write: bool,
}

impl Scopes {
    /// The space-separated `scope` claim.
    pub(super) fn parse(scope: &str) -> Self {
        let mut scopes = Self::default();
        for scope in scope.split_ascii_whitespace() {
            match scope {
                SCOPE_READ => scopes.read = true,
                SCOPE_WRITE => scopes.write = true,
                _ => {}
            }
        }
        scopes
    }
}

/// A verified caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The caller in logs and rate limits.
    pub(crate) sub: Arc<str>,
    pub(crate) scopes: Scopes,
    /// The Mosia chaveUnica of the beneficiary the token is for (claim `unique_key`).
    pub(crate) unique_key: Option<String>,
    /// The TOTVS matrícula of the beneficiary the token is for (claim `subscriber_id`).
    pub(crate) subscriber_id: Option<String>,
}

/// A beneficiary key an operation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BeneficiaryKey {
    UniqueKey,
    SubscriberId,
}

impl BeneficiaryKey {
    /// The GraphQL argument name, for the audit log.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::UniqueKey => "uniqueKey",
            Self::SubscriberId => "subscriberId",
        }
    }
}

impl std::fmt::Display for BeneficiaryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a caller may not touch a beneficiary. The client sees only [`Refusal::MESSAGE`], the
/// same whether or not the other beneficiary exists; the variant is for the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("the token has neither a staff scope nor beneficiary claims")]
    NoGrant,
    #[error("a beneficiary token must name its own beneficiary")]
    NoBeneficiaryNamed,
    #[error("the token has no claim for the {0} named")]
    NoClaim(BeneficiaryKey),
    #[error("the {0} named is not the token's own")]
    NotOwn(BeneficiaryKey),
}

impl Refusal {
    pub(crate) const MESSAGE: &'static str = "this caller may not access this beneficiary";

    /// A short code for the audit log.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::NoGrant => "no_grant",
            Self::NoBeneficiaryNamed => "no_beneficiary_named",
            Self::NoClaim(_) => "no_claim",
            Self::NotOwn(_) => "not_own",
        }
    }
}

impl Caller {
    /// The caller of every request when authentication is off: full read and write.
    pub(crate) fn anonymous_staff() -> Self {
        Self {
            sub: "anonymous".into(),
            scopes: Scopes {
                read: true,
                write: true,
            },
            unique_key: None,
            subscriber_id: None,
        }
    }

    /// Whether the token names a beneficiary it is for.
    pub(crate) fn is_beneficiary(&self) -> bool {
        self.unique_key.is_some() || self.subscriber_id.is_some()
    }

    /// Runs mutations for any beneficiary.
    pub(crate) fn is_staff_writer(&self) -> bool {
        self.scopes.write
    }

    /// The caller's own TOTVS matrícula, to prove that a protocol is its own.
    pub(crate) fn own_subscriber_id(&self) -> Option<&str> {
        self.subscriber_id.as_deref()
    }

    /// May the caller read the beneficiary named by these keys (those the operation names)?
    pub(crate) fn may_read(
        &self,
        unique_key: Option<&str>,
        subscriber_id: Option<&str>,
    ) -> Result<(), Refusal> {
        self.may_access(self.scopes.read, unique_key, subscriber_id)
    }

    /// May the caller run a mutation for the beneficiary named by these keys?
    pub(crate) fn may_write(
        &self,
        unique_key: Option<&str>,
        subscriber_id: Option<&str>,
    ) -> Result<(), Refusal> {
        self.may_access(self.scopes.write, unique_key, subscriber_id)
    }

    fn may_access(
        &self,
        staff: bool,
        unique_key: Option<&str>,
        subscriber_id: Option<&str>,
    ) -> Result<(), Refusal> {
        if staff {
            return Ok(());
        }
        if !self.is_beneficiary() {
            return Err(Refusal::NoGrant);
        }
        // With no key named there is nothing to prove ownership of.
        if unique_key.is_none() && subscriber_id.is_none() {
            return Err(Refusal::NoBeneficiaryNamed);
        }
        owns(
            BeneficiaryKey::UniqueKey,
            unique_key,
            self.unique_key.as_deref(),
        )?;
        owns(
            BeneficiaryKey::SubscriberId,
            subscriber_id,
            self.subscriber_id.as_deref(),
        )
    }
}

fn owns(key: BeneficiaryKey, named: Option<&str>, claim: Option<&str>) -> Result<(), Refusal> {
    match (named, claim) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(Refusal::NoClaim(key)),
        (Some(named), Some(claim)) if named == claim => Ok(()),
        (Some(_), Some(_)) => Err(Refusal::NotOwn(key)),
    }
}

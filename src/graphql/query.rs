//! The read side of the graph: `Query`, `Beneficiary` and the interactions of a protocol.

use std::sync::Arc;

use async_graphql::{Context, ID, Object};

use super::{
    access,
    errors::GatewayError,
    errors::nullable,
    loaders::{LatestKey, load_one, request},
    scalars::Date,
    types::AuthorizationStatus,
    validation,
};
use crate::model::{
    self, AuthorizationProtocol, AuthorizationProtocolPage, ProtocolQuery, ServiceProtocol,
    strip_key_suffix,
};

pub struct Query;

/// The root of every read.
#[Object]
impl Query {
    /// A beneficiary of the health plan, by Mosia's unique key (`chaveUnica`) and/or the TOTVS
    /// subscriber id (matrícula, 17 digits); give at least one. Nothing is fetched until you
    /// ask for a field that needs it: `latestProtocols` needs `uniqueKey`,
    /// `authorizationProtocols` needs `subscriberId`.
    async fn beneficiary(
        &self,
        ctx: &Context<'_>,
        unique_key: Option<ID>,
        subscriber_id: Option<ID>,
    ) -> Option<Beneficiary> {
        nullable(
            ctx,
            Beneficiary::new(ctx, "beneficiary", unique_key, subscriber_id),
        )
    }

    /// One authorization protocol of a subscriber, or null when the subscriber has no protocol
    /// with that number.
    async fn authorization_protocol(
        &self,
        ctx: &Context<'_>,
        subscriber_id: ID,
        protocol: ID,
    ) -> Option<AuthorizationProtocol> {
        nullable(ctx, find_protocol(ctx, &subscriber_id, &protocol).await).flatten()
    }

    /// A beneficiary by `uniqueKey`; a `subscriberId` in the same representation is kept.
    #[graphql(entity)]
    async fn find_beneficiary_by_unique_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(key)] unique_key: ID,
        subscriber_id: Option<ID>,
    ) -> Result<Beneficiary> {
        Beneficiary::new(ctx, "_entities", Some(unique_key), subscriber_id)
    }

    /// A beneficiary by `subscriberId`; a `uniqueKey` in the same representation is kept.
    #[graphql(entity)]
    async fn find_beneficiary_by_subscriber_id(
        &self,
        ctx: &Context<'_>,
        #[graphql(key)] subscriber_id: ID,
        unique_key: Option<ID>,
    ) -> Result<Beneficiary> {
        Beneficiary::new(ctx, "_entities", unique_key, Some(subscriber_id))
    }

    #[graphql(entity)]
    async fn find_authorization_protocol(
        &self,
        ctx: &Context<'_>,
        subscriber_id: ID,
        protocol: ID,
    ) -> Result<Option<AuthorizationProtocol>> {
        find_protocol(ctx, &subscriber_id, &protocol).await
    }
}

type Result<T, E = GatewayError> = std::result::Result<T, E>;

async fn find_protocol(
    ctx: &Context<'_>,
    subscriber_id: &str,
    protocol: &str,
) -> Result<Option<AuthorizationProtocol>> {
    let subscriber_id = validation::identifier("subscriberId", subscriber_id)?;
    let protocol = validation::identifier("protocol", protocol)?;
    access::check_read(ctx, "authorizationProtocol", None, Some(&subscriber_id))?;
    let query = ProtocolQuery {
        protocol: Some(protocol.clone()),
        ..ProtocolQuery::first_page()
    };
    let page = protocols_page(ctx, subscriber_id, query).await?;
    Ok(page
        .items
        .iter()
        .find(|item| item.protocol.as_str() == protocol)
        .cloned())
}

async fn protocols_page(
    ctx: &Context<'_>,
    subscriber_id: String,
    query: ProtocolQuery,
) -> Result<Arc<AuthorizationProtocolPage>> {
    Ok(load_one(&request(ctx).protocols, (subscriber_id, query)).await?)
}

/// A beneficiary, known by Mosia's unique key and/or the TOTVS subscriber id.
pub struct Beneficiary {
    unique_key: Option<String>,
    subscriber_id: Option<String>,
}

impl Beneficiary {
    /// A beneficiary the caller may read, by the keys given (validated, then checked against
    /// the caller before anything is read).
    fn new(
        ctx: &Context<'_>,
        operation: &'static str,
        unique_key: Option<ID>,
        subscriber_id: Option<ID>,
    ) -> Result<Self> {
        let unique_key = unique_key
            .map(|k| validation::identifier("uniqueKey", &k))
            .transpose()?;
        let subscriber_id = subscriber_id
            .map(|k| validation::identifier("subscriberId", &k))
            .transpose()?;
        if unique_key.is_none() && subscriber_id.is_none() {
            return Err(GatewayError::bad_input(
                "uniqueKey",
                "give uniqueKey or subscriberId (or both) to find a beneficiary",
            ));
        }
        access::check_read(
            ctx,
            operation,
            unique_key.as_deref(),
            subscriber_id.as_deref(),
        )?;
        Ok(Self {
            unique_key,
            subscriber_id,
        })
    }

    fn needs_unique_key(&self, field: &str) -> Result<&str> {
        self.unique_key.as_deref().ok_or_else(|| {
            GatewayError::bad_input(
                "uniqueKey",
                format!("{field} needs the beneficiary's uniqueKey"),
            )
        })
    }

    fn needs_subscriber_id(&self, field: &str) -> Result<&str> {
        self.subscriber_id.as_deref().ok_or_else(|| {
            GatewayError::bad_input(
                "subscriberId",
                format!("{field} needs the beneficiary's subscriberId"),
            )
        })
    }
}

/// A beneficiary of the health plan. Each field that needs an upstream is fetched only when
/// asked for, and is null (with an error in `errors`) when that upstream fails.
#[Object]
impl Beneficiary {
    /// Mosia's unique key (chaveUnica), as given.
    async fn unique_key(&self) -> Option<ID> {
        self.unique_key.clone().map(ID)
    }

    /// The TOTVS subscriber id (matrícula), as given.
    async fn subscriber_id(&self) -> Option<ID> {
        self.subscriber_id.clone().map(ID)
    }

    /// The beneficiary's name: from Mosia when `uniqueKey` is known (without the
    /// `" - <uniqueKey>"` suffix Mosia sometimes adds), else from the first TOTVS authorization
    /// protocol, else null.
    async fn name(&self, ctx: &Context<'_>) -> Option<String> {
        nullable(ctx, self.load_name(ctx).await).flatten()
    }

    /// The beneficiary's latest service protocols from Mosia, newest first; `limit` is 1..10.
    /// Needs `uniqueKey`. Null, with an error naming the cause, when Mosia fails.
    async fn latest_protocols(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 5)] limit: i32,
    ) -> Option<Vec<ServiceProtocol>> {
        nullable(ctx, self.load_latest(ctx, limit).await)
    }

    /// The beneficiary's authorization requests from TOTVS, one page at a time. Needs
    /// `subscriberId`. Filters combine: `status` (any of), `protocol` (exact number),
    /// `protocolOrAuthorization` (a protocol or an authorization number), `solicitationDate`
    /// (the day it was requested); `order` is TOTVS's comma-separated field list. `page` is 1 or
    /// more, `pageSize` 1..100. Null, with an error naming the cause, when TOTVS fails.
    #[allow(clippy::too_many_arguments)]
    async fn authorization_protocols(
        &self,
        ctx: &Context<'_>,
        status: Option<Vec<AuthorizationStatus>>,
        protocol: Option<ID>,
        protocol_or_authorization: Option<String>,
        solicitation_date: Option<Date>,
        #[graphql(default = 1)] page: i32,
        #[graphql(default = 20)] page_size: i32,
        order: Option<String>,
    ) -> Option<AuthorizationProtocolPage> {
        let filters = Filters {
            status,
            protocol,
            protocol_or_authorization,
            solicitation_date,
            page,
            page_size,
            order,
        };
        nullable(ctx, self.load_protocols(ctx, filters).await)
    }
}

/// The arguments of `Beneficiary.authorizationProtocols`, unchecked.
struct Filters {
    status: Option<Vec<AuthorizationStatus>>,
    protocol: Option<ID>,
    protocol_or_authorization: Option<String>,
    solicitation_date: Option<Date>,
    page: i32,
    page_size: i32,
    order: Option<String>,
}

impl Beneficiary {
    async fn load_name(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        if let Some(unique_key) = &self.unique_key {
            let key = LatestKey {
                unique_key: unique_key.clone(),
                limit: 1,
            };
            let latest = load_one(&request(ctx).latest, key).await?;
            if let Some(first) = latest.first() {
                return Ok(Some(
                    strip_key_suffix(&first.beneficiary.name, unique_key).to_owned(),
                ));
            }
        }
        let Some(subscriber_id) = &self.subscriber_id else {
            return Ok(None);
        };
        let page = protocols_page(ctx, subscriber_id.clone(), ProtocolQuery::first_page()).await?;
        Ok(page.items.first().map(|p| p.beneficiary_name.clone()))
    }
}

impl Beneficiary {
    async fn load_latest(&self, ctx: &Context<'_>, limit: i32) -> Result<Vec<ServiceProtocol>> {
        let limit = validation::range("limit", limit, 1, 10)?;
        let unique_key = self.needs_unique_key("latestProtocols")?;
        let key = LatestKey {
            unique_key: unique_key.to_owned(),
            limit: limit as u8,
        };
        let latest = load_one(&request(ctx).latest, key).await?;
        Ok(latest.as_ref().clone())
    }

    async fn load_protocols(
        &self,
        ctx: &Context<'_>,
        filters: Filters,
    ) -> Result<AuthorizationProtocolPage> {
        let page = validation::page("page", filters.page)?;
        let page_size = validation::range("pageSize", filters.page_size, 1, 100)?;
        let mut codes = Vec::new();
        for status in filters.status.unwrap_or_default() {
            codes.push(
                model::AuthorizationStatus::from(status)
                    .code()
                    .ok_or_else(|| {
                        GatewayError::bad_input("status", "UNKNOWN cannot be used as a filter")
                    })?,
            );
        }
        codes.sort_unstable();
        codes.dedup();
        let max_id = validation::MAX_IDENTIFIER_CHARS;
        let query = ProtocolQuery {
            protocol: validation::optional_text(
                "protocol",
                filters.protocol.as_ref().map(|p| p.as_str()),
                max_id,
            )?,
            protocol_or_authorization: validation::optional_text(
                "protocolOrAuthorization",
                filters.protocol_or_authorization.as_deref(),
                max_id,
            )?,
            solicitation_date: filters.solicitation_date.map(|d| d.0),
            status: codes,
            page,
            page_size,
            order: validation::optional_text(
                "order",
                filters.order.as_deref(),
                validation::MAX_TEXT_CHARS,
            )?,
        };
        let subscriber_id = self.needs_subscriber_id("authorizationProtocols")?;
        let page = protocols_page(ctx, subscriber_id.to_owned(), query).await?;
        Ok(page.as_ref().clone())
    }
}

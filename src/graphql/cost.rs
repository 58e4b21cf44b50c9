//! Cost before execution: the most upstream calls an operation can make, from its document and
//! variables alone, before validation and before any upstream call.
//!
//! The estimate is an **upper bound**, not a prediction. It prices every occurrence of a field
//! that needs its own upstream resource, so it does not model what the per-request DataLoaders
//! and the cache save:
//! - every alias counts separately, and so does a field named twice under the same response key
//!   with the same arguments (the loaders would share one call);
//! - `Beneficiary.name` and `Beneficiary.latestProtocols` are priced apart although one Mosia
//!   answer may serve both;
//! - `@skip` and `@include` are ignored (the field is priced as if it ran);
//! - a list multiplies what is under it by its largest possible length: `pageSize` (default 20,
//!   clamped to 1..=100 here; a value outside is refused later by the resolver's checks) for
//!   `authorizationProtocols`, the number of representations for `_entities`;
//! - the TOTVS token calls are not counted (they are per process, not per operation).
//!
//! It is not a validator: unknown fields, fields on the wrong type, missing fragments and bad
//! argument values cost nothing or the bound, and validation refuses the document afterwards.
//! What it must do for any document is terminate quickly: fragment costs are memoized per
//! (fragment, type), so the walk is linear in the document's size whatever the spreads; a
//! fragment cycle and nesting deeper than [`MAX_NESTING`] (fields, inline fragments and spreads
//! together) stop it with a [`CostError`] ([`estimate`] turns that into `u64::MAX`); all
//! arithmetic saturates.
//!
//! The per-field prices are in [`price`]. The README's examples cost:
//!
//! | README example | estimate | how |
//! |---|--:|---|
//! | a beneficiary across both upstreams (`name`, `latestProtocols(limit: 3)`, `authorizationProtocols(pageSize: 10) { items { … interactions { … } } }`) | 14 | `name` 2 + `latestProtocols` 1 + `authorizationProtocols` 1 + 10 × `interactions` 1 |
//! | one protocol (`authorizationProtocol { status interactions { … } }`) | 2 | `authorizationProtocol` 1 + `interactions` 1 |
//! | partial results (`latestProtocols { number } authorizationProtocols { hasNext }`) | 2 | 1 + 1 (no `items`, so the page size multiplies nothing) |
//! | mutation `addAuthorizationAttachments { protocol status statusCode }` | 2 | a beneficiary's proof read + the post |
//! | mutation `requestAuthorization { protocol status statusCode professional { … } }` | 1 | the post |
//!
//! The benchmark's fan-out query (`name latestProtocols { number } authorizationProtocols(pageSize:
//! 20) { items { … interactions { … } } }`) is estimated at 24 (2 + 1 + 1 + 20); it makes 22
//! calls cold, because `name` and `latestProtocols` share the Mosia answer.

use std::{
    collections::{HashMap, HashSet},
    convert::Infallible,
};

use async_graphql::{
    Name, Value as ConstValue, Variables,
    parser::types::{ExecutableDocument, Field, OperationType, Selection, SelectionSet},
};

use super::order::selected_operation;

/// The deepest the walk goes, counting nested fields, inline fragments and fragment spreads
/// together. The parser already stops a single selection set at 64 levels; this bounds chains
/// of fragments (and the stack). `server.max_depth` (default 32) refuses deeper queries anyway.
pub(crate) const MAX_NESTING: usize = 128;

/// The page size `authorizationProtocols` asks for when the query does not say.
const DEFAULT_PAGE_SIZE: u64 = 20;
/// The largest page size the resolver accepts; anything unreadable is priced at it.
const MAX_PAGE_SIZE: u64 = 100;

/// Why a document could not be priced. Validation refuses both kinds of document later; the
/// request path may refuse them as too expensive right away ([`estimate`] does so).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CostError {
    #[error("a fragment spreads itself, directly or through other fragments")]
    FragmentCycle,
    #[error("the document nests fields and fragments more than {MAX_NESTING} levels deep")]
    TooDeep,
}

/// The type a selection set is priced as. Only the types under which a costly field can appear
/// are told apart; every other type (scalars' parents such as `ServiceProtocol`, `Interaction`,
/// `InteractionPage`, `Professional`, introspection types, `_Service`, unknown types) is `Free`:
/// nothing under it costs anything, so its selection sets are not even walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Ty {
    Query,
    Mutation,
    Beneficiary,
    AuthorizationProtocolPage,
    AuthorizationProtocol,
    Free,
}

/// What one occurrence of a field costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Price {
    /// `calls` upstream calls, plus its selection set priced once as the given type.
    Calls(u64, Ty),
    /// One upstream call for the page, plus its selection set (as `AuthorizationProtocolPage`)
    /// times the `pageSize` argument: everything costly in a page is per item.
    Page,
    /// `_entities`: for each representation, its lookup plus the selection set priced as the
    /// representation's `__typename`.
    Entities,
}

/// **The cost table**: upstream calls per occurrence of `field` on `parent`. Keep it in sync
/// with the schema (`schema.graphql`) and the resolvers (`query.rs`, `mutation.rs`): a new
/// field that calls an upstream, or a new path to a type holding one, needs a row here.
///
/// | field | calls | why |
/// |---|--:|---|
/// | `Query.beneficiary` | 0 | builds the keys only |
/// | `Query.authorizationProtocol` | 1 | TOTVS protocol list filtered by number |
/// | `Query._entities` | per representation | `AuthorizationProtocol` 1 (lookup), `Beneficiary` 0 |
/// | `Mutation.addAuthorizationAttachments` | 2 | a beneficiary's proof read (`…/protocols?protocol=`) + the post |
/// | `Mutation.requestAuthorization` | 1 | the post |
/// | `Beneficiary.name` | 2 | Mosia, and TOTVS's first page when Mosia answers no protocol (`load_name` falls through) |
/// | `Beneficiary.latestProtocols` | 1 | Mosia; nothing costly below |
/// | `Beneficiary.authorizationProtocols` | 1 + pageSize × items | TOTVS protocol list |
/// | `AuthorizationProtocolPage.items` | 0 | each item priced as `AuthorizationProtocol` |
/// | `AuthorizationProtocol.interactions` | 1 | TOTVS interactions of that protocol |
/// | anything else | 0 | scalars, cheap objects, `__typename`, introspection, `_service`, unknown fields |
fn price(parent: Ty, field: &str) -> Price {
    match (parent, field) {
        (Ty::Query, "beneficiary") => Price::Calls(0, Ty::Beneficiary),
        (Ty::Query, "authorizationProtocol") => Price::Calls(1, Ty::AuthorizationProtocol),
        (Ty::Query, "_entities") => Price::Entities,
        (Ty::Mutation, "addAuthorizationAttachments") => Price::Calls(2, Ty::AuthorizationProtocol),
        (Ty::Mutation, "requestAuthorization") => Price::Calls(1, Ty::AuthorizationProtocol),
        (Ty::Beneficiary, "name") => Price::Calls(2, Ty::Free),
        (Ty::Beneficiary, "latestProtocols") => Price::Calls(1, Ty::Free),
        (Ty::Beneficiary, "authorizationProtocols") => Price::Page,
        (Ty::AuthorizationProtocolPage, "items") => Price::Calls(0, Ty::AuthorizationProtocol),
        (Ty::AuthorizationProtocol, "interactions") => Price::Calls(1, Ty::Free),
        _ => Price::Calls(0, Ty::Free),
    }
}

/// The lookup an `_entities` representation costs before its selection set.
const BENEFICIARY_LOOKUP: u64 = 0;
const AUTHORIZATION_PROTOCOL_LOOKUP: u64 = 1;

/// Whether a fragment with type condition `condition` applies to an object of type `ty`.
/// A name this table does not know applies (an upper bound; such a fragment is either on a
/// type without costly fields or invalid).
fn applies(condition: &str, ty: Ty) -> bool {
    match condition {
        "Query" => ty == Ty::Query,
        "Mutation" => ty == Ty::Mutation,
        "Beneficiary" => ty == Ty::Beneficiary,
        "AuthorizationProtocolPage" => ty == Ty::AuthorizationProtocolPage,
        "AuthorizationProtocol" => ty == Ty::AuthorizationProtocol,
        "_Entity" => matches!(ty, Ty::Beneficiary | Ty::AuthorizationProtocol),
        _ => true,
    }
}

/// The most upstream calls the selected operation can make; `u64::MAX` for a document that
/// cannot be priced (see [`try_estimate`]). An operation name that selects nothing costs 0:
/// execution refuses it before any upstream call.
pub(crate) fn estimate(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> u64 {
    try_estimate(document, operation_name, variables).unwrap_or(u64::MAX)
}

/// As [`estimate`], telling a fragment cycle or a too-deep document apart.
pub(crate) fn try_estimate(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Result<u64, CostError> {
    let Some(operation) = selected_operation(document, operation_name) else {
        return Ok(0);
    };
    let root = match operation.ty {
        OperationType::Query => Ty::Query,
        OperationType::Mutation => Ty::Mutation,
        OperationType::Subscription => Ty::Free,
    };
    let defaults = operation
        .variable_definitions
        .iter()
        .filter_map(|def| {
            let def = &def.node;
            Some((&def.name.node, &def.default_value.as_ref()?.node))
        })
        .collect();
    let mut walk = Walk {
        document,
        variables,
        defaults,
        memo: HashMap::new(),
        in_progress: HashSet::new(),
    };
    walk.selection_set(&operation.selection_set.node, root, 0)
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    /// The operation's variable defaults, for variables the request leaves out.
    defaults: HashMap<&'a Name, &'a ConstValue>,
    /// Cost of a fragment's selection set priced as a type, once computed.
    memo: HashMap<(&'a Name, Ty), u64>,
    /// Fragments being priced right now: meeting one again is a cycle.
    in_progress: HashSet<(&'a Name, Ty)>,
}

impl<'a> Walk<'a> {
    fn selection_set(
        &mut self,
        set: &'a SelectionSet,
        ty: Ty,
        depth: usize,
    ) -> Result<u64, CostError> {
        if ty == Ty::Free {
            return Ok(0);
        }
        if depth > MAX_NESTING {
            return Err(CostError::TooDeep);
        }
        let mut total = 0u64;
        for selection in &set.items {
            let cost = match &selection.node {
                Selection::Field(field) => self.field(&field.node, ty, depth + 1)?,
                Selection::InlineFragment(inline) => {
                    let inline = &inline.node;
                    let condition = inline.type_condition.as_ref().map(|c| &c.node.on.node);
                    if condition.is_none_or(|c| applies(c.as_str(), ty)) {
                        self.selection_set(&inline.selection_set.node, ty, depth + 1)?
                    } else {
                        0
                    }
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(&spread.node.fragment_name.node, ty, depth + 1)?
                }
            };
            total = total.saturating_add(cost);
        }
        Ok(total)
    }

    fn fragment(&mut self, name: &'a Name, ty: Ty, depth: usize) -> Result<u64, CostError> {
        // A missing fragment is a validation error; it costs nothing here.
        let document = self.document;
        let Some((name, fragment)) = document.fragments.get_key_value(name) else {
            return Ok(0);
        };
        if !applies(&fragment.node.type_condition.node.on.node, ty) {
            return Ok(0);
        }
        if let Some(&cost) = self.memo.get(&(name, ty)) {
            return Ok(cost);
        }
        if !self.in_progress.insert((name, ty)) {
            return Err(CostError::FragmentCycle);
        }
        let cost = self.selection_set(&fragment.node.selection_set.node, ty, depth)?;
        self.in_progress.remove(&(name, ty));
        self.memo.insert((name, ty), cost);
        Ok(cost)
    }

    fn field(&mut self, field: &'a Field, parent: Ty, depth: usize) -> Result<u64, CostError> {
        let set = &field.selection_set.node;
        match price(parent, &field.name.node) {
            Price::Calls(calls, ty) => {
                Ok(calls.saturating_add(self.selection_set(set, ty, depth)?))
            }
            Price::Page => {
                let per_item = self.selection_set(set, Ty::AuthorizationProtocolPage, depth)?;
                Ok(per_item
                    .saturating_mul(self.page_size(field))
                    .saturating_add(1))
            }
            Price::Entities => self.entities(field, depth),
        }
    }

    /// `authorizationProtocols`' `pageSize`: 20 when absent, clamped to 1..=100, 100 when not
    /// an integer (coercion refuses that later).
    fn page_size(&self, field: &Field) -> u64 {
        match self.argument(field, "pageSize") {
            None => DEFAULT_PAGE_SIZE,
            Some(ConstValue::Number(n)) => match n.as_i64() {
                Some(n) => n.clamp(1, MAX_PAGE_SIZE as i64) as u64,
                None => MAX_PAGE_SIZE,
            },
            Some(_) => MAX_PAGE_SIZE,
        }
    }

    /// `_entities(representations: …)`: each representation's lookup plus the selection set
    /// priced as its `__typename`; one whose type cannot be read is priced as the dearer type.
    fn entities(&mut self, field: &'a Field, depth: usize) -> Result<u64, CostError> {
        let (mut beneficiaries, mut protocols, mut unknown) = (0u64, 0u64, 0u64);
        let representations = match self.argument(field, "representations") {
            None | Some(ConstValue::Null) => Vec::new(),
            Some(ConstValue::List(items)) => items,
            // Input coercion turns a single value into a list of one.
            Some(single) => vec![single],
        };
        for representation in &representations {
            let typename = match representation {
                ConstValue::Object(fields) => match fields.get("__typename") {
                    Some(ConstValue::String(typename)) => Some(typename.as_str()),
                    _ => None,
                },
                _ => None,
            };
            match typename {
                Some("Beneficiary") => beneficiaries += 1,
                Some("AuthorizationProtocol") => protocols += 1,
                _ => unknown += 1,
            }
        }
        let set = &field.selection_set.node;
        let beneficiary = if beneficiaries + unknown > 0 {
            BENEFICIARY_LOOKUP.saturating_add(self.selection_set(set, Ty::Beneficiary, depth)?)
        } else {
            0
        };
        let protocol = if protocols + unknown > 0 {
            let set_cost = self.selection_set(set, Ty::AuthorizationProtocol, depth)?;
            AUTHORIZATION_PROTOCOL_LOOKUP.saturating_add(set_cost)
        } else {
            0
        };
        Ok(beneficiary
            .saturating_mul(beneficiaries)
            .saturating_add(protocol.saturating_mul(protocols))
            .saturating_add(beneficiary.max(protocol).saturating_mul(unknown)))
    }

    /// An argument's value with the request's variables (or the operation's defaults) put in;
    /// `None` when the argument is absent or is a variable nobody gave (its default applies).
    fn argument(&self, field: &Field, name: &str) -> Option<ConstValue> {
        let value = &field.get_argument(name)?.node;
        let lookup = |variable: Name| self.variable(&variable).cloned();
        if let Ok(value) = value.clone().into_const_with(|v| lookup(v).ok_or(())) {
            return Some(value);
        }
        // Some variable is absent. A bare `$v` leaves the argument unset (it then comes out as
        // null here, having no variables to be anything else); one inside a list or an object
        // reads as null.
        let with_nulls = value
            .clone()
            .into_const_with(|v| Ok::<_, Infallible>(lookup(v).unwrap_or(ConstValue::Null)));
        match with_nulls {
            Ok(ConstValue::Null) => None,
            Ok(value) => Some(value),
            Err(never) => match never {},
        }
    }

    fn variable(&self, name: &Name) -> Option<&'a ConstValue> {
        self.variables
            .get(name)
            .or_else(|| self.defaults.get(name).copied())
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;

    use async_graphql::parser::parse_query;

    use super::*;

    fn cost_with(query: &str, operation_name: Option<&str>, variables: serde_json::Value) -> u64 {
        let document = parse_query(query).expect("the test query parses");
        estimate(&document, operation_name, &Variables::from_json(variables))
    }

    fn cost(query: &str) -> u64 {
        cost_with(query, None, serde_json::json!({}))
    }

    fn try_cost(query: &str) -> Result<u64, CostError> {
        let document = parse_query(query).expect("the test query parses");
        try_estimate(&document, None, &Variables::default())
    }

    #[test]
    fn readme_beneficiary_across_both_upstreams() {
        let query = r#"{
          beneficiary(uniqueKey: "13331584754", subscriberId: "00011008000031015") {
            name
            latestProtocols(limit: 3) { number subject registeredAt status { id description } }
            authorizationProtocols(status: [AWAITING_DOCUMENT, UNDER_ANALYSIS], page: 1, pageSize: 10) {
              hasNext remainingRecords page pageSize
              items {
                protocol status statusCode authType requestedOn analyzedOn authorizationNumber
                professional { name council councilNumber councilState }
                interactions { items { date sector reason observation } }
              }
            }
          }
        }"#;
        // name 2 + latestProtocols 1 + authorizationProtocols 1 + 10 × interactions 1.
        assert_eq!(cost(query), 14);
    }

    #[test]
    fn readme_one_protocol() {
        let query = r#"{ authorizationProtocol(subscriberId: "00011008000027010", protocol: "41750520230601000030") { status interactions { items { reason } } } }"#;
        assert_eq!(cost(query), 2);
    }

    #[test]
    fn readme_partial_results() {
        let query = r#"{ beneficiary(uniqueKey: "00000000500", subscriberId: "00011008000027010") { latestProtocols { number } authorizationProtocols { hasNext } } }"#;
        assert_eq!(cost(query), 2);
    }

    #[test]
    fn readme_mutations() {
        let attach = r#"mutation {
          addAuthorizationAttachments(input: {
            protocol: "41750520230620000004"
            attachments: [{ href: "https://files.example/pedido-medico.pdf" }]
          }) { protocol status statusCode }
        }"#;
        assert_eq!(cost(attach), 2);
        let request = r#"mutation {
          requestAuthorization(input: {
            subscriberId: "00020015000112003"
            professionalName: "DRA. LUCIA"
            professionalCouncil: "CRM"
            professionalCouncilNumber: "123456"
            stateAbbreviation: "RJ"
            attachments: [{ href: "https://files.example/pedido.pdf" }]
          }) { protocol status statusCode professional { name council councilState } }
        }"#;
        assert_eq!(cost(request), 1);
        // The returned protocol's interactions are one more read; aliases count apart.
        let both = "mutation { a: requestAuthorization(input: {}) { interactions { hasNext } } \
                    b: addAuthorizationAttachments(input: {}) { protocol } }";
        assert_eq!(cost(both), 1 + 1 + 2);
    }

    #[test]
    fn benchmark_fan_out() {
        let query = r#"{ beneficiary(uniqueKey: "1", subscriberId: "2") { name latestProtocols { number }
            authorizationProtocols(pageSize: 20) { items { protocol status interactions { items { date reason } } } } } }"#;
        assert_eq!(cost(query), 2 + 1 + 1 + 20);
    }

    #[test]
    fn page_size_defaults_to_20_and_is_clamped() {
        let query = |args: &str| {
            format!(
                "{{ beneficiary(subscriberId: \"1\") {{ authorizationProtocols{args} \
                 {{ items {{ interactions {{ hasNext }} }} }} }} }}"
            )
        };
        assert_eq!(cost(&query("")), 1 + 20);
        assert_eq!(cost(&query("(pageSize: 7)")), 1 + 7);
        assert_eq!(cost(&query("(pageSize: 0)")), 1 + 1);
        assert_eq!(cost(&query("(pageSize: -5)")), 1 + 1);
        assert_eq!(cost(&query("(pageSize: 100000)")), 1 + 100);
        assert_eq!(cost(&query("(pageSize: \"lots\")")), 1 + 100);
        // Without interactions the page size multiplies nothing.
        assert_eq!(
            cost(
                "{ beneficiary(subscriberId: \"1\") { authorizationProtocols(pageSize: 100) { items { protocol } } } }"
            ),
            1
        );
    }

    #[test]
    fn page_size_from_a_variable_or_its_default() {
        let query = "query Q($n: Int!) { beneficiary(subscriberId: \"1\") { \
                     authorizationProtocols(pageSize: $n) { items { interactions { hasNext } } } } }";
        assert_eq!(
            cost_with(query, None, serde_json::json!({ "n": 42 })),
            1 + 42
        );
        assert_eq!(
            cost_with(query, None, serde_json::json!({ "n": 1000 })),
            1 + 100
        );
        // A variable nobody gave: the argument's default (20) applies.
        assert_eq!(cost_with(query, None, serde_json::json!({})), 1 + 20);
        let with_default = "query Q($n: Int = 55) { beneficiary(subscriberId: \"1\") { \
                            authorizationProtocols(pageSize: $n) { items { interactions { hasNext } } } } }";
        assert_eq!(cost_with(with_default, None, serde_json::json!({})), 1 + 55);
        assert_eq!(
            cost_with(with_default, None, serde_json::json!({ "n": 3 })),
            1 + 3
        );
    }

    #[test]
    fn every_alias_counts() {
        let mut aliases = String::new();
        for n in 1..=1785 {
            write!(aliases, " i{n}: interactions(page: {n}) {{ hasNext }}").unwrap();
        }
        let query = format!(
            "{{ beneficiary(subscriberId: \"1\") {{ authorizationProtocols(pageSize: 27) \
             {{ items {{ protocol{aliases} }} }} }} }}"
        );
        assert_eq!(cost(&query), 1 + 27 * 1785);
        // Two aliases of the page, and the same field twice under one key: each counts.
        let twice = "{ beneficiary(subscriberId: \"1\") { \
                     a: authorizationProtocols(pageSize: 2) { items { interactions { hasNext } interactions { hasNext } } } \
                     b: authorizationProtocols(pageSize: 3) { x: items { interactions { hasNext } } y: items { protocol } } \
                     name n2: name } }";
        assert_eq!(cost(twice), (1 + 2 * 2) + (1 + 3) + 2 + 2);
    }

    #[test]
    fn named_and_inline_fragments_are_expanded() {
        let query = "query { beneficiary(subscriberId: \"1\") { ...B ... on Beneficiary { latestProtocols { number } } } \
                     ... { authorizationProtocol(subscriberId: \"1\", protocol: \"2\") { ...P } } }
                     fragment B on Beneficiary { authorizationProtocols(pageSize: 5) { ...Page } }
                     fragment Page on AuthorizationProtocolPage { items { ...P ...P } }
                     fragment P on AuthorizationProtocol { interactions { hasNext } }";
        // latestProtocols 1 + (1 + 5 × 2) + authorizationProtocol 1 + 1.
        assert_eq!(cost(query), 1 + (1 + 5 * 2) + 1 + 1);
        // A fragment on another type contributes nothing there.
        let other = "{ authorizationProtocol(subscriberId: \"1\", protocol: \"2\") { ... on Beneficiary { name } ...B } }
                     fragment B on Beneficiary { name }";
        assert_eq!(cost(other), 1);
    }

    #[test]
    fn free_fields_cost_nothing() {
        let query = "{ __typename __schema { types { name } } _service { sdl } unknown { interactions { hasNext } } \
                     beneficiary(uniqueKey: \"1\") { __typename uniqueKey subscriberId \
                     latestProtocols { number beneficiary { name } requester { name } } } }";
        assert_eq!(cost(query), 1);
        assert_eq!(
            cost("subscription { anything { interactions { hasNext } } }"),
            0
        );
    }

    #[test]
    fn entities_cost_per_representation() {
        let query = "query($r: [_Any!]!) { _entities(representations: $r) { \
                     ... on AuthorizationProtocol { status interactions { hasNext } } \
                     ... on Beneficiary { name latestProtocols { number } } } }";
        let three_protocols = serde_json::json!({ "r": [
            { "__typename": "AuthorizationProtocol", "subscriberId": "1", "protocol": "a" },
            { "__typename": "AuthorizationProtocol", "subscriberId": "1", "protocol": "b" },
            { "__typename": "AuthorizationProtocol", "subscriberId": "1", "protocol": "c" },
        ]});
        // Each: the lookup 1 + interactions 1.
        assert_eq!(cost_with(query, None, three_protocols), 3 * 2);
        let mixed = serde_json::json!({ "r": [
            { "__typename": "Beneficiary", "uniqueKey": "1" },
            { "__typename": "AuthorizationProtocol", "subscriberId": "1", "protocol": "a" },
            { "__typename": "Nope" },
        ]});
        // Beneficiary: name 2 + latestProtocols 1; protocol: 2; unknown: the dearer, 3.
        assert_eq!(cost_with(query, None, mixed), 3 + 2 + 3);
        assert_eq!(cost_with(query, None, serde_json::json!({ "r": [] })), 0);
        // A literal list, one item given by a variable.
        let literal = "query($p: _Any!) { _entities(representations: [\
                       { __typename: \"AuthorizationProtocol\", subscriberId: \"1\", protocol: \"a\" }, $p, \
                       { __typename: \"Beneficiary\", subscriberId: \"1\" }]) { \
                       ... on AuthorizationProtocol { interactions { hasNext } } \
                       ... on Beneficiary { authorizationProtocols(pageSize: 2) { items { interactions { hasNext } } } } } }";
        let p =
            serde_json::json!({ "p": { "__typename": "AuthorizationProtocol", "protocol": "b" } });
        assert_eq!(cost_with(literal, None, p), 2 + 2 + (1 + 2));
        // Representations of AuthorizationProtocol cost their lookup even with nothing costly.
        let bare = "{ _entities(representations: [{ __typename: \"AuthorizationProtocol\" }, \
                    { __typename: \"AuthorizationProtocol\" }]) { __typename } }";
        assert_eq!(cost(bare), 2);
    }

    #[test]
    fn the_operation_name_selects_the_operation() {
        let query = "query Cheap { beneficiary(uniqueKey: \"1\") { latestProtocols { number } } }
                     query Dear { beneficiary(subscriberId: \"1\") { authorizationProtocols(pageSize: 50) \
                     { items { interactions { hasNext } } } } }";
        let none = serde_json::json!({});
        assert_eq!(cost_with(query, Some("Cheap"), none.clone()), 1);
        assert_eq!(cost_with(query, Some("Dear"), none.clone()), 1 + 50);
        // Nothing selected (no name among several, or an unknown one): nothing runs.
        assert_eq!(cost_with(query, None, none.clone()), 0);
        assert_eq!(cost_with(query, Some("Other"), none), 0);
    }

    #[test]
    fn a_fragment_cycle_terminates() {
        let direct = "{ authorizationProtocol(subscriberId: \"1\", protocol: \"2\") { ...A } }
                      fragment A on AuthorizationProtocol { interactions { hasNext } ...A }";
        assert_eq!(try_cost(direct), Err(CostError::FragmentCycle));
        let indirect = "{ beneficiary(subscriberId: \"1\") { ...A } }
                        fragment A on Beneficiary { name ...B }
                        fragment B on Beneficiary { authorizationProtocols { items { ...C } } }
                        fragment C on AuthorizationProtocol { interactions { hasNext } ... on AuthorizationProtocol { ...D } }
                        fragment D on AuthorizationProtocol { ...C }";
        assert_eq!(try_cost(indirect), Err(CostError::FragmentCycle));
        let document = parse_query(indirect).unwrap();
        assert_eq!(estimate(&document, None, &Variables::default()), u64::MAX);
    }

    #[test]
    fn deep_documents_terminate() {
        // A chain of 2,000 fragments, each spreading the next.
        let mut query = String::from(
            "{ authorizationProtocol(subscriberId: \"1\", protocol: \"2\") { ...F0 } }\n",
        );
        for n in 0..2000 {
            writeln!(
                query,
                "fragment F{n} on AuthorizationProtocol {{ ...F{} }}",
                n + 1
            )
            .unwrap();
        }
        query.push_str("fragment F2000 on AuthorizationProtocol { interactions { hasNext } }");
        assert_eq!(try_cost(&query), Err(CostError::TooDeep));
        // As deep as the parser lets a selection set go, under a free type: walked no further.
        let depth = 60;
        let nested = format!(
            "{{ beneficiary(uniqueKey: \"1\") {{ latestProtocols {{ {}number{} }} }} }}",
            "beneficiary { ".repeat(depth),
            " }".repeat(depth)
        );
        assert_eq!(try_cost(&nested), Ok(1));
        // Inline fragments nested as deep as the parser allows, on a costly type.
        let inline = format!(
            "{{ authorizationProtocol(subscriberId: \"1\", protocol: \"2\") {{ {}interactions {{ hasNext }}{} }} }}",
            "... { ".repeat(depth),
            " }".repeat(depth)
        );
        assert_eq!(try_cost(&inline), Ok(2));
    }

    #[test]
    fn fragments_doubling_saturate_without_walking_every_path() {
        // F0 spreads F1 twice, F1 spreads F2 twice, ...: 2^n paths, n fragments to price.
        let fragments = |levels: usize| {
            let mut query = String::from(
                "{ authorizationProtocol(subscriberId: \"1\", protocol: \"2\") { ...F0 } }\n",
            );
            for n in 0..levels {
                let m = n + 1;
                writeln!(
                    query,
                    "fragment F{n} on AuthorizationProtocol {{ ...F{m} ...F{m} }}"
                )
                .unwrap();
            }
            writeln!(
                query,
                "fragment F{levels} on AuthorizationProtocol {{ interactions {{ hasNext }} }}"
            )
            .unwrap();
            query
        };
        assert_eq!(try_cost(&fragments(40)), Ok(1 + (1u64 << 40)));
        assert_eq!(try_cost(&fragments(100)), Ok(u64::MAX));
    }

    #[test]
    fn a_64_kib_document_is_priced() {
        // Aliases of interactions under one page of 100, as many as 64 KiB hold.
        let mut query = String::from(
            "{ beneficiary(subscriberId: \"1\") { authorizationProtocols(pageSize: 100) { items {",
        );
        let mut aliases = 0u64;
        while query.len() < 64 * 1024 - 40 {
            write!(query, " i{aliases}: interactions {{ hasNext }}").unwrap();
            aliases += 1;
        }
        query.push_str(" } } } }");
        assert!(query.len() <= 64 * 1024);
        assert_eq!(cost(&query), 1 + 100 * aliases);

        // 64 KiB of representations, each an AuthorizationProtocol with interactions.
        let mut representations = Vec::new();
        let mut size = 0;
        while size < 64 * 1024 {
            representations.push(
                serde_json::json!({ "__typename": "AuthorizationProtocol", "protocol": "1" }),
            );
            size += 50;
        }
        let n = representations.len() as u64;
        let query = "query($r: [_Any!]!) { _entities(representations: $r) { \
                     ... on AuthorizationProtocol { a: interactions { hasNext } b: interactions { hasNext } } } }";
        assert_eq!(
            cost_with(query, None, serde_json::json!({ "r": representations })),
            n * 3
        );
    }
}

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
mod tests;

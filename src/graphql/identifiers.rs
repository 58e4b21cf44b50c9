//! Identifiers must arrive as strings. GraphQL's `ID` accepts an integer too, but a 17-digit
//! matrícula sent as a JSON number (`11008000027010`) has lost its leading zeros before the
//! gateway sees it, and would read as another subscriber or as `NOT_FOUND`. So any identifier
//! given as a number, in the document or in the variables, is refused with `BAD_USER_INPUT`
//! before anything runs: a deliberate deviation from GraphQL's `ID` input coercion.

use async_graphql::{
    Name, Pos, Positioned, ServerError, Value, Variables,
    parser::types::{ExecutableDocument, OperationDefinition, Selection, SelectionSet},
};

use super::codes::BAD_USER_INPUT;

/// Every argument and input field that holds an identifier is named one of these, in
/// arguments, input objects and `_entities` representations alike.
const IDENTIFIER_NAMES: [&str; 3] = ["uniqueKey", "subscriberId", "protocol"];

/// How deep fragments and values are followed; validation refuses deeper documents anyway.
const MAX_DEPTH: usize = 64;

/// The first identifier of `operation` given as a number, as the error to answer; else where
/// the operation's arguments are named (see [`ArgumentPositions`]).
pub fn check(
    document: &ExecutableDocument,
    operation: &OperationDefinition,
    variables: &Variables,
) -> Result<ArgumentPositions, ServerError> {
    for definition in &operation.variable_definitions {
        let name = &definition.node.name.node;
        let Some(value) = variables.get(name) else {
            continue;
        };
        let base = definition.node.var_type.node.base.to_string();
        let is_id = base.trim_matches(['[', ']', '!']) == "ID";
        if let Some(argument) = numeric_identifier(value, is_id.then_some(name.as_str()), 0) {
            return Err(refusal(&argument, definition.pos));
        }
    }
    let mut fragments_seen = Vec::new();
    let mut positions = ArgumentPositions {
        declared: operation
            .variable_definitions
            .iter()
            .map(|definition| definition.node.name.node.clone())
            .collect(),
        ..ArgumentPositions::default()
    };
    walk(
        document,
        &operation.selection_set,
        &mut fragments_seen,
        &mut positions,
        0,
    )?;
    Ok(positions)
}

/// Where the arguments of the operation are named. The engine's validation reports a value
/// of the wrong type (literal or variable) at its argument's name: an error located there is
/// the client's input, `BAD_USER_INPUT`, not a document that does not fit the schema.
/// (The engine reports a variable the operation does not declare there too: such an argument
/// is left out, so that mistake stays a validation failure.)
#[derive(Debug, Default)]
pub struct ArgumentPositions {
    positions: Vec<Pos>,
    declared: Vec<Name>,
}

impl ArgumentPositions {
    pub fn contains(&self, pos: Pos) -> bool {
        self.positions.contains(&pos)
    }
}

fn walk<'a>(
    document: &'a ExecutableDocument,
    set: &'a Positioned<SelectionSet>,
    fragments_seen: &mut Vec<&'a Name>,
    positions: &mut ArgumentPositions,
    depth: usize,
) -> Result<(), ServerError> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    for selection in &set.node.items {
        match &selection.node {
            Selection::Field(field) => {
                for (name, value) in &field.node.arguments {
                    let declared = &positions.declared;
                    let undeclared = value
                        .node
                        .clone()
                        .into_const_with(|variable| {
                            declared
                                .contains(&variable)
                                .then_some(Value::Null)
                                .ok_or(())
                        })
                        .is_err();
                    if !undeclared {
                        positions.positions.push(name.pos);
                    }
                    let as_id = IDENTIFIER_NAMES
                        .contains(&name.node.as_str())
                        .then_some(name.node.as_str());
                    // A literal holding a variable is checked through the variables.
                    let Some(literal) = value.node.clone().into_const() else {
                        continue;
                    };
                    if let Some(argument) = numeric_identifier(&literal, as_id, 0) {
                        return Err(refusal(&argument, value.pos));
                    }
                }
                walk(
                    document,
                    &field.node.selection_set,
                    fragments_seen,
                    positions,
                    depth + 1,
                )?;
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                if fragments_seen.contains(&name) {
                    continue;
                }
                fragments_seen.push(name);
                if let Some(fragment) = document.fragments.get(name) {
                    walk(
                        document,
                        &fragment.node.selection_set,
                        fragments_seen,
                        positions,
                        depth + 1,
                    )?;
                }
            }
            Selection::InlineFragment(inline) => {
                walk(
                    document,
                    &inline.node.selection_set,
                    fragments_seen,
                    positions,
                    depth + 1,
                )?;
            }
        }
    }
    Ok(())
}

/// The name of the first identifier in `value` that is a number. `as_id` names `value` itself
/// when it is in an identifier's place.
fn numeric_identifier(value: &Value, as_id: Option<&str>, depth: usize) -> Option<String> {
    if depth > MAX_DEPTH {
        return None;
    }
    match value {
        Value::Number(_) => as_id.map(str::to_owned),
        Value::List(items) => items
            .iter()
            .find_map(|item| numeric_identifier(item, as_id, depth + 1)),
        Value::Object(fields) => fields.iter().find_map(|(key, field)| {
            let as_id = IDENTIFIER_NAMES
                .contains(&key.as_str())
                .then_some(key.as_str());
            numeric_identifier(field, as_id, depth + 1)
        }),
        _ => None,
    }
}

fn refusal(argument: &str, pos: Pos) -> ServerError {
    let mut error = ServerError::new(
        format!(
            "{argument} must be a string: an identifier sent as a number loses its leading zeros"
        ),
        Some(pos),
    );
    let extensions = error.extensions.get_or_insert_with(Default::default);
    extensions.set("code", BAD_USER_INPUT);
    extensions.set("argument", argument);
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::order::selected_operation;

    fn refused(query: &str, variables: serde_json::Value) -> Option<String> {
        let document = async_graphql::parser::parse_query(query).unwrap();
        let operation = selected_operation(&document, None).unwrap();
        let variables = Variables::from_json(variables);
        check(&document, operation, &variables)
            .err()
            .map(|err| err.extensions.unwrap().get("argument").unwrap().to_string())
    }

    #[test]
    fn identifiers_as_numbers_are_refused_wherever_they_are_given() {
        let none = serde_json::json!({});
        assert_eq!(
            refused(
                "{ beneficiary(subscriberId: 11008000027010) { name } }",
                none.clone()
            ),
            Some("\"subscriberId\"".into())
        );
        assert_eq!(
            refused(
                "query($s: ID!) { beneficiary(subscriberId: $s) { name } }",
                serde_json::json!({ "s": 11008000027010_u64 })
            ),
            Some("\"s\"".into())
        );
        assert_eq!(
            refused(
                "mutation($i: AddAuthorizationAttachmentsInput!) { addAuthorizationAttachments(input: $i) { status } }",
                serde_json::json!({ "i": { "protocol": 417505, "attachments": [] } })
            ),
            Some("\"protocol\"".into())
        );
        assert_eq!(
            refused(
                "query($r: [_Any!]!) { _entities(representations: $r) { __typename } }",
                serde_json::json!({ "r": [{ "__typename": "Beneficiary", "uniqueKey": 13331584754_u64 }] })
            ),
            Some("\"uniqueKey\"".into())
        );
        assert_eq!(
            refused(
                "{ ...F } fragment F on Query { authorizationProtocol(subscriberId: \"1\", protocol: 2) { status } }",
                none.clone()
            ),
            Some("\"protocol\"".into())
        );
    }

    #[test]
    fn strings_and_numbers_that_are_not_identifiers_pass() {
        assert_eq!(
            refused(
                "query($s: ID!, $n: Int) { beneficiary(subscriberId: $s) { latestProtocols(limit: $n) { number } authorizationProtocols(pageSize: 3) { hasNext } } }",
                serde_json::json!({ "s": "00011008000027010", "n": 3 })
            ),
            None
        );
    }
}

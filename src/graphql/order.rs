//! Puts response fields back in the order the query asked for them.
//!
//! async-graphql 7 inserts an object's fields as their resolvers finish, so a field waiting on
//! an upstream lands after its siblings. The spec asks for the query's order ("ordered maps ...
//! in the order in which they appear in the query"), and a person reading GraphiQL expects it.

use async_graphql::{
    Name, Value,
    indexmap::IndexMap,
    parser::types::{
        DocumentOperations, ExecutableDocument, OperationDefinition, Selection, SelectionSet,
    },
};

/// The operation a request runs: the only one, or the one named.
pub fn selected_operation<'a>(
    document: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        (DocumentOperations::Multiple(_), None) => None,
    }
}

/// Reorders `data` after the selection sets of the operation of `document` that ran.
pub fn order_like_document(
    data: &mut Value,
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) {
    if let Some(operation) = selected_operation(document, operation_name) {
        reorder(data, &[&operation.selection_set.node], document);
    }
}

fn reorder(value: &mut Value, selections: &[&SelectionSet], document: &ExecutableDocument) {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<(&Name, Vec<&SelectionSet>)> = Vec::new();
            for set in selections {
                collect(set, document, &mut keys, 0);
            }
            let mut ordered = IndexMap::with_capacity(object.len());
            for (key, subselections) in keys {
                if let Some((key, mut field)) = object.swap_remove_entry(key) {
                    reorder(&mut field, &subselections, document);
                    ordered.insert(key, field);
                }
            }
            // Anything the walk did not name (there should be nothing) keeps its place at the end.
            ordered.extend(object.drain(..));
            *object = ordered;
        }
        Value::List(items) => {
            for item in items {
                reorder(item, selections, document);
            }
        }
        _ => {}
    }
}

/// Response keys in query order, fragments expanded, with the selection sets of each key.
fn collect<'a>(
    set: &'a SelectionSet,
    document: &'a ExecutableDocument,
    keys: &mut Vec<(&'a Name, Vec<&'a SelectionSet>)>,
    depth: usize,
) {
    // Validation refuses fragment cycles before execution; the bound is for documents that
    // failed validation and still reach here with data (they cannot, but stay safe).
    if depth > 64 {
        return;
    }
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                let key = &field.node.response_key().node;
                let sub = &field.node.selection_set.node;
                match keys.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, subs)) => subs.push(sub),
                    None => keys.push((key, vec![sub])),
                }
            }
            Selection::FragmentSpread(spread) => {
                if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) {
                    collect(&fragment.node.selection_set.node, document, keys, depth + 1);
                }
            }
            Selection::InlineFragment(inline) => {
                collect(&inline.node.selection_set.node, document, keys, depth + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_query_through_aliases_fragments_and_lists() {
        let query = "query Q { b { z a: y ...F } } fragment F on T { list { q p } x }";
        let mut data = async_graphql::value!({
            "b": { "x": 1, "list": [{ "p": 1, "q": 2 }], "a": 3, "z": 4 }
        });
        let document = async_graphql::parser::parse_query(query).unwrap();
        order_like_document(&mut data, &document, None);
        assert_eq!(
            serde_json::to_string(&data).unwrap(),
            r#"{"b":{"z":4,"a":3,"list":[{"q":2,"p":1}],"x":1}}"#
        );
    }
}

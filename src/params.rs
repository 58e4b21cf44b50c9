//! The parameters of a GraphQL-over-HTTP request (`query`, `operationName`, `variables`,
//! `extensions`), from a POST's JSON body or a GET's query string, checked before anything
//! runs: a parameter of the wrong type is the client's mistake (400), not an empty request.

use serde::Deserialize;
use serde_json::{Map, Value};

/// Why the parameters are not a GraphQL request; the message goes to the client as is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadParams(pub(crate) String);

impl BadParams {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The request in a POST body (`application/json`).
pub(crate) fn from_json_body(body: &[u8]) -> Result<async_graphql::Request, BadParams> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BadParams::new(
            "the body is empty: send JSON {\"query\": ..., \"variables\": {...}}",
        ));
    }
    // The usual body, read without a map of every key; anything else (not an object, a
    // parameter given twice) takes the general path, which says what is wrong with it. Only
    // an object: serde would read a struct from an array too.
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if is_object && let Ok(params) = serde_json::from_slice::<Params>(body) {
        return request(
            params.query,
            params.operation_name,
            params.variables,
            params.extensions,
        );
    }
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        BadParams::new(format!(
            "the body is not JSON ({err}): send {{\"query\": ..., \"variables\": {{...}}}}"
        ))
    })?;
    let params = match value {
        Value::Object(params) => params,
        Value::Array(_) => {
            return Err(BadParams::new(
                "batched requests are not supported; send one operation per request",
            ));
        }
        _ => {
            return Err(BadParams::new(
                "the body must be a JSON object {\"query\": ..., \"variables\": {...}}",
            ));
        }
    };
    let mut params = params;
    request(
        params.remove("query"),
        params.remove("operationName"),
        params.remove("variables"),
        params.remove("extensions"),
    )
}

/// The four parameters of a JSON body; other keys are ignored, as the general path does.
#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    query: Option<Value>,
    #[serde(default, rename = "operationName")]
    operation_name: Option<Value>,
    #[serde(default)]
    variables: Option<Value>,
    #[serde(default)]
    extensions: Option<Value>,
}

/// The request in a GET's query string, where `variables` and `extensions` are JSON text.
pub(crate) fn from_query_string(query: &str) -> Result<async_graphql::Request, BadParams> {
    let mut params = Map::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let name = name.into_owned();
        if !matches!(
            name.as_str(),
            "query" | "operationName" | "variables" | "extensions"
        ) {
            continue;
        }
        let value = if matches!(name.as_str(), "variables" | "extensions") && !value.is_empty() {
            serde_json::from_str(&value)
                .map_err(|_| BadParams::new(format!("`{name}` must be a JSON object")))?
        } else {
            Value::String(value.into_owned())
        };
        if params.insert(name.clone(), value).is_some() {
            return Err(BadParams::new(format!("`{name}` is given more than once")));
        }
    }
    // An empty `variables=` (a form with the field left blank) means none.
    let mut optional = |name: &str| {
        params
            .remove(name)
            .filter(|value| !matches!(value, Value::String(s) if s.is_empty()))
    };
    let (operation_name, variables, extensions) = (
        optional("operationName"),
        optional("variables"),
        optional("extensions"),
    );
    request(
        params.remove("query"),
        operation_name,
        variables,
        extensions,
    )
}

/// Checks each parameter's JSON type, as the spec gives it; `null` means absent. Every request
/// carries `query`, but for a persisted query, whose hash in `extensions` stands for it.
fn request(
    query: Option<Value>,
    operation_name: Option<Value>,
    variables: Option<Value>,
    extensions: Option<Value>,
) -> Result<async_graphql::Request, BadParams> {
    let extensions = object("extensions", extensions)?;
    let query = match query {
        Some(Value::String(query)) => query,
        None | Some(Value::Null)
            if extensions
                .as_ref()
                .is_some_and(|e| e.contains_key("persistedQuery")) =>
        {
            String::new()
        }
        None | Some(Value::Null) => {
            return Err(BadParams::new(
                "the request has no `query`: send {\"query\": \"{ ... }\"}",
            ));
        }
        Some(_) => return Err(BadParams::new("`query` must be a string")),
    };
    let mut request = async_graphql::Request::new(query);
    match operation_name {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) => request = request.operation_name(name),
        Some(_) => return Err(BadParams::new("`operationName` must be a string")),
    }
    if let Some(variables) = object("variables", variables)? {
        request = request.variables(async_graphql::Variables::from_json(Value::Object(
            variables,
        )));
    }
    if let Some(extensions) = extensions {
        for (name, value) in extensions {
            let value = async_graphql::Value::from_json(value)
                .map_err(|_| BadParams::new("`extensions` must be a JSON object"))?;
            request.extensions.0.insert(name, value);
        }
    }
    Ok(request)
}

fn object(name: &str, value: Option<Value>) -> Result<Option<Map<String, Value>>, BadParams> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(BadParams::new(format!("`{name}` must be a JSON object"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(value: Value) -> Result<async_graphql::Request, BadParams> {
        from_json_body(value.to_string().as_bytes())
    }

    fn message(result: Result<async_graphql::Request, BadParams>) -> String {
        result.expect_err("refused").0
    }

    #[test]
    fn a_full_body_becomes_a_request() {
        let request = body(json!({
            "query": "query Q($n: String!) { __type(name: $n) { name } }",
            "operationName": "Q",
            "variables": { "n": "Query" },
            "extensions": { "some": "value" },
            "ignored": true
        }))
        .unwrap();
        assert_eq!(
            request.query,
            "query Q($n: String!) { __type(name: $n) { name } }"
        );
        assert_eq!(request.operation_name.as_deref(), Some("Q"));
        assert_eq!(
            request.variables.into_value().into_json().unwrap(),
            json!({ "n": "Query" })
        );
        assert_eq!(
            request.extensions.0["some"],
            async_graphql::Value::from("value")
        );
    }

    #[test]
    fn null_optional_parameters_mean_absent() {
        let request = body(json!({
            "query": "{ __typename }",
            "operationName": null,
            "variables": null,
            "extensions": null
        }))
        .unwrap();
        assert_eq!(request.operation_name, None);
        assert!(request.variables.is_empty());
        assert!(request.extensions.0.is_empty());
    }

    #[test]
    fn each_parameter_of_the_wrong_type_is_named() {
        for invalid in [
            json!({ "obj": "ect" }),
            json!(0),
            json!(false),
            json!(["array"]),
        ] {
            let query = message(body(json!({ "query": invalid })));
            assert_eq!(query, "`query` must be a string");
            let name = message(body(
                json!({ "query": "{ __typename }", "operationName": invalid }),
            ));
            assert_eq!(name, "`operationName` must be a string");
        }
        for invalid in [json!("string"), json!(0), json!(false), json!(["array"])] {
            for parameter in ["variables", "extensions"] {
                let refused = message(body(
                    json!({ "query": "{ __typename }", parameter: invalid }),
                ));
                assert_eq!(refused, format!("`{parameter}` must be a JSON object"));
            }
        }
    }

    #[test]
    fn bodies_that_are_no_request_are_refused() {
        assert!(message(from_json_body(b"")).contains("empty"));
        assert!(message(from_json_body(b"{ \"not a JSON")).contains("not JSON"));
        assert!(message(body(json!([{ "query": "{ __typename }" }]))).contains("batched"));
        assert!(message(body(json!("{ __typename }"))).contains("JSON object"));
        assert!(message(body(json!({ "qeury": "{ __typename }" }))).contains("no `query`"));
        assert!(message(body(json!({ "query": null }))).contains("no `query`"));
    }

    #[test]
    fn a_persisted_query_needs_no_document() {
        let hash = json!({ "persistedQuery": { "version": 1, "sha256Hash": "abc" } });
        let request = body(json!({ "extensions": hash })).unwrap();
        assert_eq!(request.query, "");
        assert!(request.extensions.0.contains_key("persistedQuery"));
        let encoded: String =
            url::form_urlencoded::byte_serialize(hash.to_string().as_bytes()).collect();
        let over_get = from_query_string(&format!("extensions={encoded}")).unwrap();
        assert_eq!(over_get.query, "");
    }

    #[test]
    fn a_query_string_carries_json_text_for_variables_and_extensions() {
        let request = from_query_string(
            "query=query%20Q(%24n%3A%20String!)%7B__type(name%3A%24n)%7Bname%7D%7D&operationName=Q&variables=%7B%22n%22%3A%22Query%22%7D&extensions=%7B%7D",
        )
        .unwrap();
        assert_eq!(request.operation_name.as_deref(), Some("Q"));
        assert_eq!(
            request.variables.into_value().into_json().unwrap(),
            json!({ "n": "Query" })
        );

        let blank = from_query_string("query=%7B__typename%7D&variables=&operationName=").unwrap();
        assert!(blank.variables.is_empty());
        assert_eq!(blank.operation_name, None);
    }

    #[test]
    fn a_query_string_with_bad_parameters_is_refused() {
        assert!(message(from_query_string("")).contains("no `query`"));
        assert!(message(from_query_string("query=%7Ba%7D&variables=nope")).contains("`variables`"));
        assert!(
            message(from_query_string("query=%7Ba%7D&variables=%5B1%5D")).contains("`variables`")
        );
        assert!(message(from_query_string("query=%7Ba%7D&extensions=1")).contains("`extensions`"));
        assert!(message(from_query_string("query=a&query=b")).contains("more than once"));
    }
}

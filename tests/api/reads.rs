//! Reading the graph: values, field-name styles, filters and paging.

use serde_json::json;
use wiremock::{
    Mock, ResponseTemplate,
    matchers::{header, method, path, query_param},
};

use crate::helpers::{API, MOSIA_TOKEN, TestApp, Upstreams, fixture, list_get, mosia_get};

#[tokio::test]
async fn latest_protocols_sends_mosias_headers_and_decodes_the_documented_body() {
    let up = Upstreams::start().await;
    mosia_get()
        .and(header("Authorization", MOSIA_TOKEN))
        .and(header("chaveUnica", "13331584754"))
        .and(header("totalProtocolos", "3"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("mosia/ultimos-protocolos.200.json")),
        )
        .expect(1)
        .mount(&up.mosia)
        .await;
    let app = up.app().await;

    let response = app
        .query(
            r#"{ beneficiary(uniqueKey: "13331584754") {
                uniqueKey subscriberId name
                latestProtocols(limit: 3) {
                    number subject registeredAt updatedAt
                    occurrenceType { id description } status { id description }
                    beneficiary { name uniqueKey } requester { name uniqueKey }
                } } }"#,
        )
        .await;

    insta::assert_json_snapshot!(response, @r#"
    {
      "data": {
        "beneficiary": {
          "latestProtocols": [
            {
              "beneficiary": {
                "name": "Patrick Oliveira Cabral",
                "uniqueKey": "13331584754"
              },
              "number": "1111120240710000017",
              "occurrenceType": {
                "description": "Atendimento Ativo",
                "id": 171
              },
              "registeredAt": "2024-07-10T15:35:28.313Z",
              "requester": {
                "name": "Patrick Oliveira Cabral",
                "uniqueKey": "13331584754"
              },
              "status": {
                "description": "Em Atendimento (externo)",
                "id": 386
              },
              "subject": "Reembolso exame",
              "updatedAt": "2024-07-10T15:35:28.896Z"
            },
            {
              "beneficiary": {
                "name": "Patrick Oliveira Cabral",
                "uniqueKey": "13331584754"
              },
              "number": "1111120240710000015",
              "occurrenceType": {
                "description": "Atendimento Ativo",
                "id": 171
              },
              "registeredAt": "2024-07-10T14:31:49.235Z",
              "requester": {
                "name": "Patrick Oliveira Cabral",
                "uniqueKey": "13331584754"
              },
              "status": {
                "description": "Em Atendimento (externo)",
                "id": 386
              },
              "subject": "Reembolso exame",
              "updatedAt": "2024-07-10T14:31:49.743Z"
            },
            {
              "beneficiary": {
                "name": "Patrick Oliveira Cabral",
                "uniqueKey": "13331584754"
              },
              "number": "1111120240709000003",
              "occurrenceType": {
                "description": "Auto-atendimento",
                "id": 155
              },
              "registeredAt": "2024-07-09T15:00:43.091Z",
              "requester": {
                "name": "Patrick Oliveira Cabral",
                "uniqueKey": "13331584754"
              },
              "status": {
                "description": "Realizado",
                "id": 310
              },
              "subject": null,
              "updatedAt": "2024-07-09T15:00:43.091Z"
            }
          ],
          "name": "Patrick Oliveira Cabral",
          "subscriberId": null,
          "uniqueKey": "13331584754"
        }
      }
    }
    "#);
}

#[tokio::test]
async fn name_comes_from_the_first_totvs_protocol_without_a_unique_key() {
    let up = Upstreams::start().await;
    up.list_documented(1).await;
    let app = up.app().await;

    let response = app
        .query(r#"{ beneficiary(subscriberId: "00011008000027010") { name authorizationProtocols { items { beneficiaryName } } } }"#)
        .await;

    assert_eq!(
        response["data"]["beneficiary"]["name"],
        "HERNANDES ALVES DA SILVA"
    );
    assert!(response.get("errors").is_none(), "{response}");
}

#[tokio::test]
async fn authorization_protocols_read_every_field_name_style() {
    let up = Upstreams::start().await;
    let body = json!({
        "items": [
            // The seed's style, exactly as documented.
            fixture("totvs/protocols.200.json")["items"][0],
            { "protocol": "2", "name": "CAMEL", "subscriberId": "00011008000027010",
              "professionalName": "ANA", "professionalCouncil": "CRO", "professionalCouncilNumber": "77",
              "stateAbbreviation": "SP", "status": "1", "idOnHealthInsurer": "AUT-2", "authType": "4",
              "solicitationDate": "2024-03-01", "analysisDate": "2024-03-02" },
            { "protocol": "3", "name": "HYPHEN", "subscriber-id": "00011008000027010",
              "professional-name": "BIA", "professional-council": "CRM", "professional-council-number": "88",
              "state-abbreviation": "RJ", "status": "8", "id-on-health-insurer": "", "auth-type": "3",
              "solicitation-date": "20240305", "analysis-date": "" },
            { "protocol": "4", "name": "SNAKE", "subscriber_id": "00011008000027010",
              "professional_name": "CAIO", "professional_council": "", "professional_council_number": "",
              "state_abbreviation": "", "status": "5", "id_on_health_insurer": "", "auth_type": "2",
              "solicitation_date": "05/03/2024", "analysis_date": "not a date" }
        ],
        "hasNext": false,
        "remainingRecords": 0
    });
    list_get()
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app
        .query(
            r#"{ beneficiary(subscriberId: "00011008000027010") { authorizationProtocols {
                hasNext remainingRecords page pageSize
                items { protocol subscriberId beneficiaryName status statusCode authorizationNumber
                        authType requestedOn analyzedOn
                        professional { name council councilNumber councilState } } } } }"#,
        )
        .await;

    insta::assert_json_snapshot!(response, @r#"
    {
      "data": {
        "beneficiary": {
          "authorizationProtocols": {
            "hasNext": false,
            "items": [
              {
                "analyzedOn": null,
                "authType": null,
                "authorizationNumber": null,
                "beneficiaryName": "HERNANDES ALVES DA SILVA",
                "professional": {
                  "council": "CRM",
                  "councilNumber": "334455",
                  "councilState": null,
                  "name": "ANDRE"
                },
                "protocol": "41750520230601000030",
                "requestedOn": null,
                "status": "UNDER_ANALYSIS",
                "statusCode": "7",
                "subscriberId": "00011008000027010"
              },
              {
                "analyzedOn": "2024-03-02",
                "authType": "DENTAL",
                "authorizationNumber": "AUT-2",
                "beneficiaryName": "CAMEL",
                "professional": {
                  "council": "CRO",
                  "councilNumber": "77",
                  "councilState": "SP",
                  "name": "ANA"
                },
                "protocol": "2",
                "requestedOn": "2024-03-01",
                "status": "AUTHORIZED",
                "statusCode": "1",
                "subscriberId": "00011008000027010"
              },
              {
                "analyzedOn": null,
                "authType": "HOSPITALIZATION",
                "authorizationNumber": null,
                "beneficiaryName": "HYPHEN",
                "professional": {
                  "council": "CRM",
                  "councilNumber": "88",
                  "councilState": "RJ",
                  "name": "BIA"
                },
                "protocol": "3",
                "requestedOn": "2024-03-05",
                "status": "DENIED",
                "statusCode": "8",
                "subscriberId": "00011008000027010"
              },
              {
                "analyzedOn": null,
                "authType": "SADT",
                "authorizationNumber": null,
                "beneficiaryName": "SNAKE",
                "professional": {
                  "council": null,
                  "councilNumber": null,
                  "councilState": null,
                  "name": "CAIO"
                },
                "protocol": "4",
                "requestedOn": "2024-03-05",
                "status": "UNKNOWN",
                "statusCode": "5",
                "subscriberId": "00011008000027010"
              }
            ],
            "page": 1,
            "pageSize": 20,
            "remainingRecords": 0
          }
        }
      }
    }
    "#);
}

#[tokio::test]
async fn filters_and_paging_travel_as_totvs_query_parameters() {
    let up = Upstreams::start().await;
    list_get()
        .and(header(
            "Authorization",
            "Bearer eyJhbGciOiJSUzI1NiJ9.sandbox.signature",
        ))
        .and(query_param("status", "1,2,9"))
        .and(query_param("page", "3"))
        .and(query_param("pageSize", "7"))
        .and(query_param("protocol", "417"))
        .and(query_param("protocolOrAuthorization", "AUT-9"))
        .and(query_param("solicitationDate", "2024-03-05"))
        .and(query_param("order", "-protocol"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [], "hasNext": true, "remainingRecords": 12
        })))
        .expect(1)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app
        .query(
            r#"{ beneficiary(subscriberId: "00011008000027010") { authorizationProtocols(
                status: [AWAITING_DOCUMENT, AUTHORIZED, PARTIALLY_AUTHORIZED, AUTHORIZED],
                protocol: "417", protocolOrAuthorization: "AUT-9", solicitationDate: "2024-03-05",
                page: 3, pageSize: 7, order: "-protocol") { items { protocol } hasNext remainingRecords page pageSize } } }"#,
        )
        .await;

    assert_eq!(
        response["data"]["beneficiary"]["authorizationProtocols"],
        json!({ "items": [], "hasNext": true, "remainingRecords": 12, "page": 3, "pageSize": 7 })
    );
}

#[tokio::test]
async fn interactions_of_each_protocol_are_read_from_totvs() {
    let up = Upstreams::start().await;
    up.list_documented(None).await;
    Mock::given(method("GET"))
        .and(path(format!(
            "{API}/protocols/41750520230601000030/interactions"
        )))
        .and(query_param("page", "1"))
        .and(query_param("pageSize", "20"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("totvs/interactions.200.json")),
        )
        .expect(1)
        .mount(&up.totvs)
        .await;
    let app = up.app().await;

    let response = app
        .query(
            r#"{ beneficiary(subscriberId: "00011008000027010") { authorizationProtocols { items {
                protocol interactions { hasNext remainingRecords items { sector beneficiaryName date reason observation } } } } } }"#,
        )
        .await;

    insta::assert_json_snapshot!(response, @r#"
    {
      "data": {
        "beneficiary": {
          "authorizationProtocols": {
            "items": [
              {
                "interactions": {
                  "hasNext": false,
                  "items": [
                    {
                      "beneficiaryName": "HERNANDES ALVES DA SILVA",
                      "date": "2023-06-20",
                      "observation": "Encaminhar a documentação do beneficiário",
                      "reason": "FALTA DE DOCUMENTAÇÃO DO BENEFICIÁRIO",
                      "sector": "DEPARTAMENTO PADRAO"
                    }
                  ],
                  "remainingRecords": 0
                },
                "protocol": "41750520230601000030"
              }
            ]
          }
        }
      }
    }
    "#);
}

#[tokio::test]
async fn authorization_protocol_finds_one_protocol_or_null() {
    let (app, sandbox) = TestApp::with_sandbox().await;
    let found = app
        .query(r#"{ authorizationProtocol(subscriberId: "00011008000027010", protocol: "41750520230601000030") { protocol beneficiaryName status } }"#)
        .await;
    assert_eq!(
        found["data"]["authorizationProtocol"],
        json!({ "protocol": "41750520230601000030", "beneficiaryName": "HERNANDES ALVES DA SILVA", "status": "UNDER_ANALYSIS" })
    );

    let missing = app
        .query(r#"{ authorizationProtocol(subscriberId: "00011008000027010", protocol: "99999999999999999999") { protocol } }"#)
        .await;
    assert_eq!(missing["data"]["authorizationProtocol"], json!(null));
    assert!(missing.get("errors").is_none(), "{missing}");
    drop(sandbox);
}

#[tokio::test]
async fn the_sandbox_serves_both_upstreams_through_the_same_clients() {
    let (app, sandbox) = TestApp::with_sandbox().await;
    let ex = protocol_graph::sandbox::Sandbox::examples();
    let response = app
        .query_with(
            r#"query($uk: ID, $sid: ID) { beneficiary(uniqueKey: $uk, subscriberId: $sid) {
                name latestProtocols(limit: 10) { number registeredAt }
                page1: authorizationProtocols(pageSize: 20) { hasNext remainingRecords items { protocol status interactions { items { reason } } } }
                page2: authorizationProtocols(page: 2, pageSize: 20) { hasNext items { protocol } } } }"#,
            json!({ "uk": ex.unique_key, "sid": ex.subscriber_id }),
        )
        .await;
    assert!(response.get("errors").is_none(), "{response}");
    let b = &response["data"]["beneficiary"];
    assert!(!b["name"].as_str().unwrap().is_empty());
    let page1 = b["page1"]["items"].as_array().unwrap();
    let page2 = b["page2"]["items"].as_array().unwrap();
    assert_eq!(page1.len(), 20);
    assert_eq!(b["page1"]["hasNext"], true);
    assert_eq!(
        b["page1"]["remainingRecords"].as_u64().unwrap() as usize,
        page2.len()
    );
    assert_eq!(b["page2"]["hasNext"], false);
    let calls = sandbox.calls();
    assert_eq!(calls.totvs_token, 1, "one login for the whole query");
    assert_eq!(calls.totvs_protocols, 2, "one call per page");
    assert_eq!(
        calls.totvs_interactions, 20,
        "one call per protocol on page 1"
    );
    assert_eq!(calls.mosia, 1);
}

//! The OpenAPI 3.1 document, made from [`ROUTES`](crate::api::ROUTES) and
//! the schemas here; committed as `schemas/openapi.json` (a test diffs the
//! two) and served at `GET /v1/openapi.json`.

use serde_json::{json, Map, Value};

use crate::api::ROUTES;

const ID: &str = "^[0-9a-f]{32}$";

/// The request and response schemas the routes name.
fn schemas() -> Value {
    json!({
        "Error": {
            "type": "object",
            "required": ["kind", "message"],
            "properties": {
                "kind": {"type": "string", "enum": shredvault::ErrorKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>()},
                "message": {"type": "string"}
            }
        },
        "CreateSubject": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "identifiers": {
                    "type": "object",
                    "description": "Identifier kind (e.g. email) to value.",
                    "additionalProperties": {"type": "string"}
                }
            }
        },
        "Identifier": {
            "type": "object",
            "additionalProperties": false,
            "required": ["kind", "value"],
            "properties": {"kind": {"type": "string"}, "value": {"type": "string"}}
        },
        "SubjectRef": {
            "type": "object",
            "required": ["subject"],
            "properties": {"subject": {"type": "string", "pattern": ID}}
        },
        "RecordRef": {
            "type": "object",
            "required": ["record"],
            "properties": {"record": {"type": "string", "pattern": ID}}
        },
        "PutRecord": {
            "type": "object",
            "additionalProperties": false,
            "required": ["category", "data"],
            "properties": {
                "category": {"type": "string"},
                "data": {"type": "string", "contentEncoding": "base64"}
            }
        },
        "UpdateRecord": {
            "type": "object",
            "additionalProperties": false,
            "required": ["data"],
            "properties": {"data": {"type": "string", "contentEncoding": "base64"}}
        },
        "Expire": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "now": {"type": "integer", "description": "Unix seconds; the clock if absent."},
                "force": {"type": "boolean", "description": "Allow a now more than a day ahead."}
            }
        },
        "Record": {
            "type": "object",
            "required": ["record", "subject", "category", "version", "created_at", "updated_at", "data"],
            "properties": {
                "record": {"type": "string", "pattern": ID},
                "subject": {"type": "string", "pattern": ID},
                "category": {"type": "string"},
                "version": {"type": "integer"},
                "created_at": {"type": "integer"},
                "updated_at": {"type": "integer"},
                "data": {"type": "string", "contentEncoding": "base64"}
            }
        },
        "RecordList": {
            "type": "object",
            "required": ["records"],
            "properties": {"records": {"type": "array", "items": {"type": "object"}}}
        },
        "Receipt": {"type": "object", "description": "The signed erasure receipt."},
        "Done": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
        "PolicyText": {
            "type": "object", "additionalProperties": false, "required": ["policy"],
            "properties": {"policy": {"type": "string", "description": "The policy file's TOML."}}
        },
        "NewRootKey": {
            "type": "object", "additionalProperties": false, "required": ["new_root_key"],
            "properties": {"new_root_key": {"type": "string", "pattern": "^([0-9a-fA-F]{64}|pkcs11:.*)$"}}
        },
        "ScanLines": {
            "type": "string",
            "description": "NDJSON: one Record object a line, or {\"error\": {\"kind\", \"message\"}} for a record that failed to read."
        },
        "BackupFile": {
            "type": "string", "format": "binary",
            "description": "The backup file (its format: core/src/vault/backup.rs). The `x-shredvault-backup` header holds what it is (JSON: id, vault, created_at, window_ends_at, store_entries, ledger_entries, bytes, token_day_key)."
        },
        "OpenRequest": {
            "type": "object", "additionalProperties": false, "required": ["kind", "received"],
            "properties": {
                "kind": {"type": "string", "enum": ["access", "rectification", "erasure", "restriction", "portability", "objection"]},
                "received": {"type": "integer"}
            }
        },
        "RequestRef": {
            "type": "object", "required": ["request"],
            "properties": {"request": {"type": "string", "pattern": ID}}
        },
        "Extend": {
            "type": "object", "additionalProperties": false, "required": ["reason"],
            "properties": {"reason": {"type": "string", "maxLength": 1000}}
        },
        "Close": {
            "type": "object", "additionalProperties": false, "required": ["at"],
            "properties": {"at": {"type": "integer"}}
        },
        "RequestList": {
            "type": "object", "required": ["requests"],
            "properties": {"requests": {"type": "array", "items": {"type": "object"}}}
        },
        "Directive": {
            "type": "object", "additionalProperties": false, "required": ["directive"],
            "properties": {"directive": {"type": "string", "enum": ["erase", "hand_over"]}, "to": {"type": "string"}}
        },
        "AuditList": {
            "type": "object", "required": ["entries"],
            "properties": {"entries": {"type": "array", "items": {"type": "object"}}}
        },
        "Identifiers": {
            "type": "object",
            "required": ["identifiers"],
            "properties": {"identifiers": {"type": "array", "items": {
                "type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2
            }}}
        },
        "Event": {
            "type": "object", "additionalProperties": false, "required": ["event", "at"],
            "properties": {"event": {"type": "string"}, "at": {"type": "integer", "description": "Unix seconds."}}
        },
        "Flag": {
            "type": "object", "additionalProperties": false, "required": ["flag", "on"],
            "properties": {"flag": {"type": "string"}, "on": {"type": "boolean"}}
        },
        "Consent": {
            "type": "object", "additionalProperties": false, "required": ["purpose", "given", "at"],
            "properties": {"purpose": {"type": "string"}, "given": {"type": "boolean"}, "at": {"type": "integer"}}
        },
        "OnOff": {
            "type": "object", "additionalProperties": false, "required": ["on"],
            "properties": {"on": {"type": "boolean"}}
        },
        "PublicKey": {
            "type": "object", "required": ["public_key"],
            "properties": {"public_key": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}
        },
        "Purged": {
            "type": "object", "required": ["records_purged"],
            "properties": {"records_purged": {"type": "integer"}}
        },
        "Object": {"type": "object"}
    })
}

/// The document.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for r in ROUTES {
        let mut params = Vec::new();
        for name in ["subject", "record", "request"] {
            if r.path.contains(&format!("{{{name}}}")) {
                params.push(json!({
                    "name": name, "in": "path", "required": true,
                    "schema": {"type": "string", "pattern": ID}
                }));
            }
        }
        if r.operation == "scan" {
            params.push(json!({
                "name": "category", "in": "query", "required": true,
                "schema": {"type": "string"}
            }));
        }
        if r.operation == "ledger" {
            params.push(json!({
                "name": "from", "in": "query", "required": false,
                "schema": {"type": "integer", "minimum": 0}
            }));
        }
        if r.purpose {
            params.push(json!({
                "name": "purpose", "in": "query", "required": true,
                "schema": {"type": "string"}
            }));
        }
        let error = json!({
            "description": "An error: its kind says which.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        });
        let media = match r.response {
            "ScanLines" => "application/x-ndjson",
            "BackupFile" => "application/octet-stream",
            _ => "application/json",
        };
        let mut op = json!({
            "operationId": r.operation,
            "summary": r.summary,
            "description": format!("Needs the `{}` grant.", r.class.name()),
            "parameters": params,
            "responses": {
                r.status.to_string(): {
                    "description": "Done.",
                    "content": {media: {"schema": {"$ref": format!("#/components/schemas/{}", r.response)}}}
                },
                "default": error
            }
        });
        if let Some(request) = r.request {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{request}")}}}
            });
        }
        paths
            .entry(r.path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("an object")
            .insert(r.method.to_string(), op);
    }
    paths.insert(
        "/v1/openapi.json".into(),
        json!({"get": {
            "operationId": "openapi",
            "summary": "This document.",
            "responses": {"200": {"description": "The OpenAPI document.", "content": {"application/json": {"schema": {"type": "object"}}}}}
        }}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "shredvault",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A privacy vault served over HTTP/JSON. Every call is made as an authenticated client (a bearer token, the peer uid of a Unix socket, or a TLS client certificate) within its grant; a call outside it is Forbidden and audited."
        },
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}, {}],
        "paths": paths
    })
}

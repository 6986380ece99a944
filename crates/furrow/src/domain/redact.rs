//! Redaction for anything that leaves memory in a readable form (events, logs): by field name
//! and by value.

use serde_json::Value;

pub const REDACTED: &str = "[REDACTED]";

/// Names (case-insensitive, `-`/`_` ignored) whose values are always hidden.
fn is_secret_name(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    (n.contains("token") && n != "tokentype")
        || n.contains("secret")
        || n.contains("password")
        || n == "authorization"
        || n == "proxyauthorization"
        || n == "cookie"
        || n == "setcookie"
        || n == "code"
        || n == "codeverifier"
}

/// Hides secret values in a JSON document (by key) and then any known secret value anywhere.
pub fn redact_body(body: &str, secrets: &[&str]) -> String {
    let by_name = match serde_json::from_str::<Value>(body) {
        Ok(mut value) => {
            redact_value(&mut value);
            value.to_string()
        }
        Err(_) => body.to_string(),
    };
    redact_values(&by_name, secrets)
}

fn redact_value(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret_name(key) && !v.is_null() {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact_value(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        _ => {}
    }
}

/// Headers as a JSON object string, secret ones hidden.
pub fn redact_headers(headers: &[(String, String)], secrets: &[&str]) -> String {
    let map: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            let value = if is_secret_name(k) {
                REDACTED.to_string()
            } else {
                redact_values(v, secrets)
            };
            (k.clone(), Value::String(value))
        })
        .collect();
    Value::Object(map).to_string()
}

/// Replaces every occurrence of each known secret (ignoring very short ones, which would
/// mangle ordinary text).
pub fn redact_values(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 6) {
        if out.contains(*secret) {
            out = out.replace(*secret, REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_by_name_and_by_value() {
        let body = r#"{"access_token":"at-123456","refresh_token":"rt-123456","scope":"ag1","nested":{"clientSecret":"s"},"note":"echo rt-123456"}"#;
        let out = redact_body(body, &["rt-123456"]);
        assert!(
            !out.contains("at-123456") && !out.contains("rt-123456"),
            "{out}"
        );
        assert!(out.contains("\"scope\":\"ag1\""));
        assert!(!out.contains("\"s\""));

        let plain = redact_body("not json, has rt-123456", &["rt-123456"]);
        assert_eq!(plain, "not json, has [REDACTED]");

        let headers = redact_headers(
            &[
                ("Authorization".into(), "Basic abc".into()),
                ("x-echo".into(), "rt-123456".into()),
                ("content-type".into(), "json".into()),
            ],
            &["rt-123456"],
        );
        assert!(!headers.contains("Basic abc") && !headers.contains("rt-123456"));
        assert!(headers.contains("json"));
    }
}

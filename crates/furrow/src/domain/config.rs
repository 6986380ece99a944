//! The Configurations service's keys: defaults, validation, inheritance.

use serde_json::{json, Map, Value};

/// Owner-level defaults of every supported key.
pub fn defaults() -> Map<String, Value> {
    match json!({
        "organizationDataSync": "ALL",
        "fieldsAutoSync": true,
        "operationsAutoSync": true,
        "operationsProcessingRange": 12,
        "syncPartnerData": false,
        "operationsFilteredGeojson": true,
        "operationsRemoveOutliers": true,
        "operationsOutliersLimit": 3,
        "operationsImageCreation": false,
        "unitMeasurement": "DEFAULT",
    }) {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// Checks one key and value; the error names what is wrong.
pub fn validate(key: &str, value: &Value) -> Result<(), String> {
    match key {
        "organizationDataSync" => match value.as_str() {
            Some("ALL") | Some("SELECTED_ONLY") => Ok(()),
            _ => Err("must be ALL or SELECTED_ONLY".into()),
        },
        "unitMeasurement" => match value.as_str() {
            Some("DEFAULT") | Some("METRIC") | Some("IMPERIAL") => Ok(()),
            _ => Err("must be DEFAULT, METRIC or IMPERIAL".into()),
        },
        "operationsOutliersLimit" => match value.as_f64() {
            Some(limit) if limit > 0.0 && limit <= 100.0 => Ok(()),
            _ => Err("must be a number of standard deviations above 0 (at most 100)".into()),
        },
        "fieldsAutoSync"
        | "operationsAutoSync"
        | "syncPartnerData"
        | "operationsFilteredGeojson"
        | "operationsRemoveOutliers"
        | "operationsImageCreation" => value
            .is_boolean()
            .then_some(())
            .ok_or_else(|| "must be true or false".into()),
        "operationsProcessingRange" => match value.as_u64() {
            Some(1..=120) => Ok(()),
            _ => Err("must be a whole number of months from 1 to 120".into()),
        },
        _ => Err(format!(
            "unknown configuration key (supported: {})",
            defaults().keys().cloned().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Validates a patch (a JSON object of keys to set). `null` is refused: owner values cannot be
/// unset, and a user's keys are dropped all together with DELETE.
pub fn validate_patch(patch: &Value) -> Result<&Map<String, Value>, (String, String)> {
    let Value::Object(map) = patch else {
        return Err(("body".into(), "must be a JSON object".into()));
    };
    for (key, value) in map {
        if key == "apiOwnerUsername" || key == "leafUserId" {
            return Err((key.clone(), "is read-only".into()));
        }
        validate(key, value).map_err(|reason| (key.clone(), reason))?;
    }
    Ok(map)
}

/// The effective configuration: defaults < owner's keys < user's keys.
pub fn effective(
    owner: Option<&Map<String, Value>>,
    user: Option<&Map<String, Value>>,
) -> Map<String, Value> {
    let mut merged = defaults();
    for layer in [owner, user].into_iter().flatten() {
        for (k, v) in layer {
            merged.insert(k.clone(), v.clone());
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inheritance_and_validation() {
        let owner =
            json!({"organizationDataSync": "SELECTED_ONLY", "operationsProcessingRange": 24});
        let user = json!({"operationsProcessingRange": 6});
        let e = effective(owner.as_object(), user.as_object());
        assert_eq!(e["organizationDataSync"], "SELECTED_ONLY");
        assert_eq!(e["operationsProcessingRange"], 6);
        assert_eq!(e["fieldsAutoSync"], true);
        assert!(validate_patch(&json!({"organizationDataSync": "SOME"})).is_err());
        assert!(validate_patch(&json!({"nope": 1})).is_err());
        assert!(validate_patch(&json!({"operationsProcessingRange": 0})).is_err());
        assert!(validate_patch(&json!({"fieldsAutoSync": "yes"})).is_err());
        assert!(validate_patch(&json!({"fieldsAutoSync": null})).is_err());
        assert!(validate_patch(&json!([1])).is_err());
        assert!(validate_patch(&json!({"syncPartnerData": true})).is_ok());
        assert!(validate_patch(
            &json!({"unitMeasurement": "IMPERIAL", "operationsOutliersLimit": 2.5})
        )
        .is_ok());
        assert!(validate_patch(&json!({"unitMeasurement": "imperial"})).is_err());
        assert!(validate_patch(&json!({"operationsOutliersLimit": 0})).is_err());
        assert!(validate_patch(&json!({"operationsImageCreation": 1})).is_err());
    }
}

//! The Configurations service's keys: defaults, validation, inheritance.

use serde_json::{json, Map, Value};

/// Owner-level defaults of every key Leaf documents (configurations_overview), with Leaf's
/// default values (but `customDataSync`, see below). Keys that change John Deere data in
/// furrow: `organizationDataSync`, `customDataSync`,
/// `fieldsAutoSync`, `operationsAutoSync`, `operationsProcessingRange`, the machine-data keys
/// (`operationsFilteredGeojson`, `operationsRemoveOutliers`, `operationsOutliersLimit`,
/// `operationsImageCreation`, `operationsImageAttributeCreation`, `unitMeasurement`). The others
/// are kept and validated so that Leaf clients can set them; furrow does not act on them (yet).
pub fn defaults() -> Map<String, Value> {
    match json!({
        "organizationDataSync": "ALL",
        // Leaf documents `true` (every field a preview until enabled); furrow's default syncs
        // everything, as a new deployment's users expect (README, Configurations).
        "customDataSync": false,
        "fieldsAutoSync": true,
        "operationsAutoSync": true,
        "implementsAutoSync": false,
        "machinesAutoSync": false,
        "operatorsAutoSync": false,
        "productsAutoSync": false,
        "zonesAutoSync": false,
        "syncPartnerData": false,
        "automaticFixBoundary": true,
        "fieldsAttachIntersection": 0.01,
        "fieldsAutoMerge": false,
        "fieldsMergeIntersection": 0.01,
        "cleanupStandardGeojson": true,
        "originalOperationData": true,
        "enableOutsideFieldGeojson": false,
        "enableGeoparquetOutput": false,
        "enablePolygonOutput": false,
        "cropOptional": "required",
        "seedRateOptional": "required",
        "outOfStandardOperations": false,
        "fieldOperationCreation": true,
        "operationsFilteredGeojson": true,
        "operationsRemoveOutliers": true,
        "operationsOutliersLimit": 3,
        "operationsMergeRange": 5,
        "operationsMergeRangeHarvested": 21,
        "operationsProcessingRange": 12,
        "splitOperationsByField": true,
        "splitOperationsByProvider": true,
        "splitOperationsByTillType": false,
        "summarizeByProductEntry": true,
        "enableOperationsSession": false,
        "operationsImageCreation": false,
        "operationsImageAsGeoTiff": false,
        "irrigationProcessingRange": 12,
        "unitMeasurement": "DEFAULT",
    }) {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// Keys Leaf accepts without a documented default: valid when set, absent until then.
const WITHOUT_DEFAULT: [&str; 6] = [
    "cleanupRules",
    "operationsImageAttributeCreation",
    "geoimagesResolution",
    "geoimagesShape",
    "geoimagesProjection",
    "geoimagesColorRamp",
];

const RULE_OPERATORS: [&str; 6] = ["GT", "GTE", "LT", "LTE", "EQ", "NE"];

fn boolean(value: &Value) -> Result<(), String> {
    value
        .is_boolean()
        .then_some(())
        .ok_or_else(|| "must be true or false".into())
}

fn number_in(value: &Value, low: f64, high: f64, what: &str) -> Result<(), String> {
    match value.as_f64() {
        Some(v) if (low..=high).contains(&v) => Ok(()),
        _ => Err(format!("must be {what}")),
    }
}

fn whole_in(value: &Value, low: u64, high: u64, what: &str) -> Result<(), String> {
    match value.as_u64() {
        Some(v) if (low..=high).contains(&v) => Ok(()),
        _ => Err(format!("must be {what}")),
    }
}

/// `{property: [{operator, value}]}` (Leaf's cleanup rules).
fn cleanup_rules(value: &Value) -> Result<(), String> {
    let Value::Object(rules) = value else {
        return Err("must be an object of property → list of {operator, value}".into());
    };
    for (property, list) in rules {
        let Value::Array(list) = list else {
            return Err(format!("{property}: must be a list of {{operator, value}}"));
        };
        for rule in list {
            let operator = rule.get("operator").and_then(Value::as_str);
            if !operator.is_some_and(|o| RULE_OPERATORS.contains(&o)) {
                return Err(format!(
                    "{property}: operator must be one of {}",
                    RULE_OPERATORS.join(", ")
                ));
            }
            if rule.get("value").is_none_or(Value::is_null) {
                return Err(format!("{property}: each rule needs a value"));
            }
        }
    }
    Ok(())
}

/// `{planted|applied|harvested|tillage: {property: bool}}`.
fn image_attributes(value: &Value) -> Result<(), String> {
    let Value::Object(kinds) = value else {
        return Err("must be an object of operation type → {property: true|false}".into());
    };
    for (kind, properties) in kinds {
        if !matches!(
            kind.as_str(),
            "planted" | "applied" | "harvested" | "tillage"
        ) {
            return Err(format!(
                "{kind}: not an operation type (planted, applied, harvested, tillage)"
            ));
        }
        let ok = properties
            .as_object()
            .is_some_and(|p| p.values().all(Value::is_boolean));
        if !ok {
            return Err(format!("{kind}: must map properties to true or false"));
        }
    }
    Ok(())
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
        "operationsProcessingRange" | "irrigationProcessingRange" => {
            whole_in(value, 1, 120, "a whole number of months from 1 to 120")
        }
        "operationsMergeRange" | "operationsMergeRangeHarvested" => {
            whole_in(value, 0, 365, "a whole number of days from 0 to 365")
        }
        "fieldsAttachIntersection" => number_in(value, 0.0, 100.0, "a percentage from 0 to 100"),
        "fieldsMergeIntersection" => number_in(value, 0.01, 100.0, "a percentage from 0.01 to 100"),
        "cropOptional" | "seedRateOptional" => match value {
            Value::String(s) if s == "required" || s == "optional" => Ok(()),
            Value::Object(_) => Ok(()),
            _ => Err("must be \"required\", \"optional\" or Leaf's object form".into()),
        },
        "cleanupRules" => cleanup_rules(value),
        "operationsImageAttributeCreation" => image_attributes(value),
        "geoimagesResolution" => number_in(value, f64::MIN_POSITIVE, 1e6, "a positive number"),
        "geoimagesShape" | "geoimagesProjection" => value
            .is_string()
            .then_some(())
            .ok_or_else(|| "must be a string".into()),
        "geoimagesColorRamp" => match value {
            Value::String(_) | Value::Object(_) => Ok(()),
            _ => Err("must be a ramp name or an object".into()),
        },
        key if defaults().get(key).is_some_and(Value::is_boolean) => boolean(value),
        _ => Err(format!(
            "unknown configuration key (Leaf's keys: {}, {})",
            defaults().keys().cloned().collect::<Vec<_>>().join(", "),
            WITHOUT_DEFAULT.join(", ")
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
        // Every key Leaf documents is accepted with a valid value.
        let leaf = json!({
            "customDataSync": false, "fieldsAttachIntersection": 1, "fieldsMergeIntersection": 0.5,
            "geoimagesResolution": 2.5, "geoimagesShape": "POINT", "geoimagesProjection": "EPSG:4326",
            "geoimagesColorRamp": "RdYlGn", "operationsMergeRange": 7, "cropOptional": "optional",
            "cleanupRules": {"wetMass": [{"operator": "GT", "value": 0.0}]},
            "operationsImageAttributeCreation": {"harvested": {"wetMass": true, "elevation": false}},
        });
        assert!(
            validate_patch(&leaf).is_ok(),
            "{:?}",
            validate_patch(&leaf).err()
        );
        assert!(validate_patch(
            &json!({"cleanupRules": {"wetMass": [{"operator": "ABOUT", "value": 1}]}})
        )
        .is_err());
        assert!(
            validate_patch(&json!({"operationsImageAttributeCreation": {"sprayed": {}}})).is_err()
        );
        assert!(validate_patch(&json!({"fieldsMergeIntersection": 0})).is_err());
        assert!(validate_patch(&json!({"geoimagesShape": 3})).is_err());
    }
}

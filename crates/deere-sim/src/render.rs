//! JSON shapes of `deere-api.md` §11, with absolute links built from the simulator's base URL.

use serde_json::{json, Value};

use crate::world::{
    iso, BoundaryRec, ClientRec, EquipmentRec, FarmRec, FieldRec, FileRec, OperationRec,
    OperatorRec, Org,
};

/// `{base}` is `http://host:port/platform`; `root` is `http://host:port`.
pub struct Links<'a> {
    pub base: &'a str,
    pub root: &'a str,
}

pub fn link(rel: &str, uri: String) -> Value {
    json!({"@type": "Link", "rel": rel, "uri": uri})
}

/// A tombstone in a delta: only `self` and `delete` links.
pub fn deleted(type_name: &str, id: &str, self_uri: String) -> Value {
    json!({
        "@type": type_name,
        "id": id,
        "links": [link("self", self_uri.clone()), link("delete", self_uri)],
    })
}

impl Links<'_> {
    pub fn org_uri(&self, org: &str) -> String {
        format!("{}/organizations/{org}", self.base)
    }

    pub fn organization(&self, org: &Org, client_key: &str) -> Value {
        let o = self.org_uri(&org.id);
        let mut links = vec![link("self", o.clone())];
        if org.connected_apps.contains(client_key) {
            for rel in [
                "fields",
                "farms",
                "clients",
                "boundaries",
                "files",
                "machines",
                "implements",
                "operators",
            ] {
                links.push(link(rel, format!("{o}/{rel}")));
            }
            links.push(link(
                "manage_connections",
                format!(
                    "{}/connections/{client_key}/connections-dialog?orgId={}",
                    self.root, org.id
                ),
            ));
        } else {
            links.push(link(
                "connections",
                format!(
                    "{}/connections/{client_key}/select-organizations",
                    self.root
                ),
            ));
        }
        json!({
            "@type": "Organization", "id": org.id, "name": org.name,
            "type": "customer", "member": org.member, "internal": false, "links": links,
        })
    }

    pub fn client(&self, org: &str, c: &ClientRec) -> Value {
        let o = self.org_uri(org);
        let s = format!("{o}/clients/{}", c.id);
        json!({
            "@type": "Client", "id": c.id, "name": c.name, "archived": false,
            "links": [link("self", s.clone()), link("fields", format!("{s}/fields")),
                      link("farms", format!("{s}/farms")), link("owningOrganization", o)],
        })
    }

    pub fn farm(&self, org: &str, f: &FarmRec) -> Value {
        let o = self.org_uri(org);
        let s = format!("{o}/farms/{}", f.id);
        json!({
            "@type": "Farm", "id": f.id, "name": f.name, "archived": false,
            "clientUri": format!("{o}/clients/{}", f.client_id),
            "links": [link("self", s.clone()), link("fields", format!("{s}/fields")),
                      link("owningOrganization", o)],
        })
    }

    pub fn field_uri(&self, org: &str, field: &str) -> String {
        format!("{}/fields/{field}", self.org_uri(org))
    }

    pub fn field(&self, org: &str, f: &FieldRec) -> Value {
        let o = self.org_uri(org);
        let s = self.field_uri(org, &f.id);
        let mut links = vec![
            link("self", s.clone()),
            link("clients", format!("{s}/clients")),
            link("farms", format!("{s}/farms")),
            link("owningOrganization", o),
            link("boundaries", format!("{s}/boundaries")),
        ];
        if let Some(b) = f.active_boundary() {
            links.push(link("activeBoundary", format!("{s}/boundaries/{}", b.id)));
        }
        links.push(link("fieldOperation", format!("{s}/fieldOperations")));
        json!({
            "@type": "Field", "id": f.id, "name": f.name, "archived": f.archived,
            "lastModifiedTime": iso(&f.modified), "links": links,
        })
    }

    pub fn boundary(&self, org: &str, field: &str, b: &BoundaryRec) -> Value {
        let fu = self.field_uri(org, field);
        let point = |p: &(f64, f64)| json!({"@type": "Point", "lat": p.1, "lon": p.0});
        let ring = |pts: &[(f64, f64)], kind: &str| {
            json!({"@type": "Ring", "type": kind, "passable": kind == "exterior",
                   "points": pts.iter().map(point).collect::<Vec<_>>()})
        };
        let mut rings = vec![ring(&b.exterior, "exterior")];
        rings.extend(b.interiors.iter().map(|r| ring(r, "interior")));
        let lats = b.exterior.iter().map(|p| p.1);
        let lons = b.exterior.iter().map(|p| p.0);
        let (max_lat, min_lat) = (
            lats.clone().fold(f64::MIN, f64::max),
            lats.fold(f64::MAX, f64::min),
        );
        let (max_lon, min_lon) = (
            lons.clone().fold(f64::MIN, f64::max),
            lons.fold(f64::MAX, f64::min),
        );
        let area = (b.area_ha() * 100.0).round() / 100.0;
        json!({
            "@type": "Boundary", "id": b.id, "name": b.name, "sourceType": "HandDrawn",
            "createdTime": iso(&b.created), "modifiedTime": iso(&b.modified),
            "area": {"@type": "MeasurementAsDouble", "valueAsDouble": area, "unit": "ha"},
            "workableArea": {"@type": "MeasurementAsDouble", "valueAsDouble": area, "unit": "ha"},
            "multipolygons": [{"@type": "Polygon", "rings": rings}],
            "extent": {"@type": "Extent",
                       "topLeft": {"@type": "Point", "lat": max_lat, "lon": min_lon},
                       "bottomRight": {"@type": "Point", "lat": min_lat, "lon": max_lon}},
            "active": b.active, "archived": false, "irrigated": false,
            "signalType": "dtiSignalTypeRTK",
            "links": [link("self", format!("{fu}/boundaries/{}", b.id)),
                      link("owningOrganization", self.org_uri(org)),
                      link("field", fu)],
        })
    }

    pub fn operation_uri(&self, op: &str) -> String {
        format!("{}/fieldOperations/{op}", self.base)
    }

    pub fn operation(
        &self,
        org: &str,
        field: &str,
        op: &OperationRec,
        embed_measurements: bool,
    ) -> Value {
        let s = self.operation_uri(&op.id);
        let machine_id: Value = op
            .machine_id
            .parse::<u64>()
            .map_or_else(|_| json!(op.machine_id), |n| json!(n));
        let machine = json!({
            "@type": "FieldOperationMachine", "erid": op.machine_erid,
            "machineId": machine_id, "vin": op.machine_vin,
            "operators": [{"@type": "Operator", "operatorId": op.operator_id, "name": op.operator_name}],
        });
        let mut value = json!({
            "@type": "FieldOperation", "id": op.id, "fieldOperationType": op.operation_type,
            "adaptMachineType": adapt_machine_type(&op.kind()), "cropSeason": op.crop_season,
            "startDate": iso(&op.start), "endDate": iso(&op.end), "modifiedTime": iso(&op.modified),
            "fieldOperationMachines": [machine],
            "links": [link("organization", self.org_uri(org)),
                      link("field", self.field_uri(org, field)),
                      link("self", s.clone()),
                      link("measurementTypes", format!("{s}/measurementTypes")),
                      link("shapeFileAsync", format!("{}/fieldOps/{}", self.base, op.id))],
        });
        if let Some(crop) = &op.crop_name {
            value["cropName"] = json!(crop);
        }
        if let Some(product) = &op.product_name {
            match op.kind().as_str() {
                "application" => {
                    // The newer contract: a list of products.
                    value["products"] = json!([{"@type": "Product", "name": product, "tankMix": false,
                        "rate": {"@type": "EventMeasurement", "value": 32.0, "unitId": "floz1ac-1"}}]);
                }
                _ => {
                    value["varieties"] = json!([{"@type": "Product", "productType": "SEED", "name": product, "tankMix": false}]);
                }
            }
        }
        if embed_measurements {
            value["measurementTypes"] = json!({"@type": "FieldOperationMeasurements",
                "measurements": self.measurements(op)});
        }
        value
    }

    /// Measurement totals per operation type.
    pub fn measurements(&self, op: &OperationRec) -> Vec<Value> {
        let s = self.operation_uri(&op.id);
        let m =
            |v: f64, unit: &str| json!({"@type": "EventMeasurement", "value": v, "unitId": unit});
        let area = m(op.area_ha, "ha");
        let (name, category, mut body) = match op.kind().as_str() {
            "seeding" => (
                "SeedingRateResult",
                "Result",
                json!({"area": area, "averageMaterial": m(op.total * 250.0, "seeds1ha-1"),
                       "totalMaterial": m(op.total * 250.0 * op.area_ha, "seeds")}),
            ),
            "application" => (
                "ApplicationRateResult",
                "Result",
                json!({"area": area, "averageMaterial": m(op.total / 10.0, "l1ha-1"),
                       "totalMaterial": m(op.total / 10.0 * op.area_ha, "l")}),
            ),
            "harvest" => (
                "HarvestYieldResult",
                "Result",
                json!({"area": area, "yield": m(op.total * op.area_ha, "bu"),
                       "averageYield": m(op.total, "bu1ha-1"),
                       "averageMoisture": m(17.9, "prcnt")}),
            ),
            _ => (
                "TillageDepthResult",
                "Result",
                json!({"area": area, "averageDepth": m((op.total / 40.0).round(), "cm")}),
            ),
        };
        body["@type"] = json!("FieldOperationMeasurement");
        body["measurementName"] = json!(name);
        body["measurementCategory"] = json!(category);
        body["links"] = json!([
            link("self", format!("{s}/measurementTypes/{name}")),
            link("fieldOperation", s)
        ]);
        vec![body]
    }

    pub fn file_uri(&self, id: &str) -> String {
        format!("{}/files/{id}", self.base)
    }

    pub fn file(&self, org: &str, f: &FileRec) -> Value {
        let s = self.file_uri(&f.id);
        json!({
            "@type": "File", "id": f.id, "name": f.name, "type": f.file_type,
            "createdTime": iso(&f.created), "modifiedTime": iso(&f.modified),
            "nativeSize": f.size, "source": f.source, "transferPending": false,
            "visibleViaShare": "owned", "shared": false, "status": f.status, "archived": false,
            "links": [link("self", s.clone()), link("owningOrganization", self.org_uri(org)),
                      link("partnerships", format!("{s}/partnerships"))],
        })
    }
}

impl Links<'_> {
    /// A machine or an implement, in the shape of John Deere's equipment API.
    pub fn equipment(&self, org: &str, e: &EquipmentRec) -> Value {
        let rel = if e.kind == "Machine" {
            "machines"
        } else {
            "implements"
        };
        let s = format!("{}/{rel}/{}", self.org_uri(org), e.id);
        let mut value = json!({
            "@type": e.kind, "id": e.id, "ERID": e.erid, "name": e.name,
            "serialNumber": e.serial_number, "modelYear": e.model_year.to_string(),
            "make": {"@type": "EquipmentMake", "name": e.make},
            "type": {"@type": "EquipmentType", "name": e.category},
            "model": {"@type": "EquipmentModel", "name": e.model},
            "archived": false,
            "links": [link("self", s), link("owningOrganization", self.org_uri(org))],
        });
        if e.kind == "Machine" {
            value["vin"] = json!(e.serial_number);
        }
        if let Some(machine) = &e.attached_to {
            value["machine"] = json!({"@type": "Machine", "id": machine});
        }
        value
    }

    pub fn operator(&self, org: &str, o: &OperatorRec) -> Value {
        json!({
            "@type": "Operator", "id": o.id, "name": o.name,
            "dateModified": iso(&o.modified), "archived": o.archived,
            "links": [link("self", format!("{}/operators/{}", self.org_uri(org), o.id))],
        })
    }
}

fn adapt_machine_type(kind: &str) -> &'static str {
    match kind {
        "harvest" => "combine",
        "application" => "sprayer",
        "seeding" => "seeder",
        "tillage" => "tillage",
        _ => "unknown",
    }
}

/// John Deere's error body.
pub fn errors(message: &str) -> Value {
    json!({"@type": "Errors",
           "errors": [{"@type": "Error", "guid": uuid::Uuid::new_v4().to_string(), "message": message}],
           "otherAttributes": {}})
}

//! The Operations Center platform API (`/platform/...`), the pre-signed downloads and the
//! organization connections page.

use std::collections::HashMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::render::{deleted, errors, link};
use crate::world::{Stamp, World};
use crate::{content, oauth, Grant, SigRec, Sim, SimState, Subscription, UnconnectedBehaviour};

pub(crate) const SIGNATURE: &str = "x-deere-signature";
pub(crate) const DEERE_JSON: &str = "application/vnd.deere.axiom.v3+json";
pub(crate) const DEERE_JSON_UTF8: &str = "application/vnd.deere.axiom.v3+json;charset=UTF-8";
/// A measurement's map image.
pub(crate) const DEERE_IMAGE_JSON: &str = "application/vnd.deere.axiom.v3.image+json";

/// A JSON body with John Deere's content type and caching headers.
pub(crate) fn deere_json(value: &Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, DEERE_JSON_UTF8),
            (header::CACHE_CONTROL, "no-store"),
        ],
        value.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, deere_json(&errors(message))).into_response()
}

fn access_denied() -> Response {
    error(StatusCode::FORBIDDEN, "Access Denied")
}

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "The specified resource does not exist",
    )
}

fn missing_scope(scope: &str) -> Response {
    error(
        StatusCode::FORBIDDEN,
        &format!("The client does not have a proper access for this API (requires scope {scope})"),
    )
}

/// Whether a path is a collection (for the `emptyList` fault).
pub(crate) fn is_collection_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/platform/") else {
        return false;
    };
    let last = rest
        .rsplit('/')
        .next()
        .and_then(|s| s.split(';').next())
        .unwrap_or("");
    matches!(
        last,
        "organizations"
            | "clients"
            | "farms"
            | "fields"
            | "boundaries"
            | "fieldOperations"
            | "files"
            | "measurementTypes"
    )
}

/// A parsed platform request.
struct Req {
    method: Method,
    /// Path segments below `/platform`, matrix parameters removed.
    segs: Vec<String>,
    /// Path below the host without matrix parameters (for links and signature keys).
    clean_path: String,
    start: Option<usize>,
    count: Option<usize>,
    query: HashMap<String, String>,
    raw_query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

impl Req {
    fn parse(method: Method, uri: &Uri, headers: HeaderMap, body: Bytes) -> Self {
        let path = uri.path();
        let rest = path.strip_prefix("/platform").unwrap_or(path);
        let mut segs = Vec::new();
        let (mut start, mut count) = (None, None);
        for raw in rest.split('/').filter(|s| !s.is_empty()) {
            let mut parts = raw.split(';');
            let name = parts.next().unwrap_or("");
            for param in parts {
                match param.split_once('=') {
                    Some(("start", v)) => start = v.parse().ok(),
                    Some(("count", v)) => count = v.parse().ok(),
                    _ => {}
                }
            }
            let decoded = url::form_urlencoded::parse(format!("x={name}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| name.to_string());
            segs.push(decoded);
        }
        let clean_path = format!("/platform/{}", segs.join("/"));
        let query = uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        Self {
            method,
            segs,
            clean_path,
            start,
            count,
            query,
            raw_query: uri.query().map(str::to_string),
            headers,
            body,
        }
    }

    fn accepts(&self, needle: &str) -> bool {
        self.headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains(needle) || v.contains("*/*"))
    }

    fn signature(&self) -> Option<String> {
        self.headers
            .get(SIGNATURE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty() && v != "nil")
    }

    fn embeds(&self) -> Vec<String> {
        self.query
            .get("embed")
            .map(|e| e.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    }
}

/// One item of a collection before paging, rendered only if it is on the page asked for: John
/// Deere's time for a page does not grow with the collection, and rendering every item of a
/// 2,500-field organization for each of its 25 pages took the simulator 30-100 ms a page.
struct Item<'a> {
    last_seq: u64,
    live: bool,
    render: Box<dyn FnOnce() -> Value + 'a>,
}

impl<'a> Item<'a> {
    fn of(
        stamp: &Stamp,
        value: impl FnOnce() -> Value + 'a,
        tombstone: impl FnOnce() -> Value + 'a,
    ) -> Self {
        let live = stamp.is_live();
        Self {
            last_seq: stamp.last_seq(),
            live,
            render: if live {
                Box::new(value)
            } else {
                Box::new(tombstone)
            },
        }
    }

    /// A live item rendered already.
    fn ready(last_seq: u64, value: Value) -> Self {
        Self {
            last_seq,
            live: true,
            render: Box::new(move || value),
        }
    }
}

pub(crate) async fn dispatch(
    State(sim): State<Sim>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let req = Req::parse(method, &uri, headers, body);
    let token = req
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let is_download = req.segs.first().map(String::as_str) == Some("files")
        && req.segs.len() == 2
        && !req.accepts(DEERE_JSON)
        && (req.accepts("zip") || req.accepts("octet-stream"));
    if !is_download
        && !req.accepts(DEERE_JSON)
        && !req.accepts(DEERE_IMAGE_JSON)
        && !req.accepts("application/json")
    {
        return error(
            StatusCode::NOT_ACCEPTABLE,
            "Not Acceptable: send Accept: application/vnd.deere.axiom.v3+json",
        );
    }
    let mut state = sim.state();
    let grant = match token.as_deref().and_then(|t| state.access_tokens.get(t)) {
        Some(access) if access.expires_at > Instant::now() => access.grant.clone(),
        _ => return error(StatusCode::UNAUTHORIZED, "Unauthorized"),
    };
    let ctx = Ctx {
        sim: &sim,
        grant,
        changes: std::cell::RefCell::new(Vec::new()),
    };
    let response = ctx.route(&mut state, &req);
    // Events for what the request changed go out once the world is unlocked.
    drop(state);
    for change in ctx.changes.take() {
        crate::webhooks::emit(&sim, change);
    }
    response
}

struct Ctx<'a> {
    sim: &'a Sim,
    grant: Grant,
    /// Changes made through the API (fields created), announced after the request.
    changes: std::cell::RefCell<Vec<crate::webhooks::Change>>,
}

impl Ctx<'_> {
    fn route(&self, state: &mut SimState, req: &Req) -> Response {
        let segs: Vec<&str> = req.segs.iter().map(String::as_str).collect();
        let get = req.method == Method::GET;
        match (segs.as_slice(), get) {
            ([], true) => self.catalog(),
            (["users", "@currentUser"], true) => deere_json(&json!({
                "@type": "User", "accountName": self.grant.user, "userType": "Customer",
                "links": [link("self", format!("{}/users/{}", self.sim.platform_url(), self.grant.user))]})),
            (["organizations"], true) => self.organizations(state, req),
            (["organizations", org], true) => {
                match state
                    .world
                    .orgs
                    .get(*org)
                    .filter(|_| state.world.user_has_org(&self.grant.user, org))
                {
                    Some(o) => {
                        deere_json(&self.sim.links().organization(o, &self.grant.client_key))
                    }
                    None => error(StatusCode::NOT_FOUND, "Organization not found"),
                }
            }
            (["organizations", org, "fields"], false) if req.method == Method::POST => {
                self.create_field(state, req, org)
            }
            (["organizations", org, "fields", field, "boundaries"], false)
                if req.method == Method::POST =>
            {
                self.create_boundary(state, req, org, field)
            }
            (["organizations", org, rest @ ..], true) => self.org_data(state, req, org, rest),
            (["fieldOperations", id, rest @ ..], true) => self.operation(state, req, id, rest),
            (["fieldOps", id], true) => self.shapefile(state, req, id),
            (["files", id], true) => self.file(state, req, id),
            (["eventSubscriptionEventTypes"], true) => self.event_types(),
            (["eventSubscriptions", rest @ ..], _) => self.subscriptions(state, req, rest),
            (["eventSubscriptionDelivery"], _) => self.delivery(state, req),
            (_, true) => not_found(),
            (_, false) => error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
        }
    }

    fn has_scope(&self, scope: &str) -> bool {
        self.grant.scopes.iter().any(|s| s == scope)
    }

    fn catalog(&self) -> Response {
        let base = self.sim.platform_url();
        deere_json(&json!({"@type": "ApiCatalog", "links": [
            link("organizations", format!("{base}/organizations")),
            link("currentUser", format!("{base}/users/@currentUser")),
            link("eventSubscriptions", format!("{base}/eventSubscriptions")),
        ]}))
    }

    fn organizations(&self, state: &mut SimState, req: &Req) -> Response {
        let links = self.sim.links();
        let items = state
            .world
            .user_orgs(&self.grant.user)
            .into_iter()
            .map(|o| {
                Item::ready(
                    o.stamp.last_seq(),
                    links.organization(o, &self.grant.client_key),
                )
            })
            .collect();
        self.collection(
            &mut state.signatures,
            state.world.seq,
            &state.settings,
            req,
            items,
        )
    }

    /// Org access: the user must be staff, the app connected, the token scoped.
    fn check_org(&self, state: &SimState, org: &str, scope: &str) -> Result<(), Response> {
        let Some(o) = state.world.orgs.get(org) else {
            return Err(error(StatusCode::NOT_FOUND, "Organization not found"));
        };
        if !state.world.user_has_org(&self.grant.user, org) {
            return Err(error(
                StatusCode::FORBIDDEN,
                "Invalid access to organization",
            ));
        }
        if !o.connected_apps.contains(&self.grant.client_key) {
            return Err(match state.settings.unconnected_behaviour {
                UnconnectedBehaviour::Forbidden => access_denied(),
                UnconnectedBehaviour::Empty => {
                    deere_json(&json!({"links": [], "total": 0, "values": []}))
                }
            });
        }
        if !self.has_scope(scope) {
            return Err(missing_scope(scope));
        }
        Ok(())
    }

    fn org_data(&self, state: &mut SimState, req: &Req, org_id: &str, rest: &[&str]) -> Response {
        let scope = match rest.first() {
            Some(&"files") => "files",
            Some(&"machines" | &"implements") => "eq1",
            Some(&"fields") if rest.get(2) == Some(&"fieldOperations") => "ag2",
            _ => "ag1",
        };
        if let Err(r) = self.check_org(state, org_id, scope) {
            return r;
        }
        let links = &self.sim.links();
        let org = &state.world.orgs[org_id];
        let embeds = &req.embeds();
        let items: Vec<Item> = match rest {
            ["clients"] => org
                .clients
                .iter()
                .map(|c| {
                    Item::of(
                        &c.stamp,
                        move || links.client(org_id, c),
                        move || {
                            deleted(
                                "Client",
                                &c.id,
                                format!("{}/clients/{}", links.org_uri(org_id), c.id),
                            )
                        },
                    )
                })
                .collect(),
            ["farms"] => org
                .farms
                .iter()
                .map(|f| {
                    Item::of(
                        &f.stamp,
                        move || links.farm(org_id, f),
                        move || {
                            deleted(
                                "Farm",
                                &f.id,
                                format!("{}/farms/{}", links.org_uri(org_id), f.id),
                            )
                        },
                    )
                })
                .collect(),
            ["clients", id] => {
                return single(
                    org.clients
                        .iter()
                        .find(|c| c.id == *id && c.stamp.is_live())
                        .map(|c| links.client(org_id, c)),
                )
            }
            ["farms", id] => {
                return single(
                    org.farms
                        .iter()
                        .find(|f| f.id == *id && f.stamp.is_live())
                        .map(|f| links.farm(org_id, f)),
                )
            }
            ["fields"] => {
                let filter = req
                    .query
                    .get("recordFilter")
                    .map(|s| s.to_ascii_uppercase());
                org.fields
                    .iter()
                    .filter(|f| match filter.as_deref() {
                        Some("ALL") => true,
                        Some("ARCHIVED") => f.archived,
                        _ => !f.archived,
                    })
                    .map(|f| {
                        Item::of(
                            &f.stamp,
                            move || field_with_embeds(links, org_id, org, f, embeds),
                            move || deleted("Field", &f.id, links.field_uri(org_id, &f.id)),
                        )
                    })
                    .collect()
            }
            ["fields", id] => {
                return single(
                    org.fields
                        .iter()
                        .find(|f| f.id == *id && f.stamp.is_live())
                        .map(|f| field_with_embeds(links, org_id, org, f, embeds)),
                )
            }
            ["fields", id, sub @ ..] => {
                let Some(field) = org.fields.iter().find(|f| f.id == *id && f.stamp.is_live())
                else {
                    return error(StatusCode::NOT_FOUND, "Organization or Field not found");
                };
                match sub {
                    ["boundaries"] => field
                        .boundaries
                        .iter()
                        .map(|b| {
                            Item::of(
                                &b.stamp,
                                move || links.boundary(org_id, &field.id, b),
                                move || {
                                    deleted(
                                        "Boundary",
                                        &b.id,
                                        format!(
                                            "{}/boundaries/{}",
                                            links.field_uri(org_id, &field.id),
                                            b.id
                                        ),
                                    )
                                },
                            )
                        })
                        .collect(),
                    ["boundaries", bid] => {
                        return single(
                            field
                                .boundaries
                                .iter()
                                .find(|b| b.id == *bid && b.stamp.is_live())
                                .map(|b| links.boundary(org_id, &field.id, b)),
                        )
                    }
                    ["fieldOperations"] => {
                        let season = req.query.get("cropSeason");
                        let kind = req
                            .query
                            .get("fieldOperationType")
                            .map(|t| t.to_ascii_lowercase());
                        let start = req.query.get("startDate").and_then(|d| parse_time(d));
                        let end = req.query.get("endDate").and_then(|d| parse_time(d));
                        let embed_measurements = embeds.iter().any(|e| e == "measurementTypes");
                        field
                            .operations
                            .iter()
                            .filter(|o| season.is_none_or(|s| &o.crop_season == s))
                            .filter(|o| kind.as_ref().is_none_or(|k| &o.kind() == k))
                            .filter(|o| start.is_none_or(|s| o.end >= s))
                            .filter(|o| end.is_none_or(|e| o.start <= e))
                            .map(|o| {
                                Item::of(
                                    &o.stamp,
                                    move || {
                                        links.operation(org_id, &field.id, o, embed_measurements)
                                    },
                                    move || {
                                        deleted("FieldOperation", &o.id, links.operation_uri(&o.id))
                                    },
                                )
                            })
                            .collect()
                    }
                    _ => return not_found(),
                }
            }
            ["boundaries"] => org
                .fields
                .iter()
                .flat_map(|f| f.boundaries.iter().map(move |b| (f, b)))
                .map(|(f, b)| {
                    Item::of(
                        &b.stamp,
                        move || links.boundary(org_id, &f.id, b),
                        move || {
                            deleted(
                                "Boundary",
                                &b.id,
                                format!("{}/boundaries/{}", links.field_uri(org_id, &f.id), b.id),
                            )
                        },
                    )
                })
                .collect(),
            ["files"] => org
                .files
                .iter()
                .map(|f| {
                    Item::of(
                        &f.stamp,
                        move || links.file(org_id, f),
                        move || deleted("File", &f.id, links.file_uri(&f.id)),
                    )
                })
                .collect(),
            [rel @ ("machines" | "implements")] => {
                let kind = if *rel == "machines" {
                    "Machine"
                } else {
                    "Implement"
                };
                org.equipment
                    .iter()
                    .filter(|e| e.kind == kind)
                    .map(|e| {
                        Item::of(
                            &e.stamp,
                            move || links.equipment(org_id, e),
                            move || {
                                deleted(
                                    kind,
                                    &e.id,
                                    format!("{}/{rel}/{}", links.org_uri(org_id), e.id),
                                )
                            },
                        )
                    })
                    .collect()
            }
            [rel @ ("machines" | "implements"), id] => {
                let kind = if *rel == "machines" {
                    "Machine"
                } else {
                    "Implement"
                };
                return single(
                    org.equipment
                        .iter()
                        .find(|e| e.kind == kind && e.id == *id && e.stamp.is_live())
                        .map(|e| links.equipment(org_id, e)),
                );
            }
            ["operators"] => {
                // recordFilter: ACTIVE (default), ARCHIVED or ALL, as John Deere documents.
                let filter = req
                    .query
                    .get("recordFilter")
                    .map(|s| s.to_ascii_uppercase());
                org.operators
                    .iter()
                    .filter(|o| match filter.as_deref() {
                        Some("ALL") => true,
                        Some("ARCHIVED") => o.archived,
                        _ => !o.archived,
                    })
                    .map(|o| {
                        Item::of(
                            &o.stamp,
                            move || links.operator(org_id, o),
                            move || {
                                deleted(
                                    "Operator",
                                    &o.id,
                                    format!("{}/operators/{}", links.org_uri(org_id), o.id),
                                )
                            },
                        )
                    })
                    .collect()
            }
            ["operators", id] => {
                return single(
                    org.operators
                        .iter()
                        .find(|o| o.id == *id && o.stamp.is_live())
                        .map(|o| links.operator(org_id, o)),
                );
            }
            _ => return not_found(),
        };
        self.collection(
            &mut state.signatures,
            state.world.seq,
            &state.settings,
            req,
            items,
        )
    }

    /// `POST /organizations/{orgId}/fields`: a new field (no farm, no boundary yet). John Deere
    /// refuses a second field of the same name in an organization.
    fn create_field(&self, state: &mut SimState, req: &Req, org_id: &str) -> Response {
        if let Err(r) = self.check_org(state, org_id, "ag3") {
            return r;
        }
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            return bad_request("body", "must be a JSON field");
        };
        let Some(name) = body["name"]
            .as_str()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        else {
            return bad_request("name", "is required");
        };
        let taken = state.world.orgs[org_id]
            .fields
            .iter()
            .any(|f| f.stamp.is_live() && f.name.eq_ignore_ascii_case(name));
        if taken {
            return bad_request("name", "a field of this name exists in the organization");
        }
        let seq = state.world.bump();
        let now = chrono::Utc::now();
        let field = crate::world::FieldRec {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            farm_id: None,
            client_id: None,
            archived: false,
            modified: now,
            stamp: Stamp::new(seq),
            boundaries: Vec::new(),
            operations: Vec::new(),
        };
        let links = self.sim.links();
        let uri = links.field_uri(org_id, &field.id);
        self.changes.borrow_mut().push(crate::webhooks::Change {
            event_type: "field",
            org_id: org_id.to_string(),
            target_resource: uri.clone(),
            attributes: vec![("fieldId", field.id.clone())],
        });
        state
            .world
            .orgs
            .get_mut(org_id)
            .expect("checked org")
            .fields
            .push(field);
        created(&uri)
    }

    /// `POST …/fields/{fieldId}/boundaries`: a boundary of one polygon (exterior ring first);
    /// an active one makes the others inactive.
    fn create_boundary(
        &self,
        state: &mut SimState,
        req: &Req,
        org_id: &str,
        field_id: &str,
    ) -> Response {
        if let Err(r) = self.check_org(state, org_id, "ag3") {
            return r;
        }
        let Some(index) = state.world.orgs[org_id]
            .fields
            .iter()
            .position(|f| f.id == field_id && f.stamp.is_live())
        else {
            return error(StatusCode::NOT_FOUND, "Organization or Field not found");
        };
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            return bad_request("body", "must be a JSON boundary");
        };
        let polygons = body["multipolygons"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let [polygon] = polygons.as_slice() else {
            return bad_request("multipolygons", "must hold exactly one polygon");
        };
        let ring = |r: &Value| -> Option<Vec<(f64, f64)>> {
            let mut points: Vec<(f64, f64)> = r["points"]
                .as_array()?
                .iter()
                .map(|p| Some((p["lon"].as_f64()?, p["lat"].as_f64()?)))
                .collect::<Option<_>>()?;
            if points.first() != points.last() {
                points.push(points[0]);
            }
            (points.len() >= 4).then_some(points)
        };
        let rings = polygon["rings"].as_array().cloned().unwrap_or_default();
        let (interiors, exteriors): (Vec<&Value>, Vec<&Value>) =
            rings.iter().partition(|r| r["type"] == "interior");
        let [exterior] = exteriors.as_slice() else {
            return bad_request("rings", "a polygon needs exactly one exterior ring");
        };
        let Some(exterior) = ring(exterior) else {
            return bad_request(
                "points",
                "a ring needs at least three points with lat and lon",
            );
        };
        let Some(interiors) = interiors.into_iter().map(ring).collect::<Option<Vec<_>>>() else {
            return bad_request(
                "points",
                "a ring needs at least three points with lat and lon",
            );
        };
        let active = body["active"].as_bool().unwrap_or(true);
        let seq = state.world.bump();
        let now = chrono::Utc::now();
        let field = &mut state
            .world
            .orgs
            .get_mut(org_id)
            .expect("checked org")
            .fields[index];
        if active {
            for b in field.boundaries.iter_mut().filter(|b| b.active) {
                b.active = false;
                b.modified = now;
                b.stamp.modified_seq = seq;
            }
        }
        let boundary = crate::world::BoundaryRec {
            id: uuid::Uuid::new_v4().to_string(),
            name: body["name"]
                .as_str()
                .unwrap_or("Boundary")
                .chars()
                .take(20)
                .collect(),
            exterior,
            interiors,
            active,
            created: now,
            modified: now,
            stamp: Stamp::new(seq),
        };
        let uri = format!(
            "{}/boundaries/{}",
            self.sim.links().field_uri(org_id, field_id),
            boundary.id
        );
        field.boundaries.push(boundary);
        field.modified = now;
        field.stamp.modified_seq = seq;
        self.changes.borrow_mut().push(crate::webhooks::Change {
            event_type: "boundary",
            org_id: org_id.to_string(),
            target_resource: uri.clone(),
            attributes: vec![("fieldId", field_id.to_string())],
        });
        created(&uri)
    }

    /// Serves a collection: signature handling (304 / delta / full), then matrix paging.
    /// One page of `items` (those changed since the request's signature, if it sent one),
    /// and a new signature recorded in `signatures`; `seq`: the world's sequence now.
    fn collection(
        &self,
        signatures: &mut HashMap<String, SigRec>,
        seq: u64,
        settings: &crate::Settings,
        req: &Req,
        items: Vec<Item<'_>>,
    ) -> Response {
        let key = format!(
            "{}|{}|{}?{}",
            self.grant.client_key,
            self.grant.user,
            req.clean_path,
            req.raw_query.as_deref().unwrap_or("")
        );
        let since = req
            .signature()
            .and_then(|s| signatures.get(&s))
            .filter(|rec| rec.key == key)
            .map(|rec| rec.seq);
        let current = seq;
        let new_signature = format!("{:032x}", rand::random::<u128>());
        let selected: Vec<Item> = match since {
            Some(seq) => {
                let changed: Vec<Item> = items.into_iter().filter(|i| i.last_seq > seq).collect();
                if changed.is_empty() {
                    let mut r = StatusCode::NOT_MODIFIED.into_response();
                    if let Some(sig) = req.signature() {
                        if let Ok(v) = HeaderValue::from_str(&sig) {
                            r.headers_mut().insert(SIGNATURE, v);
                        }
                    }
                    return r;
                }
                changed
            }
            None => items.into_iter().filter(|i| i.live).collect(),
        };
        signatures.insert(new_signature.clone(), SigRec { key, seq: current });
        let total = selected.len();
        let count = req
            .count
            .unwrap_or(settings.default_page_size)
            .clamp(1, settings.max_page_size);
        let start = req.start.unwrap_or(0);
        let page: Vec<Value> = selected
            .into_iter()
            .skip(start)
            .take(count)
            .map(|i| (i.render)())
            .collect();
        let root = self.sim.root_url();
        let query = req
            .raw_query
            .as_ref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let page_uri =
            |s: usize| format!("{root}{};start={s};count={count}{query}", req.clean_path);
        let self_uri = if req.start.is_some() || req.count.is_some() {
            page_uri(start)
        } else {
            format!("{root}{}{query}", req.clean_path)
        };
        let mut links = vec![json!({"rel": "self", "uri": self_uri})];
        if start + count < total {
            links.push(json!({"rel": "nextPage", "uri": page_uri(start + count)}));
        }
        if start > 0 {
            links
                .push(json!({"rel": "previousPage", "uri": page_uri(start.saturating_sub(count))}));
        }
        let mut response = deere_json(&json!({"links": links, "total": total, "values": page}));
        if let Ok(v) = HeaderValue::from_str(&new_signature) {
            response.headers_mut().insert(SIGNATURE, v);
        }
        response
    }

    fn operation(&self, state: &mut SimState, req: &Req, id: &str, rest: &[&str]) -> Response {
        let Some((loc, index)) = state.world.find_operation(id) else {
            return not_found();
        };
        if let Err(r) = self.check_org(state, &loc.org, "ag2") {
            return r;
        }
        let field = &state.world.orgs[&loc.org].fields[loc.field];
        let op = &field.operations[index];
        if !op.stamp.is_live() || !field.stamp.is_live() {
            return not_found();
        }
        let links = self.sim.links();
        match rest {
            [] => deere_json(&links.operation(
                &loc.org,
                &field.id,
                op,
                req.embeds().iter().any(|e| e == "measurementTypes"),
            )),
            ["measurementTypes"] => {
                let values = links.measurements(op);
                let self_uri = format!("{}/measurementTypes", links.operation_uri(&op.id));
                deere_json(
                    &json!({"links": [{"rel": "self", "uri": self_uri}], "total": values.len(), "values": values}),
                )
            }
            ["measurementTypes", name] if req.accepts(DEERE_IMAGE_JSON) => {
                let known = links
                    .measurements(op)
                    .iter()
                    .any(|m| m["measurementName"] == *name);
                if !known {
                    return not_found();
                }
                let id = op.id.clone();
                match crate::export::measurement_image(state, &id, name) {
                    Ok(image) => {
                        let mut response = deere_json(&image);
                        response.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static(DEERE_IMAGE_JSON),
                        );
                        response
                    }
                    Err(reason) => error(StatusCode::NOT_ACCEPTABLE, reason),
                }
            }
            ["measurementTypes", name] => single(
                links
                    .measurements(op)
                    .into_iter()
                    .find(|m| m["measurementName"] == *name),
            ),
            _ => not_found(),
        }
    }

    /// `/fieldOps/{id}`: 202 for the configured number of polls, then 307 to a pre-signed URL
    /// of a shapefile zip in the units `Accept-UOM-System` asks for (else the organization's
    /// preference, the `exportUnits` setting) and `shapeType` (`Point`, or `Polygon`); 406 when
    /// none can be made (tillage unless `exportTillage`, no boundary, `noSpatialData`).
    fn shapefile(&self, state: &mut SimState, req: &Req, id: &str) -> Response {
        let Some((loc, _)) = state.world.find_operation(id) else {
            return not_found();
        };
        if let Err(r) = self.check_org(state, &loc.org, "ag2") {
            return r;
        }
        let units = req
            .headers
            .get("accept-uom-system")
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_uppercase)
            .unwrap_or_else(|| state.settings.export_units.clone());
        let polygons = match req.query.get("shapeType").map(String::as_str) {
            None | Some("Point") => false,
            Some("Polygon") => true,
            Some(_) => return bad_request("shapeType", "must be Point or Polygon"),
        };
        let export = match crate::export::request(state, id, units != "METRIC", polygons) {
            Ok(e) => e,
            Err(reason) => return error(StatusCode::NOT_ACCEPTABLE, reason),
        };
        let needed = state.settings.export_polls;
        let polls = state.export_polls.entry(id.to_string()).or_insert(0);
        if *polls < needed {
            *polls += 1;
            return (StatusCode::ACCEPTED, deere_json(&json!({}))).into_response();
        }
        let token = oauth::random_token("");
        state.presigned.insert(
            token.clone(),
            crate::Presigned {
                op_id: id.to_string(),
                export,
                created: Instant::now(),
            },
        );
        let location = format!(
            "{}/presigned/{token}?X-Amz-Expires={}",
            self.sim.root_url(),
            state.settings.presign_ttl_secs
        );
        Redirect::temporary(&location).into_response()
    }

    fn file(&self, state: &mut SimState, req: &Req, id: &str) -> Response {
        let Some((org_id, index)) = state.world.find_file(id) else {
            return error(StatusCode::NOT_FOUND, "File is not present");
        };
        if let Err(r) = self.check_org(state, &org_id, "files") {
            return r;
        }
        let file = state.world.orgs[&org_id].files[index].clone();
        if !file.stamp.is_live() {
            return error(StatusCode::NOT_FOUND, "File is not present");
        }
        let wants_bytes =
            !req.accepts(DEERE_JSON) && (req.accepts("zip") || req.accepts("octet-stream"));
        if !wants_bytes {
            return deere_json(&self.sim.links().file(&org_id, &file));
        }
        let bytes = state
            .file_cache
            .entry(file.id.clone())
            .or_insert_with(|| content::machine_file(file.content_seed, file.size))
            .clone();
        content::ranged(bytes, &req.headers, &req.query, &file.name)
    }

    fn event_types(&self) -> Response {
        let base = self.sim.platform_url();
        let values: Vec<Value> = crate::webhooks::EVENT_TYPES
            .iter()
            .map(|(id, keys)| {
                json!({"@type": "EventType", "id": id, "filterKeys": keys,
                "links": [link("self", format!("{base}/eventSubscriptionEventTypes/{id}"))]})
            })
            .collect();
        deere_json(
            &json!({"links": [{"rel": "self", "uri": format!("{base}/eventSubscriptionEventTypes")}],
                           "total": values.len(), "values": values}),
        )
    }

    fn subscription_json(&self, s: &Subscription) -> Value {
        let base = self.sim.platform_url();
        // As John Deere's example: no "@type", and links without "@type".
        json!({
            "id": s.id, "eventTypeId": s.event_type_id,
            "filters": s.filters.iter().map(|(k, v)| json!({"key": k, "values": v})).collect::<Vec<_>>(),
            "targetEndpoint": {"targetType": "https", "uri": s.target_uri},
            "status": s.status, "displayName": s.display_name, "clientKey": s.client_key, "token": s.token,
            "links": [{"rel": "self", "uri": format!("{base}/eventSubscriptions/{}", s.id)},
                      {"rel": "user", "uri": format!("{base}/users/{}", s.user)}],
        })
    }

    fn subscriptions(&self, state: &mut SimState, req: &Req, rest: &[&str]) -> Response {
        if !state
            .apps
            .get(&self.grant.client_key)
            .is_some_and(|a| a.webhook_access)
        {
            return error(StatusCode::FORBIDDEN, "The client does not have a proper access for this API (Operations Center - Webhook)");
        }
        match (rest, &req.method) {
            ([], &Method::GET) => {
                let items = state
                    .subscriptions
                    .values()
                    .filter(|s| s.client_key == self.grant.client_key && s.user == self.grant.user)
                    .map(|s| Item::ready(0, self.subscription_json(s)))
                    .collect();
                self.collection(
                    &mut state.signatures,
                    state.world.seq,
                    &state.settings,
                    req,
                    items,
                )
            }
            ([], &Method::POST) => {
                let parsed = match parse_subscription(req, true) {
                    Ok(p) => p,
                    Err(r) => return r,
                };
                let id = uuid::Uuid::new_v4().to_string();
                let sub = Subscription {
                    id: id.clone(),
                    client_key: self.grant.client_key.clone(),
                    user: self.grant.user.clone(),
                    event_type_id: parsed.event_type_id,
                    filters: parsed.filters,
                    target_uri: parsed.target_uri,
                    status: "Active".into(),
                    display_name: parsed.display_name,
                    token: parsed.token,
                };
                let body = self.subscription_json(&sub);
                state.subscriptions.insert(id, sub);
                let mut r = (StatusCode::CREATED, deere_json(&body)).into_response();
                if let Some(Ok(v)) = body["links"][0]["uri"].as_str().map(HeaderValue::from_str) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
            ([id], method) => {
                let owned = state.subscriptions.get(*id).is_some_and(|s| {
                    s.client_key == self.grant.client_key && s.user == self.grant.user
                });
                if !owned {
                    return not_found();
                }
                match *method {
                    Method::GET => deere_json(&self.subscription_json(&state.subscriptions[*id])),
                    Method::PUT => {
                        let parsed = match parse_subscription(req, false) {
                            Ok(p) => p,
                            Err(r) => return r,
                        };
                        let sub = state.subscriptions.get_mut(*id).expect("checked above");
                        sub.target_uri = parsed.target_uri;
                        sub.status = parsed.status;
                        sub.display_name = parsed.display_name;
                        sub.token = parsed.token;
                        StatusCode::NO_CONTENT.into_response()
                    }
                    Method::DELETE => {
                        state.subscriptions.remove(*id);
                        StatusCode::NO_CONTENT.into_response()
                    }
                    _ => error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
                }
            }
            _ => not_found(),
        }
    }

    fn delivery(&self, state: &mut SimState, req: &Req) -> Response {
        let base = self.sim.platform_url().to_string();
        let Some(app) = state.apps.get_mut(&self.grant.client_key) else {
            return access_denied();
        };
        if req.method == Method::PATCH {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Patch {
                #[serde(default)]
                authorization_header_value: Option<Option<String>>,
                #[serde(default)]
                status: Option<String>,
            }
            let Ok(patch) = serde_json::from_slice::<Patch>(&req.body) else {
                return bad_request("body", "must be a JSON object");
            };
            if let Some(value) = patch.authorization_header_value {
                if value.as_ref().is_some_and(|v| v.len() > 4096) {
                    return bad_request("authorizationHeaderValue", "at most 4096 characters");
                }
                app.authorization_header_value = value;
            }
            match patch.status.as_deref() {
                Some("Active") => app.delivery_paused = false,
                Some("Paused") => app.delivery_paused = true,
                Some(_) => return bad_request("status", "must be Active or Paused"),
                None => {}
            }
        } else if req.method != Method::GET {
            return error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        }
        deere_json(&json!({
            "clientKey": self.grant.client_key,
            "authorizationHeaderValue": app.authorization_header_value,
            "status": if app.delivery_paused { "Paused" } else { "Active" },
            "concurrentDeliveries": 1, "maxBatchSize": 10,
            "links": [link("self", format!("{base}/eventSubscriptionDelivery"))],
        }))
    }
}

/// 201 Created with the new resource's URL, as John Deere answers a POST.
fn created(uri: &str) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(uri) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

fn single(value: Option<Value>) -> Response {
    match value {
        Some(v) => deere_json(&v),
        None => not_found(),
    }
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Webhook 400s are a bare array of Error objects.
fn bad_request(field: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        deere_json(&json!([{"@type": "Error", "guid": uuid::Uuid::new_v4().to_string(),
                            "message": format!("{field}: {message}"), "code": "400", "field": field}])),
    )
        .into_response()
}

/// A field with the `embed`s asked for (`farms`, `clients`, `boundaries`, `activeBoundary`).
fn field_with_embeds(
    links: &crate::render::Links<'_>,
    org_id: &str,
    org: &crate::world::Org,
    f: &crate::world::FieldRec,
    embeds: &[String],
) -> Value {
    let mut v = links.field(org_id, f);
    for embed in embeds {
        match embed.as_str() {
            "farms" => {
                v["farms"] = json!({"@type": "Farms", "farms": org.farms.iter()
                    .filter(|x| Some(&x.id) == f.farm_id.as_ref())
                    .map(|x| links.farm(org_id, x)).collect::<Vec<_>>()})
            }
            "clients" => {
                v["clients"] = json!({"@type": "Clients", "clients": org.clients.iter()
                    .filter(|x| Some(&x.id) == f.client_id.as_ref())
                    .map(|x| links.client(org_id, x)).collect::<Vec<_>>()})
            }
            "boundaries" => {
                v["boundaries"] = json!(f
                    .boundaries
                    .iter()
                    .filter(|b| b.stamp.is_live())
                    .map(|b| links.boundary(org_id, &f.id, b))
                    .collect::<Vec<_>>())
            }
            "activeBoundary" => {
                if let Some(b) = f.active_boundary() {
                    v["activeBoundary"] = links.boundary(org_id, &f.id, b)
                }
            }
            _ => {}
        }
    }
    v
}

struct ParsedSubscription {
    event_type_id: String,
    filters: Vec<(String, Vec<String>)>,
    target_uri: String,
    status: String,
    display_name: Option<String>,
    token: Option<String>,
}

fn parse_subscription(req: &Req, creating: bool) -> Result<ParsedSubscription, Response> {
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.contains("json") {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
        ));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        event_type_id: Option<String>,
        #[serde(default)]
        filters: Vec<FilterBody>,
        target_endpoint: Option<Target>,
        status: Option<String>,
        display_name: Option<String>,
        token: Option<String>,
    }
    #[derive(Deserialize)]
    struct FilterBody {
        key: String,
        values: Vec<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Target {
        target_type: Option<String>,
        uri: Option<String>,
    }
    let body: Body = serde_json::from_slice(&req.body)
        .map_err(|e| bad_request("body", &format!("invalid JSON: {e}")))?;
    let event_type_id = body.event_type_id.unwrap_or_default();
    if creating
        && !crate::webhooks::EVENT_TYPES
            .iter()
            .any(|(id, _)| *id == event_type_id)
    {
        return Err(bad_request("eventTypeId", "unknown event type"));
    }
    let target = body
        .target_endpoint
        .ok_or_else(|| bad_request("targetEndpoint", "required"))?;
    if target.target_type.as_deref().is_some_and(|t| t != "https") {
        return Err(bad_request("targetEndpoint.targetType", "must be https"));
    }
    let uri = target.uri.unwrap_or_default();
    match url::Url::parse(&uri) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {}
        _ => {
            return Err(bad_request(
                "targetEndpoint.uri",
                "must be an absolute https URL",
            ))
        }
    }
    let status = body.status.unwrap_or_else(|| "Active".into());
    if creating && status != "Active" {
        return Err(bad_request("status", "only Active is allowed at creation"));
    }
    if !["Active", "Expired", "Terminated", "Paused"].contains(&status.as_str()) {
        return Err(bad_request("status", "unknown status"));
    }
    if let Some(token) = &body.token {
        let valid = token.len() <= 256
            && token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
        if !valid {
            return Err(bad_request("token", "must match ^[A-Za-z0-9+/=]{0,256}$"));
        }
    }
    Ok(ParsedSubscription {
        event_type_id,
        filters: body
            .filters
            .into_iter()
            .map(|f| (f.key, f.values))
            .collect(),
        target_uri: uri,
        status,
        display_name: body.display_name,
        token: body.token,
    })
}

/// `GET /presigned/{token}`: the shapefile zip, refused when an Authorization header is sent.
pub(crate) async fn presigned(
    State(sim): State<Sim>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s3_error = |status: StatusCode, code: &str, message: &str| {
        (
            status,
            [(header::CONTENT_TYPE, "application/xml")],
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"),
        )
            .into_response()
    };
    if headers.contains_key(header::AUTHORIZATION) {
        return s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
        );
    }
    let (op_id, export) = {
        let state = sim.state();
        let Some(p) = state.presigned.get(&token) else {
            return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired");
        };
        if p.created.elapsed().as_secs() > state.settings.presign_ttl_secs {
            return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired");
        }
        (p.op_id.clone(), p.export.clone())
    };
    let ready = match crate::export::make(&sim, export).await {
        Ok(ready) => ready,
        Err(e) => return s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e),
    };
    (
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{op_id}.zip\""),
            ),
        ],
        ready.zip.clone(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct ConnectionsQuery {
    redirect_uri: Option<String>,
    #[serde(rename = "orgId")]
    org_id: Option<String>,
}

/// The page where a grower approves (or, from `connections-dialog`, withdraws) organizations.
pub(crate) async fn connections_page(
    State(sim): State<Sim>,
    Path(client): Path<String>,
    uri: Uri,
    headers: axum::http::HeaderMap,
    Query(q): Query<ConnectionsQuery>,
) -> Response {
    let state = sim.state();
    let user = crate::oauth::signed_in_user(&state, &headers);
    if !state.apps.contains_key(&client) {
        return (
            StatusCode::NOT_FOUND,
            Html("unknown application".to_string()),
        )
            .into_response();
    }
    // A signed-in grower sees its own organizations; without a session (a test posting
    // directly) every organization is listed.
    let orgs: Vec<&crate::world::Org> = match &user {
        Some(user) => state.world.user_orgs(user),
        None => state.world.orgs.values().collect(),
    };
    let rows: String = orgs
        .into_iter()
        .filter(|o| q.org_id.as_ref().is_none_or(|id| &o.id == id))
        .map(|o| {
            let checked = if o.connected_apps.contains(&client) { " checked" } else { "" };
            format!("<li><label><input type=\"checkbox\" name=\"org\" value=\"{0}\"{checked}> {0} {1}</label></li>", o.id, html_escape(&o.name))
        })
        .collect();
    let redirect = q.redirect_uri.clone().unwrap_or_default();
    Html(format!(
        "<!doctype html><html><head><title>Connections (simulated)</title></head><body>\
         <h1>Choose the organizations {client} may access</h1>\
         <form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"redirect_uri\" value=\"{redirect}\">\
         <input type=\"hidden\" name=\"scope_org\" value=\"{scope}\"><ul>{rows}</ul>\
         <button type=\"submit\">Save</button></form></body></html>",
        client = html_escape(&client),
        action = html_escape(uri.path()),
        redirect = html_escape(&redirect),
        scope = html_escape(q.org_id.as_deref().unwrap_or("")),
    ))
    .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(crate) async fn connections_submit(
    State(sim): State<Sim>,
    Path(client): Path<String>,
    headers: axum::http::HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let value = |k: &str| {
        form.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let chosen: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "org")
        .map(|(_, v)| v.clone())
        .collect();
    let scope_org = value("scope_org").filter(|s| !s.is_empty());
    {
        let mut state = sim.state();
        if !state.apps.contains_key(&client) {
            return (
                StatusCode::NOT_FOUND,
                Html("unknown application".to_string()),
            )
                .into_response();
        }
        // Only the organizations the page listed change: a signed-in grower's own.
        let ids: Vec<String> = match crate::oauth::signed_in_user(&state, &headers) {
            Some(user) => state
                .world
                .user_orgs(&user)
                .into_iter()
                .map(|o| o.id.clone())
                .collect::<Vec<String>>(),
            None => state.world.orgs.keys().cloned().collect(),
        }
        .into_iter()
        .filter(|id| scope_org.as_ref().is_none_or(|s| s == id))
        .collect();
        for id in ids {
            set_connected(&mut state.world, &id, &client, chosen.contains(&id));
        }
    }
    match value("redirect_uri").filter(|r| !r.is_empty()) {
        Some(target) => Redirect::to(&target).into_response(),
        None => Html("<p>Saved.</p>".to_string()).into_response(),
    }
}

/// Connects or disconnects an org for an app; a change is a change of the org resource.
pub fn set_connected(world: &mut World, org_id: &str, client_key: &str, connected: bool) -> bool {
    let seq = world.seq + 1;
    let Some(org) = world.orgs.get_mut(org_id) else {
        return false;
    };
    let changed = if connected {
        org.connected_apps.insert(client_key.to_string())
    } else {
        org.connected_apps.remove(client_key)
    };
    if changed {
        org.stamp.modified_seq = seq;
        world.seq = seq;
    }
    true
}

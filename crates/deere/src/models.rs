//! Typed, lenient models of the Operations Center resources furrow syncs.
//!
//! Lenient on purpose: John Deere's own examples render booleans and sizes as strings, vary the
//! case of enums, send `cropSeason` as a string or a number and `products` as an object or a list.
//! Unknown fields are ignored; fields we do not need are optional.

use serde::{de, Deserialize, Deserializer, Serialize};

/// A HAL-style link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub rel: String,
    pub uri: String,
}

/// Anything with `links`.
pub trait HasLinks {
    fn links(&self) -> &[Link];

    fn link(&self, rel: &str) -> Option<&str> {
        self.links()
            .iter()
            .find(|l| l.rel == rel)
            .map(|l| l.uri.as_str())
    }

    /// A delta response flags a deleted item with a `delete` link.
    fn is_deleted(&self) -> bool {
        self.link("delete").is_some()
    }
}

macro_rules! has_links {
    ($($t:ty),*) => {$(
        impl HasLinks for $t {
            fn links(&self) -> &[Link] { &self.links }
        }
    )*};
}

/// One page of a collection: `{"links":[...],"total":n,"values":[...]}`.
#[derive(Debug, Clone, Deserialize)]
pub struct CollectionPage<T> {
    #[serde(default)]
    pub links: Vec<Link>,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub total: Option<u64>,
    #[serde(default = "Vec::new")]
    pub values: Vec<T>,
}
impl<T> HasLinks for CollectionPage<T> {
    fn links(&self) -> &[Link] {
        &self.links
    }
}

/// `GET /platform/` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiCatalog {
    #[serde(default)]
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    pub name: String,
    #[serde(default, rename = "type")]
    pub org_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub member: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub internal: bool,
    #[serde(default)]
    pub links: Vec<Link>,
}

/// Whether the app may read an organization's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgConnection {
    /// `manage_connections` present: connected; the URI lets the grower change what is shared.
    Connected { manage_uri: String },
    /// `connections` present: the grower must still approve this org; send them to the URI.
    NotConnected { connect_uri: String },
    /// Neither link: an older response or an unusual org; treat as unknown.
    Unknown,
}

impl Organization {
    pub fn connection(&self) -> OrgConnection {
        if let Some(uri) = self.link("manage_connections") {
            OrgConnection::Connected {
                manage_uri: uri.to_string(),
            }
        } else if let Some(uri) = self.link("connections") {
            OrgConnection::NotConnected {
                connect_uri: uri.to_string(),
            }
        } else {
            OrgConnection::Unknown
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Client {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub archived: bool,
    #[serde(default)]
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Farm {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub archived: bool,
    #[serde(default)]
    pub client_uri: Option<String>,
    #[serde(default)]
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Field {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub archived: bool,
    #[serde(default)]
    pub last_modified_time: Option<String>,
    #[serde(default)]
    pub links: Vec<Link>,
    /// With `embed=farms`.
    #[serde(default)]
    pub farms: Option<EmbeddedFarms>,
    /// With `embed=clients`.
    #[serde(default)]
    pub clients: Option<EmbeddedClients>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddedFarms {
    #[serde(default)]
    pub farms: Vec<Farm>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddedClients {
    #[serde(default)]
    pub clients: Vec<Client>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub lat: f64,
    pub lon: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ring {
    #[serde(default)]
    pub points: Vec<Point>,
    /// `exterior` or `interior`.
    #[serde(default, rename = "type")]
    pub ring_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub passable: bool,
}

impl Ring {
    pub fn is_interior(&self) -> bool {
        self.ring_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("interior"))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Polygon {
    #[serde(default)]
    pub rings: Vec<Ring>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementAsDouble {
    #[serde(deserialize_with = "lenient_f64")]
    pub value_as_double: f64,
    #[serde(default)]
    pub unit: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extent {
    pub top_left: Point,
    pub bottom_right: Point,
}

/// A boundary to create (`POST …/fields/{fieldId}/boundaries`): polygons of rings of points,
/// exterior first.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewBoundary {
    pub name: String,
    pub source_type: String,
    pub active: bool,
    pub multipolygons: Vec<NewPolygon>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewPolygon {
    #[serde(rename = "@type")]
    pub kind: &'static str,
    pub rings: Vec<NewRing>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewRing {
    #[serde(rename = "@type")]
    pub kind: &'static str,
    /// `exterior` or `interior`.
    #[serde(rename = "type")]
    pub ring_type: &'static str,
    pub passable: bool,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Boundary {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub source_type: Option<String>,
    #[serde(default)]
    pub created_time: Option<String>,
    #[serde(default)]
    pub modified_time: Option<String>,
    #[serde(default)]
    pub area: Option<MeasurementAsDouble>,
    #[serde(default)]
    pub workable_area: Option<MeasurementAsDouble>,
    #[serde(default)]
    pub multipolygons: Vec<Polygon>,
    #[serde(default)]
    pub extent: Option<Extent>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub active: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub archived: bool,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub irrigated: bool,
    #[serde(default)]
    pub signal_type: Option<String>,
    #[serde(default)]
    pub links: Vec<Link>,
}

/// `fieldOperationType`, case-insensitive; unknown values are kept, not rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldOperationType {
    Application,
    Carting,
    Harvest,
    Seeding,
    Tillage,
    Other(String),
}

impl Default for FieldOperationType {
    fn default() -> Self {
        Self::Other(String::new())
    }
}

impl FieldOperationType {
    pub fn parse(value: &str) -> Self {
        match value.to_ascii_lowercase().as_str() {
            "application" => Self::Application,
            "carting" => Self::Carting,
            "harvest" => Self::Harvest,
            "seeding" => Self::Seeding,
            "tillage" => Self::Tillage,
            _ => Self::Other(value.to_string()),
        }
    }

    /// The lowercase wire value.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Application => "application",
            Self::Carting => "carting",
            Self::Harvest => "harvest",
            Self::Seeding => "seeding",
            Self::Tillage => "tillage",
            Self::Other(v) => v,
        }
    }
}

impl<'de> Deserialize<'de> for FieldOperationType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::parse(&String::deserialize(d)?))
    }
}

/// `{"@type":"EventMeasurement","value":..,"unitId":..}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMeasurement {
    #[serde(deserialize_with = "lenient_f64")]
    pub value: f64,
    #[serde(default)]
    pub unit_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub product_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub tank_mix: bool,
    #[serde(default)]
    pub rate: Option<EventMeasurement>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operator {
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub operator_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub license: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldOperationMachine {
    #[serde(default)]
    pub erid: Option<String>,
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub machine_id: Option<String>,
    #[serde(default)]
    pub vin: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub make: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub operators: Vec<Operator>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldOperation {
    pub id: String,
    /// Absent only on a delta's tombstone (an item with a `delete` link).
    #[serde(default)]
    pub field_operation_type: FieldOperationType,
    #[serde(default)]
    pub adapt_machine_type: Option<String>,
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub crop_season: Option<String>,
    #[serde(default)]
    pub crop_name: Option<String>,
    #[serde(default)]
    pub start_date: Option<String>,
    #[serde(default)]
    pub end_date: Option<String>,
    #[serde(default)]
    pub modified_time: Option<String>,
    #[serde(default)]
    pub varieties: Vec<Product>,
    /// Older payloads send one `product` object; newer ones a `products` list. Both land here.
    #[serde(default, alias = "product", deserialize_with = "one_or_many")]
    pub products: Vec<Product>,
    #[serde(default)]
    pub field_operation_machines: Vec<FieldOperationMachine>,
    #[serde(default)]
    pub links: Vec<Link>,
    /// With `embed=measurementTypes`.
    #[serde(default)]
    pub measurement_types: Option<EmbeddedMeasurements>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddedMeasurements {
    #[serde(default)]
    pub measurements: Vec<Measurement>,
}

/// A `FieldOperationMeasurement`. The named totals differ per type, so every numeric
/// `EventMeasurement` member is kept in `values`, keyed by its JSON name.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub measurement_name: String,
    #[serde(default)]
    pub measurement_category: Option<String>,
    #[serde(default)]
    pub links: Vec<Link>,
    #[serde(flatten)]
    pub values: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Measurement {
    /// A named total such as `area`, `yield` or `averageMoisture`, when present and well formed.
    pub fn total(&self, name: &str) -> Option<EventMeasurement> {
        serde_json::from_value(self.values.get(name)?.clone()).ok()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct File {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, rename = "type")]
    pub file_type: Option<String>,
    #[serde(default)]
    pub created_time: Option<String>,
    #[serde(default)]
    pub modified_time: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub native_size: Option<u64>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub transfer_pending: bool,
    #[serde(default)]
    pub visible_via_share: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub shared: bool,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub archived: bool,
    #[serde(default)]
    pub links: Vec<Link>,
}

/// A machine or an implement (`GET /organizations/{orgId}/machines` and `/implements`), in the
/// shape of John Deere's equipment API. Everything but the id is optional: a tombstone in a
/// delta carries only its links.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Equipment {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "ERID")]
    pub erid: Option<String>,
    #[serde(default)]
    pub serial_number: Option<String>,
    #[serde(default)]
    pub vin: Option<String>,
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub model_year: Option<String>,
    #[serde(default)]
    pub make: Option<Named>,
    #[serde(default)]
    pub model: Option<Named>,
    /// The equipment type (`Combine`, `Planter`, ...): Leaf's `category`.
    #[serde(default, rename = "type")]
    pub equipment_type: Option<Named>,
    /// An implement's machine, while attached.
    #[serde(default)]
    pub machine: Option<EquipmentRef>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub archived: bool,
    #[serde(default)]
    pub links: Vec<Link>,
}

/// A name in an embedded object (`make`, `model`, `type`).
#[derive(Debug, Clone, Deserialize)]
pub struct Named {
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EquipmentRef {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
}

/// An operator of an organization (`GET /organizations/{orgId}/operators`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgOperator {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub date_modified: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub archived: bool,
    #[serde(default)]
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFilter {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetEndpoint {
    pub target_type: String,
    pub uri: String,
}

/// An event subscription as John Deere returns it. `token` is the shared secret sent back with
/// each delivery, so it is kept out of `Debug`.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSubscription {
    pub id: String,
    pub event_type_id: String,
    #[serde(default)]
    pub filters: Vec<EventFilter>,
    pub target_endpoint: TargetEndpoint,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub client_key: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub links: Vec<Link>,
}

impl std::fmt::Debug for EventSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSubscription")
            .field("id", &self.id)
            .field("event_type_id", &self.event_type_id)
            .field("filters", &self.filters)
            .field("target_endpoint", &self.target_endpoint)
            .field("status", &self.status)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// Body of `POST /eventSubscriptions` and `PUT /eventSubscriptions/{id}`.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewEventSubscription {
    pub event_type_id: String,
    pub filters: Vec<EventFilter>,
    pub target_endpoint: TargetEndpoint,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// An event type of the Data Subscription Service (`fieldOperation`, `heartbeat`, …).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventType {
    pub id: String,
    #[serde(default)]
    pub filter_keys: Vec<String>,
}

/// One event of a webhook delivery (the body is a JSON array of these).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveredEvent {
    pub client_key: String,
    pub event_type_id: String,
    pub target_resource: String,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub metadata: Vec<EventMetadata>,
    #[serde(default)]
    pub links: Vec<Link>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub key: String,
    pub value: String,
}

has_links!(
    Organization,
    Equipment,
    OrgOperator,
    Client,
    Farm,
    Field,
    Boundary,
    FieldOperation,
    Measurement,
    File,
    EventSubscription,
    ApiCatalog
);

// ---- lenient deserializers ----

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(de::Error::custom(format!(
            "expected a string or a number, found {other}"
        ))),
    }
}

fn opt_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(de::Error::custom(format!(
            "expected a string or a number, found {other}"
        ))),
    }
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Bool(b) => Ok(b),
        serde_json::Value::Null => Ok(false),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("false") || s.is_empty() => {
            Ok(false)
        }
        other => Err(de::Error::custom(format!(
            "expected a boolean, found {other}"
        ))),
    }
}

fn lenient_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(n) => n.as_u64().map(Some).ok_or_else(|| {
            de::Error::custom(format!("expected a non-negative integer, found {n}"))
        }),
        serde_json::Value::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("expected an integer, found {s:?}"))),
        other => Err(de::Error::custom(format!(
            "expected an integer, found {other}"
        ))),
    }
}

fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| de::Error::custom("number out of range")),
        serde_json::Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("expected a number, found {s:?}"))),
        other => Err(de::Error::custom(format!(
            "expected a number, found {other}"
        ))),
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Product>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<Product>),
        One(Box<Product>),
        Null(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(p) => vec![*p],
        OneOrMany::Null(()) => Vec::new(),
    })
}

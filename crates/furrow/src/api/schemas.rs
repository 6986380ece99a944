//! The shapes of furrow's answers, for the OpenAPI description (Leaf's field names). Handlers
//! write these bodies from the stored records; the CI fuzz run (`scripts/fuzz`) checks every
//! answer it gets against these schemas, so a handler and its schema cannot drift apart quietly.
//! Request bodies are described by the handlers' own body types.
#![allow(dead_code)] // Read by the OpenAPI derive only.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `{"status": "ok"}`
#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: String,
}

/// `/ready`: the checks that passed.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    status: String,
    checks: ReadinessChecks,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessChecks {
    database: String,
    key_ring: String,
}

/// The API owner's token.
#[derive(Serialize, ToSchema)]
pub struct IdToken {
    /// A JWT to send as `Authorization: Bearer <id_token>`.
    id_token: String,
}

/// A Leaf user (one grower account).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[schema(format = Uuid)]
    id: String,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    address: Option<String>,
    external_id: Option<String>,
    created_time: String,
    /// Present once the user has John Deere credentials.
    john_deere_credentials: Option<Credential>,
}

/// A Leaf user's John Deere credentials. Secrets are `********` unless the server runs with
/// `FURROW_MASK_SECRETS=false`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    #[schema(format = Uuid)]
    id: String,
    /// `AUTHENTICATED`, `UNAUTHENTICATED` or `LIMITED_PERMISSION`.
    status: String,
    created_time: String,
    token_metadata: TokenMetadata,
    client_key: String,
    client_secret: String,
    access_token: Option<String>,
    refresh_token: String,
    /// `STAGE` or `PRODUCTION`.
    client_environment: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenMetadata {
    scopes: Vec<String>,
}

/// A call furrow made to John Deere for these credentials (token refreshes and checks).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialEvent {
    id: String,
    body: String,
    headers: String,
    status_code: Option<i64>,
    created_date: String,
    method: Option<String>,
    url: Option<String>,
}

/// A webhook for Leaf alerts.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    #[schema(format = Uuid)]
    id: String,
    name: String,
    url: String,
    events: Vec<String>,
    secret: String,
    created_time: String,
}

/// Deliveries that failed for good.
#[derive(Serialize, ToSchema)]
pub struct FailedCalls {
    items: Vec<FailedCall>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedCall {
    api_owner: String,
    created_at: String,
    url: String,
    request_body: String,
    /// The receiver's status, when it answered.
    status: Option<i64>,
    response: Option<String>,
    /// Why no answer came, when none did.
    connection_error: Option<String>,
}

/// A John Deere organization reached by a credential.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    provider_org_id: String,
    provider_org_name: String,
    /// `ENABLED` or `BLOCKED`.
    status: String,
    management_uri: Option<String>,
    sync_error: Option<String>,
    /// Reached through a partnership (synced only with `syncPartnerData`).
    partner: bool,
}

/// Organizations the grower connected to the app, and those not (yet) connected.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationConnections {
    connected_organizations: Vec<OrganizationEntry>,
    not_connected_organizations: Vec<OrganizationEntry>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationEntry {
    id: String,
    name: String,
    /// Where the grower connects or disconnects it at John Deere.
    management_uri: Option<String>,
}

/// The effective configuration (defaults < API owner < user), keyed as in Leaf's
/// configurations page, plus `apiOwnerUsername` and `leafUserId`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    api_owner_username: String,
    /// Empty for the API owner's own configuration.
    leaf_user_id: String,
}

/// An area with its unit.
#[derive(Serialize, ToSchema)]
pub struct Area {
    value: f64,
    #[schema(example = "ha")]
    unit: String,
}

/// A field, with its active boundary's geometry.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Field {
    #[schema(format = Uuid)]
    id: String,
    leaf_user_id: String,
    provider_name: String,
    provider_id: i64,
    provider_field_id: String,
    provider_field_name: String,
    name: String,
    provider_boundary_id: Option<String>,
    organization_id: String,
    r#type: String,
    farm_id: Option<i64>,
    files: Vec<String>,
    boundaries: Vec<String>,
    /// GeoJSON MultiPolygon of the active boundary.
    geometry: Option<Value>,
    area: Option<Area>,
    /// `PREVIEW`, `WAITING` or `PROCESSED`.
    status: String,
    deleted_on_provider: bool,
    created_time: String,
    updated_time: String,
}

/// One boundary of a field.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Boundary {
    id: String,
    /// `ACTIVE` or `INACTIVE`.
    status: String,
    provider_status: String,
    provider_boundary_id: String,
    /// GeoJSON MultiPolygon.
    geometry: Value,
    area: Area,
    validity: String,
    created_time: String,
    updated_time: String,
}

/// `enableSync` by grower: which fields were turned on.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnabledGrowers {
    grower_ids: Vec<i64>,
    enabled_fields: i64,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Farm {
    id: i64,
    name: String,
    provider_id: i64,
    provider_name: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Grower {
    id: i64,
    name: String,
    leaf_user_id: String,
    provider_name: String,
}

/// A user's sync: its state, the last run's counts and, while running, each organization's
/// progress.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncState {
    /// `IDLE`, `QUEUED`, `RUNNING`, `DONE` or `FAILED`.
    state: String,
    started_time: Option<String>,
    finished_time: Option<String>,
    counts: Value,
    last_error: Option<String>,
    organizations: Option<Vec<Value>>,
}

/// Leaf's integrations summary.
#[derive(Serialize, ToSchema)]
pub struct IntegrationResources {
    message: String,
    summaries: Vec<IntegrationSummary>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationSummary {
    provider: String,
    leaf_user_id: String,
    growers: i64,
    farms: i64,
    fields: i64,
    /// The end of the last finished sync; `null` before the first.
    sync_reference_time: Option<String>,
}

/// A field operation (planting, application, harvest, tillage) as Leaf lists it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    #[schema(format = Uuid)]
    id: String,
    api_owner_username: String,
    leaf_user_id: String,
    start_time: Option<String>,
    end_time: Option<String>,
    updated_time: String,
    created_time: String,
    r#type: String,
    operation_type: String,
    files: Vec<String>,
    fields: Vec<Value>,
    providers: Vec<String>,
    provider: String,
    origin: String,
    provider_operation_id: String,
    crop_season: Option<String>,
    crops: Value,
    varieties: Value,
    products: Value,
    machines: Value,
    operators: Value,
    summary: Value,
}

/// Where the standard GeoJSON is downloaded.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StandardGeojsonLinks {
    standard_geojson: String,
    download_standard_geojson: String,
}

/// Where the filtered GeoJSON is downloaded.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FilteredGeojsonLinks {
    filtered_geojson: String,
    download_filtered_geojson: String,
}

/// A GeoJSON FeatureCollection (or, for a summary, one Feature), with Leaf's standard
/// properties per operation type.
#[derive(Serialize, ToSchema)]
pub struct GeoJson {
    r#type: String,
}

/// An image of one property: PNG, with its color ramp (v1) or legend and extent (v2).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    property: String,
    url: String,
    download_url: String,
}

/// Processing of an operation's machine data, step by step as Leaf shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    /// `NOT_QUEUED` before processing was asked; otherwise the current step's status.
    status: String,
    message: Option<String>,
}

/// A file from John Deere.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct File {
    #[schema(format = Uuid)]
    id: String,
    provider: String,
    origin: String,
    status: String,
    file_name: String,
    file_type: Option<String>,
    size_in_bytes: i64,
    sha256: Option<String>,
    leaf_user_id: String,
    api_owner_username: String,
    organization_id: String,
    provider_file_id: String,
    provider_created_time: Option<String>,
    provider_modified_time: Option<String>,
    fields: Vec<String>,
    operations: Vec<String>,
    original_file: Option<String>,
    download_original_file: Option<String>,
    created_time: String,
    updated_time: String,
}

/// A step of Leaf's file processing.
#[derive(Serialize, ToSchema)]
pub struct Step {
    status: String,
    message: String,
}

/// Leaf's per-step statuses of a file.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileStatus {
    original_file: Step,
    raw_geojson: Step,
    normalized_geojson: Step,
    standard_geojson: Step,
    filtered_geojson: Step,
    #[serde(rename = "propertiesPNGs")]
    properties_pngs: Step,
    summary: Step,
    units: Step,
}

/// An app key (never its secret).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppKey {
    provider: String,
    app_name: String,
    client_environment: String,
    client_key: String,
    scopes: Vec<String>,
    created_time: String,
    /// The OAuth redirect URI to register at John Deere.
    redirect_uri: Option<String>,
}

/// A new magic link.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewMagicLink {
    #[schema(format = Uuid)]
    id: String,
    leaf_user_id: String,
    /// The page to send the grower to.
    link: String,
    expires_at: String,
}

/// A magic link.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MagicLink {
    #[schema(format = Uuid)]
    id: String,
    link: String,
    created_at: String,
    expires_at: String,
    last_accessed_at: Option<String>,
    leaf_user_id: String,
    max_usage: Option<i64>,
    usage_count: i64,
    widget: String,
    settings: Value,
    allowed_providers: Value,
    return_url: Option<String>,
    app_name: Option<String>,
    client_environment: Option<String>,
}

/// An OAuth authorization: send the grower to `url`; `status` follows the flow.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    #[schema(format = Uuid)]
    id: String,
    leaf_user_id: String,
    url: String,
    redirect_uri: String,
    scopes: Vec<String>,
    status: String,
    outcome: Option<Value>,
    created_time: String,
    expires_at: String,
}

/// A machine (Leaf's assets, beta).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    #[schema(format = Uuid)]
    id: String,
    leaf_user_id: String,
    name: String,
    /// `JohnDeere`, or `Leaf` for a machine the user created.
    provider: String,
    provider_machine_id: String,
    provider_organization_id: Option<String>,
    /// `PROVIDER_POOLED` or `USER_CREATED`.
    origin_type: String,
    created_time: String,
    updated_time: String,
    serial_number: Option<String>,
    vin: Option<String>,
    model: Option<String>,
    make: Option<String>,
    category: Option<String>,
    model_year: Option<i64>,
}

/// An implement (Leaf's assets, beta).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Implement {
    #[schema(format = Uuid)]
    id: String,
    leaf_user_id: String,
    name: String,
    provider: String,
    provider_implement_id: String,
    provider_organization_id: String,
    origin_type: String,
    created_time: String,
    updated_time: String,
    serial_number: Option<String>,
    model: Option<String>,
    make: Option<String>,
    category: Option<String>,
}

/// An operator (Leaf's assets, beta).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operator {
    #[schema(format = Uuid)]
    id: String,
    leaf_user_id: String,
    name: String,
    provider: String,
    provider_operator_id: String,
    provider_organization_id: String,
    origin_type: String,
    license: Option<String>,
    /// John Deere's last change of the operator.
    updated_time: Option<String>,
    /// `ACTIVE` or `ARCHIVED`.
    status: String,
}

/// The ids of an operation's machines, implements or operators (`machines`, `implements` or
/// `operators`: one key, named after the path).
#[derive(Serialize, ToSchema)]
pub struct OperationAssets {
    machines: Option<Vec<String>>,
    implements: Option<Vec<String>>,
    operators: Option<Vec<String>>,
}

//! The OpenAPI 3.1 description of furrow's API, generated from the handlers' annotations: every
//! route is registered through [`utoipa_axum`], so a route cannot exist without its entry. Served at
//! `/openapi.json`, with Swagger UI (embedded in the binary, no CDN) at `/docs`.
//!
//! What every operation shares is added here once, after the routes are collected: the bearer
//! scheme, the problem-details answers, and the paging headers of lists.

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Spec, Ref, RefOr, ResponseBuilder, Schema, Type};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "furrow",
        description = "Self-hosted, Leaf-compatible John Deere Operations Center connector. \
            Paths, field names, units and enums follow Leaf's API; see the README for where \
            furrow differs. Errors are RFC 9457 problem details (`application/problem+json`). \
            Lists are paged with `page` (from 0) and `size` (1-100, default 20) and answer \
            `X-Total-Count` and `Link` headers.",
        license(name = "Apache-2.0")
    ),
    components(schemas(Problem)),
    tags(
        (name = "operations", description = "Liveness, readiness and this description"),
        (name = "authentication", description = "API owners' login (Leaf's `POST /api/authenticate`)"),
        (name = "users", description = "Leaf users: one per grower account"),
        (name = "credentials", description = "A Leaf user's John Deere credentials and their events"),
        (name = "onboarding", description = "App keys, magic links and the OAuth authorization flow"),
        (name = "connect", description = "Pages a grower opens to connect John Deere (HTML)"),
        (name = "organizations", description = "John Deere organizations of a credential"),
        (name = "configurations", description = "Leaf configurations of the API owner and per user"),
        (name = "fields", description = "Growers, farms, fields, boundaries and the sync"),
        (name = "machine operations", description = "Field operations and their machine data"),
        (name = "files", description = "Files from John Deere"),
        (name = "alerts", description = "Webhooks for Leaf alerts"),
        (name = "integrations", description = "Sync summary per provider"),
        (name = "john deere", description = "John Deere's event deliveries to furrow"),
    )
)]
struct ApiDoc;

/// An RFC 9457 problem: every 4xx and 5xx furrow answers has this body.
#[derive(ToSchema)]
#[allow(dead_code)] // Describes the body [`super::error::ApiError`] writes.
pub struct Problem {
    /// A URI naming the kind of problem.
    #[schema(example = "https://furrow.dev/problems/bad-request")]
    r#type: String,
    /// The HTTP reason phrase.
    title: String,
    /// The HTTP status code.
    status: u16,
    /// What went wrong, for a person.
    detail: String,
    /// The request field at fault, when one is.
    field: Option<String>,
}

const BEARER: &str = "bearer";

/// The spec and the router serving it, from every documented route.
pub fn finish(routes: OpenApiRouter<crate::app::AppState>) -> (Router<crate::app::AppState>, Spec) {
    let (router, mut spec) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(openapi_json))
        .merge(routes)
        .split_for_parts();
    apply_conventions(&mut spec);
    let docs: Router<crate::app::AppState> = SwaggerUi::new("/docs")
        .config(Config::new(["/openapi.json"]))
        .into();
    let served = Arc::new(spec.to_json().unwrap_or_default());
    let router = router.merge(docs).layer(axum::Extension(SpecJson(served)));
    (router, spec)
}

#[derive(Clone)]
struct SpecJson(Arc<String>);

/// This description (OpenAPI 3.1). Its UI is at `/docs`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
async fn openapi_json(axum::Extension(SpecJson(spec)): axum::Extension<SpecJson>) -> Response {
    (
        [(CONTENT_TYPE, "application/json")],
        spec.as_str().to_owned(),
    )
        .into_response()
}

/// Whether an operation is open to anyone (annotated `security(())`).
fn is_public(operation: &Operation) -> bool {
    operation
        .security
        .as_ref()
        .is_some_and(|s| s.iter().all(|r| r == &Default::default()))
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("patch", &mut item.patch),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|o| (method, o)))
}

/// What all operations share, applied once: the security scheme (every operation needs the
/// bearer `id_token` unless marked public), problem answers, paging headers and the `/docs` UI.
fn apply_conventions(spec: &mut Spec) {
    let components = spec.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some("The id_token from POST /api/authenticate"))
                .build(),
        ),
    );
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    let int_header = HeaderBuilder::new()
        .schema(Schema::Object(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(Type::Integer)
                .build(),
        ))
        .description(Some("How many items the whole list has"))
        .build();
    let link_header = HeaderBuilder::new()
        .schema(Schema::Object(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(Type::String)
                .build(),
        ))
        .description(Some("first, next, prev and last pages (RFC 8288)"))
        .build();
    let html_error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("text/html", ContentBuilder::new().build())
            .build()
    };
    let mut ids = std::collections::HashSet::new();
    for item in spec.paths.paths.values_mut() {
        for (method, operation) in operations_mut(item) {
            let public = is_public(operation);
            // The grower's pages answer their errors as pages.
            let page = operation.tags.iter().flatten().any(|t| t == "connect");
            if public {
                operation.security = Some(Vec::new());
            }
            // Handler names repeat across modules (`list`, `one`): ids carry the tag, so they
            // are unique as OpenAPI requires, and read well in generated clients.
            if let (Some(tag), Some(id)) = (
                operation.tags.as_ref().and_then(|t| t.first()),
                operation.operation_id.as_mut(),
            ) {
                *id = format!("{}_{id}", tag.replace(' ', "_"));
                // One handler serving two methods (POST and PATCH of a re-sync).
                if !ids.insert(id.clone()) {
                    id.push_str(&format!("_{method}"));
                }
            }
            let has_body = operation.request_body.is_some();
            let paged = operation
                .parameters
                .iter()
                .flatten()
                .any(|p| p.name == "page");
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, description: &str| {
                let answer = if page && status != "405" {
                    html_error(description)
                } else {
                    problem(description)
                };
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| RefOr::T(answer));
            };
            add("400", "A parameter or field is missing or wrong");
            add("404", "Not found, or not the caller's");
            add("405", "Method not allowed on this resource");
            if page {
                add("403", "Opened in another browser than the one that started");
                add("409", "Already used");
                add("410", "Expired or used up");
            }
            if !public {
                add("401", "Missing, expired or forged id_token");
            }
            if has_body {
                add("413", "The body is larger than 256 KiB");
                add("415", "The body is not JSON");
            }
            if paged {
                if let Some(RefOr::T(ok)) = responses.get_mut("200") {
                    ok.headers
                        .insert("X-Total-Count".into(), int_header.clone());
                    ok.headers.insert("Link".into(), link_header.clone());
                }
            }
        }
    }
    spec.paths.paths.insert(
        "/docs".into(),
        PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .tag("operations")
                .summary(Some(
                    "This description as a page (Swagger UI, served by furrow)",
                ))
                .operation_id(Some("docs"))
                .security(Default::default())
                .response(
                    "303",
                    ResponseBuilder::new().description("On to `/docs/`, the page"),
                ),
        ),
    );
    spec.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new::<
        _,
        _,
        &str,
    >(BEARER, [])]);
}

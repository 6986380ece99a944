//! `/services/integrations/api/resources`: how much of each user's John Deere data is synced.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Owner;
use super::error::ApiResult;
use super::extract::{parse_id, PageQuery, Paging, Params};
use super::schemas;
use crate::app::AppState;
use crate::onboarding::JOHN_DEERE;

const PATH: &str = "/services/integrations/api/resources";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(resources))
}

/// Leaf's integrations summary: per user and provider, counts of growers, farms and fields and
/// when the data was last synced (`syncReferenceTime`, the end of the last sync; `null` before
/// the first). furrow has one provider: another `provider` filter gives an empty page.
#[utoipa::path(get, path = PATH, tag = "integrations",
    params(PageQuery,
        ("leafUserId" = Option<String>, Query, description = "One user's summary"),
        ("provider" = Option<String>, Query, description = "`JohnDeere`; another gives an empty page")),
    responses((status = 200, description = "Summaries", body = schemas::IntegrationResources)))]
async fn resources(
    State(state): State<AppState>,
    owner: Owner,
    params: Params,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let paging = Paging::from_params(&params)?;
    let user = params
        .get("leafUserId")
        .map(|u| parse_id(u, "Leaf user"))
        .transpose();
    let (summaries, total) = match (params.get("provider"), user) {
        (Some(p), _) if p != JOHN_DEERE => (Vec::new(), 0),
        // An id that is not a UUID matches no user.
        (_, Err(_)) => (Vec::new(), 0),
        (_, Ok(user)) => {
            state
                .store
                .integration_summaries(&owner.id, user.as_deref(), paging.offset(), paging.size)
                .await?
        }
    };
    let body: Vec<Value> = summaries
        .iter()
        .map(|s| {
            json!({
                "provider": JOHN_DEERE,
                "leafUserId": s.leaf_user_id,
                "growers": s.growers,
                "farms": s.farms,
                "fields": s.fields,
                "syncReferenceTime": s.sync_reference_time,
            })
        })
        .collect();
    Ok((
        paging.headers(total, PATH),
        Json(json!({"message": "SUCCESS", "summaries": body})),
    ))
}

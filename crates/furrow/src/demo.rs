//! `furrow demo`: the whole flow with no John Deere account. Starts the simulator, points
//! furrow at it, creates a demo API owner and prints curl commands to paste.

use crate::app::StartError;
use crate::config::Settings;

pub const DEMO_EMAIL: &str = "demo@furrow.local";
pub const DEMO_PASSWORD: &str = "furrow-demo";

pub async fn run(mut settings: Settings) -> Result<(), StartError> {
    let sim_addr = "127.0.0.1:0".parse().expect("static address");
    let sim = deere_sim::start(deere_sim::SimConfig::default(), sim_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: sim_addr,
            source,
        })?;
    // Health checks every few seconds (unless configured) so a revoked grant shows at once.
    if settings.health_check_interval_secs == Settings::default().health_check_interval_secs {
        settings.health_check_interval_secs = 5;
    }
    // The simulator's exports are ready at once: no need for John Deere's 5 s first wait.
    if settings.export_poll_ms == Settings::default().export_poll_ms {
        settings.export_poll_ms = 200;
    }
    // Denser machine data than the simulator's default, for maps worth looking at.
    sim.sim.state().settings.export_points = 6000;
    // A first look registers alert receivers on this machine: the demo lets them (never the
    // default of `furrow serve`).
    settings.alert_allow_private_networks = true;
    settings.deere_auth_url = sim.issuer_url();
    settings.deere_stage_api_url = sim.platform_url().to_string();
    settings.deere_production_api_url = sim.platform_url().to_string();
    let running = crate::app::start(settings).await?;
    match crate::api::auth::create_owner(&running.state.store, DEMO_EMAIL, DEMO_PASSWORD).await {
        Ok(_) | Err(crate::api::auth::OwnerError::Exists(_)) => {}
        Err(e) => tracing::warn!(error = %e, "demo owner not created"),
    }
    // The simulator's seeded operations are from 2022–2024: let the demo owner see them, with
    // the maps of their machine data.
    if let Ok(Some(owner)) = running.state.store.owner_by_email(DEMO_EMAIL).await {
        let config =
            serde_json::json!({"operationsProcessingRange": 120, "operationsImageCreation": true})
                .to_string();
        if let Err(e) = running.state.store.put_config(&owner.id, "", &config).await {
            tracing::warn!(error = %e, "demo configuration not stored");
        }
    }
    let magic_link = match running.state.store.owner_by_email(DEMO_EMAIL).await {
        Ok(Some(owner)) => demo_magic_link(&running.state, &owner.id)
            .await
            .unwrap_or_else(|e| format!("(not created: {e})")),
        _ => "(not created: no demo owner)".into(),
    };
    let tokens = sim
        .issue_tokens(
            "sim-client",
            "grower001",
            &["ag1", "ag2", "ag3", "files", "offline_access"],
        )
        .map_err(StartError::Demo)?;
    let refresh_token = tokens.refresh_token.unwrap_or_default();
    // A field of grower001 that furrow syncs, to change in the simulator.
    let field = sim
        .sim
        .state()
        .world
        .user_orgs("grower001")
        .into_iter()
        .filter(|o| o.connected_apps.contains("sim-client"))
        .flat_map(|o| o.fields.iter().map(|f| f.id.clone()))
        .next()
        .unwrap_or_default();
    let base = running.base_url();
    println!(
        r#"
furrow demo
  furrow API:          {base}
  John Deere (sim):    {sim_root}  (admin: {sim_root}/__admin/world)
  API owner:           {DEMO_EMAIL} / {DEMO_PASSWORD}

Connect a grower in your browser (the simulator's grower001; its John Deere pages are the
simulator's): open this magic link, allow access, tick the organizations, see the result:
  {magic_link}

Or, as an application would, through the API. Paste these, in order:

TOKEN=$(curl -s {base}/api/authenticate -H 'content-type: application/json' \
  -d '{{"username":"{DEMO_EMAIL}","password":"{DEMO_PASSWORD}","rememberMe":"false"}}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id_token"])')

USER=$(curl -s {base}/services/usermanagement/api/users -H "Authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d '{{"name":"Grower One","email":"grower1@example.com"}}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

curl -s {base}/services/usermanagement/api/users/$USER/john-deere-credentials \
  -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{{"clientKey":"sim-client","clientSecret":"sim-secret","refreshToken":"{refresh_token}","clientEnvironment":"STAGE"}}'

curl -s {base}/services/usermanagement/api/users/$USER/john-deere-credentials/events -H "Authorization: Bearer $TOKEN"

# A moment later the first sync is done: its status, then the synced fields and operations.
curl -s {base}/services/fields/api/users/$USER/fields/sync -H "Authorization: Bearer $TOKEN"
curl -s "{base}/services/fields/api/fields?leafUserId=$USER" -H "Authorization: Bearer $TOKEN"
curl -s "{base}/services/operations/api/operations?leafUserId=$USER" -H "Authorization: Bearer $TOKEN"

# Machine data: every operation's standard GeoJSON, summary, units and maps. A harvest's yield map:
OP=$(curl -s "{base}/services/operations/api/operations?leafUserId=$USER&operationType=harvested" \
  -H "Authorization: Bearer $TOKEN" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
curl -s {base}/services/operations/api/operations/$OP/status -H "Authorization: Bearer $TOKEN"
curl -s {base}/services/operations/api/operations/$OP/summary -H "Authorization: Bearer $TOKEN"
curl -s {base}/services/operations/api/operations/$OP/imagesV2 -H "Authorization: Bearer $TOKEN"
curl -s -o yield.png {base}/services/operations/api/operations/$OP/images/dryVolumePerArea/download \
  -H "Authorization: Bearer $TOKEN"    # then open yield.png

# A new field operation in John Deere reaches furrow by webhook within a second (one more operation):
curl -s -X POST {sim_root}/__admin/fields/{field}/operations -H 'content-type: application/json' -d '{{"type":"seeding"}}'
curl -s -o /dev/null -D - "{base}/services/operations/api/operations?leafUserId=$USER" -H "Authorization: Bearer $TOKEN" | grep -i x-total-count

# Revoke the grower's grant in the simulator; within a health check (every 5 s in the demo) furrow
# reports UNAUTHENTICATED:
curl -s -X POST {sim_root}/__admin/grants/revoke -H 'content-type: application/json' -d '{{"userName":"grower001"}}'
curl -s {base}/services/usermanagement/api/users/$USER/john-deere-credentials -H "Authorization: Bearer $TOKEN"

Ctrl-C stops both.
"#,
        sim_root = sim.root_url(),
    );
    running.until_signal().await;
    sim.shutdown().await;
    Ok(())
}

/// The demo's John Deere app registration, a Leaf user for the browser flow and a day-long
/// magic link for it.
async fn demo_magic_link(
    state: &crate::app::AppState,
    owner_id: &str,
) -> Result<String, crate::store::StoreError> {
    use crate::store::{leaf_time_now, now_ms, AppKeyRecord, MagicLinkRecord, UserWrite};
    let key = match state
        .store
        .app_key(owner_id, crate::onboarding::JOHN_DEERE, "Demo", "STAGE")
        .await?
    {
        Some(key) => key,
        None => {
            let key = AppKeyRecord {
                id: uuid::Uuid::new_v4().to_string(),
                owner_id: owner_id.into(),
                provider: crate::onboarding::JOHN_DEERE.into(),
                app_name: "Demo".into(),
                client_environment: "STAGE".into(),
                client_key: "sim-client".into(),
                client_secret_enc: state.keyring.encrypt("sim-secret"),
                scopes: String::new(),
                created_at: leaf_time_now(),
            };
            state.store.put_app_key(&key).await?;
            key
        }
    };
    let user_id = uuid::Uuid::new_v4().to_string();
    let user = UserWrite {
        name: Some("Browser Grower".into()),
        email: Some("browser.grower@example.com".into()),
        ..UserWrite::default()
    };
    state.store.insert_user(owner_id, &user_id, &user).await?;
    let link = MagicLinkRecord {
        id: uuid::Uuid::new_v4().to_string(),
        owner_id: owner_id.into(),
        leaf_user_id: user_id,
        app_key_id: key.id,
        widget: "PROVIDER".into(),
        settings: serde_json::json!({"companyName": "furrow demo", "showLeafUserName": true})
            .to_string(),
        allowed_providers: serde_json::json!([crate::onboarding::JOHN_DEERE]).to_string(),
        return_url: None,
        max_usage: 3,
        usage_count: 0,
        created_at: leaf_time_now(),
        expires_at_ms: now_ms() + 86_400_000,
        last_accessed_ms: None,
    };
    state.store.insert_magic_link(&link).await?;
    Ok(crate::onboarding::magic_link_url(state, &link.id))
}

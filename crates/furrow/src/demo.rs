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

Paste these, in order:

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

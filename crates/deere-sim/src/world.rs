//! The simulated John Deere world: growers (John Deere users), organizations, clients, farms,
//! fields, boundaries, field operations and files, each stamped with the change sequence number
//! of its last change so that `x-deere-signature` can answer 304 or a delta.

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How big a seeded world is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorldSize {
    pub growers: u32,
    /// Organizations per grower connected to the default app.
    pub connected_orgs_per_grower: u32,
    /// Organizations per grower the default app has not been approved for.
    pub unconnected_orgs_per_grower: u32,
    pub clients_per_org: u32,
    pub farms_per_client: u32,
    pub fields_per_org: u32,
    pub operations_per_field: u32,
    pub files_per_org: u32,
    /// Size of each generated machine file in bytes (approximate; a real zip is built around it).
    pub file_bytes: u32,
}

impl Default for WorldSize {
    fn default() -> Self {
        Self {
            growers: 2,
            connected_orgs_per_grower: 2,
            unconnected_orgs_per_grower: 1,
            clients_per_org: 1,
            farms_per_client: 2,
            fields_per_org: 3,
            operations_per_field: 4,
            files_per_org: 2,
            file_bytes: 4096,
        }
    }
}

/// Anything that can change: the sequence number of its last change, and of its deletion.
#[derive(Debug, Clone)]
pub struct Stamp {
    pub modified_seq: u64,
    pub deleted_seq: Option<u64>,
}

impl Stamp {
    pub fn new(seq: u64) -> Self {
        Self {
            modified_seq: seq,
            deleted_seq: None,
        }
    }
    pub fn is_live(&self) -> bool {
        self.deleted_seq.is_none()
    }
    /// The latest change of any kind.
    pub fn last_seq(&self) -> u64 {
        self.deleted_seq.unwrap_or(self.modified_seq)
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub user_name: String,
    pub org_ids: Vec<String>,
    /// When set, tokens for this user are granted at most these scopes.
    pub scope_cap: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct Org {
    pub id: String,
    pub name: String,
    /// Client keys of the apps the org's owner approved (`manage_connections` vs `connections`).
    pub connected_apps: HashSet<String>,
    /// False for an organization the user reaches through a partnership (another org's data
    /// shared with them) rather than as its staff: John Deere's `member`.
    pub member: bool,
    pub stamp: Stamp,
    pub clients: Vec<ClientRec>,
    pub farms: Vec<FarmRec>,
    pub fields: Vec<FieldRec>,
    pub files: Vec<FileRec>,
    /// Machines and implements (John Deere's equipment), and the organization's operators.
    pub equipment: Vec<EquipmentRec>,
    pub operators: Vec<OperatorRec>,
}

/// A machine or an implement of an organization.
#[derive(Debug, Clone)]
pub struct EquipmentRec {
    /// John Deere's principal id (numeric, as `machineId` on field operations).
    pub id: String,
    pub erid: String,
    /// `Machine` or `Implement`.
    pub kind: &'static str,
    pub name: String,
    pub serial_number: String,
    pub make: String,
    pub model: String,
    pub model_year: u32,
    /// John Deere's equipment type (`Combine`, `Tractor`, `Planter`, ...).
    pub category: String,
    /// An implement's machine (its principal id) while attached.
    pub attached_to: Option<String>,
    /// The operation types this machine works (machines only).
    pub works: &'static [&'static str],
    pub stamp: Stamp,
}

/// An operator (a person who runs the organization's machines).
#[derive(Debug, Clone)]
pub struct OperatorRec {
    pub id: String,
    pub name: String,
    pub archived: bool,
    pub modified: DateTime<Utc>,
    pub stamp: Stamp,
}

#[derive(Debug, Clone)]
pub struct ClientRec {
    pub id: String,
    pub name: String,
    pub stamp: Stamp,
}

#[derive(Debug, Clone)]
pub struct FarmRec {
    pub id: String,
    pub name: String,
    pub client_id: String,
    pub stamp: Stamp,
}

#[derive(Debug, Clone)]
pub struct FieldRec {
    pub id: String,
    pub name: String,
    pub farm_id: Option<String>,
    pub client_id: Option<String>,
    pub archived: bool,
    pub modified: DateTime<Utc>,
    pub stamp: Stamp,
    pub boundaries: Vec<BoundaryRec>,
    pub operations: Vec<OperationRec>,
}

impl FieldRec {
    pub fn active_boundary(&self) -> Option<&BoundaryRec> {
        self.boundaries
            .iter()
            .find(|b| b.active && b.stamp.is_live())
    }
}

/// A ring of (lon, lat) points, closed.
pub type RingPoints = Vec<(f64, f64)>;

#[derive(Debug, Clone)]
pub struct BoundaryRec {
    pub id: String,
    pub name: String,
    pub exterior: RingPoints,
    pub interiors: Vec<RingPoints>,
    pub active: bool,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub stamp: Stamp,
}

impl BoundaryRec {
    /// Area in hectares: exterior minus interiors.
    pub fn area_ha(&self) -> f64 {
        let holes: f64 = self.interiors.iter().map(|r| ring_area_m2(r)).sum();
        (ring_area_m2(&self.exterior) - holes) / 10_000.0
    }
}

/// Planar area of a small lon/lat ring (equirectangular projection at the ring's latitude).
pub fn ring_area_m2(ring: &[(f64, f64)]) -> f64 {
    if ring.len() < 4 {
        return 0.0;
    }
    let lat0 = ring.iter().map(|p| p.1).sum::<f64>() / ring.len() as f64;
    let m_per_deg_lat = 111_320.0;
    let m_per_deg_lon = 111_320.0 * lat0.to_radians().cos();
    let mut twice = 0.0;
    for w in ring.windows(2) {
        let (x1, y1) = (w[0].0 * m_per_deg_lon, w[0].1 * m_per_deg_lat);
        let (x2, y2) = (w[1].0 * m_per_deg_lon, w[1].1 * m_per_deg_lat);
        twice += x1 * y2 - x2 * y1;
    }
    (twice / 2.0).abs()
}

#[derive(Debug, Clone)]
pub struct OperationRec {
    pub id: String,
    /// Wire value as stored: the simulator keeps the case it was given.
    pub operation_type: String,
    pub crop_season: String,
    pub crop_name: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub product_name: Option<String>,
    pub machine_vin: String,
    /// The machine's principal id and ERID (its organization's equipment), and the operator's id.
    pub machine_id: String,
    pub machine_erid: String,
    pub operator_id: String,
    pub operator_name: String,
    pub area_ha: f64,
    /// Main measurement total (yield, rate, depth), unit depends on the type.
    pub total: f64,
    /// Points in its shapefile export (`None`: the `exportPoints` setting).
    pub export_points: Option<usize>,
    /// `false`: John Deere cannot make a shapefile of it (406).
    pub spatial: bool,
    pub stamp: Stamp,
}

impl OperationRec {
    pub fn kind(&self) -> String {
        self.operation_type.to_ascii_lowercase()
    }
}

#[derive(Debug, Clone)]
pub struct FileRec {
    pub id: String,
    pub name: String,
    pub file_type: String,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub size: u32,
    pub source: String,
    pub status: String,
    /// Seed of the file's bytes; the content is a pure function of it and `size`.
    pub content_seed: u64,
    pub stamp: Stamp,
}

/// The whole world.
#[derive(Debug)]
pub struct World {
    pub seq: u64,
    pub users: BTreeMap<String, User>,
    pub orgs: BTreeMap<String, Org>,
    rng: StdRng,
    next_org: u64,
    next_file: u64,
    next_name: u64,
}

pub const OPERATION_TYPES: [&str; 4] = ["seeding", "application", "harvest", "tillage"];
const CROPS: [&str; 3] = ["CORN_WET", "SOYBEANS", "WHEAT_WINTER"];

/// Where a field lives.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldLoc {
    pub org: String,
    pub field: usize,
}

impl World {
    pub fn new(seed: u64) -> Self {
        Self {
            seq: 0,
            users: BTreeMap::new(),
            orgs: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed),
            next_org: 440_001,
            next_file: 577_499_742,
            next_name: 1,
        }
    }

    /// A world seeded from `seed` with `size`; orgs are connected to `client_key`.
    pub fn seeded(seed: u64, size: &WorldSize, client_key: &str) -> Self {
        let mut world = Self::new(seed);
        for g in 0..size.growers {
            let user = format!("grower{:03}", g + 1);
            let mut orgs = Vec::new();
            for o in 0..size.connected_orgs_per_grower + size.unconnected_orgs_per_grower {
                let connected = o < size.connected_orgs_per_grower;
                orgs.push(OrgSpec {
                    name: None,
                    connected_to: connected.then(|| client_key.to_string()),
                    partner: false,
                    clients: size.clients_per_org,
                    farms_per_client: size.farms_per_client,
                    fields: size.fields_per_org,
                    operations_per_field: size.operations_per_field,
                    files: size.files_per_org,
                    file_bytes: size.file_bytes,
                });
            }
            world.add_user(&user, &orgs);
        }
        world
    }

    pub fn bump(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn uuid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .to_string()
    }

    fn counter(&mut self) -> u64 {
        let n = self.next_name;
        self.next_name += 1;
        n
    }

    /// Adds a user with organizations built to `specs`. Returns the new org ids.
    pub fn add_user(&mut self, user_name: &str, specs: &[OrgSpec]) -> Vec<String> {
        let mut ids = Vec::new();
        for spec in specs {
            ids.push(self.add_org(spec));
        }
        let user = self
            .users
            .entry(user_name.to_string())
            .or_insert_with(|| User {
                user_name: user_name.to_string(),
                org_ids: Vec::new(),
                scope_cap: None,
            });
        user.org_ids.extend(ids.iter().cloned());
        ids
    }

    fn add_org(&mut self, spec: &OrgSpec) -> String {
        let id = self.next_org.to_string();
        self.next_org += 1;
        let seq = self.bump();
        let name = spec
            .name
            .clone()
            .unwrap_or_else(|| format!("{} Acres {}", pick(&mut self.rng, &NAMES), &id[3..]));
        let mut org = Org {
            id: id.clone(),
            name,
            connected_apps: spec.connected_to.iter().cloned().collect(),
            member: !spec.partner,
            stamp: Stamp::new(seq),
            clients: Vec::new(),
            farms: Vec::new(),
            fields: Vec::new(),
            files: Vec::new(),
            equipment: fleet(&id, seq),
            operators: crew(&id, seq),
        };
        for c in 0..spec.clients.max(1) {
            let client_id = self.uuid();
            let n = self.counter();
            org.clients.push(ClientRec {
                id: client_id.clone(),
                name: format!("{} Client {n}", pick(&mut self.rng, &NAMES)),
                stamp: Stamp::new(seq),
            });
            for _ in 0..spec.farms_per_client.max(1) {
                let n = self.counter();
                let farm = FarmRec {
                    id: self.uuid(),
                    name: format!("{} Farm {n}", pick(&mut self.rng, &NAMES)),
                    client_id: client_id.clone(),
                    stamp: Stamp::new(seq),
                };
                org.farms.push(farm);
            }
            let _ = c;
        }
        // Base location: somewhere in the US corn belt, deterministic.
        let base_lat = 40.0 + self.rng.random_range(0.0..4.0);
        let base_lon = -96.0 + self.rng.random_range(0.0..8.0);
        for f in 0..spec.fields {
            let farm = org.farms[f as usize % org.farms.len()].clone();
            let lat = base_lat + (f / 10) as f64 * 0.012;
            let lon = base_lon + (f % 10) as f64 * 0.012;
            let mut field = self.new_field(&farm, lat, lon, spec.operations_per_field);
            for op in &mut field.operations {
                org.assign_crew(op);
            }
            org.fields.push(field);
        }
        for _ in 0..spec.files {
            let file = self.new_file(spec.file_bytes, None);
            org.files.push(file);
        }
        self.orgs.insert(id.clone(), org);
        id
    }

    fn new_field(&mut self, farm: &FarmRec, lat: f64, lon: f64, operations: u32) -> FieldRec {
        let seq = self.seq;
        let n = self.counter();
        let now = sim_epoch() + ChronoDuration::days(n as i64 % 300);
        let mut field = FieldRec {
            id: self.uuid(),
            name: format!("{} {n}", pick(&mut self.rng, &FIELD_NAMES)),
            farm_id: Some(farm.id.clone()),
            client_id: Some(farm.client_id.clone()),
            archived: false,
            modified: now,
            stamp: Stamp::new(seq),
            boundaries: Vec::new(),
            operations: Vec::new(),
        };
        let boundary = self.new_boundary(&field.name, lat, lon, now);
        field.boundaries.push(boundary);
        for i in 0..operations {
            let kind = OPERATION_TYPES[i as usize % OPERATION_TYPES.len()];
            let season = 2022 + (i / OPERATION_TYPES.len() as u32) as i32 % 3;
            let op = self.new_operation(kind, season);
            field.operations.push(op);
        }
        field
    }

    /// A rectangle of 20–60 ha around (lat, lon), sometimes with a hole.
    pub fn new_boundary(
        &mut self,
        field_name: &str,
        lat: f64,
        lon: f64,
        at: DateTime<Utc>,
    ) -> BoundaryRec {
        let h = self.rng.random_range(0.003..0.006);
        let w = self.rng.random_range(0.004..0.008);
        let exterior = rectangle(lon, lat, w, h);
        let interiors = if self.rng.random_bool(0.25) {
            vec![rectangle(lon + w * 0.4, lat - h * 0.4, w * 0.1, h * 0.1)]
        } else {
            Vec::new()
        };
        let mut name: String = format!("{field_name} {}", at.format("%Y"));
        name.truncate(20);
        BoundaryRec {
            id: self.uuid(),
            name,
            exterior,
            interiors,
            active: true,
            created: at,
            modified: at,
            stamp: Stamp::new(self.seq),
        }
    }

    pub fn new_operation(&mut self, kind: &str, season: i32) -> OperationRec {
        let n = self.counter();
        let (month, crop, product) = match kind {
            "seeding" => (4, Some(pick(&mut self.rng, &CROPS)), Some("P1185")),
            "application" => (6, None, Some("Roundup PowerMAX")),
            "harvest" => (10, Some(pick(&mut self.rng, &CROPS)), Some("P1185")),
            _ => (11, None, None),
        };
        let day = self.rng.random_range(1..28);
        let start = Utc
            .with_ymd_and_hms(season, month, day, 13, 0, 0)
            .single()
            .unwrap_or_else(sim_epoch);
        let end = start + ChronoDuration::hours(self.rng.random_range(4..30));
        let area = (self.rng.random_range(2000.0..6000.0_f64) / 100.0).round() / 1.0;
        OperationRec {
            id: URL_SAFE_NO_PAD.encode(format!("{season}_{kind}_{n:06}")),
            operation_type: kind.to_string(),
            crop_season: season.to_string(),
            crop_name: crop.map(str::to_string),
            start,
            end,
            modified: end + ChronoDuration::hours(6),
            product_name: product.map(str::to_string),
            machine_vin: format!("1H0S780SXXX{:06}", n % 1_000_000),
            machine_id: "637795".into(),
            machine_erid: format!("erid-{:06}", n % 1_000_000),
            operator_id: String::new(),
            operator_name: pick(&mut self.rng, &OPERATORS).to_string(),
            area_ha: area,
            total: (self.rng.random_range(100.0..400.0_f64) * 10.0).round() / 10.0,
            export_points: None,
            spatial: true,
            stamp: Stamp::new(self.seq),
        }
    }

    pub fn new_file(&mut self, size: u32, name: Option<String>) -> FileRec {
        let id = self.next_file.to_string();
        self.next_file += 1;
        let n = self.counter();
        let created = sim_epoch() + ChronoDuration::hours(n as i64);
        FileRec {
            id,
            name: name.unwrap_or_else(|| format!("JD{}_Harvest_{n}.zip", 4000 + n % 1000)),
            file_type: "SETUP".into(),
            created,
            modified: created + ChronoDuration::minutes(4),
            size,
            source: format!("1H0S780SXXX{:06}", n),
            status: "READY".into(),
            content_seed: self.rng.random(),
            stamp: Stamp::new(self.seq),
        }
    }

    pub fn user_orgs(&self, user: &str) -> Vec<&Org> {
        self.users
            .get(user)
            .map(|u| {
                u.org_ids
                    .iter()
                    .filter_map(|id| self.orgs.get(id))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn user_has_org(&self, user: &str, org: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.org_ids.iter().any(|o| o == org))
    }

    /// Finds a field by id in any org.
    pub fn find_field(&self, field_id: &str) -> Option<FieldLoc> {
        self.orgs.values().find_map(|org| {
            org.fields
                .iter()
                .position(|f| f.id == field_id)
                .map(|field| FieldLoc {
                    org: org.id.clone(),
                    field,
                })
        })
    }

    pub fn field_mut(&mut self, loc: &FieldLoc) -> &mut FieldRec {
        &mut self.orgs.get_mut(&loc.org).expect("located org").fields[loc.field]
    }

    /// Finds an operation by id: (org id, field index, operation index).
    pub fn find_operation(&self, op_id: &str) -> Option<(FieldLoc, usize)> {
        self.orgs.values().find_map(|org| {
            org.fields.iter().enumerate().find_map(|(fi, f)| {
                f.operations.iter().position(|o| o.id == op_id).map(|oi| {
                    (
                        FieldLoc {
                            org: org.id.clone(),
                            field: fi,
                        },
                        oi,
                    )
                })
            })
        })
    }

    /// Finds a file by id: (org id, index).
    pub fn find_file(&self, file_id: &str) -> Option<(String, usize)> {
        self.orgs.values().find_map(|org| {
            org.files
                .iter()
                .position(|f| f.id == file_id)
                .map(|i| (org.id.clone(), i))
        })
    }

    pub fn next_field_position(&mut self, org: &str) -> (f64, f64) {
        let org = &self.orgs[org];
        let n = org.fields.len();
        let (lon, lat) = org
            .fields
            .iter()
            .find_map(|f| f.boundaries.first().map(|b| b.exterior[0]))
            .unwrap_or((-93.77, 41.65));
        (lat + (n / 10) as f64 * 0.012, lon + (n % 10) as f64 * 0.012)
    }

    pub fn new_field_in(&mut self, org_id: &str, name: Option<String>, operations: u32) -> String {
        let (lat, lon) = self.next_field_position(org_id);
        self.bump();
        let farm = self.orgs[org_id].farms.first().cloned();
        let farm = match farm {
            Some(f) => f,
            None => FarmRec {
                id: String::new(),
                name: String::new(),
                client_id: String::new(),
                stamp: Stamp::new(self.seq),
            },
        };
        let mut field = self.new_field(&farm, lat, lon, operations);
        if farm.id.is_empty() {
            field.farm_id = None;
            field.client_id = None;
        }
        if let Some(name) = name {
            field.name = name;
        }
        let id = field.id.clone();
        let org = self.orgs.get_mut(org_id).expect("org exists");
        for op in &mut field.operations {
            org.assign_crew(op);
        }
        org.fields.push(field);
        id
    }
}

impl Org {
    /// Puts one of the organization's machines (the one that works this kind of operation) and
    /// the operator of that name on an operation.
    pub fn assign_crew(&self, op: &mut OperationRec) {
        let kind = op.kind();
        if let Some(machine) = self
            .equipment
            .iter()
            .find(|e| e.kind == "Machine" && e.works.contains(&kind.as_str()))
        {
            op.machine_id = machine.id.clone();
            op.machine_erid = machine.erid.clone();
            op.machine_vin = machine.serial_number.clone();
        }
        if let Some(operator) = self.operators.iter().find(|o| o.name == op.operator_name) {
            op.operator_id = operator.id.clone();
        }
    }

    /// The implements attached to a machine.
    pub fn implements_of<'a>(
        &'a self,
        machine_id: &'a str,
    ) -> impl Iterator<Item = &'a EquipmentRec> {
        self.equipment
            .iter()
            .filter(move |e| e.attached_to.as_deref() == Some(machine_id))
    }
}

/// Every organization's equipment, derived from its id (no randomness, so worlds seeded before
/// equipment existed are unchanged): four machines, three implements attached to them.
fn fleet(org_id: &str, seq: u64) -> Vec<EquipmentRec> {
    let n: u64 = org_id.parse().unwrap_or(0);
    let id = |i: u64| (n * 100 + i).to_string();
    let machine =
        |i: u64, name: &str, model: &str, year: u32, category: &str, works| EquipmentRec {
            id: id(i),
            erid: format!("e71d0000-0000-4000-8000-{:012}", n * 100 + i),
            kind: "Machine",
            name: name.to_string(),
            serial_number: format!("1RW{}{:02}{n:08}", model.replace(' ', "").to_uppercase(), i),
            make: "JOHN DEERE".into(),
            model: model.into(),
            model_year: year,
            category: category.into(),
            attached_to: None,
            works,
            stamp: Stamp::new(seq),
        };
    let implement = |i: u64, name: &str, model: &str, category: &str, to: u64| EquipmentRec {
        kind: "Implement",
        attached_to: Some(id(to)),
        works: &[],
        serial_number: format!("1N0{}{:02}{n:08}", model.to_uppercase(), i),
        ..machine(i, name, model, 2020, category, &[])
    };
    vec![
        machine(1, "S780 Combine", "S780", 2021, "Combine", &["harvest"]),
        machine(
            2,
            "R4045 Sprayer",
            "R4045",
            2020,
            "Sprayer",
            &["application"],
        ),
        machine(
            3,
            "8R 410 Planting",
            "8R 410",
            2022,
            "Tractor",
            &["seeding"],
        ),
        machine(4, "9R 640 Tillage", "9R 640", 2019, "Tractor", &["tillage"]),
        implement(11, "745FD Header", "745FD", "Draper Header", 1),
        implement(12, "DB60 Planter", "DB60", "Planter", 3),
        implement(13, "2730 Ripper", "2730", "Tillage", 4),
    ]
}

/// Every organization's operators, one per name operations use.
fn crew(org_id: &str, seq: u64) -> Vec<OperatorRec> {
    let n: u64 = org_id.parse().unwrap_or(0);
    OPERATORS
        .iter()
        .enumerate()
        .map(|(i, name)| OperatorRec {
            id: format!("0235d40e-0000-4000-8000-{:012}", n * 10 + i as u64),
            name: (*name).to_string(),
            archived: false,
            modified: sim_epoch(),
            stamp: Stamp::new(seq),
        })
        .collect()
}

/// What a new organization holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OrgSpec {
    pub name: Option<String>,
    /// Client key of an app this org is connected to (None: not connected to any).
    pub connected_to: Option<String>,
    /// Reached through a partnership (`member: false`), not as staff.
    pub partner: bool,
    pub clients: u32,
    pub farms_per_client: u32,
    pub fields: u32,
    pub operations_per_field: u32,
    pub files: u32,
    pub file_bytes: u32,
}

impl Default for OrgSpec {
    fn default() -> Self {
        Self {
            name: None,
            connected_to: None,
            partner: false,
            clients: 1,
            farms_per_client: 1,
            fields: 2,
            operations_per_field: 4,
            files: 1,
            file_bytes: 4096,
        }
    }
}

fn rectangle(lon: f64, lat: f64, w: f64, h: f64) -> RingPoints {
    let r = |v: f64| (v * 1e6).round() / 1e6;
    vec![
        (r(lon), r(lat)),
        (r(lon + w), r(lat)),
        (r(lon + w), r(lat - h)),
        (r(lon), r(lat - h)),
        (r(lon), r(lat)),
    ]
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// A fixed "now" for generated data so that a seed always yields the same world.
pub fn sim_epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 15, 12, 0, 0)
        .single()
        .expect("valid date")
}

/// ISO-8601 UTC with milliseconds, as John Deere writes times.
pub fn iso(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

const NAMES: [&str; 8] = [
    "Prairie", "Cedar", "Willow", "Maple", "Hickory", "Sunrise", "Bluestem", "Oak",
];
const FIELD_NAMES: [&str; 6] = ["North", "South", "East", "West", "River", "Creek"];
const OPERATORS: [&str; 4] = ["Sam", "Alex", "Jordan", "Casey"];

/// Lookup helper used by the handlers: field ids → location, computed once per request.
pub fn index_fields(world: &World) -> HashMap<String, FieldLoc> {
    let mut map = HashMap::new();
    for org in world.orgs.values() {
        for (i, f) in org.fields.iter().enumerate() {
            map.insert(
                f.id.clone(),
                FieldLoc {
                    org: org.id.clone(),
                    field: i,
                },
            );
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_world() {
        let a = World::seeded(7, &WorldSize::default(), "k");
        let b = World::seeded(7, &WorldSize::default(), "k");
        let ids = |w: &World| -> Vec<String> {
            w.orgs
                .values()
                .flat_map(|o| o.fields.iter().map(|f| format!("{}:{}", f.id, f.name)))
                .collect()
        };
        assert_eq!(ids(&a), ids(&b));
        let c = World::seeded(8, &WorldSize::default(), "k");
        assert_ne!(ids(&a), ids(&c));
    }

    #[test]
    fn boundaries_are_closed_with_positive_area() {
        let w = World::seeded(1, &WorldSize::default(), "k");
        for org in w.orgs.values() {
            for f in &org.fields {
                let b = f.active_boundary().unwrap();
                assert_eq!(b.exterior.first(), b.exterior.last());
                assert!(b.exterior.len() >= 4);
                assert!(b.area_ha() > 5.0 && b.area_ha() < 100.0, "{}", b.area_ha());
            }
        }
    }
}

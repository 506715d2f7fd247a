//! Road inspection (issue 17): the `/roads` pages. The defects of a tenant (the
//! operator's: every tenant's, or one chosen) as a map-like list sorted by position with
//! a server-drawn SVG scatter coloured by state, counts per state, the tenant's crews and
//! the weekly report; a work order's page (its defect, evidence frames, full history and
//! the forms for the actions a person may take now, the API's refusal beside the form);
//! the evidence images, proxied with the session's credential and only ever as JPEG or
//! PNG; and a crew's queue, oldest first. Everything is read and done through the
//! inspection API (`/v1/defects`, `/v1/work-orders`, `/v1/crews`, `/v1/inspect/report`),
//! so a tenant sees and changes only its own.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::fleet::encode;
use super::{Chrome, Posted, Shared, Signed, failure_page, render_status};
use crate::api::Failure;
use crate::format::{When, count};
use crate::session::Session;

/// Most defects `/roads` lists (the API's largest page).
const MAX_DEFECTS: usize = 1000;
/// Most pages of 1,000 work orders read to link defects to their orders.
const MAX_ORDER_PAGES: usize = 10;
/// Most orders of a crew whose defect is looked up for its place and class.
const MAX_CREW_LOOKUPS: usize = 200;

/// A defect's states, as the API names them (`Defect::state`).
const DEFECT_STATES: [(&str, &str); 4] = [
    ("open", "Open"),
    ("repaired", "Repaired"),
    ("dismissed", "Dismissed"),
    ("duplicate", "Duplicate"),
];

/// The RDD classes the filter offers (`lingjing_inspect::classes::CLASSES`); a tenant's
/// own class is typed into the same box and shown by its code.
const CLASSES: [(&str, &str); 4] = [
    ("D00", "Longitudinal crack"),
    ("D10", "Transverse crack"),
    ("D20", "Alligator crack"),
    ("D40", "Pothole"),
];

/// A work order's states in the order of its life (`WorkOrderState::ALL`).
const ORDER_STATES: [&str; 9] = [
    "open",
    "dispatched",
    "in_progress",
    "fixed",
    "verifying",
    "closed",
    "duplicate",
    "cancelled",
    "reopened",
];

/// The actions a person may take on an order in `state`: the state machine's
/// (`lingjing_inspect::workorder::allowed`) less verify and close, which are the
/// system's. The API decides; a form shown here that it refuses shows its message.
fn person_actions(state: &str) -> &'static [&'static str] {
    match state {
        "open" | "reopened" => &["dispatch", "cancel", "duplicate"],
        "dispatched" => &["dispatch", "start", "fix", "cancel", "duplicate"],
        "in_progress" => &["dispatch", "fix", "cancel", "duplicate"],
        "fixed" | "verifying" | "closed" => &["reopen"],
        _ => &[],
    }
}

/// Orders not yet fixed: past their due time, they are overdue.
fn awaiting_fix(state: &str) -> bool {
    matches!(state, "open" | "dispatched" | "in_progress" | "reopened")
}

/// Closed, duplicate and cancelled: nothing more happens to them but a reopen.
fn terminal(state: &str) -> bool {
    matches!(state, "closed" | "duplicate" | "cancelled")
}

fn class_name(code: &str) -> String {
    CLASSES
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(code))
        .map_or_else(|| code.to_owned(), |(_, n)| (*n).to_owned())
}

/// `in_progress` as a page says it.
fn state_word(state: &str) -> String {
    state.replace('_', " ")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn position(lat: f64, lon: f64) -> String {
    format!("{lat:.5}, {lon:.5}")
}

/// `pairs` as a query string (`?a=1&b=2`; empty when there are none).
fn query_string(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .copied()
        .collect();
    if kept.is_empty() {
        return String::new();
    }
    format!(
        "?{}",
        serde_urlencoded::to_string(&kept).unwrap_or_default()
    )
}

// ---- What the API answers (the parts read here) ----

#[derive(Debug, Clone, Deserialize)]
struct ApiDefect {
    id: String,
    tenant: String,
    class: String,
    lat: f64,
    lon: f64,
    state: String,
    source: String,
    first_seen_ms: i64,
    last_seen_ms: i64,
    sightings: u64,
    best_score: f64,
    severity: u8,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct ApiOrder {
    id: String,
    tenant: String,
    defect: String,
    state: String,
    #[serde(default)]
    crew: Option<String>,
    #[serde(default)]
    due_ms: Option<i64>,
    opened_ms: i64,
    updated_ms: i64,
    #[serde(default)]
    fixed_ms: Option<i64>,
    #[serde(default)]
    closed_ms: Option<i64>,
    #[serde(default)]
    verifying_since_ms: Option<i64>,
    #[serde(default)]
    clear_frames: u32,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    photo: Option<String>,
}

impl ApiOrder {
    fn overdue(&self, now: i64) -> bool {
        awaiting_fix(&self.state) && self.due_ms.is_some_and(|d| d < now)
    }
}

#[derive(Debug, Deserialize)]
struct ApiOrderView {
    #[serde(flatten)]
    order: ApiOrder,
    defect_detail: ApiDefect,
    #[serde(default)]
    history: Vec<ApiEvent>,
    #[serde(default)]
    overdue: bool,
}

#[derive(Debug, Deserialize)]
struct ApiDefectView {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    evidence: Vec<ApiEvidence>,
}

#[derive(Debug, Deserialize)]
struct ApiEvidence {
    stream: String,
    seq: u64,
    score: f64,
    taken_ms: i64,
    device: String,
    frame: String,
    has_image: bool,
}

#[derive(Debug, Deserialize)]
struct ApiEvent {
    at_ms: i64,
    who: String,
    action: String,
    #[serde(default)]
    from: Option<String>,
    to: String,
    #[serde(default)]
    detail: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct ApiCrew {
    id: String,
    tenant: String,
    name: String,
    #[serde(default)]
    capacity: u32,
}

#[derive(Debug, Deserialize)]
struct ApiTenant {
    id: String,
}

#[derive(Debug, Deserialize)]
struct ApiReport {
    from_ms: i64,
    to_ms: i64,
    found: u64,
    fixed: u64,
    closed: u64,
    overdue: u64,
    open: u64,
    #[serde(default)]
    median_hours_to_fix: Option<f64>,
    #[serde(default)]
    classes: Vec<ApiReportClass>,
}

#[derive(Debug, Deserialize)]
struct ApiReportClass {
    class: String,
    name: String,
    found: u64,
    fixed: u64,
    closed: u64,
    #[serde(default)]
    median_hours_to_fix: Option<f64>,
    overdue: u64,
}

fn hours(h: Option<f64>) -> String {
    h.map_or_else(|| "-".to_owned(), |h| format!("{h:.1} h"))
}

// ---- /roads ----

/// What `/roads`'s filter asks for.
#[derive(Debug, Default, Deserialize)]
pub struct RoadsQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    class: Option<String>,
    /// The operator's choice of tenant (a tenant's own is implied).
    #[serde(default)]
    tenant: Option<String>,
}

/// A defect's row.
struct DefectRow {
    id: String,
    tenant: String,
    class: String,
    class_name: String,
    position: String,
    state: String,
    source: String,
    severity: u8,
    sightings: u64,
    last_seen: When,
    /// Its newest work order: id, state in words, overdue.
    order: Option<(String, String, bool)>,
}

/// A state's count, linking to the list filtered by it.
struct StateCount {
    state: &'static str,
    title: &'static str,
    count: u64,
    href: String,
    current: bool,
}

/// A dot of the scatter, in the drawing's units.
struct Dot {
    x: String,
    y: String,
    state: String,
    label: String,
    href: Option<String>,
}

/// The scatter of the listed defects' positions (north up; longitudes scaled by the
/// cosine of the middle latitude, so distances look alike both ways).
struct Plot {
    width: u32,
    height: u32,
    dots: Vec<Dot>,
    /// `south, west` and `north, east` of the drawing, for its caption.
    south_west: String,
    north_east: String,
}

const PLOT_WIDTH: f64 = 640.0;
const PLOT_HEIGHT: f64 = 320.0;
const PLOT_MARGIN: f64 = 12.0;

impl Plot {
    fn of(rows: &[(f64, f64, &DefectRow)]) -> Option<Plot> {
        if rows.is_empty() {
            return None;
        }
        let fold =
            |f: fn(f64, f64) -> f64, start: f64, pick: fn(&(f64, f64, &DefectRow)) -> f64| {
                rows.iter().map(pick).fold(start, f)
            };
        let south = fold(f64::min, f64::INFINITY, |r| r.0);
        let north = fold(f64::max, f64::NEG_INFINITY, |r| r.0);
        let west = fold(f64::min, f64::INFINITY, |r| r.1);
        let east = fold(f64::max, f64::NEG_INFINITY, |r| r.1);
        let squash = ((south + north) / 2.0).to_radians().cos().max(0.01);
        let span_x = (east - west) * squash;
        let span_y = north - south;
        let room_x = PLOT_WIDTH - 2.0 * PLOT_MARGIN;
        let room_y = PLOT_HEIGHT - 2.0 * PLOT_MARGIN;
        let scale = match (span_x > 0.0, span_y > 0.0) {
            (true, true) => (room_x / span_x).min(room_y / span_y),
            (true, false) => room_x / span_x,
            (false, true) => room_y / span_y,
            (false, false) => 0.0,
        };
        // Centred: the drawing's middle is the middle of the box.
        let dots = rows
            .iter()
            .map(|(lat, lon, r)| {
                let x = PLOT_WIDTH / 2.0 + (lon - (west + east) / 2.0) * squash * scale;
                let y = PLOT_HEIGHT / 2.0 - (lat - (south + north) / 2.0) * scale;
                Dot {
                    x: format!("{x:.1}"),
                    y: format!("{y:.1}"),
                    state: if DEFECT_STATES.iter().any(|(s, _)| *s == r.state) {
                        r.state.clone()
                    } else {
                        "other".into()
                    },
                    label: format!("{} {} at {} ({})", r.class_name, r.id, r.position, r.state),
                    href: r
                        .order
                        .as_ref()
                        .map(|(id, _, _)| format!("/roads/orders/{}", encode(id))),
                }
            })
            .collect();
        Some(Plot {
            width: PLOT_WIDTH as u32,
            height: PLOT_HEIGHT as u32,
            dots,
            south_west: position(south, west),
            north_east: position(north, east),
        })
    }
}

struct CrewRow {
    id: String,
    name: String,
    tenant: String,
    capacity: u32,
    active: u64,
}

struct ReportView {
    from: When,
    to: When,
    found: String,
    fixed: String,
    closed: String,
    overdue: String,
    open: String,
    median: String,
    classes: Vec<ReportClassRow>,
}

struct ReportClassRow {
    class: String,
    name: String,
    found: String,
    fixed: String,
    closed: String,
    median: String,
    overdue: String,
}

impl ReportView {
    fn of(r: ApiReport) -> ReportView {
        ReportView {
            from: When::of_ms(r.from_ms),
            to: When::of_ms(r.to_ms),
            found: count(r.found),
            fixed: count(r.fixed),
            closed: count(r.closed),
            overdue: count(r.overdue),
            open: count(r.open),
            median: hours(r.median_hours_to_fix),
            classes: r
                .classes
                .into_iter()
                .map(|c| ReportClassRow {
                    found: count(c.found),
                    fixed: count(c.fixed),
                    closed: count(c.closed),
                    median: hours(c.median_hours_to_fix),
                    overdue: count(c.overdue),
                    class: c.class,
                    name: c.name,
                })
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "roads.html")]
struct RoadsPage {
    chrome: Chrome,
    /// The filter as asked (kept in its boxes).
    state: String,
    class: String,
    tenant: String,
    /// Why a filter value was set aside.
    filter_error: Option<String>,
    /// The operator's tenants to choose from (empty for a tenant).
    tenants: Vec<String>,
    classes: Vec<(&'static str, &'static str)>,
    counts: Vec<StateCount>,
    /// Work orders per state, in the order of an order's life (non-zero only).
    order_counts: Vec<(String, u64)>,
    rows: Vec<DefectRow>,
    /// Defects matching the filter in all (more than `rows` when cut at the API's page).
    total: u64,
    plot: Option<Plot>,
    crews: Vec<CrewRow>,
    report: Option<ReportView>,
    /// Why there is no report (the operator chose no tenant, or the API refused).
    report_note: Option<String>,
}

impl RoadsPage {
    /// More defects match than are listed.
    fn truncated(&self) -> bool {
        self.total > self.rows.len() as u64
    }
}

/// `GET /roads`.
pub async fn roads(
    State(console): State<Shared>,
    Signed(session): Signed,
    Query(query): Query<RoadsQuery>,
) -> Response {
    match roads_page(&console, &session, query).await {
        Ok(page) => render_status(StatusCode::OK, &page),
        Err(f) => failure_page(&session, f),
    }
}

async fn roads_page(
    console: &Shared,
    session: &Session,
    query: RoadsQuery,
) -> Result<RoadsPage, Failure> {
    let c = &session.credential;
    let clean = |v: Option<String>| v.map(|v| v.trim().to_owned()).unwrap_or_default();
    // A tenant's session reads its own: a `tenant` it names is not passed on.
    let tenant = if session.is_operator() {
        clean(query.tenant)
    } else {
        String::new()
    };
    let mut filter_error = None;
    let mut state = clean(query.state);
    if !state.is_empty() && !DEFECT_STATES.iter().any(|(s, _)| *s == state) {
        filter_error = Some(format!(
            "there is no defect state `{state}`: choose open, repaired, dismissed or duplicate (shown: every state)"
        ));
        state.clear();
    }
    let mut class = clean(query.class);
    if !class.is_empty()
        && (class.len() > 32
            || !class
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        filter_error = Some(format!(
            "`{class}` is not a class code: give one such as D40 (1 to 32 letters, digits, `-` or `_`; shown: every class)"
        ));
        class.clear();
    }
    let limit = MAX_DEFECTS.to_string();
    let path = format!(
        "/v1/defects{}",
        query_string(&[
            ("tenant", &tenant),
            ("state", &state),
            ("class", &class),
            ("limit", &limit),
        ])
    );
    let (defects, total) = console.api.get_page::<ApiDefect>(c, &path).await?;
    let total = total.unwrap_or(defects.len() as u64);

    let mut counts = Vec::new();
    for (s, title) in DEFECT_STATES {
        let path = format!(
            "/v1/defects{}",
            query_string(&[
                ("tenant", &tenant),
                ("state", s),
                ("class", &class),
                ("limit", "1")
            ])
        );
        let (_, n) = console.api.get_page::<Value>(c, &path).await?;
        counts.push(StateCount {
            state: s,
            title,
            count: n.unwrap_or(0),
            href: format!(
                "/roads{}",
                query_string(&[("tenant", &tenant), ("state", s), ("class", &class)])
            ),
            current: state == s,
        });
    }

    // Each defect's newest order (orders come oldest first), and orders per state.
    let now = now_ms();
    let mut newest: HashMap<String, ApiOrder> = HashMap::new();
    let mut per_state: HashMap<String, u64> = HashMap::new();
    let mut per_crew: HashMap<String, u64> = HashMap::new();
    for page in 0..MAX_ORDER_PAGES {
        let offset = (page * 1000).to_string();
        let path = format!(
            "/v1/work-orders{}",
            query_string(&[("tenant", &tenant), ("limit", "1000"), ("offset", &offset)])
        );
        let (orders, _) = console.api.get_page::<ApiOrder>(c, &path).await?;
        let done = orders.len() < 1000;
        for o in orders {
            *per_state.entry(o.state.clone()).or_default() += 1;
            if let Some(crew) = &o.crew
                && matches!(o.state.as_str(), "dispatched" | "in_progress")
            {
                *per_crew.entry(crew.clone()).or_default() += 1;
            }
            newest.insert(o.defect.clone(), o);
        }
        if done {
            break;
        }
    }
    let order_counts = ORDER_STATES
        .iter()
        .filter_map(|s| {
            per_state
                .get(*s)
                .filter(|n| **n > 0)
                .map(|n| (state_word(s), *n))
        })
        .collect();

    let mut sorted = defects;
    // North to south, then west to east: neighbours sit near each other.
    sorted.sort_by(|a, b| {
        b.lat
            .total_cmp(&a.lat)
            .then(a.lon.total_cmp(&b.lon))
            .then_with(|| a.id.cmp(&b.id))
    });
    let rows: Vec<DefectRow> = sorted
        .iter()
        .map(|d| DefectRow {
            id: d.id.clone(),
            tenant: d.tenant.clone(),
            class: d.class.clone(),
            class_name: class_name(&d.class),
            position: position(d.lat, d.lon),
            state: d.state.clone(),
            source: d.source.clone(),
            severity: d.severity,
            sightings: d.sightings,
            last_seen: When::of_ms(d.last_seen_ms),
            order: newest
                .get(&d.id)
                .map(|o| (o.id.clone(), state_word(&o.state), o.overdue(now))),
        })
        .collect();
    let plotted: Vec<(f64, f64, &DefectRow)> = sorted
        .iter()
        .zip(&rows)
        .filter(|(d, _)| d.lat.is_finite() && d.lon.is_finite())
        .map(|(d, r)| (d.lat, d.lon, r))
        .collect();
    let plot = Plot::of(&plotted);

    let crews: Vec<ApiCrew> = console.api.get(c, "/v1/crews").await?;
    let crews = crews
        .into_iter()
        .filter(|k| tenant.is_empty() || k.tenant == tenant)
        .map(|k| CrewRow {
            active: per_crew.get(&k.id).copied().unwrap_or(0),
            id: k.id,
            name: k.name,
            tenant: k.tenant,
            capacity: k.capacity,
        })
        .collect();

    let tenants = if session.is_operator() {
        let all: Vec<ApiTenant> = console.api.get(c, "/v1/tenants").await?;
        all.into_iter().map(|t| t.id).collect()
    } else {
        Vec::new()
    };

    let (report, report_note) = if session.is_operator() && tenant.is_empty() {
        (
            None,
            Some(
                "The weekly report is per tenant: choose a tenant above to see its report."
                    .to_owned(),
            ),
        )
    } else {
        let path = format!("/v1/inspect/report{}", query_string(&[("tenant", &tenant)]));
        match console.api.get::<ApiReport>(c, &path).await {
            Ok(r) => (Some(ReportView::of(r)), None),
            Err(f) if f.status.is_client_error() => (None, Some(f.message)),
            Err(f) => return Err(f),
        }
    };

    Ok(RoadsPage {
        chrome: Chrome::new(session, "Roads", "roads"),
        state,
        class,
        tenant,
        filter_error,
        tenants,
        classes: CLASSES.to_vec(),
        counts,
        order_counts,
        rows,
        total,
        plot,
        crews,
        report,
        report_note,
    })
}

// ---- /roads/orders/{id} ----

/// An order's facts as the page shows them.
struct OrderFacts {
    id: String,
    tenant: String,
    state_word: String,
    crew: Option<String>,
    due: Option<When>,
    overdue: bool,
    opened: When,
    updated: When,
    fixed: Option<When>,
    closed: Option<When>,
    /// While verifying: since when it waits for a patrol, how long that is in words, and
    /// the clear frames over the spot so far.
    waiting: Option<(When, String, u32)>,
    note: Option<String>,
    photo: Option<String>,
    /// The photo is an http(s) address, so it may be a link.
    photo_link: bool,
}

/// How long ago `since_ms` was, in days or hours.
fn age(since_ms: i64, now_ms: i64) -> String {
    let hours = (now_ms - since_ms).max(0) / 3_600_000;
    if hours >= 48 {
        format!("{} days", hours / 24)
    } else {
        format!("{hours} h")
    }
}

struct DefectFacts {
    id: String,
    class: String,
    name: String,
    position: String,
    state: String,
    source: String,
    sightings: u64,
    severity: u8,
    best_score: String,
    first_seen: When,
    last_seen: When,
    description: Option<String>,
}

struct EvidenceRow {
    src: Option<String>,
    frame: String,
    device: String,
    score: String,
    taken: When,
}

struct EventRow {
    at: When,
    who: String,
    action: String,
    from: String,
    to: String,
    detail: String,
}

/// What an action form posts (every action's fields; each form sends its own).
#[derive(Debug, Default, Deserialize)]
pub struct ActForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    crew: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    photo: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    of: String,
    /// The person acting, kept in the history.
    #[serde(default)]
    by: String,
}

super::csrf_field!(ActForm);

/// The actions API's body for `form`: the action and its own fields.
fn action_body(form: &ActForm) -> Value {
    let action = form.action.trim();
    let mut body = Map::new();
    body.insert("action".into(), json!(action));
    let text = |v: &str| json!(v.trim());
    match action {
        "dispatch" => {
            body.insert("crew".into(), text(&form.crew));
        }
        "fix" => {
            body.insert("note".into(), text(&form.note));
            if !form.photo.trim().is_empty() {
                body.insert("photo".into(), text(&form.photo));
            }
        }
        "cancel" | "reopen" => {
            body.insert("reason".into(), text(&form.reason));
        }
        "duplicate" => {
            body.insert("of".into(), text(&form.of));
        }
        _ => {}
    }
    if !form.by.trim().is_empty() {
        body.insert("by".into(), text(&form.by));
    }
    Value::Object(body)
}

/// One action's form on the order page.
struct ActionBox {
    name: &'static str,
    /// Its heading and button.
    title: &'static str,
    /// What it does, in a line.
    help: &'static str,
    /// The API's message when it refused this action.
    error: String,
}

fn action_box(name: &'static str, failed: Option<&(String, String)>) -> ActionBox {
    let (title, help) = match name {
        "dispatch" => ("Dispatch", "Give the order to a crew (again: reassign it)."),
        "start" => ("Start work", "The crew is at work on it."),
        "fix" => (
            "Mark fixed",
            "The crew has fixed it: the next patrols over the spot confirm it and close the order, or reopen it.",
        ),
        "reopen" => ("Reopen", "It is not fixed after all."),
        "cancel" => ("Cancel the order", "It is not to be done."),
        "duplicate" => ("Mark duplicate", "Another work order covers this defect."),
        _ => ("", ""),
    };
    ActionBox {
        name,
        title,
        help,
        error: match failed {
            Some((a, m)) if a == name => m.clone(),
            _ => String::new(),
        },
    }
}

#[derive(Template)]
#[template(path = "road_order.html")]
struct OrderPage {
    chrome: Chrome,
    order: OrderFacts,
    defect: DefectFacts,
    evidence: Vec<EvidenceRow>,
    history: Vec<EventRow>,
    /// The forms of the actions a person may take now.
    actions: Vec<ActionBox>,
    /// The order's tenant's crews: id and name.
    crews: Vec<(String, String)>,
    /// What was posted (kept in its form when refused).
    form: ActForm,
    /// The API's message for an action whose form is not on the page (the order moved
    /// on since the form was loaded).
    general_error: Option<String>,
}

impl OrderPage {
    /// The posted value of `field` when `action`'s form was refused, for its box.
    fn kept(&self, action: &str, field: &str) -> &str {
        if !self
            .actions
            .iter()
            .any(|a| a.name == action && !a.error.is_empty())
        {
            return "";
        }
        let f = &self.form;
        match field {
            "crew" => &f.crew,
            "note" => &f.note,
            "photo" => &f.photo,
            "reason" => &f.reason,
            "of" => &f.of,
            "by" => &f.by,
            _ => "",
        }
    }

    /// Whether the dispatch form selects crew `id`: the one just refused, else the
    /// order's own.
    fn crew_selected(&self, id: &str) -> bool {
        match self.kept("dispatch", "crew") {
            "" => self.order.crew.as_deref() == Some(id),
            kept => kept == id,
        }
    }
}

/// `GET /roads/orders/{id}`.
pub async fn order(
    State(console): State<Shared>,
    Signed(session): Signed,
    Path(id): Path<String>,
) -> Response {
    order_page(
        &console,
        &session,
        &id,
        ActForm::default(),
        None,
        StatusCode::OK,
    )
    .await
}

async fn order_page(
    console: &Shared,
    session: &Session,
    id: &str,
    form: ActForm,
    failed: Option<(String, String)>,
    status: StatusCode,
) -> Response {
    match order_data(console, session, id, form, failed).await {
        Ok(page) => render_status(status, &page),
        Err(f) => failure_page(session, f),
    }
}

async fn order_data(
    console: &Shared,
    session: &Session,
    id: &str,
    form: ActForm,
    failed: Option<(String, String)>,
) -> Result<OrderPage, Failure> {
    let c = &session.credential;
    let view: ApiOrderView = console
        .api
        .get(c, &format!("/v1/work-orders/{}", encode(id)))
        .await?;
    let d = &view.defect_detail;
    let detail: ApiDefectView = console
        .api
        .get(c, &format!("/v1/defects/{}", encode(&d.id)))
        .await?;
    let crews: Vec<ApiCrew> = console.api.get(c, "/v1/crews").await?;
    let o = view.order;
    let evidence = detail
        .evidence
        .into_iter()
        .map(|e| EvidenceRow {
            src: e.has_image.then(|| {
                format!(
                    "/roads/defects/{}/evidence/{}/{}",
                    encode(&d.id),
                    encode(&e.stream),
                    e.seq
                )
            }),
            frame: e.frame,
            device: e.device,
            score: format!("{:.2}", e.score),
            taken: When::of_ms(e.taken_ms),
        })
        .collect();
    let history = view
        .history
        .into_iter()
        .map(|e| EventRow {
            at: When::of_ms(e.at_ms),
            who: e.who,
            action: e.action,
            from: e.from.as_deref().map(state_word).unwrap_or_default(),
            to: state_word(&e.to),
            detail: e.detail.unwrap_or_default(),
        })
        .collect();
    let actions: Vec<ActionBox> = person_actions(&o.state)
        .iter()
        .map(|a| action_box(a, failed.as_ref()))
        .collect();
    let general_error = failed
        .filter(|(a, _)| !actions.iter().any(|b| b.name == a.as_str()))
        .map(|(_, m)| m);
    let photo_link = o
        .photo
        .as_deref()
        .is_some_and(|p| p.starts_with("https://") || p.starts_with("http://"));
    Ok(OrderPage {
        chrome: Chrome::new(session, format!("Work order {}", o.id), "roads"),
        actions,
        general_error,
        crews: crews
            .into_iter()
            .filter(|k| k.tenant == o.tenant)
            .map(|k| (k.id, k.name))
            .collect(),
        defect: DefectFacts {
            id: d.id.clone(),
            class: d.class.clone(),
            name: detail.name.unwrap_or_else(|| class_name(&d.class)),
            position: position(d.lat, d.lon),
            state: d.state.clone(),
            source: d.source.clone(),
            sightings: d.sightings,
            severity: d.severity,
            best_score: format!("{:.2}", d.best_score),
            first_seen: When::of_ms(d.first_seen_ms),
            last_seen: When::of_ms(d.last_seen_ms),
            description: d.description.clone(),
        },
        order: OrderFacts {
            state_word: state_word(&o.state),
            due: o.due_ms.map(When::of_ms),
            overdue: view.overdue,
            opened: When::of_ms(o.opened_ms),
            updated: When::of_ms(o.updated_ms),
            fixed: o.fixed_ms.map(When::of_ms),
            closed: o.closed_ms.map(When::of_ms),
            waiting: o
                .verifying_since_ms
                .filter(|_| o.state == "verifying")
                .map(|since| {
                    (
                        When::of_ms(since),
                        age(
                            since,
                            std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map_or(0, |d| d.as_millis() as i64),
                        ),
                        o.clear_frames,
                    )
                }),
            photo_link,
            id: o.id,
            tenant: o.tenant,
            crew: o.crew,
            note: o.note,
            photo: o.photo,
        },
        evidence,
        history,
        form,
    })
}

/// `POST /roads/orders/{id}/act`: one action through the actions API; refused (the
/// state moved on, a field is wrong), the page again with the API's message beside the
/// form.
pub async fn act(
    State(console): State<Shared>,
    Path(id): Path<String>,
    Posted(session, form): Posted<ActForm>,
) -> Response {
    let body = action_body(&form);
    let path = format!("/v1/work-orders/{}/actions", encode(&id));
    match console
        .api
        .call::<Value>(Method::POST, &session.credential, &path, Some(&body))
        .await
    {
        Ok(_) => Redirect::to(&format!("/roads/orders/{}", encode(&id))).into_response(),
        Err(f)
            if matches!(
                f.status,
                StatusCode::BAD_REQUEST | StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY
            ) =>
        {
            let action = form.action.trim().to_owned();
            let status = f.status;
            order_page(
                &console,
                &session,
                &id,
                form,
                Some((action, f.message)),
                status,
            )
            .await
        }
        Err(f) => failure_page(&session, f),
    }
}

// ---- /roads/defects/{id}/evidence/{stream}/{seq} ----

/// The image type `bytes` starts like: JPEG or PNG, nothing else.
fn image_kind(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else {
        None
    }
}

/// A plain-text refusal (an image's address never answers HTML).
fn text_error(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

/// `GET /roads/defects/{id}/evidence/{stream}/{seq}`: an evidence frame, fetched from the
/// API with the session's credential; served only as the JPEG or PNG it is (type from
/// the API and from its first bytes, both), with `nosniff` and a sandbox.
pub async fn evidence(
    State(console): State<Shared>,
    Signed(session): Signed,
    Path((id, stream, seq)): Path<(String, String, String)>,
) -> Response {
    let Ok(seq) = seq.parse::<u64>() else {
        return text_error(
            StatusCode::NOT_FOUND,
            format!("`{seq}` is not a frame number: evidence is named by stream and number"),
        );
    };
    let path = format!(
        "/v1/defects/{}/evidence/{}/{seq}",
        encode(&id),
        encode(&stream)
    );
    let (headers, bytes) = match console
        .api
        .raw(Method::GET, &session.credential, &path, None)
        .await
    {
        Ok(answer) => answer,
        Err(f) => return text_error(f.status, f.message),
    };
    let said = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(kind) = image_kind(&bytes).filter(|k| *k == said) else {
        return text_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "frame {stream}/{seq} of defect {id} is not kept as a JPEG or PNG image, so it is not shown"
            ),
        );
    };
    let mut response = bytes.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    response
}

// ---- /roads/crews/{crew} ----

struct QueueRow {
    id: String,
    state: String,
    overdue: bool,
    due: Option<When>,
    opened: When,
    defect: String,
    class_name: String,
    position: String,
    severity: String,
}

#[derive(Template)]
#[template(path = "road_crew.html")]
struct CrewPage {
    chrome: Chrome,
    crew: CrewRow,
    /// Not fixed yet, oldest first.
    queue: Vec<QueueRow>,
    /// Fixed, waiting for a patrol to confirm.
    verifying: Vec<QueueRow>,
    /// Closed, cancelled or duplicate.
    done: u64,
    overdue: usize,
    /// Orders the API holds for the crew beyond those read.
    more: u64,
}

/// `GET /roads/crews/{crew}`.
pub async fn crew(
    State(console): State<Shared>,
    Signed(session): Signed,
    Path(crew): Path<String>,
) -> Response {
    match crew_page(&console, &session, &crew).await {
        Ok(page) => render_status(StatusCode::OK, &page),
        Err(f) => failure_page(&session, f),
    }
}

async fn crew_page(console: &Shared, session: &Session, id: &str) -> Result<CrewPage, Failure> {
    let c = &session.credential;
    let crew: ApiCrew = console
        .api
        .get(c, &format!("/v1/crews/{}", encode(id)))
        .await?;
    let path = format!(
        "/v1/work-orders{}",
        query_string(&[("crew", &crew.id), ("limit", "1000")])
    );
    let (orders, total) = console.api.get_page::<ApiOrder>(c, &path).await?;
    let more = total
        .unwrap_or(orders.len() as u64)
        .saturating_sub(orders.len() as u64);
    let now = now_ms();
    let mut queue = Vec::new();
    let mut verifying = Vec::new();
    let mut done = 0;
    let mut lookups = 0;
    for o in orders {
        if terminal(&o.state) {
            done += 1;
            continue;
        }
        let defect = if lookups < MAX_CREW_LOOKUPS {
            lookups += 1;
            let path = format!("/v1/defects/{}", encode(&o.defect));
            match console.api.get::<ApiDefect>(c, &path).await {
                Ok(d) => Some(d),
                Err(f) if f.status == StatusCode::NOT_FOUND => None,
                Err(f) => return Err(f),
            }
        } else {
            None
        };
        let row = QueueRow {
            overdue: o.overdue(now),
            due: o.due_ms.map(When::of_ms),
            opened: When::of_ms(o.opened_ms),
            state: state_word(&o.state),
            class_name: defect
                .as_ref()
                .map_or_else(|| "-".to_owned(), |d| class_name(&d.class)),
            position: defect
                .as_ref()
                .map_or_else(|| "-".to_owned(), |d| position(d.lat, d.lon)),
            severity: defect
                .as_ref()
                .map_or_else(|| "-".to_owned(), |d| d.severity.to_string()),
            defect: o.defect.clone(),
            id: o.id.clone(),
        };
        if awaiting_fix(&o.state) {
            queue.push(row);
        } else {
            verifying.push(row);
        }
    }
    let active = queue
        .iter()
        .filter(|r| matches!(r.state.as_str(), "dispatched" | "in progress"))
        .count() as u64;
    Ok(CrewPage {
        chrome: Chrome::new(session, format!("Queue of {}", crew.name), "roads"),
        overdue: queue.iter().filter(|r| r.overdue).count(),
        crew: CrewRow {
            id: crew.id,
            name: crew.name,
            tenant: crew.tenant,
            capacity: crew.capacity,
            active,
        },
        queue,
        verifying,
        done,
        more,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, state: &str, lat: f64, lon: f64) -> DefectRow {
        DefectRow {
            id: id.into(),
            tenant: "alpha".into(),
            class: "D40".into(),
            class_name: "Pothole".into(),
            position: position(lat, lon),
            state: state.into(),
            source: "patrol".into(),
            severity: 3,
            sightings: 1,
            last_seen: When::of_ms(0),
            order: Some(("WO-1".into(), "open".into(), false)),
        }
    }

    #[test]
    fn the_scatter_fits_the_drawing_north_up() {
        let a = row("d-1", "open", 31.5, 120.3);
        let b = row("d-2", "repaired", 31.6, 120.4);
        let c = row("d-3", "odd", 31.55, 120.35);
        let plot =
            Plot::of(&[(31.5, 120.3, &a), (31.6, 120.4, &b), (31.55, 120.35, &c)]).expect("a plot");
        let xy = |d: &Dot| {
            (
                d.x.parse::<f64>().expect("x"),
                d.y.parse::<f64>().expect("y"),
            )
        };
        let (ax, ay) = xy(&plot.dots[0]);
        let (bx, by) = xy(&plot.dots[1]);
        assert!(bx > ax && by < ay, "north-east is up and right");
        for d in &plot.dots {
            let (x, y) = xy(d);
            assert!((0.0..=PLOT_WIDTH).contains(&x) && (0.0..=PLOT_HEIGHT).contains(&y));
        }
        assert_eq!(plot.dots[2].state, "other");
        assert_eq!(plot.dots[0].href.as_deref(), Some("/roads/orders/WO-1"));
        assert_eq!(plot.south_west, "31.50000, 120.30000");
        // One place: the middle.
        let one = Plot::of(&[(31.5, 120.3, &a)]).expect("a plot");
        assert_eq!(
            (one.dots[0].x.as_str(), one.dots[0].y.as_str()),
            ("320.0", "160.0")
        );
        assert!(Plot::of(&[]).is_none());
    }

    #[test]
    fn a_form_becomes_the_actions_body() {
        let form = ActForm {
            action: "fix".into(),
            note: " patched ".into(),
            photo: String::new(),
            crew: "east".into(),
            by: "Li".into(),
            ..Default::default()
        };
        assert_eq!(
            action_body(&form),
            json!({"action": "fix", "note": "patched", "by": "Li"})
        );
        let form = ActForm {
            action: "dispatch".into(),
            crew: "east".into(),
            ..Default::default()
        };
        assert_eq!(
            action_body(&form),
            json!({"action": "dispatch", "crew": "east"})
        );
        assert_eq!(person_actions("verifying"), &["reopen"]);
        assert!(person_actions("cancelled").is_empty());
    }

    #[test]
    fn only_jpeg_and_png_are_images() {
        assert_eq!(image_kind(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(image_kind(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(image_kind(b"<html><script>"), None);
        assert_eq!(query_string(&[("a", ""), ("b", "x y")]), "?b=x+y");
        assert_eq!(query_string(&[("a", "")]), "");
    }
}

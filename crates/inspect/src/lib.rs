//! Road inspection (issue 17), the pure part: what the control plane decides when frames
//! from patrol cameras arrive, and what it shows the public. No I/O, no clock: callers
//! pass the time.
//!
//! - [`geo`]: distances, the box around a point, distance to a vehicle's path.
//! - [`classes`]: the RDD defect classes, severities and repair deadlines.
//! - [`dedup`]: whether a detection is a defect already stored.
//! - [`workorder`]: the work-order state machine and closing the loop from patrol frames.
//! - [`dispatch`]: which crew gets a work order.
//! - [`open311`]: Open311 GeoReport v2 services, requests and errors (JSON and XML).
//! - [`report`]: the weekly report.
//!
//! The shared data (devices, crews, frames, the tenant's policy) is in
//! `lingjing_model::inspect`.

pub mod classes;
pub mod dedup;
pub mod dispatch;
pub mod geo;
pub mod open311;
pub mod report;
pub mod workorder;

pub use classes::{CLASSES, ClassInfo, class_info, class_name};
pub use dedup::{Known, merged_position, nearest_same_class};
pub use dispatch::{CrewLoad, choose_crew};
pub use geo::{BBox, EARTH_RADIUS_M, LatLon, bbox_around, haversine_m};
pub use report::{ClassLine, OrderFacts, WeeklyReport, weekly};
pub use workorder::{Action, Pass, TransitionError, Verdict, WorkOrderState, next, verify_frame};

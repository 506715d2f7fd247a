//! Road inspection (issue 17): what a tenant registers (patrol cameras and the crews
//! that fix roads, with the tenant's inspection policy) and what travels from an edge AI
//! node to the control plane (frames with their position and detections, numbered in an
//! on-disk outbox so none is lost or counted twice).
//!
//! The domain logic (distances, de-duplication, work orders, closing the loop, Open311)
//! is in the `lingjing-inspect` crate; this module holds the shared data only.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ident::check_id;
use crate::validate::{Validate, ValidationError, check_max_items, check_name};

/// Most label rules one device has.
pub const MAX_DETECT_RULES: usize = 32;
/// Most detections one frame carries (the rest, lowest scores, are dropped on the node).
pub const MAX_FRAME_DETECTIONS: usize = 64;
/// Most bytes of one evidence image (a frame with detections) sent to the control plane.
pub const MAX_EVIDENCE_BYTES: usize = 512 * 1024;
/// Most frames in one batch from a node.
pub const MAX_BATCH_FRAMES: usize = 500;
/// Most crews' areas.
pub const MAX_AREAS: usize = 50;

/// A camera (on a patrol vehicle) registered to a tenant: its frames go to the nearest
/// edge AI node, which runs `slot` on them and turns labels into defect classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub id: String,
    pub tenant: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The model slot on the node that looks at its frames (a slot is named after its
    /// model, e.g. `road-distress`).
    pub slot: String,
    /// Which of the model's labels are defects, as which class, from which score.
    #[schema(max_items = 32)]
    pub detects: Vec<DetectRule>,
}

/// One model label taken as a defect class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectRule {
    /// The model's label, e.g. `pothole` or `D40`.
    pub label: String,
    /// The defect class it is: `D00` longitudinal crack, `D10` transverse crack, `D20`
    /// alligator crack, `D40` pothole, or a tenant's own (an id).
    pub class: String,
    /// Lowest score that counts (default 0.5).
    #[serde(default = "default_min_score")]
    pub min_score: f32,
}

fn default_min_score() -> f32 {
    0.5
}

impl Validate for Device {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        check_id("tenant", &self.tenant)?;
        if let Some(n) = &self.name {
            check_name("name", n)?;
        }
        check_id("slot", &self.slot)?;
        check_max_items("detects", &self.detects, MAX_DETECT_RULES)?;
        for (i, r) in self.detects.iter().enumerate() {
            let field = |f: &str| format!("detects[{i}].{f}");
            if r.label.is_empty() || r.label.len() > 64 || r.label.chars().any(char::is_control) {
                return Err(ValidationError::new(
                    field("label"),
                    "1 to 64 characters, no control characters",
                ));
            }
            check_class(&field("class"), &r.class)?;
            if !(0.0..=1.0).contains(&r.min_score) {
                return Err(ValidationError::new(field("min_score"), "0 to 1"));
            }
        }
        Ok(())
    }
}

/// A road maintenance crew of a tenant and where it works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Crew {
    pub id: String,
    pub tenant: String,
    pub name: String,
    /// Where the crew works: work orders for defects inside one of these go to it.
    #[schema(max_items = 50)]
    pub areas: Vec<Area>,
    /// The most open orders it holds at once (default 50): a full crew gets no more.
    #[serde(default = "default_capacity")]
    pub capacity: u32,
}

fn default_capacity() -> u32 {
    50
}

/// A box of latitudes and longitudes (degrees, WGS 84), south-west to north-east.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Area {
    pub south: f64,
    pub west: f64,
    pub north: f64,
    pub east: f64,
}

impl Area {
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        (self.south..=self.north).contains(&lat) && (self.west..=self.east).contains(&lon)
    }
}

impl Validate for Crew {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        check_id("tenant", &self.tenant)?;
        check_name("name", &self.name)?;
        check_max_items("areas", &self.areas, MAX_AREAS)?;
        for (i, a) in self.areas.iter().enumerate() {
            let field = format!("areas[{i}]");
            check_position(&field, a.south, a.west)?;
            check_position(&field, a.north, a.east)?;
            if a.south > a.north || a.west > a.east {
                return Err(ValidationError::new(
                    field,
                    "south <= north and west <= east (an area may not cross the antimeridian)",
                ));
            }
        }
        if self.capacity == 0 || self.capacity > 10_000 {
            return Err(ValidationError::new("capacity", "1 to 10000"));
        }
        Ok(())
    }
}

/// Checks a defect class code: `D40`, or a tenant's own (1 to 32 letters, digits, `-`
/// or `_`).
pub fn check_class(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty()
        || value.len() > 32
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ValidationError::new(
            field,
            "a class code such as D40: 1 to 32 letters, digits, `-` or `_`",
        ));
    }
    Ok(())
}

/// Checks a latitude and longitude.
pub fn check_position(field: &str, lat: f64, lon: f64) -> Result<(), ValidationError> {
    if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
        return Err(ValidationError::new(field, "latitude must be -90 to 90"));
    }
    if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
        return Err(ValidationError::new(field, "longitude must be -180 to 180"));
    }
    Ok(())
}

/// A tenant's inspection policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct InspectPolicy {
    /// Detections of one class closer than this (metres) are one defect (default 10:
    /// about twice a consumer GPS's error).
    pub merge_metres: f64,
    /// A defect opens a work order from this severity (1 to 3; default 1: every defect).
    pub open_severity: u8,
    /// A frame this close to a defect (metres) has seen its place (default 15).
    pub seen_metres: f64,
    /// Frames without the defect that close a work order being verified (default 3).
    pub verify_frames: u32,
    /// The tenant's bucket (of the platform's object storage) that defects' evidence
    /// images move into (none: they stay in the control plane's database). The control
    /// plane cannot see who owns a bucket; a bucket of another tenant is refused by the
    /// gateway when an image is written, and the images stay where they are.
    #[serde(default)]
    pub evidence_bucket: Option<String>,
}

impl Default for InspectPolicy {
    fn default() -> Self {
        InspectPolicy {
            merge_metres: 10.0,
            open_severity: 1,
            seen_metres: 15.0,
            verify_frames: 3,
            evidence_bucket: None,
        }
    }
}

impl Validate for InspectPolicy {
    fn validate(&self) -> Result<(), ValidationError> {
        if !(1.0..=200.0).contains(&self.merge_metres) {
            return Err(ValidationError::new("merge_metres", "1 to 200"));
        }
        if !(1..=3).contains(&self.open_severity) {
            return Err(ValidationError::new("open_severity", "1 to 3"));
        }
        if !(1.0..=200.0).contains(&self.seen_metres) {
            return Err(ValidationError::new("seen_metres", "1 to 200"));
        }
        if !(1..=1000).contains(&self.verify_frames) {
            return Err(ValidationError::new("verify_frames", "1 to 1000"));
        }
        if let Some(b) = &self.evidence_bucket {
            crate::service::check_bucket_name("evidence_bucket", b)?;
        }
        Ok(())
    }
}

/// A device as edge AI nodes know it (in the `aiot` snapshot): enough to check its
/// credential and run its model, offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PatrolDevice {
    pub id: String,
    pub tenant: String,
    pub slot: String,
    pub detects: Vec<DetectRule>,
    /// SHA-256 (hex) of the device's credential; none: it has none yet and is refused.
    #[serde(default)]
    pub token_sha256: Option<String>,
}

/// One defect a model saw in a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Detection {
    pub class: String,
    /// The model's own label.
    pub label: String,
    pub score: f32,
    /// `[x1, y1, x2, y2]` in the frame's pixels (the whole frame for a classifier).
    pub bbox: [f32; 4],
}

/// What a record from a node is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A frame a model looked at: it counts for coverage, verification and defects.
    #[default]
    Frame,
    /// A position only (a camera's GPS report over MQTT): it extends the run's path;
    /// no model looked, so it neither finds nor clears a defect.
    Position,
}

impl RecordKind {
    fn is_frame(&self) -> bool {
        *self == RecordKind::Frame
    }
}

/// One frame a device sent to a node, as the node forwards it: where and when it was
/// taken, what the model saw; the image only when it saw something. Or, with `kind`
/// `position`, a position the device reported (no model, no detections).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FrameRecord {
    /// The node outbox's number for it: consecutive from 1 within its stream.
    pub seq: u64,
    #[serde(default, skip_serializing_if = "RecordKind::is_frame")]
    pub kind: RecordKind,
    pub device: String,
    /// The inspection run (a patrol) it belongs to, named by the device.
    pub run: String,
    /// The device's own reference of the frame.
    pub frame: String,
    /// When it was taken (ms since the epoch).
    pub taken_ms: i64,
    pub lat: f64,
    pub lon: f64,
    #[serde(default)]
    pub heading: Option<f32>,
    /// The model version that looked at it.
    pub model: String,
    pub version: u32,
    pub detections: Vec<Detection>,
    /// The tenant the node took the device for (from its snapshot): a record whose device
    /// now belongs to another tenant (deleted and made again) is dropped, not handed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The frame (JPEG or PNG, base64), only with detections, at most 512 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// Frames a node forwards (`POST /v1/inspect/frames`): one outbox stream's records in
/// order. A record the control plane has already is skipped, so a batch sent again after
/// a lost answer changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FrameBatch {
    pub node: String,
    /// The outbox's id (random, made with the outbox): `(stream, seq)` names a record.
    pub stream: String,
    #[schema(max_items = 500)]
    pub records: Vec<FrameRecord>,
}

/// The control plane's answer to a batch: every record through `through` is done with
/// (kept, or dropped as `rejected` says: a record it cannot take never blocks the stream).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FrameAck {
    pub through: u64,
    /// How many of the batch were new frames.
    pub accepted: u64,
    /// Records refused, and why (the node logs them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedRecord>,
}

/// A record the control plane refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RejectedRecord {
    pub seq: u64,
    pub field: String,
    pub message: String,
}

impl FrameRecord {
    /// Checks a record from a node (the node is trusted to number, not to be right).
    pub fn check(&self, field: &str) -> Result<(), ValidationError> {
        let f = |x: &str| format!("{field}.{x}");
        check_id(&f("device"), &self.device)?;
        check_id(&f("run"), &self.run)?;
        if self.frame.is_empty()
            || self.frame.len() > 128
            || self.frame.chars().any(char::is_control)
        {
            return Err(ValidationError::new(f("frame"), "1 to 128 characters"));
        }
        check_position(&f("lat"), self.lat, 0.0)?;
        check_position(&f("lon"), 0.0, self.lon)?;
        if self
            .heading
            .is_some_and(|h| !h.is_finite() || !(0.0..=360.0).contains(&h))
        {
            return Err(ValidationError::new(f("heading"), "0 to 360 degrees"));
        }
        check_max_items(&f("detections"), &self.detections, MAX_FRAME_DETECTIONS)?;
        if self.kind == RecordKind::Position
            && (!self.detections.is_empty() || self.image.is_some())
        {
            return Err(ValidationError::new(
                f("kind"),
                "a position carries no detections and no image",
            ));
        }
        for (i, d) in self.detections.iter().enumerate() {
            check_class(&format!("{field}.detections[{i}].class"), &d.class)?;
            if d.bbox.iter().any(|v| !v.is_finite()) {
                return Err(ValidationError::new(
                    format!("{field}.detections[{i}].bbox"),
                    "four finite numbers",
                ));
            }
            if !d.score.is_finite() || !(0.0..=1.0).contains(&d.score) {
                return Err(ValidationError::new(
                    format!("{field}.detections[{i}].score"),
                    "0 to 1",
                ));
            }
        }
        if self
            .image
            .as_ref()
            .is_some_and(|i| i.len() > MAX_EVIDENCE_BYTES * 4 / 3 + 4)
        {
            return Err(ValidationError::new(f("image"), "at most 512 KiB"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_evidence_bucket_must_be_a_bucket_name() {
        let mut p: InspectPolicy = serde_json::from_str("{}").expect("defaults");
        assert_eq!(p.evidence_bucket, None);
        p.validate().expect("no bucket is fine");
        p.evidence_bucket = Some("city-evidence".into());
        p.validate().expect("a bucket name");
        for bad in ["Evidence", "ab", "-x-", "a..b", "a_b"] {
            p.evidence_bucket = Some(bad.into());
            assert_eq!(p.validate().expect_err(bad).field, "evidence_bucket");
        }
    }

    #[test]
    fn a_device_with_a_bad_rule_is_refused_naming_it() {
        let mut d = Device {
            id: "cam-1".into(),
            tenant: "city".into(),
            name: None,
            slot: "road-distress".into(),
            detects: vec![DetectRule {
                label: "pothole".into(),
                class: "D40".into(),
                min_score: 0.5,
            }],
        };
        assert!(d.validate().is_ok());
        d.detects[0].min_score = 1.5;
        assert_eq!(d.validate().unwrap_err().field, "detects[0].min_score");
    }

    #[test]
    fn an_area_across_the_antimeridian_is_refused() {
        let c = Crew {
            id: "east".into(),
            tenant: "city".into(),
            name: "East crew".into(),
            areas: vec![Area {
                south: 31.0,
                west: 179.0,
                north: 32.0,
                east: -179.0,
            }],
            capacity: 5,
        };
        assert_eq!(c.validate().unwrap_err().field, "areas[0]");
    }
}

//! IDC monitoring's alert rules (issue 18), the pure part: what one rule decides about one
//! sensor's readings as they arrive and as time passes. No I/O and no clock (callers pass
//! the time), and every bit of state is serde, so a node that restarts in the middle of a
//! `for` window goes on from where it was: the alert is neither lost nor raised twice.
//!
//! - [`rule`]: rules (a condition, a `for` duration, a severity) and the default rule set
//!   of a site (ASHRAE inlet temperatures, humidity, cabinet power against its contract,
//!   smoke and water, silent sensors).
//! - [`series`]: one sensor under one rule: the readings it needs, and the alert's phase
//!   (ok -> pending -> firing -> ok) with the transitions to notify.
//! - [`alert`]: alerts as people see them: one per rule and sensor, silences, composite
//!   conditions, acknowledgement and escalation.

pub mod alert;
pub mod rule;
pub mod series;

pub use alert::{Alert, Silence, silenced};
pub use rule::{Condition, Rule, Severity};
pub use series::{Phase, Reading, Series, Transition};

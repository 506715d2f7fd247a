//! The work-order state machine and closing the loop.
//!
//! A work order is opened for a defect, dispatched to a crew, started, fixed, then
//! verified by the next patrol frames over the spot: enough clear frames close it, a frame
//! that sees the defect again reopens it. [`next`] is the only way a state changes; it
//! also checks the action's fields.
//!
//! Errors: [`TransitionError`] is an enum with two variants, `NotAllowed` (the action is
//! not taken from that state; it lists the ones that are) and `Invalid` (a field of the
//! action is wrong; it names the field).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a work order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkOrderState {
    Open,
    Dispatched,
    InProgress,
    Fixed,
    Verifying,
    Closed,
    Duplicate,
    Cancelled,
    Reopened,
}

impl WorkOrderState {
    /// Every state, in the order of a work order's life.
    pub const ALL: [WorkOrderState; 9] = [
        WorkOrderState::Open,
        WorkOrderState::Dispatched,
        WorkOrderState::InProgress,
        WorkOrderState::Fixed,
        WorkOrderState::Verifying,
        WorkOrderState::Closed,
        WorkOrderState::Duplicate,
        WorkOrderState::Cancelled,
        WorkOrderState::Reopened,
    ];

    /// The state's name as the API writes it (snake_case).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkOrderState::Open => "open",
            WorkOrderState::Dispatched => "dispatched",
            WorkOrderState::InProgress => "in_progress",
            WorkOrderState::Fixed => "fixed",
            WorkOrderState::Verifying => "verifying",
            WorkOrderState::Closed => "closed",
            WorkOrderState::Duplicate => "duplicate",
            WorkOrderState::Cancelled => "cancelled",
            WorkOrderState::Reopened => "reopened",
        }
    }

    /// Closed, duplicate and cancelled: nothing more happens to it except, when closed,
    /// a reopen.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            WorkOrderState::Closed | WorkOrderState::Duplicate | WorkOrderState::Cancelled
        )
    }

    /// Dispatched and in progress: it counts against its crew's capacity.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            WorkOrderState::Dispatched | WorkOrderState::InProgress
        )
    }

    /// The Open311 `status`: `closed` for closed, duplicate and cancelled, else `open`.
    pub fn open311_status(self) -> &'static str {
        if self.is_terminal() { "closed" } else { "open" }
    }
}

impl fmt::Display for WorkOrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkOrderState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WorkOrderState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = WorkOrderState::ALL.iter().map(|st| st.as_str()).collect();
                format!(
                    "unknown work order state `{}`: use one of {}",
                    s.escape_debug(),
                    names.join(", ")
                )
            })
    }
}

/// Something done to a work order (JSON: `{"action": "dispatch", "crew": "east"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Give it to a crew (again: reassign).
    Dispatch { crew: String },
    /// The crew is at work on it.
    Start,
    /// The crew has fixed it.
    Fix {
        note: String,
        #[serde(default)]
        photo: Option<String>,
    },
    /// A patrol frame is over the spot (system only).
    Verify,
    /// Enough clear frames (system only).
    Close,
    /// It is not fixed after all.
    Reopen { reason: String },
    /// Not to be done.
    Cancel { reason: String },
    /// Another order covers it.
    Duplicate { of: String },
}

/// Every action's name, in the order they are listed in errors.
pub const ACTION_NAMES: [&str; 8] = [
    "dispatch",
    "start",
    "fix",
    "verify",
    "close",
    "reopen",
    "cancel",
    "duplicate",
];

/// Longest fix note, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;
/// Longest reopen or cancel reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest crew id or work order id in an action, in characters.
pub const MAX_REF_CHARS: usize = 64;

impl Action {
    /// The action's name as in JSON (`dispatch`, `start`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Dispatch { .. } => "dispatch",
            Action::Start => "start",
            Action::Fix { .. } => "fix",
            Action::Verify => "verify",
            Action::Close => "close",
            Action::Reopen { .. } => "reopen",
            Action::Cancel { .. } => "cancel",
            Action::Duplicate { .. } => "duplicate",
        }
    }

    /// Verify and close are taken only by the system (from patrol frames), never by a
    /// person through the API.
    pub fn by_system(&self) -> bool {
        matches!(self, Action::Verify | Action::Close)
    }

    /// Checks the action's fields.
    fn check(&self) -> Result<(), TransitionError> {
        match self {
            Action::Dispatch { crew } => check_text("crew", crew, MAX_REF_CHARS),
            Action::Fix { note, .. } => check_text("note", note, MAX_NOTE_CHARS),
            Action::Reopen { reason } | Action::Cancel { reason } => {
                check_text("reason", reason, MAX_REASON_CHARS)
            }
            Action::Duplicate { of } => check_text("of", of, MAX_REF_CHARS),
            Action::Start | Action::Verify | Action::Close => Ok(()),
        }
    }
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), TransitionError> {
    let n = value.chars().count();
    if value.trim().is_empty() {
        return Err(TransitionError::Invalid {
            field,
            message: format!("must not be empty: give 1 to {max} characters"),
        });
    }
    if n > max {
        return Err(TransitionError::Invalid {
            field,
            message: format!("is {n} characters: shorten it to at most {max}"),
        });
    }
    Ok(())
}

/// Why [`next`] refused an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionError {
    /// The action is not taken from this state.
    NotAllowed {
        from: WorkOrderState,
        action: &'static str,
        /// The actions that are, in [`ACTION_NAMES`] order (empty from a final state).
        allowed: Vec<&'static str>,
    },
    /// A field of the action is wrong.
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl fmt::Display for TransitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionError::NotAllowed {
                from,
                action,
                allowed,
            } => {
                write!(f, "a work order that is {from} cannot be {}", past(action))?;
                if allowed.is_empty() {
                    write!(f, ": nothing is allowed from {from} (it is final)")
                } else {
                    write!(f, ": allowed from {from}: {}", allowed.join(", "))
                }
            }
            TransitionError::Invalid { field, message } => write!(f, "{field} {message}"),
        }
    }
}

impl std::error::Error for TransitionError {}

/// An action's name as in "cannot be ...".
fn past(action: &str) -> &'static str {
    match action {
        "dispatch" => "dispatched",
        "start" => "started",
        "fix" => "fixed",
        "verify" => "verified",
        "close" => "closed",
        "reopen" => "reopened",
        "cancel" => "cancelled",
        "duplicate" => "marked a duplicate",
        _ => "changed that way",
    }
}

/// Where `action` (by name) takes a work order in `state`, if it is allowed there.
fn target(state: WorkOrderState, action: &str) -> Option<WorkOrderState> {
    use WorkOrderState as S;
    match (state, action) {
        (S::Open | S::Reopened | S::Dispatched | S::InProgress, "dispatch") => Some(S::Dispatched),
        (S::Open | S::Reopened | S::Dispatched | S::InProgress, "cancel") => Some(S::Cancelled),
        (S::Open | S::Reopened | S::Dispatched | S::InProgress, "duplicate") => Some(S::Duplicate),
        (S::Dispatched, "start") => Some(S::InProgress),
        (S::Dispatched | S::InProgress, "fix") => Some(S::Fixed),
        (S::Fixed, "verify") => Some(S::Verifying),
        (S::Verifying, "close") => Some(S::Closed),
        (S::Fixed | S::Verifying | S::Closed, "reopen") => Some(S::Reopened),
        _ => None,
    }
}

/// The actions allowed from `state`, in [`ACTION_NAMES`] order.
pub fn allowed(state: WorkOrderState) -> Vec<&'static str> {
    ACTION_NAMES
        .into_iter()
        .filter(|a| target(state, a).is_some())
        .collect()
}

/// The state `action` takes a work order in `state` to, or why it cannot (the action
/// is not allowed from there, or one of its fields is wrong).
pub fn next(state: WorkOrderState, action: &Action) -> Result<WorkOrderState, TransitionError> {
    let to = target(state, action.name()).ok_or_else(|| TransitionError::NotAllowed {
        from: state,
        action: action.name(),
        allowed: allowed(state),
    })?;
    action.check()?;
    Ok(to)
}

/// What one patrol frame over a work order being verified decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not yet: this many clear frames so far.
    Pending { clear_frames: u32 },
    /// Enough clear frames: close it.
    Close,
    /// The defect is still there: reopen it.
    Reopen,
}

/// Where a frame of a later run was, seen from a defect whose order is being verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Over the spot (within the tenant's seen distance): did the model see the class?
    Over { seen: bool },
    /// Near it but beyond the seen distance: a vehicle leaving the spot (or not there yet).
    Beyond,
}

/// Closing the loop, frame by frame: a frame over the spot that sees the defect's class
/// again reopens the order; one that does not is one more clear frame. The order closes
/// only once the vehicle has passed: on a frame beyond the spot after at least `needed`
/// clear frames — so frames on the approach, before the camera has looked at the spot,
/// can never close it by themselves.
pub fn verify_frame(clear_so_far: u32, pass: Pass, needed: u32) -> Verdict {
    match pass {
        Pass::Over { seen: true } => Verdict::Reopen,
        Pass::Over { seen: false } => Verdict::Pending {
            clear_frames: clear_so_far.saturating_add(1),
        },
        Pass::Beyond if clear_so_far >= needed => Verdict::Close,
        Pass::Beyond => Verdict::Pending {
            clear_frames: clear_so_far,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use WorkOrderState as S;

    fn dispatch() -> Action {
        Action::Dispatch {
            crew: "east".into(),
        }
    }
    fn fix() -> Action {
        Action::Fix {
            note: "patched".into(),
            photo: None,
        }
    }
    fn reopen() -> Action {
        Action::Reopen {
            reason: "still there".into(),
        }
    }
    fn cancel() -> Action {
        Action::Cancel {
            reason: "private road".into(),
        }
    }
    fn duplicate() -> Action {
        Action::Duplicate { of: "wo-1".into() }
    }
    fn every_action() -> Vec<Action> {
        vec![
            dispatch(),
            Action::Start,
            fix(),
            Action::Verify,
            Action::Close,
            reopen(),
            cancel(),
            duplicate(),
        ]
    }

    #[test]
    fn the_whole_life_of_an_order() {
        let mut s = S::Open;
        for (a, want) in [
            (dispatch(), S::Dispatched),
            (Action::Start, S::InProgress),
            (fix(), S::Fixed),
            (Action::Verify, S::Verifying),
            (Action::Close, S::Closed),
        ] {
            s = next(s, &a).unwrap();
            assert_eq!(s, want);
        }
        // Reopened, then dispatched again.
        s = next(s, &reopen()).unwrap();
        assert_eq!(s, S::Reopened);
        assert_eq!(next(s, &dispatch()).unwrap(), S::Dispatched);
    }

    #[test]
    fn every_allowed_transition() {
        let table = [
            (S::Open, vec!["dispatch", "cancel", "duplicate"]),
            (S::Reopened, vec!["dispatch", "cancel", "duplicate"]),
            (
                S::Dispatched,
                vec!["dispatch", "start", "fix", "cancel", "duplicate"],
            ),
            (
                S::InProgress,
                vec!["dispatch", "fix", "cancel", "duplicate"],
            ),
            (S::Fixed, vec!["verify", "reopen"]),
            (S::Verifying, vec!["close", "reopen"]),
            (S::Closed, vec!["reopen"]),
            (S::Duplicate, vec![]),
            (S::Cancelled, vec![]),
        ];
        for (state, want) in table {
            assert_eq!(allowed(state), want, "{state}");
            for a in every_action() {
                let got = next(state, &a);
                assert_eq!(
                    got.is_ok(),
                    want.contains(&a.name()),
                    "{state} {}",
                    a.name()
                );
            }
        }
        assert_eq!(next(S::Dispatched, &dispatch()).unwrap(), S::Dispatched);
        assert_eq!(next(S::InProgress, &dispatch()).unwrap(), S::Dispatched);
        assert_eq!(next(S::Dispatched, &fix()).unwrap(), S::Fixed);
        assert_eq!(next(S::Open, &cancel()).unwrap(), S::Cancelled);
        assert_eq!(next(S::InProgress, &duplicate()).unwrap(), S::Duplicate);
        assert_eq!(next(S::Verifying, &reopen()).unwrap(), S::Reopened);
    }

    #[test]
    fn a_refusal_names_the_state_and_what_is_allowed() {
        let e = next(S::Closed, &dispatch()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a work order that is closed cannot be dispatched: allowed from closed: reopen"
        );
        let e = next(S::Open, &Action::Start).unwrap_err();
        assert_eq!(
            e,
            TransitionError::NotAllowed {
                from: S::Open,
                action: "start",
                allowed: vec!["dispatch", "cancel", "duplicate"],
            }
        );
        let e = next(S::Cancelled, &reopen()).unwrap_err();
        assert!(
            e.to_string().contains("nothing is allowed from cancelled"),
            "{e}"
        );
        assert!(next(S::Open, &Action::Close).is_err());
        assert!(next(S::InProgress, &Action::Verify).is_err());
        assert!(next(S::Fixed, &dispatch()).is_err());
    }

    #[test]
    fn terminal_states_refuse_everything_but_a_closed_reopen() {
        for s in [S::Duplicate, S::Cancelled] {
            assert!(s.is_terminal());
            assert!(every_action().iter().all(|a| next(s, a).is_err()));
        }
        assert!(S::Closed.is_terminal());
        assert!(!S::Reopened.is_terminal());
    }

    #[test]
    fn fields_are_checked_naming_them() {
        let empty = Action::Fix {
            note: " ".into(),
            photo: None,
        };
        let e = next(S::Dispatched, &empty).unwrap_err();
        assert!(
            matches!(e, TransitionError::Invalid { field: "note", .. }),
            "{e}"
        );
        let long = Action::Cancel {
            reason: "x".repeat(501),
        };
        let e = next(S::Open, &long).unwrap_err();
        assert_eq!(
            e.to_string(),
            "reason is 501 characters: shorten it to at most 500"
        );
        let ok = Action::Cancel {
            reason: "é".repeat(500),
        };
        assert!(next(S::Open, &ok).is_ok());
        let crew = Action::Dispatch {
            crew: "c".repeat(65),
        };
        assert!(matches!(
            next(S::Open, &crew),
            Err(TransitionError::Invalid { field: "crew", .. })
        ));
        let of = Action::Duplicate { of: String::new() };
        assert!(matches!(
            next(S::Open, &of),
            Err(TransitionError::Invalid { field: "of", .. })
        ));
        // A refused transition is reported before a bad field.
        let e = next(S::Cancelled, &of).unwrap_err();
        assert!(matches!(e, TransitionError::NotAllowed { .. }));
    }

    #[test]
    fn names_parse_back_and_map_to_open311() {
        for s in S::ALL {
            assert_eq!(s.as_str().parse::<S>().unwrap(), s);
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        let e = "done".parse::<S>().unwrap_err();
        assert!(e.contains("`done`") && e.contains("in_progress"), "{e}");
        assert_eq!(S::Duplicate.open311_status(), "closed");
        assert_eq!(S::Cancelled.open311_status(), "closed");
        assert_eq!(S::Verifying.open311_status(), "open");
        assert!(S::InProgress.is_active() && S::Dispatched.is_active());
        assert!(!S::Open.is_active() && !S::Fixed.is_active());
    }

    #[test]
    fn actions_read_from_json() {
        let a: Action = serde_json::from_str(r#"{"action":"dispatch","crew":"east"}"#).unwrap();
        assert_eq!(a, dispatch());
        let a: Action = serde_json::from_str(r#"{"action":"fix","note":"done"}"#).unwrap();
        assert_eq!(
            a,
            Action::Fix {
                note: "done".into(),
                photo: None
            }
        );
        let a: Action = serde_json::from_str(r#"{"action":"start"}"#).unwrap();
        assert_eq!(a.name(), "start");
        assert!(serde_json::from_str::<Action>(r#"{"action":"explode"}"#).is_err());
        assert!(Action::Verify.by_system() && Action::Close.by_system());
        assert!(!Action::Start.by_system() && !reopen().by_system());
        assert!(
            ACTION_NAMES
                .iter()
                .all(|n| every_action().iter().any(|a| a.name() == *n))
        );
    }

    #[test]
    fn the_loop_closes_only_after_enough_clear_frames_and_the_pass() {
        let clear = Pass::Over { seen: false };
        assert_eq!(
            verify_frame(0, clear, 3),
            Verdict::Pending { clear_frames: 1 }
        );
        assert_eq!(
            verify_frame(2, clear, 3),
            Verdict::Pending { clear_frames: 3 }
        );
        // Enough clear frames, still over the spot: not yet (the camera may not have
        // looked at it).
        assert_eq!(
            verify_frame(5, clear, 3),
            Verdict::Pending { clear_frames: 6 }
        );
        // The vehicle has passed: closed.
        assert_eq!(verify_frame(3, Pass::Beyond, 3), Verdict::Close);
        // On the approach, no clear frames yet: nothing.
        assert_eq!(
            verify_frame(0, Pass::Beyond, 3),
            Verdict::Pending { clear_frames: 0 }
        );
        assert_eq!(
            verify_frame(2, Pass::Beyond, 3),
            Verdict::Pending { clear_frames: 2 }
        );
        // Seen again, whatever came before: reopened.
        assert_eq!(
            verify_frame(9, Pass::Over { seen: true }, 3),
            Verdict::Reopen
        );
        assert_eq!(
            verify_frame(u32::MAX, clear, 3),
            Verdict::Pending {
                clear_frames: u32::MAX
            }
        );
    }
}

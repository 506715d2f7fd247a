//! Defect classes: the four of the Road Damage Dataset (RDD) with their names, base
//! severities and repair deadlines, and what a tenant's own class (any other id) gets.
//!
//! Codes are matched without regard to ASCII case (`d40` is `D40`: ids elsewhere are
//! lowercase); [`canonical_code`] gives the spelling to store and show.

/// One known defect class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassInfo {
    /// The RDD code, e.g. `D40`.
    pub code: &'static str,
    /// What people call it.
    pub name: &'static str,
    /// Base severity, 1 (watch) to 3 (fix now).
    pub severity: u8,
    /// Days allowed to fix it at its base severity.
    pub due_days: u32,
}

/// The RDD classes, by code.
pub const CLASSES: [ClassInfo; 4] = [
    ClassInfo {
        code: "D00",
        name: "Longitudinal crack",
        severity: 1,
        due_days: 30,
    },
    ClassInfo {
        code: "D10",
        name: "Transverse crack",
        severity: 1,
        due_days: 30,
    },
    ClassInfo {
        code: "D20",
        name: "Alligator crack",
        severity: 2,
        due_days: 14,
    },
    ClassInfo {
        code: "D40",
        name: "Pothole",
        severity: 3,
        due_days: 3,
    },
];

/// Days allowed for a tenant's own class.
pub const DEFAULT_DUE_DAYS: u32 = 30;

/// Highest severity.
pub const MAX_SEVERITY: u8 = 3;

/// Best score from which a detection raises its class's severity by one.
pub const CONFIDENT_SCORE: f32 = 0.9;

const DAY_MS: i64 = 86_400_000;

/// The known class with this code (any ASCII case), if it is one.
pub fn class_info(code: &str) -> Option<&'static ClassInfo> {
    CLASSES.iter().find(|c| c.code.eq_ignore_ascii_case(code))
}

/// The code as stored: a known class's own spelling (`d40` -> `D40`), else as given.
pub fn canonical_code(code: &str) -> String {
    class_info(code).map_or_else(|| code.to_string(), |c| c.code.to_string())
}

/// Whether two codes name the same class.
pub fn same_class(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The class's name, or the code itself for a tenant's own class.
pub fn class_name(code: &str) -> String {
    class_info(code).map_or_else(|| code.to_string(), |c| c.name.to_string())
}

/// A defect's severity: its class's base (a tenant's own class: 1), one more (at most
/// 3) when the model was sure (`best_score >= 0.9`).
pub fn severity(class: &str, best_score: f32) -> u8 {
    let base = class_info(class).map_or(1, |c| c.severity);
    if best_score >= CONFIDENT_SCORE {
        (base + 1).min(MAX_SEVERITY)
    } else {
        base
    }
}

/// When a defect found at `from_ms` must be fixed: the class's days (a tenant's own: 30),
/// at most 3 days at severity 3 and 14 at severity 2.
pub fn due_ms(class: &str, severity: u8, from_ms: i64) -> i64 {
    let mut days = class_info(class).map_or(DEFAULT_DUE_DAYS, |c| c.due_days);
    if severity >= 3 {
        days = days.min(3);
    } else if severity == 2 {
        days = days.min(14);
    }
    from_ms.saturating_add(i64::from(days).saturating_mul(DAY_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_and_a_tenants_own() {
        assert_eq!(class_info("D40").map(|c| c.name), Some("Pothole"));
        assert_eq!(class_info("d20").map(|c| c.code), Some("D20"));
        assert_eq!(class_info("manhole"), None);
        assert_eq!(class_name("D00"), "Longitudinal crack");
        assert_eq!(class_name("manhole"), "manhole");
        assert_eq!(canonical_code("d10"), "D10");
        assert_eq!(canonical_code("manhole"), "manhole");
        assert!(same_class("d40", "D40") && !same_class("D40", "D20"));
    }

    #[test]
    fn a_sure_detection_is_one_more_severe_up_to_three() {
        assert_eq!(severity("D00", 0.6), 1);
        assert_eq!(severity("D00", 0.9), 2);
        assert_eq!(severity("D20", 0.95), 3);
        assert_eq!(severity("D40", 0.5), 3);
        assert_eq!(severity("D40", 0.99), 3);
        assert_eq!(severity("manhole", 0.89), 1);
        assert_eq!(severity("manhole", f32::NAN), 1);
    }

    #[test]
    fn deadlines_shorten_with_severity_and_never_overflow() {
        assert_eq!(due_ms("D00", 1, 0), 30 * DAY_MS);
        assert_eq!(due_ms("D00", 2, 0), 14 * DAY_MS);
        assert_eq!(due_ms("D00", 3, 1000), 1000 + 3 * DAY_MS);
        assert_eq!(due_ms("D40", 1, 0), 3 * DAY_MS);
        assert_eq!(due_ms("D20", 1, 0), 14 * DAY_MS);
        assert_eq!(due_ms("manhole", 1, 0), 30 * DAY_MS);
        assert_eq!(due_ms("D00", 1, i64::MAX - 5), i64::MAX);
    }
}

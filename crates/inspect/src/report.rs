//! The weekly report: for a window `[from, to)`, defects found, work orders fixed and
//! closed, the median time to fix, and (at `now`) the orders overdue and still open; in
//! total and per class.
//!
//! Per class: the four RDD classes always (zeros say something too), a tenant's own class
//! when it has something to count; sorted by code.

use serde::Serialize;
use utoipa::ToSchema;

use crate::classes::{CLASSES, canonical_code, class_name};
use crate::workorder::WorkOrderState;

/// What the report needs of one work order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderFacts {
    pub class: String,
    pub state: WorkOrderState,
    pub opened_ms: i64,
    /// When it was (last) fixed.
    pub fixed_ms: Option<i64>,
    pub closed_ms: Option<i64>,
    pub due_ms: Option<i64>,
}

/// One class's line of the report.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ClassLine {
    pub class: String,
    pub name: String,
    /// Defects first seen in the window.
    pub found: u64,
    /// Orders fixed in the window.
    pub fixed: u64,
    /// Orders closed in the window.
    pub closed: u64,
    /// Median hours from opening to fix of the orders fixed in the window.
    pub median_hours_to_fix: Option<f64>,
    /// Orders past their due time, not yet fixed.
    pub overdue: u64,
}

/// The report of one window.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WeeklyReport {
    pub from_ms: i64,
    pub to_ms: i64,
    pub found: u64,
    pub fixed: u64,
    pub closed: u64,
    /// Orders past their due time, not yet fixed (at the time the report was made).
    pub overdue: u64,
    /// Orders not closed, cancelled or duplicate.
    pub open: u64,
    pub median_hours_to_fix: Option<f64>,
    pub classes: Vec<ClassLine>,
}

const HOUR_MS: f64 = 3_600_000.0;

/// Counts for one class (or all), built up order by order.
#[derive(Default)]
struct Tally {
    found: u64,
    fixed: u64,
    closed: u64,
    overdue: u64,
    open: u64,
    hours_to_fix: Vec<f64>,
}

impl Tally {
    fn is_empty(&self) -> bool {
        self.found == 0 && self.fixed == 0 && self.closed == 0 && self.overdue == 0
    }
}

/// The report for `[from_ms, to_ms)` made at `now_ms`. `found` is each defect's class and
/// when it was first seen.
///
/// Fixed and closed count orders whose `fixed_ms` and `closed_ms` fall in the window; time
/// to fix is `fixed_ms - opened_ms` of those fixed in it (never below zero); overdue counts
/// orders not final, not fixed or being verified, whose due time is before `now_ms`; open
/// counts orders not final.
pub fn weekly(
    found: &[(String, i64)],
    orders: &[OrderFacts],
    from_ms: i64,
    to_ms: i64,
    now_ms: i64,
) -> WeeklyReport {
    let in_window = |t: i64| from_ms <= t && t < to_ms;
    let mut total = Tally::default();
    let mut per: Vec<(String, Tally)> = CLASSES
        .iter()
        .map(|c| (c.code.to_string(), Tally::default()))
        .collect();
    let mut add = |class: &str, f: &dyn Fn(&mut Tally)| {
        f(&mut total);
        let code = canonical_code(class);
        match per.iter_mut().find(|(c, _)| *c == code) {
            Some((_, t)) => f(t),
            None => {
                let mut t = Tally::default();
                f(&mut t);
                per.push((code, t));
            }
        }
    };

    for (class, seen_ms) in found {
        if in_window(*seen_ms) {
            add(class, &|t| t.found += 1);
        }
    }
    for o in orders {
        if let Some(fixed) = o.fixed_ms.filter(|t| in_window(*t)) {
            let hours = fixed.saturating_sub(o.opened_ms).max(0) as f64 / HOUR_MS;
            add(&o.class, &|t| {
                t.fixed += 1;
                t.hours_to_fix.push(hours);
            });
        }
        if o.closed_ms.is_some_and(in_window) {
            add(&o.class, &|t| t.closed += 1);
        }
        if o.state.is_terminal() {
            continue;
        }
        add(&o.class, &|t| t.open += 1);
        let awaiting_fix = !matches!(o.state, WorkOrderState::Fixed | WorkOrderState::Verifying);
        if awaiting_fix && o.due_ms.is_some_and(|due| due < now_ms) {
            add(&o.class, &|t| t.overdue += 1);
        }
    }

    let known = |code: &str| CLASSES.iter().any(|c| c.code == code);
    per.retain(|(code, t)| known(code) || !t.is_empty());
    per.sort_by(|a, b| a.0.cmp(&b.0));
    let classes = per
        .into_iter()
        .map(|(code, mut t)| ClassLine {
            name: class_name(&code),
            found: t.found,
            fixed: t.fixed,
            closed: t.closed,
            median_hours_to_fix: median(&mut t.hours_to_fix),
            overdue: t.overdue,
            class: code,
        })
        .collect();
    WeeklyReport {
        from_ms,
        to_ms,
        found: total.found,
        fixed: total.fixed,
        closed: total.closed,
        overdue: total.overdue,
        open: total.open,
        median_hours_to_fix: median(&mut total.hours_to_fix),
        classes,
    }
}

/// The median (the mean of the middle two for an even count); none of nothing.
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => values.get(n / 2).copied(),
        _ => Some((values.get(n / 2 - 1)? + values.get(n / 2)?) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use WorkOrderState as S;

    const H: i64 = 3_600_000;
    const FROM: i64 = 1_000 * H;
    const TO: i64 = FROM + 168 * H;

    fn order(
        class: &str,
        state: S,
        opened: i64,
        fixed: Option<i64>,
        closed: Option<i64>,
    ) -> OrderFacts {
        OrderFacts {
            class: class.into(),
            state,
            opened_ms: opened,
            fixed_ms: fixed,
            closed_ms: closed,
            due_ms: None,
        }
    }

    #[test]
    fn a_week_counted_in_total_and_per_class() {
        let found = vec![
            ("D40".to_string(), FROM),
            ("D40".to_string(), TO - 1),
            ("D40".to_string(), TO),       // next week
            ("D00".to_string(), FROM - 1), // last week
            ("manhole".to_string(), FROM + H),
        ];
        let mut late = order("D40", S::Dispatched, FROM - 100 * H, None, None);
        late.due_ms = Some(FROM);
        let mut late_but_fixed = order("D40", S::Verifying, FROM - 100 * H, Some(FROM + H), None);
        late_but_fixed.due_ms = Some(FROM);
        let mut not_yet_due = order("D20", S::Open, FROM, None, None);
        not_yet_due.due_ms = Some(TO + 10 * H);
        let orders = vec![
            // Fixed in the window after 10 h and closed in it.
            order(
                "D40",
                S::Closed,
                FROM,
                Some(FROM + 10 * H),
                Some(FROM + 20 * H),
            ),
            // Fixed in the window after 30 h, waiting for verification.
            order("d40", S::Fixed, FROM + H, Some(FROM + 31 * H), None),
            late,
            late_but_fixed,
            not_yet_due,
            // Fixed last week, closed this week.
            order(
                "D00",
                S::Closed,
                FROM - 50 * H,
                Some(FROM - 2 * H),
                Some(FROM + 2 * H),
            ),
            order("D10", S::Cancelled, FROM, None, None),
        ];
        let r = weekly(&found, &orders, FROM, TO, TO);
        assert_eq!((r.found, r.fixed, r.closed), (3, 3, 2));
        assert_eq!(r.overdue, 1);
        assert_eq!(r.open, 4);
        // 10 h, 30 h and 101 h.
        assert_eq!(r.median_hours_to_fix, Some(30.0));
        let codes: Vec<&str> = r.classes.iter().map(|c| c.class.as_str()).collect();
        assert_eq!(codes, ["D00", "D10", "D20", "D40", "manhole"]);
        let d40 = &r.classes[3];
        assert_eq!(d40.name, "Pothole");
        assert_eq!(
            (d40.found, d40.fixed, d40.closed, d40.overdue),
            (2, 3, 1, 1)
        );
        assert_eq!(d40.median_hours_to_fix, Some(30.0));
        let d00 = &r.classes[0];
        assert_eq!((d00.found, d00.fixed, d00.closed), (0, 0, 1));
        assert_eq!(d00.median_hours_to_fix, None);
        assert_eq!(r.classes[4].name, "manhole");
        assert_eq!(r.classes[4].found, 1);
    }

    #[test]
    fn overdue_depends_on_now() {
        let mut o = order("D40", S::InProgress, FROM, None, None);
        o.due_ms = Some(FROM + 72 * H);
        let orders = [o];
        assert_eq!(weekly(&[], &orders, FROM, TO, FROM + 72 * H).overdue, 0);
        assert_eq!(weekly(&[], &orders, FROM, TO, FROM + 73 * H).overdue, 1);
    }

    #[test]
    fn an_empty_week_lists_the_known_classes_with_zeros() {
        let r = weekly(&[], &[], FROM, TO, TO);
        assert_eq!(
            (r.found, r.fixed, r.closed, r.overdue, r.open),
            (0, 0, 0, 0, 0)
        );
        assert_eq!(r.median_hours_to_fix, None);
        assert_eq!(r.classes.len(), 4);
        // A tenant's class with only an old, closed order is left out.
        let old = [order("manhole", S::Closed, 0, Some(H), Some(2 * H))];
        assert_eq!(weekly(&[], &old, FROM, TO, TO).classes.len(), 4);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut [5.0]), Some(5.0));
        assert_eq!(median(&mut []), None);
        // A fix stamped before its opening counts as zero hours, not negative.
        let o = [order("D40", S::Fixed, FROM + 5 * H, Some(FROM + H), None)];
        assert_eq!(weekly(&[], &o, FROM, TO, TO).median_hours_to_fix, Some(0.0));
    }
}

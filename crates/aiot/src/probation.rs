//! Probation of a new version on a node, as pure decisions: the figures it gathers while
//! serving, and whether it commits, keeps going, or is rolled back.

use lingjing_model::aiot::{Probation, ProbationFigures};

/// Latency samples kept for the 95th percentile (the oldest are dropped after this many).
const MAX_SAMPLES: usize = 2_000;
/// Inferences before a latency budget is judged (a cold first run is not a verdict).
const MIN_FOR_LATENCY: u64 = 20;

/// What a version on probation has done so far.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub inferences: u64,
    pub errors: u64,
    latencies_us: std::collections::VecDeque<u32>,
}

impl Figures {
    /// Counts one inference (`ok`: the model ran).
    pub fn record(&mut self, ok: bool, latency: std::time::Duration) {
        self.inferences += 1;
        if !ok {
            self.errors += 1;
        }
        if self.latencies_us.len() == MAX_SAMPLES {
            self.latencies_us.pop_front();
        }
        self.latencies_us
            .push_back(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }

    /// The 95th-percentile latency in ms (0 before any inference).
    pub fn p95_ms(&self) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let mut sorted: Vec<u32> = self.latencies_us.iter().copied().collect();
        sorted.sort_unstable();
        let rank = (sorted.len() * 95).div_ceil(100).max(1) - 1;
        sorted[rank].div_ceil(1000)
    }

    pub fn report(&self, elapsed_ms: u64) -> ProbationFigures {
        ProbationFigures {
            inferences: self.inferences,
            errors: self.errors,
            p95_ms: self.p95_ms(),
            elapsed_ms,
        }
    }
}

/// Where a probation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Commit,
    /// Rolled back, and why.
    Fail(String),
}

/// Judges `figures` after `elapsed_ms` on probation. Errors are judged at once against
/// the budget of whichever is more, the inferences so far or `min_inferences`, so a few
/// early errors do not end it but more than the budget allows does; latency is judged
/// once a few inferences ran. With both budgets kept, it commits after `min_inferences`
/// inferences or `min_seconds`, whichever comes first.
pub fn judge(policy: &Probation, figures: &ProbationFigures) -> Verdict {
    let budget_base = figures.inferences.max(u64::from(policy.min_inferences));
    if figures.errors * 100 > u64::from(policy.max_error_percent) * budget_base {
        return Verdict::Fail(format!(
            "{} of {} inferences failed on probation (budget {}%)",
            figures.errors, figures.inferences, policy.max_error_percent
        ));
    }
    if figures.inferences >= MIN_FOR_LATENCY && figures.p95_ms > policy.max_p95_ms {
        return Verdict::Fail(format!(
            "95th-percentile latency {} ms on probation (budget {} ms)",
            figures.p95_ms, policy.max_p95_ms
        ));
    }
    let enough = figures.inferences >= u64::from(policy.min_inferences)
        || figures.elapsed_ms >= u64::from(policy.min_seconds) * 1000;
    if !enough {
        return Verdict::Continue;
    }
    if figures.errors * 100 > u64::from(policy.max_error_percent) * figures.inferences {
        return Verdict::Fail(format!(
            "{} of {} inferences failed on probation (budget {}%)",
            figures.errors, figures.inferences, policy.max_error_percent
        ));
    }
    Verdict::Commit
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Probation {
        Probation {
            min_inferences: 100,
            min_seconds: 60,
            max_error_percent: 5,
            max_p95_ms: 100,
        }
    }

    fn figures(inferences: u64, errors: u64, p95_ms: u32, elapsed_ms: u64) -> ProbationFigures {
        ProbationFigures {
            inferences,
            errors,
            p95_ms,
            elapsed_ms,
        }
    }

    #[test]
    fn commits_after_enough_inferences_or_time_within_budget() {
        assert_eq!(
            judge(&policy(), &figures(99, 0, 10, 1_000)),
            Verdict::Continue
        );
        assert_eq!(
            judge(&policy(), &figures(100, 5, 10, 1_000)),
            Verdict::Commit
        );
        assert_eq!(
            judge(&policy(), &figures(0, 0, 0, 60_000)),
            Verdict::Commit,
            "an idle slot commits on time"
        );
        assert_eq!(
            judge(&policy(), &figures(3, 0, 10, 60_000)),
            Verdict::Commit
        );
    }

    #[test]
    fn fails_as_soon_as_the_budget_is_spent() {
        // Five errors fit the budget of 5% of 100; the sixth does not, at once.
        assert_eq!(judge(&policy(), &figures(5, 5, 10, 0)), Verdict::Continue);
        assert!(matches!(
            judge(&policy(), &figures(6, 6, 10, 0)),
            Verdict::Fail(_)
        ));
        // After the time is up, judged on what ran: 1 of 3 is a third.
        assert!(matches!(
            judge(&policy(), &figures(3, 1, 10, 60_000)),
            Verdict::Fail(_)
        ));
        // Latency: not on the first few, then yes.
        assert_eq!(judge(&policy(), &figures(5, 0, 900, 0)), Verdict::Continue);
        let Verdict::Fail(why) = judge(&policy(), &figures(20, 0, 900, 0)) else {
            panic!("latency over budget");
        };
        assert!(why.contains("900 ms"), "{why}");
    }

    #[test]
    fn p95_is_the_rank_from_the_samples() {
        let mut f = Figures::default();
        assert_eq!(f.p95_ms(), 0);
        for ms in 1..=100u64 {
            f.record(true, std::time::Duration::from_millis(ms));
        }
        assert_eq!(f.p95_ms(), 95);
        f.record(false, std::time::Duration::from_millis(1));
        assert_eq!((f.inferences, f.errors), (101, 1));
    }
}

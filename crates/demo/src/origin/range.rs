//! Parsing and evaluation of a `Range: bytes=...` header (RFC 9110 §14) against a
//! representation of known length. Pure functions; the decision of what to send is here,
//! the sending is in `large`.

/// What to do with a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeOutcome {
    /// Not a valid byte range: ignore it and send the whole body (200).
    Ignore,
    /// One satisfiable range, `start..=end`: send 206 with `Content-Range`.
    Single { start: u64, end: u64 },
    /// Several ranges, at least one satisfiable: this origin sends the whole body (200).
    Multiple,
    /// No range is satisfiable: send 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-` or `first-last`.
    Int { first: u64, last: Option<u64> },
    /// `-suffix`.
    Suffix(u64),
}

/// Evaluates the value of a `Range` header for a representation of `len` bytes.
pub(crate) fn evaluate(header: &str, len: u64) -> RangeOutcome {
    let Some(specs) = parse(header) else {
        return RangeOutcome::Ignore;
    };
    let mut satisfiable = specs.iter().filter_map(|spec| resolve(*spec, len));
    let Some((start, end)) = satisfiable.next() else {
        return RangeOutcome::Unsatisfiable;
    };
    if specs.len() == 1 {
        RangeOutcome::Single { start, end }
    } else {
        RangeOutcome::Multiple
    }
}

/// The inclusive byte span a spec selects, or `None` when it is unsatisfiable.
fn resolve(spec: Spec, len: u64) -> Option<(u64, u64)> {
    match spec {
        Spec::Int { first, last } => {
            if first >= len {
                return None;
            }
            let last = last.map_or(len - 1, |last| last.min(len - 1));
            Some((first, last))
        }
        Spec::Suffix(n) => {
            if n == 0 || len == 0 {
                return None;
            }
            Some((len - n.min(len), len - 1))
        }
    }
}

fn parse(header: &str) -> Option<Vec<Spec>> {
    let (unit, set) = header.trim().split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return None;
    }
    let specs = set
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_spec)
        .collect::<Option<Vec<_>>>()?;
    if specs.is_empty() { None } else { Some(specs) }
}

fn parse_spec(spec: &str) -> Option<Spec> {
    let (first, last) = spec.split_once('-')?;
    if first.is_empty() {
        return Some(Spec::Suffix(digits(last)?));
    }
    let first = digits(first)?;
    let last = if last.is_empty() {
        None
    } else {
        Some(digits(last)?)
    };
    if last.is_some_and(|last| last < first) {
        return None;
    }
    Some(Spec::Int { first, last })
}

/// A non-empty run of ASCII digits; values beyond `u64` saturate (still correct: such a
/// position is past the end of any representation).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::RangeOutcome::*;
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(evaluate("bytes=0-9", 100), Single { start: 0, end: 9 });
        assert_eq!(evaluate("bytes=90-", 100), Single { start: 90, end: 99 });
        assert_eq!(evaluate("bytes=90-500", 100), Single { start: 90, end: 99 });
        assert_eq!(evaluate("bytes=-10", 100), Single { start: 90, end: 99 });
        assert_eq!(evaluate("bytes=-1000", 100), Single { start: 0, end: 99 });
        assert_eq!(evaluate(" Bytes = 5-5 ", 100), Single { start: 5, end: 5 });
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(evaluate("bytes=100-", 100), Unsatisfiable);
        assert_eq!(evaluate("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(evaluate("bytes=-0", 100), Unsatisfiable);
        assert_eq!(evaluate("bytes=0-", 0), Unsatisfiable);
        assert_eq!(evaluate("bytes=-5", 0), Unsatisfiable);
        assert_eq!(
            evaluate("bytes=99999999999999999999999-", 100),
            Unsatisfiable
        );
        assert_eq!(evaluate("bytes=200-300, 400-", 100), Unsatisfiable);
    }

    #[test]
    fn multiple() {
        assert_eq!(evaluate("bytes=0-1, 5-6", 100), Multiple);
        assert_eq!(evaluate("bytes=0-1, 500-600", 100), Multiple);
        assert_eq!(evaluate("bytes=0-1,", 100), Single { start: 0, end: 1 });
    }

    #[test]
    fn invalid_is_ignored() {
        for bad in [
            "bytes=",
            "bytes=a-b",
            "bytes=5-1",
            "items=0-1",
            "bytes 0-1",
            "bytes=-",
            "bytes=+1-2",
            "bytes=0-1, x",
        ] {
            assert_eq!(evaluate(bad, 100), Ignore, "{bad}");
        }
    }
}

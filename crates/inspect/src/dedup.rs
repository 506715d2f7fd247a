//! De-duplication: a detection near a stored defect of the same class is another sighting
//! of it (its position moves to the mean of all sightings); anything else is a new
//! defect. Different classes at one place never merge.

use crate::classes::same_class;
use crate::geo::{LatLon, haversine_m, wrap_lon};

/// A defect already stored, a candidate for merging.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    pub id: String,
    pub class: String,
    pub at: LatLon,
}

/// The nearest known defect of the same class strictly within `within_m` metres of `at`,
/// with its distance (ties: the smaller id).
pub fn nearest_same_class<'a>(
    class: &str,
    at: LatLon,
    within_m: f64,
    known: &'a [Known],
) -> Option<(&'a Known, f64)> {
    known
        .iter()
        .filter(|k| same_class(&k.class, class))
        .map(|k| (k, haversine_m(at, k.at)))
        .filter(|(_, d)| *d < within_m)
        .min_by(|(a, da), (b, db)| da.total_cmp(db).then_with(|| a.id.cmp(&b.id)))
}

/// The running mean of `count` earlier sightings at `old` and a new one at `new` (count
/// 0: `new`). Longitudes average the short way round the antimeridian.
pub fn merged_position(old: LatLon, count: u64, new: LatLon) -> LatLon {
    if count == 0 {
        return new;
    }
    let n = count as f64 + 1.0;
    let lat = old.0 + (new.0 - old.0) / n;
    let lon = wrap_lon(old.1 + wrap_lon(new.1 - old.1) / n);
    (lat, lon)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::offset;

    const SPOT: LatLon = (31.4912, 120.3119);

    fn known(id: &str, class: &str, at: LatLon) -> Known {
        Known {
            id: id.into(),
            class: class.into(),
            at,
        }
    }

    #[test]
    fn same_class_merges_within_the_distance_only() {
        let k = [known("a", "D40", SPOT)];
        let near = offset(SPOT, 6.0, 0.0);
        let (hit, d) = nearest_same_class("D40", near, 10.0, &k).unwrap();
        assert_eq!(hit.id, "a");
        assert!((d - 6.0).abs() < 0.01);
        assert!(nearest_same_class("D40", offset(SPOT, 12.0, 0.0), 10.0, &k).is_none());
        // Strictly within: exactly at the distance is a new defect.
        assert!(nearest_same_class("D40", near, d, &k).is_none());
    }

    #[test]
    fn different_classes_at_one_place_never_merge() {
        let k = [known("a", "D40", SPOT)];
        assert!(nearest_same_class("D00", SPOT, 10.0, &k).is_none());
        assert!(nearest_same_class("d40", SPOT, 10.0, &k).is_some());
    }

    #[test]
    fn the_nearest_wins_then_the_smaller_id() {
        let k = [
            known("c", "D20", offset(SPOT, 4.0, 0.0)),
            known("b", "D20", offset(SPOT, 0.0, 2.0)),
            known("a", "D20", offset(SPOT, 0.0, -2.0)),
        ];
        let (hit, _) = nearest_same_class("D20", SPOT, 10.0, &k).unwrap();
        assert_eq!(hit.id, "a");
        assert!(nearest_same_class("D20", SPOT, 10.0, &[]).is_none());
    }

    #[test]
    fn the_mean_moves_towards_each_sighting() {
        assert_eq!(merged_position(SPOT, 0, (1.0, 2.0)), (1.0, 2.0));
        let m = merged_position((10.0, 20.0), 1, (12.0, 22.0));
        assert!((m.0 - 11.0).abs() < 1e-12 && (m.1 - 21.0).abs() < 1e-12);
        let m = merged_position((10.0, 20.0), 3, (14.0, 20.0));
        assert!((m.0 - 11.0).abs() < 1e-12);
        let m = merged_position((0.0, 179.9), 1, (0.0, -179.9));
        assert!(m.1.abs() > 179.9, "{m:?}");
    }

    #[test]
    fn two_vehicles_and_two_runs_see_one_pothole() {
        // Sightings jittered by up to 3 m, as two vehicles on two runs report them.
        let jitter = [
            (3.0, 0.0),
            (-3.0, 1.0),
            (0.0, 3.0),
            (2.0, -3.0),
            (-2.0, -2.0),
            (1.0, 2.5),
            (-3.0, 3.0),
            (3.0, -3.0),
        ];
        let mut stored: Vec<Known> = Vec::new();
        let mut counts: Vec<u64> = Vec::new();
        for (north, east) in jitter {
            let at = offset(SPOT, north, east);
            match nearest_same_class("D40", at, 10.0, &stored) {
                Some((hit, _)) => {
                    let i = stored.iter().position(|k| k.id == hit.id).unwrap();
                    stored[i].at = merged_position(stored[i].at, counts[i], at);
                    counts[i] += 1;
                }
                None => {
                    stored.push(known(&format!("d{}", stored.len()), "D40", at));
                    counts.push(1);
                }
            }
        }
        assert_eq!(stored.len(), 1);
        assert_eq!(counts[0], 8);
        assert!(haversine_m(stored[0].at, SPOT) < 1.5, "{:?}", stored[0].at);
    }
}

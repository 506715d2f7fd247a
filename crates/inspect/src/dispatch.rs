//! Dispatch: which crew gets a new work order. A crew whose area contains the defect and
//! that has room (fewer active orders than its capacity); the least loaded of those.

use lingjing_model::inspect::Crew;

use crate::geo::LatLon;

/// A crew and how many active (dispatched or in progress) orders it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrewLoad<'a> {
    pub crew: &'a Crew,
    pub active: u32,
}

impl CrewLoad<'_> {
    /// Its load, active orders over capacity (a crew with no capacity is full).
    pub fn load(&self) -> f64 {
        if self.crew.capacity == 0 {
            return f64::INFINITY;
        }
        f64::from(self.active) / f64::from(self.crew.capacity)
    }

    /// Whether it works at `at` and has room for one more order.
    pub fn can_take(&self, at: LatLon) -> bool {
        self.active < self.crew.capacity && self.crew.areas.iter().any(|a| a.contains(at.0, at.1))
    }
}

/// The crew for a defect at `at`: among those that work there and have room, the least
/// loaded (active / capacity), then the one with fewer active orders, then the smaller id.
/// None: no crew works there or all are full (the order stays open).
pub fn choose_crew<'a>(at: LatLon, crews: &[CrewLoad<'a>]) -> Option<&'a Crew> {
    crews
        .iter()
        .filter(|c| c.can_take(at))
        .min_by(|a, b| {
            a.load()
                .total_cmp(&b.load())
                .then(a.active.cmp(&b.active))
                .then_with(|| a.crew.id.cmp(&b.crew.id))
        })
        .map(|c| c.crew)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lingjing_model::inspect::Area;

    fn crew(id: &str, south: f64, west: f64, capacity: u32) -> Crew {
        Crew {
            id: id.into(),
            tenant: "city".into(),
            name: id.into(),
            areas: vec![Area {
                south,
                west,
                north: south + 1.0,
                east: west + 1.0,
            }],
            capacity,
        }
    }

    #[test]
    fn the_crew_whose_area_contains_the_defect() {
        let east = crew("east", 31.0, 120.0, 10);
        let west = crew("west", 31.0, 119.0, 10);
        let loads = [
            CrewLoad {
                crew: &west,
                active: 0,
            },
            CrewLoad {
                crew: &east,
                active: 5,
            },
        ];
        assert_eq!(
            choose_crew((31.5, 120.3), &loads).map(|c| c.id.as_str()),
            Some("east")
        );
        assert_eq!(
            choose_crew((31.5, 119.3), &loads).map(|c| c.id.as_str()),
            Some("west")
        );
        assert!(choose_crew((40.0, 116.0), &loads).is_none());
        assert!(choose_crew((31.5, 120.3), &[]).is_none());
    }

    #[test]
    fn the_least_loaded_then_fewer_active_then_the_smaller_id() {
        let a = crew("a", 31.0, 120.0, 10);
        let b = crew("b", 31.0, 120.0, 40);
        let c = crew("c", 31.0, 120.0, 20);
        let at = (31.5, 120.5);
        // a: 5/10 = 0.5; b: 10/40 = 0.25; c: 5/20 = 0.25 with fewer active.
        let loads = [
            CrewLoad {
                crew: &a,
                active: 5,
            },
            CrewLoad {
                crew: &b,
                active: 10,
            },
            CrewLoad {
                crew: &c,
                active: 5,
            },
        ];
        assert_eq!(choose_crew(at, &loads).map(|x| x.id.as_str()), Some("c"));
        let tie = crew("b2", 31.0, 120.0, 20);
        let loads = [
            CrewLoad {
                crew: &tie,
                active: 5,
            },
            CrewLoad {
                crew: &c,
                active: 5,
            },
        ];
        assert_eq!(choose_crew(at, &loads).map(|x| x.id.as_str()), Some("b2"));
    }

    #[test]
    fn a_full_crew_is_skipped() {
        let full = crew("full", 31.0, 120.0, 3);
        let busy = crew("busy", 31.0, 120.0, 100);
        let at = (31.5, 120.5);
        let loads = [
            CrewLoad {
                crew: &full,
                active: 3,
            },
            CrewLoad {
                crew: &busy,
                active: 90,
            },
        ];
        assert_eq!(choose_crew(at, &loads).map(|x| x.id.as_str()), Some("busy"));
        let loads = [CrewLoad {
            crew: &full,
            active: 3,
        }];
        assert!(choose_crew(at, &loads).is_none());
        let none = crew("none", 31.0, 120.0, 0);
        assert!(
            choose_crew(
                at,
                &[CrewLoad {
                    crew: &none,
                    active: 0
                }]
            )
            .is_none()
        );
    }
}

//! Distances on the Earth: positions are `(lat, lon)` in degrees (WGS 84) on a sphere of
//! the mean radius. Great-circle distances, the box around a point that a database can
//! search first, the point a given way off (simulations and tests), and how far a point
//! is from a vehicle's path.
//!
//! Every function takes any `f64` without panicking: a position that is not finite gives
//! a distance that is not finite (compare it with `<`, which is then false).

/// A position: latitude and longitude in degrees, WGS 84.
pub type LatLon = (f64, f64);

/// The Earth's mean radius (IUGG), in metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// The great-circle distance between two positions, in metres (haversine formula).
pub fn haversine_m(a: LatLon, b: LatLon) -> f64 {
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.1 - a.1).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// A box of latitudes and longitudes in degrees, south-west to north-east (never across
/// the antimeridian: `west <= east`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BBox {
    pub south: f64,
    pub west: f64,
    pub north: f64,
    pub east: f64,
}

impl BBox {
    /// The whole world.
    pub const WORLD: BBox = BBox {
        south: -90.0,
        west: -180.0,
        north: 90.0,
        east: 180.0,
    };

    /// Whether `p` is inside the box (edges included).
    pub fn contains(&self, p: LatLon) -> bool {
        (self.south..=self.north).contains(&p.0) && (self.west..=self.east).contains(&p.1)
    }
}

/// A box that contains every point within `metres` of `p` (a query's first, coarse
/// filter). Latitudes are clamped to ±90; when the circle reaches a pole or would cross
/// the antimeridian the box takes every longitude: too large there, never too small. A
/// position or distance that is not finite gives the whole world.
pub fn bbox_around(p: LatLon, metres: f64) -> BBox {
    if !p.0.is_finite() || !p.1.is_finite() || metres.is_nan() || metres == f64::INFINITY {
        return BBox::WORLD;
    }
    let lat = p.0.clamp(-90.0, 90.0);
    let lon = wrap_lon(p.1);
    // Angular radius, widened a hair so that rounding never leaves a point outside.
    let r = metres.max(0.0) / EARTH_RADIUS_M * (1.0 + 1e-9) + 1e-15;
    let dlat = r.to_degrees();
    let south = (lat - dlat).max(-90.0);
    let north = (lat + dlat).min(90.0);
    let cos_lat = lat.to_radians().cos();
    // The cap's widest longitude is asin(sin r / cos lat); a pole inside it: every one.
    let s = r.sin() / cos_lat;
    if south <= -90.0 || north >= 90.0 || !s.is_finite() || s >= 1.0 {
        return BBox {
            south,
            west: -180.0,
            north,
            east: 180.0,
        };
    }
    let dlon = s.asin().to_degrees();
    let (west, east) = (lon - dlon, lon + dlon);
    if west < -180.0 || east > 180.0 {
        return BBox {
            south,
            west: -180.0,
            north,
            east: 180.0,
        };
    }
    BBox {
        south,
        west,
        north,
        east,
    }
}

/// The point `north_m` metres north and `east_m` metres east of `p`: reached along the
/// great circle that starts in that direction, so its distance from `p` is
/// `hypot(north_m, east_m)`. Longitudes wrap into -180..180; latitudes stay within ±90.
pub fn offset(p: LatLon, north_m: f64, east_m: f64) -> LatLon {
    let d = north_m.hypot(east_m) / EARTH_RADIUS_M;
    if d == 0.0 {
        return p;
    }
    let bearing = east_m.atan2(north_m);
    let (lat1, lon1) = (p.0.to_radians(), p.1.to_radians());
    let sin_lat2 = (lat1.sin() * d.cos() + lat1.cos() * d.sin() * bearing.cos()).clamp(-1.0, 1.0);
    let lat2 = sin_lat2.asin();
    let lon2 = lon1 + (bearing.sin() * d.sin() * lat1.cos()).atan2(d.cos() - lat1.sin() * sin_lat2);
    (lat2.to_degrees(), wrap_lon(lon2.to_degrees()))
}

/// A longitude brought into -180..180 (180 stays 180).
pub fn wrap_lon(lon: f64) -> f64 {
    if (-180.0..=180.0).contains(&lon) {
        lon
    } else {
        (lon + 180.0).rem_euclid(360.0) - 180.0
    }
}

/// The shortest distance in metres from `p` to the polyline `path` (none for an empty
/// path; one point: the distance to it). Each segment is projected on a plane around `p`
/// (equirectangular), exact to well within 1% for segments under a few kilometres.
pub fn distance_to_path_m(p: LatLon, path: &[LatLon]) -> Option<f64> {
    match path {
        [] => None,
        [only] => Some(haversine_m(p, *only)),
        _ => path
            .windows(2)
            .map(|w| distance_to_segment_m(p, w[0], w[1]))
            .reduce(f64::min),
    }
}

/// Distance from `p` to the segment `a`–`b`, on the plane tangent at `p`.
fn distance_to_segment_m(p: LatLon, a: LatLon, b: LatLon) -> f64 {
    let k = p.0.to_radians().cos();
    let project = |q: LatLon| {
        let x = wrap_lon(q.1 - p.1).to_radians() * k * EARTH_RADIUS_M;
        let y = (q.0 - p.0).to_radians() * EARTH_RADIUS_M;
        (x, y)
    };
    let (ax, ay) = project(a);
    let (bx, by) = project(b);
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (ax + t * dx).hypot(ay + t * dy)
}

/// The length of a polyline in metres (sum of its segments' great-circle distances).
pub fn path_length_m(path: &[LatLon]) -> f64 {
    path.windows(2).map(|w| haversine_m(w[0], w[1])).sum()
}

/// The initial bearing from `a` to `b`, degrees clockwise from north (0 to 360); 0 for
/// the same point or positions that are not numbers.
pub fn bearing_deg(a: LatLon, b: LatLon) -> f64 {
    let (la, lb) = (a.0.to_radians(), b.0.to_radians());
    let dl = (b.1 - a.1).to_radians();
    let y = dl.sin() * lb.cos();
    let x = la.cos() * lb.sin() - la.sin() * lb.cos() * dl.cos();
    let deg = y.atan2(x).to_degrees();
    if deg.is_finite() {
        deg.rem_euclid(360.0)
    } else {
        0.0
    }
}

/// Whether a forward-looking camera at `from`, heading `heading` (degrees; none: unknown),
/// can see `to`: it is within `near_m` (under the vehicle), or within `half_angle_deg` of
/// the heading. With no heading every direction counts.
pub fn looks_at(
    from: LatLon,
    heading: Option<f32>,
    to: LatLon,
    half_angle_deg: f64,
    near_m: f64,
) -> bool {
    let Some(heading) = heading.filter(|h| h.is_finite()) else {
        return true;
    };
    if haversine_m(from, to) <= near_m {
        return true;
    }
    let diff = (bearing_deg(from, to) - f64::from(heading)).rem_euclid(360.0);
    diff.min(360.0 - diff) <= half_angle_deg
}

#[cfg(test)]
mod tests {
    use super::*;

    const WUXI: LatLon = (31.4912, 120.3119);

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let d = haversine_m((0.0, 0.0), (1.0, 0.0));
        assert!((d - 111_195.0).abs() < 5.0, "{d}");
        let d = haversine_m((0.0, 179.5), (0.0, -179.5));
        assert!((d - 111_195.0).abs() < 5.0, "across the antimeridian: {d}");
        assert_eq!(haversine_m(WUXI, WUXI), 0.0);
    }

    #[test]
    fn offsets_measure_what_they_say() {
        let north = offset(WUXI, 10.0, 0.0);
        assert!((haversine_m(WUXI, north) - 10.0).abs() < 0.05);
        assert!(north.0 > WUXI.0 && (north.1 - WUXI.1).abs() < 1e-12);
        let east = offset(WUXI, 0.0, 250.0);
        assert!((haversine_m(WUXI, east) - 250.0).abs() < 0.05);
        assert!(east.1 > WUXI.1);
        let sw = offset(WUXI, -30.0, -40.0);
        assert!((haversine_m(WUXI, sw) - 50.0).abs() < 0.01);
        assert!(sw.0 < WUXI.0 && sw.1 < WUXI.1);
        let wrapped = offset((0.0, 179.9999), 0.0, 100.0);
        assert!(wrapped.1 < -179.0, "{wrapped:?}");
    }

    #[test]
    fn the_box_contains_the_circle_in_every_direction() {
        for centre in [WUXI, (-33.9, 151.2), (69.6, 18.9), (0.0, 0.0)] {
            for metres in [5.0, 15.0, 1000.0, 50_000.0] {
                let b = bbox_around(centre, metres);
                for k in 0..8 {
                    let angle = f64::from(k) * std::f64::consts::FRAC_PI_4;
                    let q = offset(centre, metres * angle.cos(), metres * angle.sin());
                    assert!(
                        b.contains(q),
                        "{centre:?} {metres} m, direction {k}: {q:?} {b:?}"
                    );
                }
                // And it is not absurdly large: twice the radius away is outside.
                assert!(!b.contains(offset(centre, 2.0 * metres, 0.0)));
                assert!(!b.contains(offset(centre, 0.0, 2.0 * metres)));
            }
        }
    }

    #[test]
    fn the_box_takes_every_longitude_at_a_pole_or_the_antimeridian() {
        let polar = bbox_around((89.9999, 10.0), 100.0);
        assert_eq!((polar.west, polar.east, polar.north), (-180.0, 180.0, 90.0));
        let dateline = bbox_around((10.0, 179.9999), 100.0);
        assert_eq!((dateline.west, dateline.east), (-180.0, 180.0));
        assert!(dateline.north - dateline.south < 0.01);
        assert_eq!(bbox_around((f64::NAN, 0.0), 10.0), BBox::WORLD);
        assert_eq!(bbox_around(WUXI, f64::INFINITY), BBox::WORLD);
        let zero = bbox_around(WUXI, -5.0);
        assert!(zero.contains(WUXI));
    }

    #[test]
    fn distance_to_a_path_is_perpendicular_or_to_the_nearest_end() {
        let a = WUXI;
        let b = offset(WUXI, 0.0, 1000.0);
        let path = [a, b];
        // 20 m north of the middle: 20 m.
        let mid = offset(WUXI, 20.0, 500.0);
        let d = distance_to_path_m(mid, &path).unwrap();
        assert!((d - 20.0).abs() < 0.2, "{d}");
        // Beyond the west end: the distance to that end.
        let before = offset(WUXI, 30.0, -40.0);
        let d = distance_to_path_m(before, &path).unwrap();
        assert!((d - 50.0).abs() < 0.5, "{d}");
        // Beyond the east end.
        let after = offset(b, 0.0, 100.0);
        let d = distance_to_path_m(after, &path).unwrap();
        assert!((d - 100.0).abs() < 1.0, "{d}");
        assert_eq!(distance_to_path_m(mid, &[]), None);
        let one = distance_to_path_m(mid, &[a]).unwrap();
        assert!((one - haversine_m(mid, a)).abs() < 1e-9);
        // A repeated point is a segment of length zero, not a division by zero.
        let d = distance_to_path_m(before, &[a, a]).unwrap();
        assert!((d - 50.0).abs() < 0.5, "{d}");
    }

    #[test]
    fn path_length_adds_its_segments() {
        let b = offset(WUXI, 300.0, 0.0);
        let c = offset(b, 0.0, 400.0);
        let len = path_length_m(&[WUXI, b, c]);
        assert!((len - 700.0).abs() < 0.1, "{len}");
        assert_eq!(path_length_m(&[WUXI]), 0.0);
        assert_eq!(path_length_m(&[]), 0.0);
    }

    #[test]
    fn a_forward_camera_sees_ahead_not_behind() {
        let here = (31.23, 121.47);
        let ahead = offset(here, 0.0, 10.0); // 10 m east
        let behind = offset(here, 0.0, -10.0);
        assert!((bearing_deg(here, ahead) - 90.0).abs() < 0.01);
        assert!((bearing_deg(here, behind) - 270.0).abs() < 0.01);
        assert!(looks_at(here, Some(90.0), ahead, 60.0, 3.0));
        assert!(!looks_at(here, Some(90.0), behind, 60.0, 3.0));
        // Heading north: the spot due east is outside a 60-degree half angle.
        assert!(!looks_at(here, Some(0.0), ahead, 60.0, 3.0));
        // Across north: heading 350, the spot at bearing 10.
        let north_east = offset(here, 10.0, 1.76);
        assert!(looks_at(here, Some(350.0), north_east, 60.0, 3.0));
        // Right under the vehicle, or no heading: seen.
        assert!(looks_at(
            here,
            Some(270.0),
            offset(here, 0.0, 2.0),
            60.0,
            3.0
        ));
        assert!(looks_at(here, None, behind, 60.0, 3.0));
    }
}

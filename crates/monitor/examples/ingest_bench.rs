//! Readings a site's node ingests and evaluates (issue 18): 10,000 temperature sensors,
//! each watched by its kind's 4 default rules and `silent` (50,000 rules), reported by
//! 100 devices. Prints one line per stage, `stage readings_per_s`:
//!
//! - `engine`: the rule engine alone (`Engine::telemetry`), messages of 100 readings;
//! - `durable_100`: through the monitor as MQTT and HTTP telemetry go (`Monitor::telemetry`:
//!   readings and transitions appended and fsynced to the outbox before it returns),
//!   messages of 100 readings;
//! - `durable_1`: the same, one reading per message (an fsync per reading);
//! - `tick_ms`: one pass of time over all 50,000 series (ms, not a rate).
//!
//! Values wander around 22 °C with, every 50th message, one sensor hot (a transition to
//! keep and save). Run by bench/monitor.sh (release build); `SECONDS_PER_STAGE` (default
//! 5) sets each stage's length.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lingjing_model::monitor::{MonitorConfig, Sensor, SensorKind, SiteMonitor, Telemetry};
use lingjing_monitor::engine::{Engine, State};
use lingjing_monitor::metrics::Metrics;
use lingjing_monitor::site::Monitor;

const SENSORS: usize = 10_000;
const DEVICES: usize = 100;

fn config() -> MonitorConfig {
    let sensors = (0..SENSORS)
        .map(|i| Sensor {
            id: format!("t-{i}"),
            site: "bench".into(),
            room: format!("hall-{}", i % 10),
            cabinet: None,
            rack_unit: None,
            kind: SensorKind::Temperature,
            device: format!("d-{}", i % DEVICES),
            interval_s: 60,
            contract_watts: None,
            tenant: None,
            rules: None,
        })
        .collect();
    MonitorConfig {
        monitors: vec![SiteMonitor {
            site: "bench".into(),
            node: "bench-node".into(),
        }],
        sensors,
        escalate_after_s: 900,
        ..MonitorConfig::default()
    }
}

/// Message `n`: `per` readings of device `n % DEVICES`'s sensors at time `at_ms`.
fn message(n: usize, per: usize, at_ms: i64) -> (String, Telemetry) {
    let d = n % DEVICES;
    let mut values = BTreeMap::new();
    for k in 0..per {
        let sensor = d + DEVICES * ((n / DEVICES * per + k) % (SENSORS / DEVICES));
        let wobble = ((n * 31 + k * 17) % 100) as f64 / 100.0;
        let hot = n.is_multiple_of(50) && k == 0;
        values.insert(
            format!("t-{sensor}"),
            if hot { 35.0 } else { 21.5 + wobble },
        );
    }
    (
        format!("d-{d}"),
        Telemetry {
            seq: n as u64,
            at_ms: Some(at_ms),
            values,
        },
    )
}

fn stage_seconds() -> Duration {
    Duration::from_secs_f64(
        std::env::var("SECONDS_PER_STAGE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5.0),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cfg = config();
    let length = stage_seconds();
    let t0: i64 = 1_800_000_000_000;

    // The engine alone.
    let mut engine = Engine::new("bench", &cfg, State::default());
    assert_eq!(engine.size(), (SENSORS, SENSORS * 5));
    let (mut n, mut readings) = (0usize, 0usize);
    let start = Instant::now();
    while start.elapsed() < length {
        let (device, msg) = message(n, 100, t0 + n as i64 * 10);
        readings += engine.telemetry(&device, &msg, t0).values.len();
        n += 1;
    }
    println!(
        "engine {:.0}",
        readings as f64 / start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let passes = 5;
    for p in 0..passes {
        engine.tick(t0 + n as i64 * 10 + p);
    }
    println!(
        "tick_ms {:.2}",
        start.elapsed().as_secs_f64() * 1000.0 / passes as f64
    );

    // Through the monitor, durable.
    for (stage, per) in [("durable_100", 100), ("durable_1", 1)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let monitor =
            Monitor::open("bench-node", dir.path(), Arc::new(Metrics::default())).expect("open");
        monitor.set_config(&cfg);
        let (mut n, mut readings) = (0usize, 0usize);
        let start = Instant::now();
        while start.elapsed() < length {
            let (device, msg) = message(n, per, t0 + n as i64 * 10);
            let took = monitor
                .telemetry(None, &device, &msg, t0)
                .await
                .expect("taken");
            readings += took.kept;
            n += 1;
        }
        println!(
            "{stage} {:.0}",
            readings as f64 / start.elapsed().as_secs_f64()
        );
    }
}

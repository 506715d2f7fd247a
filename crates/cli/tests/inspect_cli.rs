//! `lingjing inspect` against a real `lingjing control`: a device added prints its
//! credential once and is listed with it; a crew with a bad area is refused naming
//! `areas[0]`; the policy changed flag by flag, then shown; defects and work orders of a
//! tenant with none print empty tables; an action on a work order that does not exist
//! fails with the API's message. (Defects and work orders come from frames: the whole
//! loop is tested with the control plane.)

mod common;

use std::process::{Command, Output};

use common::start_control;
use serde_json::Value;

const TOKEN: &str = "inspect-cli-test-operator-token";
const BIN: &str = env!("CARGO_BIN_EXE_lingjing");

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn an_operator_sets_up_road_inspection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("operator.token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let db = format!("sqlite://{}", dir.path().join("control.db").display());
    let (_control, url) = start_control(&db, &token_file, "127.0.0.1:0");
    let cli = |args: &[&str]| -> Output {
        Command::new(BIN)
            .args(args)
            .args(["--endpoint", &url])
            .env("LINGJING_TOKEN", TOKEN)
            .env_remove("LINGJING_CA")
            .current_dir(dir.path())
            .output()
            .expect("run lingjing")
    };
    let ok = |args: &[&str]| -> String {
        let out = cli(args);
        assert!(out.status.success(), "{args:?}: {}", said(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let json = |args: &[&str]| -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&ok(&all)).unwrap_or_else(|e| panic!("{args:?}: not JSON: {e}"))
    };
    ok(&["tenant", "add", "city", "--name", "City roads"]);

    // A device: its credential printed once, with what to do with it.
    let added = ok(&[
        "inspect",
        "device",
        "add",
        "cam-1",
        "--tenant",
        "city",
        "--slot",
        "road-distress",
        "--detect",
        "pothole=d40@0.6",
        "--detect",
        "crack=d00",
        "--name",
        "Patrol car 1",
    ]);
    assert!(added.contains("token: ljd_"), "{added}");
    assert!(added.contains("Authorization: Bearer"), "{added}");
    assert!(added.contains("POST /v1/patrol/frames"), "{added}");
    let listed = ok(&["inspect", "device", "list", "--tenant", "city"]);
    let row = listed
        .lines()
        .find(|l| l.contains("cam-1"))
        .unwrap_or_else(|| panic!("cam-1 not listed:\n{listed}"));
    assert!(listed.contains("HAS TOKEN"), "{listed}");
    assert!(row.trim_end().ends_with("yes"), "{listed}");
    assert!(row.contains("pothole=D40@0.6"), "{listed}");
    let devices = json(&["inspect", "device", "list"]);
    let cam = devices
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == "cam-1"))
        .unwrap_or_else(|| panic!("cam-1 not in {devices}"));
    assert_eq!(cam["has_token"], true, "{cam}");
    assert_eq!(cam["detects"][1]["min_score"], 0.5, "{cam}");
    let other = json(&["inspect", "device", "list", "--tenant", "another"]);
    assert_eq!(other, Value::Array(Vec::new()));
    // A new credential replaces it.
    let renewed = json(&["inspect", "device", "token", "cam-1"]);
    assert!(
        renewed["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("ljd_")),
        "{renewed}"
    );
    // A rule the CLI cannot read is refused before anything is sent.
    let bad = cli(&[
        "inspect",
        "device",
        "add",
        "cam-2",
        "--tenant",
        "city",
        "--slot",
        "road-distress",
        "--detect",
        "pothole",
    ]);
    assert!(!bad.status.success());
    assert!(said(&bad).contains("LABEL=CLASS"), "{}", said(&bad));

    // A crew: an area upside down is refused naming it; a good one is kept.
    let bad = cli(&[
        "inspect",
        "crew",
        "add",
        "east",
        "--tenant",
        "city",
        "--name",
        "East crew",
        "--area",
        "31.7,120.2,31.5,120.4",
    ]);
    assert!(!bad.status.success(), "{}", said(&bad));
    assert!(said(&bad).contains("areas[0]"), "{}", said(&bad));
    ok(&[
        "inspect",
        "crew",
        "add",
        "east",
        "--tenant",
        "city",
        "--name",
        "East crew",
        "--area",
        "31.5,120.2,31.7,120.4",
        "--capacity",
        "5",
    ]);
    let crews = ok(&["inspect", "crew", "list", "--tenant", "city"]);
    assert!(
        crews.contains("east") && crews.contains("31.5,120.2,31.7,120.4"),
        "{crews}"
    );

    // The policy: the defaults, two values changed, the others kept.
    let before = json(&["inspect", "policy", "city"]);
    assert_eq!(before["merge_metres"], 10.0, "{before}");
    let set = ok(&[
        "inspect",
        "policy",
        "city",
        "--merge-metres",
        "12",
        "--verify-frames",
        "5",
    ]);
    assert!(set.contains("changed"), "{set}");
    let after = json(&["inspect", "policy", "city"]);
    assert_eq!(after["merge_metres"], 12.0, "{after}");
    assert_eq!(after["verify_frames"], 5, "{after}");
    assert_eq!(after["seen_metres"], before["seen_metres"], "{after}");
    let shown = ok(&["inspect", "policy", "city"]);
    assert!(
        shown.contains("merge metres") && shown.contains("12"),
        "{shown}"
    );
    let bad = cli(&["inspect", "policy", "city", "--open-severity", "4"]);
    assert!(!bad.status.success());
    assert!(said(&bad).contains("open_severity"), "{}", said(&bad));

    // Nothing found yet: empty tables (a header, no rows).
    let defects = ok(&["inspect", "defects", "--tenant", "city"]);
    assert!(defects.contains("SIGHTINGS"), "{defects}");
    assert_eq!(defects.trim().lines().count(), 1, "{defects}");
    let orders = ok(&["inspect", "orders", "--tenant", "city", "--state", "open"]);
    assert!(orders.contains("OVERDUE"), "{orders}");
    assert_eq!(orders.trim().lines().count(), 1, "{orders}");
    assert_eq!(
        json(&["inspect", "orders", "--tenant", "city"]),
        Value::Array(Vec::new())
    );
    let runs = ok(&["inspect", "runs", "--tenant", "city"]);
    assert_eq!(runs.trim().lines().count(), 1, "{runs}");
    let report = ok(&["inspect", "report", "--tenant", "city"]);
    assert!(report.contains("found 0"), "{report}");
    assert!(report.contains("Pothole"), "{report}");

    // An action on a work order that does not exist: the API's 404.
    let missing = cli(&["inspect", "fix", "WO-404", "--note", "x"]);
    assert!(!missing.status.success());
    assert!(
        said(&missing).contains("work order `WO-404` does not exist"),
        "{}",
        said(&missing)
    );
    let bad_state = cli(&["inspect", "orders", "--state", "lost"]);
    assert!(!bad_state.status.success());
    assert!(
        said(&bad_state).contains("in_progress"),
        "{}",
        said(&bad_state)
    );
}

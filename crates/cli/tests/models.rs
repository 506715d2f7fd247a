//! `lingjing model push|list|show` against a real `lingjing control`: a file and its
//! self-test image uploaded as artefacts (with their digests checked by the control
//! plane), the version registered from a TOML spec, listed and shown; a second push of
//! the same version refused, naming what to do.

mod common;

use std::process::{Command, Output};

use common::start_control;

const TOKEN: &str = "models-test-operator-token";
const BIN: &str = env!("CARGO_BIN_EXE_lingjing");

const SPEC: &str = r#"
[input]
shape = [1, 3, 48, 192]
color = "bgr"
resize = "pad_right"
scale = 0.003921569
mean = [0.5]
std = [0.5]

[output]
kind = "classifier"
labels = ["0", "180"]

[self_test]
expected = [0.99, 0.01]
tolerance = 0.001
"#;

#[test]
fn an_operator_pushes_a_model_version_once() {
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
            .output()
            .expect("run lingjing")
    };
    // A stand-in for an ONNX file: 600 KiB (several pieces), and a self-test image.
    let onnx = dir.path().join("model.onnx");
    std::fs::write(
        &onnx,
        (0..600 * 1024)
            .map(|i| (i % 253) as u8)
            .collect::<Vec<u8>>(),
    )
    .expect("model file");
    let image = dir.path().join("upright.png");
    std::fs::write(&image, b"\x89PNG stand-in").expect("image");
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, SPEC).expect("spec");
    let path = |p: &std::path::Path| p.to_str().expect("utf-8").to_owned();
    let push = |version: &str| {
        cli(&[
            "model",
            "push",
            &path(&onnx),
            "--model",
            "text-direction",
            "--version",
            version,
            "--spec",
            &path(&spec),
            "--self-test-input",
            &path(&image),
        ])
    };

    let first = push("1");
    let said = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(said.contains("text-direction version 1 pushed"), "{said}");
    let again = push("1");
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("register a greater number"), "{err}");
    assert!(push("2").status.success());

    let listed = String::from_utf8_lossy(&cli(&["model", "list"]).stdout).into_owned();
    assert!(listed.contains("text-direction"), "{listed}");
    let shown = cli(&["model", "show", "text-direction", "--version", "1"]);
    let v: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("json");
    assert_eq!(v["output"]["labels"], serde_json::json!(["0", "180"]));
    assert_eq!(v["self_test"]["tolerance"], 0.001);
    assert_eq!(v["artifact"].as_str().map(str::len), Some(64));
    assert_ne!(v["artifact"], v["self_test"]["input"]);

    // A spec with a self-test but no image for it: refused before anything is sent.
    let missing = cli(&[
        "model",
        "push",
        &path(&onnx),
        "--model",
        "text-direction",
        "--version",
        "3",
        "--spec",
        &path(&spec),
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--self-test-input"));
}

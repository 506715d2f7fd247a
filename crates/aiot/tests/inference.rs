//! Inference end to end with real ONNX models through tract: PaddleOCR's text-direction
//! classifier on a rendered text line (upright and rotated), its self-test against
//! values onnxruntime computed, a model using an operator tract lacks, inputs a client
//! can get wrong, and (when `LINGJING_TEST_MODELS` names a folder holding ddddocr's
//! `common_det.onnx`) a YOLOX detector. The fixtures are described in tests/fixtures/README.md.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Instant;

use lingjing_aiot::backend::{Backend, Tensor};
use lingjing_aiot::decode::Decoded;
use lingjing_aiot::loaded::{InferError, Input, LoadedVersion};
use lingjing_aiot::tract_backend::TractBackend;
use lingjing_model::aiot::{ModelVersion, SelfTest};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The values onnxruntime gave for text-upright.png (written by make_fixtures.py).
fn expected_upright() -> Vec<f32> {
    let json: serde_json::Value =
        serde_json::from_slice(&fixture("text-upright.expected.json")).expect("expected.json");
    json["expected"]
        .as_array()
        .expect("expected values")
        .iter()
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect()
}

/// The text-direction classifier as a version (see docs/aiot-research.md).
fn text_direction(self_test: Option<(Vec<f32>, f32)>) -> ModelVersion {
    let mut version: ModelVersion = serde_json::from_value(serde_json::json!({
        "model": "text-direction", "version": 1,
        "artifact": "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        "input": {"shape": [1, 3, 48, 192], "color": "bgr", "resize": "pad_right",
                  "scale": 1.0 / 255.0, "mean": [0.5], "std": [0.5]},
        "output": {"kind": "classifier", "labels": ["0", "180"], "softmax": false},
    }))
    .expect("a version");
    version.self_test = self_test.map(|(expected, tolerance)| SelfTest {
        // The digest is the fetcher's business; the self-test gets the bytes.
        input: "0".repeat(64),
        expected,
        tolerance,
    });
    version
}

fn load(version: ModelVersion) -> LoadedVersion {
    LoadedVersion::load(&TractBackend, version, &fixture("text-direction.onnx")).expect("loads")
}

fn best(decoded: &Decoded) -> (&str, f32) {
    match decoded {
        Decoded::Classifier { labels } => {
            let top = labels.first().expect("a label");
            (top.label.as_str(), top.score)
        }
        Decoded::Detector { .. } => panic!("not a classifier"),
    }
}

fn png(image: &image::DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encodes");
    out
}

#[test]
fn text_direction_tells_upright_from_rotated() {
    let loaded = load(text_direction(None));
    let upright = fixture("text-upright.png");
    let answer = loaded.infer(Input::Image(&upright)).expect("infers");
    let started = Instant::now();
    for _ in 0..5 {
        loaded.infer(Input::Image(&upright)).expect("infers");
    }
    eprintln!(
        "classifier inference (PNG decode included): {:?} each",
        started.elapsed() / 5
    );
    assert_eq!(
        (answer.model.as_str(), answer.version),
        ("text-direction", 1)
    );
    let (label, score) = best(&answer.result);
    assert_eq!(label, "0", "{answer:?}");
    assert!(score >= 0.9, "{answer:?}");

    let rotated = image::load_from_memory(&upright)
        .expect("decodes")
        .rotate180();
    let answer = loaded.infer(Input::Image(&png(&rotated))).expect("infers");
    let (label, score) = best(&answer.result);
    assert_eq!(label, "180", "{answer:?}");
    assert!(score >= 0.9, "{answer:?}");

    // A JPEG of the same line, scaled up (resampled to height 48), still reads upright.
    let mut jpeg = Vec::new();
    image::load_from_memory(&upright)
        .expect("decodes")
        .resize_exact(360, 96, image::imageops::FilterType::Triangle)
        .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .expect("jpeg");
    let answer = loaded.infer(Input::Image(&jpeg)).expect("infers");
    assert_eq!(best(&answer.result).0, "0", "{answer:?}");
}

#[test]
fn a_json_tensor_infers_too() {
    let loaded = load(text_direction(None));
    let body = serde_json::json!({"shape": [1, 3, 48, 192], "data": vec![0.0; 3 * 48 * 192]});
    let answer = loaded
        .infer(Input::Json(body.to_string().as_bytes()))
        .expect("infers");
    let json = serde_json::to_value(&answer).expect("json");
    assert_eq!(json["kind"], "classifier");
    assert_eq!(json["labels"].as_array().map(Vec::len), Some(2));
}

#[test]
fn self_test_passes_on_onnxruntime_values() {
    let loaded = load(text_direction(Some((expected_upright(), 1e-3))));
    loaded
        .self_test(&fixture("text-upright.png"))
        .expect("passes");
}

#[test]
fn self_test_says_what_differed() {
    let expected = expected_upright();
    // The model says ~1.0 for '0'; expect 0.5 instead.
    let altered = vec![0.5, expected[1]];
    let loaded = load(text_direction(Some((altered, 1e-3))));
    let err = loaded
        .self_test(&fixture("text-upright.png"))
        .expect_err("fails");
    assert!(
        err.starts_with("self-test: output[0] is 0.99999")
            && err.ends_with("expected 0.5 (tolerance 0.001)"),
        "{err}"
    );

    let longer = vec![expected[0], expected[1], 0.0];
    let loaded = load(text_direction(Some((longer, 1e-3))));
    let err = loaded
        .self_test(&fixture("text-upright.png"))
        .expect_err("fails");
    assert_eq!(
        err,
        "self-test: the output has 2 values (shape [1, 2]), expected 3"
    );

    // The rotated line gives other values.
    let rotated = image::load_from_memory(&fixture("text-upright.png"))
        .expect("decodes")
        .rotate180();
    let loaded = load(text_direction(Some((expected, 1e-3))));
    let err = loaded.self_test(&png(&rotated)).expect_err("fails");
    assert!(err.starts_with("self-test: output[0] is "), "{err}");
}

#[test]
fn a_model_with_an_operator_tract_lacks_is_refused_at_load() {
    let onnx = fixture("unsupported-op.onnx");
    let err = TractBackend.load(&onnx, &[3, 1, 4]).err().expect("refused");
    assert_eq!(err, "unsupported ONNX operators: DynamicQuantizeLSTM");

    let err = LoadedVersion::load(&TractBackend, text_direction(None), &onnx).expect_err("refused");
    assert_eq!(err, "unsupported ONNX operators: DynamicQuantizeLSTM");
}

#[test]
fn a_model_that_does_not_fit_its_version_is_refused_at_load() {
    let mut version = text_direction(None);
    version.output = serde_json::from_value(serde_json::json!(
        {"kind": "classifier", "labels": ["0", "90", "180"]}
    ))
    .expect("output");
    let err = LoadedVersion::load(&TractBackend, version, &fixture("text-direction.onnx"))
        .expect_err("3 labels, 2 scores");
    assert!(err.contains("version names 3 labels"), "{err}");

    let err = LoadedVersion::load(&TractBackend, text_direction(None), b"\x08\x07garbage")
        .expect_err("not ONNX");
    assert!(err.starts_with("not an ONNX model"), "{err}");
}

/// The standard CRC-32 of PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `png` with its IHDR saying `width` x `height`, `depth` bits, colour type `color`.
fn with_header(png: &[u8], width: u32, height: u32, depth: u8, color: u8) -> Vec<u8> {
    let mut out = png.to_vec();
    // Signature (8), length (4), "IHDR" (4), then the 13 data bytes and the CRC.
    assert_eq!(&out[12..16], b"IHDR");
    out[16..20].copy_from_slice(&width.to_be_bytes());
    out[20..24].copy_from_slice(&height.to_be_bytes());
    out[24] = depth;
    out[25] = color;
    let crc = crc32(&out[12..29]);
    out[29..33].copy_from_slice(&crc.to_be_bytes());
    out
}

#[test]
fn bad_inputs_are_the_clients_fault_and_say_why() {
    let loaded = load(text_direction(None));
    let bad = |input: Input<'_>| match loaded.infer(input) {
        Err(InferError::BadInput(message)) => message,
        other => panic!("not a bad input: {other:?}"),
    };
    let upright = fixture("text-upright.png");

    assert_eq!(
        bad(Input::Image(b"\x00\x01garbage bytes")),
        "not a JPEG or PNG image"
    );
    let truncated = bad(Input::Image(&upright[..upright.len() / 2]));
    assert!(
        truncated.starts_with("the PNG image could not be decoded"),
        "{truncated}"
    );
    let absurd = bad(Input::Image(&with_header(&upright, 20_000, 20_000, 8, 2)));
    assert_eq!(absurd, "image is 20000 x 20000 pixels; at most 8192 x 8192");
    // Within the sides but 8192 x 8192 x 8 bytes (RGBA, 16 bits) = 512 MiB: refused
    // before allocating.
    let bomb = bad(Input::Image(&with_header(&upright, 8192, 8192, 16, 6)));
    assert!(bomb.contains("more than 256 MiB"), "{bomb}");
    // A JPEG whose frame header says 65535 x 65535.
    let mut jpeg = Vec::new();
    image::DynamicImage::new_rgb8(16, 16)
        .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
        .expect("jpeg");
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline frame");
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    let huge_jpeg = bad(Input::Image(&jpeg));
    assert!(huge_jpeg.contains("65535"), "{huge_jpeg}");

    let wrong_shape = serde_json::json!({"shape": [1, 3, 48, 48], "data": vec![0.0; 3 * 48 * 48]});
    assert_eq!(
        bad(Input::Json(wrong_shape.to_string().as_bytes())),
        "shape [1, 3, 48, 48] is not the model's input shape [1, 3, 48, 192]"
    );
    assert!(bad(Input::Json(b"{not json")).starts_with("not a JSON tensor"));
    for message in [truncated, bomb, huge_jpeg] {
        eprintln!("{message}");
    }
}

#[test]
fn a_runner_refuses_another_shape() {
    let runner = TractBackend
        .load(&fixture("text-direction.onnx"), &[1, 3, 48, 192])
        .expect("loads");
    let err = runner
        .run(Tensor::new(vec![1, 3, 48, 96], vec![0.0; 3 * 48 * 96]).expect("tensor"))
        .expect_err("refused");
    assert_eq!(
        err,
        "input shape [1, 3, 48, 96]; the model was loaded for [1, 3, 48, 192]"
    );
    let out = runner
        .run(Tensor::new(vec![1, 3, 48, 192], vec![0.0; 3 * 48 * 192]).expect("tensor"))
        .expect("runs");
    assert_eq!(out.shape, vec![1, 2]);
    assert_eq!(runner.output_shape(), Some(vec![1, 2]));
}

/// ddddocr's YOLOX detector, when `LINGJING_TEST_MODELS` names a folder holding
/// `common_det.onnx` (MIT; `pip download ddddocr==1.6.1 --no-deps` has it): not committed.
fn detector_model() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("LINGJING_TEST_MODELS") else {
        eprintln!("skipped: set LINGJING_TEST_MODELS to a folder holding common_det.onnx");
        return None;
    };
    let path = Path::new(&dir).join("common_det.onnx");
    if !path.exists() {
        eprintln!("skipped: {} does not exist", path.display());
        return None;
    }
    Some(path)
}

/// ddddocr's detector as a version: BGR, 0..255, letterboxed at the top-left with 114.
fn ddddocr_detector() -> ModelVersion {
    serde_json::from_value(serde_json::json!({
        "model": "chars", "version": 1,
        "artifact": "6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
        "input": {"shape": [1, 3, 416, 416], "color": "bgr", "resize": "letterbox",
                  "pad_value": 114.0},
        "output": {"kind": "detector", "classes": ["char"], "score_threshold": 0.1,
                   "iou_threshold": 0.45},
    }))
    .expect("a version")
}

fn detected(decoded: &Decoded) -> Vec<(f32, [f32; 4])> {
    match decoded {
        Decoded::Detector { boxes } => boxes
            .iter()
            .map(|b| (b.score, [b.x0, b.y0, b.x1, b.y1]))
            .collect(),
        Decoded::Classifier { .. } => panic!("not a detector"),
    }
}

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = |r: [f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    w * h / (area(a) + area(b) - w * h)
}

#[test]
fn ddddocr_detector_finds_what_onnxruntime_finds() {
    let Some(path) = detector_model() else {
        return;
    };
    let onnx = std::fs::read(&path).expect("reads the model");
    let started = Instant::now();
    let loaded = LoadedVersion::load(&TractBackend, ddddocr_detector(), &onnx).expect("loads");
    eprintln!("detector load: {:?}", started.elapsed());

    let json: serde_json::Value =
        serde_json::from_slice(&fixture("det-chars.expected.json")).expect("expected.json");
    let expected: Vec<(f32, [f32; 4])> = json["boxes"]
        .as_array()
        .expect("boxes")
        .iter()
        .map(|b| {
            let v = |x: &serde_json::Value| x.as_f64().expect("a number") as f32;
            let r = &b["box"];
            (v(&b["score"]), [v(&r[0]), v(&r[1]), v(&r[2]), v(&r[3])])
        })
        .collect();
    assert!(!expected.is_empty());

    let image = fixture("det-chars.png");
    let answer = loaded.infer(Input::Image(&image)).expect("infers");
    let started = Instant::now();
    loaded.infer(Input::Image(&image)).expect("infers");
    eprintln!(
        "detector inference (PNG decode included): {:?}",
        started.elapsed()
    );
    let found = detected(&answer.result);
    assert_eq!(found.len(), expected.len(), "{found:?} vs {expected:?}");
    for ((score, got), (want_score, want)) in found.iter().zip(&expected) {
        assert!((score - want_score).abs() < 1e-3, "{score} vs {want_score}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 0.05, "{got:?} vs {want:?}");
        }
    }

    // Twice the size: resampled to 416 x 208, the boxes map back to twice the pixels.
    let doubled = image::load_from_memory(&image)
        .expect("decodes")
        .resize_exact(832, 416, image::imageops::FilterType::Triangle);
    let answer = loaded.infer(Input::Image(&png(&doubled))).expect("infers");
    let found = detected(&answer.result);
    assert_eq!(found.len(), expected.len(), "{found:?}");
    for (_, want) in &expected {
        let scaled = want.map(|v| v * 2.0);
        assert!(
            found.iter().any(|(_, got)| iou(*got, scaled) > 0.8),
            "{scaled:?} not in {found:?}"
        );
    }
}

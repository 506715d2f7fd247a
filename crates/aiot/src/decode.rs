//! Raw outputs to answers, as the version's [`OutputSpec`] says: a classifier's scores
//! become labels (best first), a detector's YOLOX grid becomes boxes (scored, thresholded,
//! non-maximum suppressed per class, in the original image's pixels). An output that does
//! not fit the spec (wrong size, NaN) is an error, never a panic.
//!
//! YOLOX: the output is `[1, N, 5 + classes]` (or `[N, 5 + classes]`), the anchors of
//! strides 8, 16 and 32 in that order, each stride's grid row by row, with
//! `N = sum over s of ceil(H / s) * ceil(W / s)` for the input's H x W. Each anchor is
//! `[dx, dy, log w, log h, objectness, class scores...]`, objectness and class scores
//! already probabilities (the exported model ends in sigmoids): the centre is
//! `((dx + grid_x) * s, (dy + grid_y) * s)`, the size `(exp(log w) * s, exp(log h) * s)`
//! and the score `objectness * best class score`.

use lingjing_model::aiot::{BoxDecoding, InputSpec, OutputSpec};
use serde::{Deserialize, Serialize};

use crate::backend::Tensor;
use crate::preprocess::{Fit, Geometry, clamp};

/// Most labels a classifier's answer lists.
pub const MAX_LABELS_SHOWN: usize = 10;
/// Most boxes a detector's answer holds.
pub const MAX_BOXES: usize = 1000;
/// The strides of a YOLOX head, in the order its output lists them.
pub const YOLOX_STRIDES: [usize; 3] = [8, 16, 32];

/// What a model's output says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Decoded {
    /// The labels, best first (at most [`MAX_LABELS_SHOWN`]).
    Classifier { labels: Vec<LabelScore> },
    /// The boxes kept, best first (at most [`MAX_BOXES`]).
    Detector { boxes: Vec<DetectedBox> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// A box in the original image's pixels (the tensor's when the input was a tensor):
/// `(x0, y0)` its top-left corner, `(x1, y1)` its bottom-right.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectedBox {
    pub class: String,
    pub score: f32,
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

/// Reads a model's output as its version says.
pub fn decode(
    output: &Tensor,
    spec: &OutputSpec,
    input_spec: &InputSpec,
    fit: Option<&Fit>,
) -> Result<Decoded, String> {
    if output.elements() != Some(output.data.len()) {
        return Err(format!(
            "the output's shape {:?} and its {} values disagree",
            output.shape,
            output.data.len()
        ));
    }
    if let Some(i) = output.data.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "the output holds a value that is not a finite number (output[{i}] is {})",
            output.data[i]
        ));
    }
    match spec {
        OutputSpec::Classifier { labels, softmax } => classify(output, labels, *softmax),
        OutputSpec::Detector {
            classes,
            score_threshold,
            iou_threshold,
            decoding: BoxDecoding::Yolox,
        } => {
            let geometry = Geometry::of(input_spec)?;
            let boxes = yolox(
                output,
                classes,
                (geometry.width, geometry.height),
                *score_threshold,
                *iou_threshold,
            )?;
            let boxes = boxes
                .into_iter()
                .filter_map(|b| {
                    let ((x0, y0), (x1, y1)) = match fit {
                        Some(fit) => (fit.to_original(b.x0, b.y0), fit.to_original(b.x1, b.y1)),
                        None => ((b.x0, b.y0), (b.x1, b.y1)),
                    };
                    (x1 > x0 && y1 > y0).then(|| DetectedBox {
                        class: classes.get(b.class).cloned().unwrap_or_default(),
                        score: b.score,
                        x0,
                        y0,
                        x1,
                        y1,
                    })
                })
                .collect();
            Ok(Decoded::Detector { boxes })
        }
    }
}

fn classify(output: &Tensor, labels: &[String], softmax: bool) -> Result<Decoded, String> {
    if output.data.len() != labels.len() {
        return Err(format!(
            "the output holds {} scores (shape {:?}); the version names {} labels",
            output.data.len(),
            output.shape,
            labels.len()
        ));
    }
    let mut scores = output.data.clone();
    if softmax {
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for s in &mut scores {
            *s = (*s - max).exp();
            sum += *s;
        }
        // sum >= 1: the best score's term is exp(0).
        for s in &mut scores {
            *s /= sum;
        }
    }
    let mut ranked: Vec<LabelScore> = labels
        .iter()
        .zip(scores)
        .map(|(label, score)| LabelScore {
            label: label.clone(),
            score,
        })
        .collect();
    ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
    ranked.truncate(MAX_LABELS_SHOWN);
    Ok(Decoded::Classifier { labels: ranked })
}

/// A box in tensor pixels, its class an index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RawBox {
    pub class: usize,
    pub score: f32,
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl RawBox {
    fn area(&self) -> f32 {
        (self.x1 - self.x0).max(0.0) * (self.y1 - self.y0).max(0.0)
    }

    fn iou(&self, other: &RawBox) -> f32 {
        let w = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let h = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

/// The anchors a YOLOX head has for an input of `width` x `height`.
pub fn yolox_anchors(width: usize, height: usize) -> usize {
    YOLOX_STRIDES
        .iter()
        .map(|&s| width.div_ceil(s) * height.div_ceil(s))
        .sum()
}

/// Decodes a YOLOX output into boxes in tensor pixels (clamped to the tensor), thresholded
/// and suppressed, best first.
pub(crate) fn yolox(
    output: &Tensor,
    classes: &[String],
    (width, height): (usize, usize),
    score_threshold: f32,
    iou_threshold: f32,
) -> Result<Vec<RawBox>, String> {
    let per_anchor = 5 + classes.len();
    let anchors = yolox_anchors(width, height);
    let shape_ok = match output.shape[..] {
        [1, n, k] | [n, k] => n == anchors && k == per_anchor,
        _ => false,
    };
    if !shape_ok || output.data.len() != anchors * per_anchor {
        return Err(format!(
            "the output's shape is {:?}; a YOLOX head for a {width} x {height} input and {} \
             classes gives [1, {anchors}, {per_anchor}]",
            output.shape,
            classes.len()
        ));
    }
    let (tw, th) = (width as f32, height as f32);
    let mut candidates = Vec::new();
    let mut rows = output.data.chunks_exact(per_anchor);
    for stride in YOLOX_STRIDES {
        let (gw, gh) = (width.div_ceil(stride), height.div_ceil(stride));
        let s = stride as f32;
        for gy in 0..gh {
            for gx in 0..gw {
                let Some(row) = rows.next() else {
                    return Err("the output ended early".to_string());
                };
                let [dx, dy, lw, lh, objectness, scores @ ..] = row else {
                    return Err("an anchor holds too few values".to_string());
                };
                let Some((class, best)) = scores
                    .iter()
                    .copied()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                else {
                    continue;
                };
                let score = objectness * best;
                if score.is_nan() || score < score_threshold {
                    continue;
                }
                let cx = (dx + gx as f32) * s;
                let cy = (dy + gy as f32) * s;
                let half_w = lw.exp() * s / 2.0;
                let half_h = lh.exp() * s / 2.0;
                let b = RawBox {
                    class,
                    score,
                    x0: clamp(cx - half_w, tw),
                    y0: clamp(cy - half_h, th),
                    x1: clamp(cx + half_w, tw),
                    y1: clamp(cy + half_h, th),
                };
                if b.x1 > b.x0 && b.y1 > b.y0 {
                    candidates.push(b);
                }
            }
        }
    }
    Ok(nms(candidates, iou_threshold, MAX_BOXES))
}

/// Greedy non-maximum suppression per class: best first, a box is dropped when it
/// overlaps a kept box of its class by more than `iou_threshold`; at most `limit` kept.
pub(crate) fn nms(mut candidates: Vec<RawBox>, iou_threshold: f32, limit: usize) -> Vec<RawBox> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<RawBox> = Vec::new();
    for candidate in candidates {
        if kept.len() >= limit {
            break;
        }
        let suppressed = kept
            .iter()
            .any(|k| k.class == candidate.class && k.iou(&candidate) > iou_threshold);
        if !suppressed {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use lingjing_model::aiot::{ColorOrder, Layout, Resize};

    fn input(h: u32, w: u32) -> InputSpec {
        InputSpec {
            shape: vec![1, 3, h, w],
            layout: Layout::Nchw,
            color: ColorOrder::Bgr,
            resize: Resize::Letterbox,
            pad_value: 114.0,
            scale: 1.0,
            mean: vec![0.0],
            std: vec![1.0],
        }
    }

    fn classifier(labels: &[&str], softmax: bool) -> OutputSpec {
        OutputSpec::Classifier {
            labels: labels.iter().map(|l| l.to_string()).collect(),
            softmax,
        }
    }

    fn detector(classes: &[&str]) -> OutputSpec {
        OutputSpec::Detector {
            classes: classes.iter().map(|l| l.to_string()).collect(),
            score_threshold: 0.3,
            iou_threshold: 0.45,
            decoding: BoxDecoding::Yolox,
        }
    }

    fn labels(d: Decoded) -> Vec<(String, f32)> {
        match d {
            Decoded::Classifier { labels } => {
                labels.into_iter().map(|l| (l.label, l.score)).collect()
            }
            Decoded::Detector { .. } => panic!("not a classifier"),
        }
    }

    fn boxes(d: Decoded) -> Vec<DetectedBox> {
        match d {
            Decoded::Detector { boxes } => boxes,
            Decoded::Classifier { .. } => panic!("not a detector"),
        }
    }

    #[test]
    fn classifier_scores_rank_labels() {
        let out = Tensor::new(vec![1, 3], vec![0.1, 0.7, 0.2]).expect("tensor");
        let l = labels(
            decode(
                &out,
                &classifier(&["a", "b", "c"], false),
                &input(8, 8),
                None,
            )
            .expect("ok"),
        );
        assert_eq!(
            l,
            vec![("b".into(), 0.7), ("c".into(), 0.2), ("a".into(), 0.1)]
        );

        let out = Tensor::new(vec![1, 2], vec![1000.0, 0.0]).expect("tensor");
        let l =
            labels(decode(&out, &classifier(&["x", "y"], true), &input(8, 8), None).expect("ok"));
        assert_eq!(l[0], ("x".into(), 1.0), "softmax does not overflow");
        assert_eq!(l[1].1, 0.0);

        let many: Vec<String> = (0..20).map(|i| format!("l{i}")).collect();
        let spec = OutputSpec::Classifier {
            labels: many,
            softmax: true,
        };
        let out = Tensor::new(vec![20], (0..20).map(|i| i as f32).collect()).expect("tensor");
        let l = labels(decode(&out, &spec, &input(8, 8), None).expect("ok"));
        assert_eq!(l.len(), MAX_LABELS_SHOWN);
        assert_eq!(l[0].0, "l19");
        let total: f32 = l.iter().map(|x| x.1).sum();
        assert!(total < 1.0 && total > 0.99, "{total}");
    }

    #[test]
    fn classifier_outputs_that_do_not_fit_are_errors() {
        let spec = classifier(&["0", "180"], false);
        let out = Tensor::new(vec![1, 3], vec![0.1, 0.7, 0.2]).expect("tensor");
        let err = decode(&out, &spec, &input(8, 8), None).expect_err("3 scores");
        assert_eq!(
            err,
            "the output holds 3 scores (shape [1, 3]); the version names 2 labels"
        );
        let out = Tensor::new(vec![1, 2], vec![f32::NAN, 0.5]).expect("tensor");
        let err = decode(&out, &spec, &input(8, 8), None).expect_err("NaN");
        assert!(err.contains("output[0] is NaN"), "{err}");
        let liar = Tensor {
            shape: vec![1, 5],
            data: vec![0.5, 0.5],
        };
        assert!(decode(&liar, &spec, &input(8, 8), None).is_err());
    }

    /// A YOLOX output for a 64 x 64 input (64 + 16 + 4 = 84 anchors) with two classes,
    /// every anchor scoring 0 but those set.
    fn grid() -> Tensor {
        Tensor::new(vec![1, 84, 7], vec![0.0; 84 * 7]).expect("tensor")
    }

    fn set(t: &mut Tensor, anchor: usize, row: [f32; 7]) {
        t.data[anchor * 7..anchor * 7 + 7].copy_from_slice(&row);
    }

    #[test]
    fn yolox_decodes_grids_and_strides() {
        assert_eq!(yolox_anchors(416, 416), 3549, "ddddocr's common_det");
        assert_eq!(yolox_anchors(64, 64), 84);
        let mut t = grid();
        // Stride 8, grid (2, 1) (anchor 1 * 8 + 2 = 10): centre (20, 12), 8 x 8.
        set(&mut t, 10, [0.5, 0.5, 0.0, 0.0, 0.9, 0.1, 0.8]);
        // Stride 16 starts at anchor 64; grid (1, 2) is 64 + 2 * 4 + 1 = 73:
        // centre (16, 32), exp(ln 2) * 16 = 32 wide, 16 high.
        set(&mut t, 73, [0.0, 0.0, 2f32.ln(), 0.0, 1.0, 0.6, 0.0]);
        // Stride 32 starts at 80; grid (1, 1) is 83, below the threshold (0.5 * 0.5).
        set(&mut t, 83, [0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0]);
        let b =
            boxes(decode(&t, &detector(&["crack", "pothole"]), &input(64, 64), None).expect("ok"));
        assert_eq!(b.len(), 2, "{b:?}");
        assert_eq!(b[0].class, "pothole");
        assert!((b[0].score - 0.72).abs() < 1e-6);
        assert_eq!(
            (b[0].x0, b[0].y0, b[0].x1, b[0].y1),
            (16.0, 8.0, 24.0, 16.0)
        );
        assert_eq!(b[1].class, "crack");
        assert!((b[1].score - 0.6).abs() < 1e-6);
        assert!(
            (b[1].x0 - 0.0).abs() < 1e-4 && (b[1].x1 - 32.0).abs() < 1e-4,
            "{:?}",
            b[1]
        );
        assert_eq!((b[1].y0, b[1].y1), (24.0, 40.0));
    }

    #[test]
    fn yolox_maps_boxes_back_and_clamps_them() {
        let mut t = grid();
        set(&mut t, 10, [0.5, 0.5, 0.0, 0.0, 0.9, 0.1, 0.8]);
        // Huge: exp(100) overflows to infinity and is clamped to the tensor.
        set(&mut t, 0, [0.0, 0.0, 100.0, 100.0, 1.0, 1.0, 0.0]);
        // The image was 128 x 64, letterboxed into 64 x 64 at scale 0.5.
        let fit = Fit {
            width: 128,
            height: 64,
            scale_x: 0.5,
            scale_y: 0.5,
            offset_x: 0.0,
            offset_y: 0.0,
        };
        let b = boxes(
            decode(
                &t,
                &detector(&["crack", "pothole"]),
                &input(64, 64),
                Some(&fit),
            )
            .expect("ok"),
        );
        assert_eq!(b.len(), 2);
        assert_eq!(
            (b[0].x0, b[0].y0, b[0].x1, b[0].y1),
            (0.0, 0.0, 128.0, 64.0)
        );
        assert_eq!(
            (b[1].x0, b[1].y0, b[1].x1, b[1].y1),
            (32.0, 16.0, 48.0, 32.0)
        );
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_per_class() {
        let b = |class, score, x0| RawBox {
            class,
            score,
            x0,
            y0: 0.0,
            x1: x0 + 10.0,
            y1: 10.0,
        };
        let kept = nms(
            vec![
                b(0, 0.5, 1.0), // overlaps the 0.9 box by 9/11 = 0.82: dropped
                b(0, 0.9, 0.0),
                b(1, 0.8, 1.0),  // another class: kept
                b(0, 0.7, 6.0),  // overlaps by 4/16 = 0.25: kept
                b(0, 0.6, 20.0), // apart: kept
            ],
            0.45,
            MAX_BOXES,
        );
        let scores: Vec<f32> = kept.iter().map(|k| k.score).collect();
        assert_eq!(scores, vec![0.9, 0.8, 0.7, 0.6]);
        let limited = nms(
            (0..50).map(|i| b(0, 0.5, i as f32 * 20.0)).collect(),
            0.45,
            10,
        );
        assert_eq!(limited.len(), 10);
    }

    #[test]
    fn yolox_outputs_that_do_not_fit_are_errors() {
        let spec = detector(&["crack", "pothole"]);
        let wrong_count = Tensor::new(vec![1, 83, 7], vec![0.0; 83 * 7]).expect("tensor");
        let err = decode(&wrong_count, &spec, &input(64, 64), None).expect_err("83 anchors");
        assert!(err.contains("gives [1, 84, 7]"), "{err}");
        let wrong_classes = Tensor::new(vec![1, 84, 6], vec![0.0; 84 * 6]).expect("tensor");
        assert!(decode(&wrong_classes, &spec, &input(64, 64), None).is_err());
        let mut nan = grid();
        nan.data[3] = f32::NAN;
        let err = decode(&nan, &spec, &input(64, 64), None).expect_err("NaN");
        assert!(err.contains("not a finite number"), "{err}");
        let flat = Tensor::new(vec![84 * 7], vec![0.0; 84 * 7]).expect("tensor");
        assert!(decode(&flat, &spec, &input(64, 64), None).is_err());
        let two_d = Tensor::new(vec![84, 7], vec![0.0; 84 * 7]).expect("tensor");
        assert!(
            decode(&two_d, &spec, &input(64, 64), None).is_ok(),
            "[N, 5 + classes] too"
        );
    }

    #[test]
    fn answers_serialise_tagged() {
        let d = Decoded::Detector {
            boxes: vec![DetectedBox {
                class: "crack".into(),
                score: 0.5,
                x0: 1.0,
                y0: 2.0,
                x1: 3.0,
                y1: 4.0,
            }],
        };
        let json = serde_json::to_value(&d).expect("json");
        assert_eq!(json["kind"], "detector");
        assert_eq!(json["boxes"][0]["class"], "crack");
        let c = Decoded::Classifier {
            labels: vec![LabelScore {
                label: "0".into(),
                score: 1.0,
            }],
        };
        assert_eq!(
            serde_json::to_string(&c).expect("json"),
            r#"{"kind":"classifier","labels":[{"label":"0","score":1.0}]}"#
        );
    }
}

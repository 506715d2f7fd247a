//! Inputs to tensors: an image (JPEG or PNG) becomes the model's input tensor as the
//! version's [`InputSpec`] says (resized, channels ordered, normalised, padded), with the
//! [`Fit`] that maps tensor pixels back to the image's; or a client sends the tensor itself
//! as JSON. Every error here is the client's (a bad image or tensor), worded for them.
//!
//! Placement: `stretch` fills the whole H x W; `letterbox` scales the image to fit,
//! keeping its aspect ratio, and places it at the **top-left** (as ddddocr's detector
//! does), the right or bottom strip being `pad_value`; `pad_right` scales it to height H
//! and width `min(W, ceil(H * w / h))`, padding the right (PaddleOCR's text classifier).
//! Resampling is bilinear with antialiasing (`image`'s triangle filter); an image already
//! at the target size is not resampled. Grey tensors (one channel) take the image's luma
//! (Rec. 709 weights, as the `image` crate computes it); an alpha channel is dropped. An
//! EXIF orientation (JPEG) is applied first, so boxes are in the upright image's pixels.

use std::io::Cursor;

use image::imageops::{self, FilterType};
use image::{DynamicImage, ImageBuffer, ImageDecoder, ImageFormat, ImageReader, Limits, Pixel};
use lingjing_model::aiot::{ColorOrder, InputSpec, Layout, MAX_INPUT_ELEMENTS, Resize};
use serde::Deserialize;

use crate::backend::{Tensor, elements};

/// The widest and tallest image accepted, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 8192;
/// Most memory the image decoder may allocate.
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// How an image was placed in the tensor, to map tensor pixels back to the image's:
/// `tensor = original * scale + offset` on each axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// The original (upright) image's width and height, in pixels.
    pub width: u32,
    pub height: u32,
    /// Tensor pixels per image pixel, horizontally and vertically.
    pub scale_x: f32,
    pub scale_y: f32,
    /// Where the image's top-left corner is in the tensor (0 for every placement today).
    pub offset_x: f32,
    pub offset_y: f32,
}

impl Fit {
    /// A tensor point in the original image's pixels, clamped to the image.
    pub fn to_original(&self, x: f32, y: f32) -> (f32, f32) {
        let ox = (x - self.offset_x) / self.scale_x;
        let oy = (y - self.offset_y) / self.scale_y;
        (clamp(ox, self.width as f32), clamp(oy, self.height as f32))
    }
}

/// `v` within `0..=max` (NaN becomes 0).
pub(crate) fn clamp(v: f32, max: f32) -> f32 {
    if v.is_nan() { 0.0 } else { v.clamp(0.0, max) }
}

/// The tensor geometry an [`InputSpec`] describes, checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl Geometry {
    pub(crate) fn of(spec: &InputSpec) -> Result<Geometry, String> {
        let shape = &spec.shape;
        let [batch, a, b, c] = shape[..] else {
            return Err(format!("input shape {shape:?} is not four dimensions"));
        };
        let (channels, height, width) = match spec.layout {
            Layout::Nchw => (a, b, c),
            Layout::Nhwc => (c, a, b),
        };
        if batch != 1 || height == 0 || width == 0 || !(channels == 1 || channels == 3) {
            return Err(format!(
                "input shape {shape:?}: batch 1, 1 or 3 channels, a height and width are needed"
            ));
        }
        let total: u64 = shape.iter().map(|&d| u64::from(d)).product();
        if total > MAX_INPUT_ELEMENTS {
            return Err(format!(
                "input shape {shape:?} has more than {MAX_INPUT_ELEMENTS} elements"
            ));
        }
        for (name, values) in [("mean", &spec.mean), ("std", &spec.std)] {
            if values.len() != 1 && values.len() != channels as usize {
                return Err(format!(
                    "{name} holds {} values; 1 or {channels}",
                    values.len()
                ));
            }
            if values.iter().any(|v| !v.is_finite()) {
                return Err(format!("{name} holds a value that is not a finite number"));
            }
        }
        if spec.std.contains(&0.0) {
            return Err("std holds 0".to_string());
        }
        Ok(Geometry {
            channels: channels as usize,
            height: height as usize,
            width: width as usize,
        })
    }

    /// The tensor's shape, batch first.
    pub(crate) fn shape(&self, layout: Layout) -> Vec<usize> {
        match layout {
            Layout::Nchw => vec![1, self.channels, self.height, self.width],
            Layout::Nhwc => vec![1, self.height, self.width, self.channels],
        }
    }

    /// Where channel `c` of pixel (`x`, `y`) is in the data.
    fn index(&self, layout: Layout, c: usize, y: usize, x: usize) -> usize {
        match layout {
            Layout::Nchw => (c * self.height + y) * self.width + x,
            Layout::Nhwc => (y * self.width + x) * self.channels + c,
        }
    }
}

/// The image's format, from its first bytes.
fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else {
        None
    }
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "PNG",
        _ => "JPEG",
    }
}

fn limits(max_side: Option<u32>) -> Limits {
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits.max_image_width = max_side;
    limits.max_image_height = max_side;
    limits
}

/// Decodes a JPEG or PNG image, refusing a huge one before decoding its pixels.
pub fn decode_image(bytes: &[u8]) -> Result<DynamicImage, String> {
    let format = sniff(bytes).ok_or_else(|| "not a JPEG or PNG image".to_string())?;
    let name = format_name(format);
    let reader = || {
        let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
        reader.limits(limits(None));
        reader
    };
    let (width, height) = reader()
        .into_dimensions()
        .map_err(|e| format!("not a readable {name} image: {e}"))?;
    if width == 0 || height == 0 {
        return Err(format!("the {name} image is {width} x {height} pixels"));
    }
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(format!(
            "image is {width} x {height} pixels; at most {MAX_IMAGE_SIDE} x {MAX_IMAGE_SIDE}"
        ));
    }
    let mut reader = reader();
    reader.limits(limits(Some(MAX_IMAGE_SIDE)));
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| format!("not a readable {name} image: {e}"))?;
    if decoder.total_bytes() > MAX_DECODE_BYTES {
        return Err(format!(
            "image is {width} x {height} pixels of {:?}: more than {} MiB to decode",
            decoder.color_type(),
            MAX_DECODE_BYTES >> 20
        ));
    }
    // A broken EXIF block only loses the orientation.
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder)
        .map_err(|e| format!("the {name} image could not be decoded: {e}"))?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(image)
}

/// The size the image takes in the tensor (at its top-left), per `resize`.
fn placed_size(resize: Resize, image: (u32, u32), tensor: (usize, usize)) -> (u32, u32) {
    let (w, h) = (u64::from(image.0), u64::from(image.1));
    // The tensor's sides are at most MAX_INPUT_ELEMENTS, far below u32::MAX.
    let (tw, th) = (tensor.0 as u64, tensor.1 as u64);
    let (nw, nh) = match resize {
        Resize::Stretch => (tw, th),
        // The binding side fills exactly; the other is rounded down (ddddocr's int()).
        Resize::Letterbox if tw * h <= th * w => (tw, h * tw / w),
        Resize::Letterbox => (w * th / h, th),
        Resize::PadRight => (tw.min((th * w).div_ceil(h)), th),
    };
    let side = |v: u64, max: u64| u32::try_from(v.clamp(1, max)).unwrap_or(u32::MAX);
    (side(nw, tw), side(nh, th))
}

/// Writes `image` (already at its placed size) into `data` at the top-left.
fn fill<P: Pixel<Subpixel = u8>>(
    image: &ImageBuffer<P, Vec<u8>>,
    channel_of: &[usize],
    lut: &[[f32; 256]],
    geometry: Geometry,
    layout: Layout,
    data: &mut [f32],
) {
    for (x, y, pixel) in image.enumerate_pixels() {
        let (x, y) = (x as usize, y as usize);
        if x >= geometry.width || y >= geometry.height {
            continue;
        }
        let values = pixel.channels();
        for (c, (&source, table)) in channel_of.iter().zip(lut).enumerate() {
            let value = values.get(source).copied().unwrap_or(0);
            if let Some(slot) = data.get_mut(geometry.index(layout, c, y, x)) {
                *slot = table[usize::from(value)];
            }
        }
    }
}

/// An image (JPEG or PNG) as the model's input tensor, and how it was placed.
pub fn image_to_tensor(bytes: &[u8], spec: &InputSpec) -> Result<(Tensor, Fit), String> {
    let geometry = Geometry::of(spec)?;
    let image = decode_image(bytes)?;
    let (width, height) = (image.width(), image.height());
    let (nw, nh) = placed_size(
        spec.resize,
        (width, height),
        (geometry.width, geometry.height),
    );
    let fit = Fit {
        width,
        height,
        scale_x: nw as f32 / width as f32,
        scale_y: nh as f32 / height as f32,
        offset_x: 0.0,
        offset_y: 0.0,
    };
    // value = (pixel * scale - mean[c]) / std[c], tabulated per tensor channel.
    let pick = |values: &[f32], c: usize| values.get(c).or(values.first()).copied().unwrap_or(0.0);
    let lut: Vec<[f32; 256]> = (0..geometry.channels)
        .map(|c| {
            let (mean, std) = (pick(&spec.mean, c), pick(&spec.std, c));
            std::array::from_fn(|p| (p as f32 * spec.scale - mean) / std)
        })
        .collect();
    let shape = geometry.shape(spec.layout);
    let mut data = vec![spec.pad_value; geometry.channels * geometry.height * geometry.width];
    if geometry.channels == 1 {
        let grey = image.into_luma8();
        let grey = if grey.dimensions() == (nw, nh) {
            grey
        } else {
            imageops::resize(&grey, nw, nh, FilterType::Triangle)
        };
        fill(&grey, &[0], &lut, geometry, spec.layout, &mut data);
    } else {
        let rgb = image.into_rgb8();
        let rgb = if rgb.dimensions() == (nw, nh) {
            rgb
        } else {
            imageops::resize(&rgb, nw, nh, FilterType::Triangle)
        };
        let order: [usize; 3] = match spec.color {
            ColorOrder::Rgb => [0, 1, 2],
            ColorOrder::Bgr => [2, 1, 0],
        };
        fill(&rgb, &order, &lut, geometry, spec.layout, &mut data);
    }
    let tensor = Tensor::new(shape, data)?;
    Ok((tensor, fit))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

/// Largest magnitude a JSON tensor's value may have.
pub const MAX_TENSOR_VALUE: f32 = 65_504.0;

/// A tensor a client sent as `{"shape": [1, 3, 48, 192], "data": [...]}`: the shape must
/// be the model's input shape exactly, with as many values, each a finite number within
/// ±[`MAX_TENSOR_VALUE`].
pub fn tensor_from_json(body: &[u8], spec: &InputSpec) -> Result<Tensor, String> {
    let geometry = Geometry::of(spec)?;
    let expected = geometry.shape(spec.layout);
    let tensor: JsonTensor = serde_json::from_slice(body)
        .map_err(|e| format!("not a JSON tensor ({{\"shape\": [...], \"data\": [...]}}): {e}"))?;
    if tensor.shape != expected {
        return Err(format!(
            "shape {:?} is not the model's input shape {expected:?}",
            tensor.shape
        ));
    }
    let needed = elements(&expected).unwrap_or(usize::MAX);
    if tensor.data.len() != needed {
        return Err(format!(
            "data holds {} values; shape {expected:?} needs {needed}",
            tensor.data.len()
        ));
    }
    if let Some(i) = tensor.data.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "data[{i}] is not a finite number (too large for f32?)"
        ));
    }
    // Inputs are normalised values: one far outside that range is not an image, and could
    // drive the model's output to infinity, which would be counted against the version.
    if let Some(i) = tensor.data.iter().position(|v| v.abs() > MAX_TENSOR_VALUE) {
        return Err(format!(
            "data[{i}] is {}: values must be within ±{MAX_TENSOR_VALUE}",
            tensor.data[i]
        ));
    }
    Tensor::new(tensor.shape, tensor.data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgb, RgbImage};

    fn spec(shape: [u32; 4], resize: Resize) -> InputSpec {
        InputSpec {
            shape: shape.to_vec(),
            layout: Layout::Nchw,
            color: ColorOrder::Rgb,
            resize,
            pad_value: -7.0,
            scale: 1.0,
            mean: vec![0.0],
            std: vec![1.0],
        }
    }

    fn png(image: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(
                image.as_raw(),
                image.width(),
                image.height(),
                image::ExtendedColorType::Rgb8,
            )
            .expect("encodes");
        out
    }

    fn at(t: &Tensor, c: usize, y: usize, x: usize) -> f32 {
        let (h, w) = (t.shape[2], t.shape[3]);
        t.data[(c * h + y) * w + x]
    }

    #[test]
    fn placement_follows_the_resize_mode() {
        // 100 x 50 image into 40 x 40.
        assert_eq!(placed_size(Resize::Stretch, (100, 50), (40, 40)), (40, 40));
        assert_eq!(
            placed_size(Resize::Letterbox, (100, 50), (40, 40)),
            (40, 20)
        );
        assert_eq!(
            placed_size(Resize::Letterbox, (50, 100), (40, 40)),
            (20, 40)
        );
        assert_eq!(placed_size(Resize::Letterbox, (1000, 1), (40, 40)), (40, 1));
        // PaddleOCR cls: height 48, width min(192, ceil(48 * w / h)).
        assert_eq!(
            placed_size(Resize::PadRight, (100, 50), (192, 48)),
            (96, 48)
        );
        assert_eq!(
            placed_size(Resize::PadRight, (101, 50), (192, 48)),
            (97, 48)
        );
        assert_eq!(
            placed_size(Resize::PadRight, (1000, 50), (192, 48)),
            (192, 48)
        );
        assert_eq!(placed_size(Resize::PadRight, (1, 5000), (192, 48)), (1, 48));
    }

    #[test]
    fn pixels_are_ordered_normalised_and_padded() {
        // 4 x 2, red on the left half, blue on the right.
        let image = RgbImage::from_fn(4, 2, |x, _| {
            if x < 2 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let mut s = spec([1, 3, 4, 4], Resize::Letterbox);
        s.color = ColorOrder::Bgr;
        s.scale = 1.0 / 255.0;
        s.mean = vec![0.5];
        s.std = vec![0.5];
        let (t, fit) = image_to_tensor(&png(&image), &s).expect("converts");
        assert_eq!(t.shape, vec![1, 3, 4, 4]);
        // Same width: no resampling; BGR puts blue first; (1 - 0.5) / 0.5 = 1.
        assert_eq!(at(&t, 0, 0, 0), -1.0);
        assert_eq!(at(&t, 2, 0, 0), 1.0);
        assert_eq!(at(&t, 0, 1, 3), 1.0);
        assert_eq!(at(&t, 2, 1, 3), -1.0);
        // Rows 2 and 3 are padding (top-left placement).
        assert_eq!(at(&t, 1, 2, 0), -7.0);
        assert_eq!(at(&t, 0, 3, 3), -7.0);
        assert_eq!(
            fit,
            Fit {
                width: 4,
                height: 2,
                scale_x: 1.0,
                scale_y: 1.0,
                offset_x: 0.0,
                offset_y: 0.0
            }
        );
    }

    #[test]
    fn nhwc_grey_and_per_channel_mean() {
        let image = RgbImage::from_pixel(2, 2, Rgb([200, 200, 200]));
        let mut s = spec([1, 2, 2, 1], Resize::Stretch);
        s.layout = Layout::Nhwc;
        s.mean = vec![100.0];
        s.std = vec![2.0];
        let (t, _) = image_to_tensor(&png(&image), &s).expect("grey");
        assert_eq!(t.shape, vec![1, 2, 2, 1]);
        assert!(
            t.data.iter().all(|&v| (v - 50.0).abs() < 1e-4),
            "{:?}",
            t.data
        );

        let image = RgbImage::from_pixel(1, 1, Rgb([10, 20, 30]));
        let mut s = spec([1, 1, 1, 3], Resize::Stretch);
        s.layout = Layout::Nhwc;
        s.mean = vec![10.0, 10.0, 10.0];
        s.std = vec![1.0, 2.0, 4.0];
        let (t, _) = image_to_tensor(&png(&image), &s).expect("rgb");
        assert_eq!(t.data, vec![0.0, 5.0, 5.0]);
    }

    #[test]
    fn a_resized_image_maps_back() {
        let image = RgbImage::from_pixel(200, 100, Rgb([128, 128, 128]));
        let s = spec([1, 3, 32, 32], Resize::Letterbox);
        let (t, fit) = image_to_tensor(&png(&image), &s).expect("converts");
        assert_eq!((fit.scale_x, fit.scale_y), (0.16, 0.16));
        assert!(
            (at(&t, 0, 10, 10) - 128.0).abs() < 1.0,
            "a flat image stays flat"
        );
        assert_eq!(at(&t, 0, 20, 10), -7.0, "below the image");
        assert_eq!(fit.to_original(16.0, 8.0), (100.0, 50.0));
        assert_eq!(fit.to_original(-5.0, 99.0), (0.0, 100.0), "clamped");
    }

    #[test]
    fn bad_images_say_what_is_wrong() {
        let s = spec([1, 3, 8, 8], Resize::Stretch);
        let err = |bytes: &[u8]| image_to_tensor(bytes, &s).expect_err("refused");
        assert_eq!(err(b"GIF89a...."), "not a JPEG or PNG image");
        assert_eq!(err(b""), "not a JPEG or PNG image");
        let good = png(&RgbImage::from_pixel(16, 16, Rgb([1, 2, 3])));
        let truncated = err(&good[..good.len() / 2]);
        assert!(truncated.contains("PNG"), "{truncated}");
        let header_only = err(&good[..20]);
        assert!(
            header_only.starts_with("not a readable PNG image"),
            "{header_only}"
        );
        let jpeg = err(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]);
        assert!(jpeg.contains("JPEG"), "{jpeg}");
    }

    #[test]
    fn json_tensors_must_match_the_spec() {
        let s = spec([1, 1, 2, 2], Resize::Stretch);
        let t = tensor_from_json(br#"{"shape":[1,1,2,2],"data":[1,2,3,4.5]}"#, &s).expect("reads");
        assert_eq!(t.data, vec![1.0, 2.0, 3.0, 4.5]);
        let err = |body: &[u8]| tensor_from_json(body, &s).expect_err("refused");
        assert_eq!(
            err(br#"{"shape":[1,2,2],"data":[1,2,3,4]}"#),
            "shape [1, 2, 2] is not the model's input shape [1, 1, 2, 2]"
        );
        assert_eq!(
            err(br#"{"shape":[1,1,2,2],"data":[1,2,3]}"#),
            "data holds 3 values; shape [1, 1, 2, 2] needs 4"
        );
        assert!(err(br#"{"shape":[1,1,2,2],"data":[1,2,3,1e39]}"#).starts_with("data[3]"));
        assert!(err(b"[1,2,3]").starts_with("not a JSON tensor"));
        assert!(err(br#"{"shape":[1,1,2,2],"data":[1,2,3,"x"]}"#).starts_with("not a JSON"));
    }
}

//! One image measured: does it decode, at what size, and is there anything in it.

use crate::EvidenceError;
use base64::Engine as _;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Cursor;

/// An image is `blank` (essentially one colour, whatever the colour) when the standard deviation
/// of its luma, on the 0-255 scale, is at most this. A flat colour measures exactly 0 (PNG is
/// lossless: no compression noise to allow for), and so do the safety checker's black
/// replacement and a VAE decode gone to NaN. 2.0 leaves room for a faint dither or banding on an
/// otherwise flat output, and is an order of magnitude below any picture a person would call a
/// picture: a foggy, low-contrast scene still varies by tens of levels.
pub const BLANK_MAX_LUMA_STDDEV: f64 = 2.0;

/// An image is `black` when its mean luma (0-255) is at most this: about 3% of full scale, where
/// nothing is visible on a screen. The failures it catches are black or nearly black outputs that
/// are not flat (noise on black, a faint shape in the dark), which `blank` lets through; a dark
/// scene that has anything in it (a lit face, a window, a lamp) lifts the mean well above 8.
pub const BLACK_MAX_MEAN_LUMA: f64 = 8.0;

/// A pixel is near-black at or below this luma (0-255): 16 is the black level of studio-range
/// video, the darkest value a display is expected to show as black. Only recorded
/// ([`LumaStats::near_black_fraction`]); the `black` flag is on the mean.
pub const NEAR_BLACK_LUMA: u8 = 16;

/// The largest width or height decoded, in pixels. Stable Diffusion outputs are 512 to 2048 a
/// side; the limit keeps a hostile or broken response (a PNG header claiming 100000x100000) from
/// allocating gigabytes. The `image` crate's own allocation cap (512 MiB) applies as well.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// Luma statistics over all pixels, on the 0-255 scale. Luma is the `image` crate's Rec. 709
/// weighting of the 8-bit sRGB values (0.2126 R + 0.7152 G + 0.0722 B, no linearisation);
/// alpha is ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LumaStats {
    pub mean: f64,
    /// Population standard deviation.
    pub stddev: f64,
    pub min: u8,
    pub max: u8,
    /// The fraction (0-1) of pixels whose luma is at most [`NEAR_BLACK_LUMA`].
    pub near_black_fraction: f64,
}

/// What was measured of one image. Every field is a measured value, kept for passes and failures
/// alike, so the record says what was seen and not only whether a rule passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageMeasurement {
    /// Length of the bytes measured (0 when there was no image).
    pub bytes: u64,
    /// `sha256:` + hex of those bytes: ties the record to the stored image. None without an image.
    pub sha256: Option<String>,
    pub decoded: bool,
    /// Why the bytes did not decode, as the decoder said it.
    pub error: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Whether the decoded size is the requested one; None when no size was expected or the image
    /// did not decode.
    pub expected_size: Option<bool>,
    /// None when the image did not decode.
    pub luma: Option<LumaStats>,
    /// Essentially one colour: luma stddev at most [`BLANK_MAX_LUMA_STDDEV`]. False when the image
    /// did not decode (that case fails on decoding instead).
    pub blank: bool,
    /// Essentially black: mean luma at most [`BLACK_MAX_MEAN_LUMA`]. False when the image did not
    /// decode.
    pub black: bool,
}

impl ImageMeasurement {
    /// The measurement of an image that never came (an invocation that failed or timed out): the
    /// case's own error says why.
    pub fn absent() -> Self {
        ImageMeasurement {
            bytes: 0,
            sha256: None,
            decoded: false,
            error: None,
            width: None,
            height: None,
            expected_size: None,
            luma: None,
            blank: false,
            black: false,
        }
    }
}

/// Decodes PNG bytes (PNG only: that is what the WebUI returns and what the `image` crate is built
/// with here), at most [`MAX_IMAGE_SIDE`] a side.
pub(crate) fn decode_png(png_bytes: &[u8]) -> Result<DynamicImage, EvidenceError> {
    let mut reader = ImageReader::with_format(Cursor::new(png_bytes), ImageFormat::Png);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    reader.limits(limits);
    reader
        .decode()
        .map_err(|e| EvidenceError::Decode(e.to_string()))
}

/// Measures one PNG: decodes it (a failure is recorded as text, never a panic), compares its size
/// with `expected` (width, height) when given, and computes its luma statistics and flags.
pub fn measure(png_bytes: &[u8], expected: Option<(u32, u32)>) -> ImageMeasurement {
    let mut m = ImageMeasurement {
        bytes: png_bytes.len() as u64,
        sha256: Some(sha256_hex(png_bytes)),
        ..ImageMeasurement::absent()
    };
    let image = match decode_png(png_bytes) {
        Ok(image) => image,
        Err(EvidenceError::Decode(e)) => {
            m.error = Some(e);
            return m;
        }
        Err(e) => {
            m.error = Some(e.to_string());
            return m;
        }
    };
    m.decoded = true;
    m.width = Some(image.width());
    m.height = Some(image.height());
    m.expected_size = expected.map(|size| size == (image.width(), image.height()));
    m.luma = luma_stats(&image);
    if let Some(luma) = &m.luma {
        m.blank = luma.stddev <= BLANK_MAX_LUMA_STDDEV;
        m.black = luma.mean <= BLACK_MAX_MEAN_LUMA;
    }
    m
}

/// `sha256:` + the lowercase hex of the SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Statistics from a 256-bin histogram, so the sums are exact integers and the result is the same
/// bit for bit on every run. None for an image without pixels.
fn luma_stats(image: &DynamicImage) -> Option<LumaStats> {
    let luma = image.to_luma8();
    let mut histogram = [0u64; 256];
    for p in luma.as_raw() {
        histogram[usize::from(*p)] += 1;
    }
    let n: u64 = histogram.iter().sum();
    if n == 0 {
        return None;
    }
    let total = n as f64;
    let sum: u64 = histogram
        .iter()
        .enumerate()
        .map(|(v, c)| v as u64 * c)
        .sum();
    let mean = sum as f64 / total;
    let variance = histogram
        .iter()
        .enumerate()
        .map(|(v, c)| {
            let d = v as f64 - mean;
            d * d * *c as f64
        })
        .sum::<f64>()
        / total;
    let min = histogram.iter().position(|c| *c > 0)?;
    let max = histogram.iter().rposition(|c| *c > 0)?;
    let near_black: u64 = histogram[..=usize::from(NEAR_BLACK_LUMA)].iter().sum();
    Some(LumaStats {
        mean,
        stddev: variance.sqrt(),
        min: u8::try_from(min).ok()?,
        max: u8::try_from(max).ok()?,
        near_black_fraction: near_black as f64 / total,
    })
}

/// Decodes one entry of the WebUI's `images` list: plain base64, or a data URI
/// (`data:image/png;base64,...`); padding optional, whitespace and line breaks ignored.
pub fn decode_base64_image(text: &str) -> Result<Vec<u8>, EvidenceError> {
    let text = text.trim();
    let payload = match text.get(..5) {
        Some(scheme) if scheme.eq_ignore_ascii_case("data:") => {
            let Some((header, payload)) = text.split_once(',') else {
                return Err(EvidenceError::DataUri(
                    "no `,` after the header".to_string(),
                ));
            };
            if !header.to_ascii_lowercase().ends_with(";base64") {
                return Err(EvidenceError::DataUri(format!(
                    "header {header:?} does not end in `;base64`"
                )));
            }
            payload
        }
        _ => text,
    };
    let compact: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT
        .decode(compact.as_bytes())
        .map_err(|e| EvidenceError::Base64(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{encode, gradient, uniform};
    use image::{ImageBuffer, Rgb};

    #[test]
    fn a_gradient_decodes_with_its_full_range_and_is_neither_blank_nor_black() {
        let m = measure(&gradient(256, 64), Some((256, 64)));
        assert!(m.decoded, "{m:?}");
        assert_eq!(
            (m.width, m.height, m.expected_size),
            (Some(256), Some(64), Some(true))
        );
        let luma = m.luma.as_ref().expect("luma");
        assert_eq!((luma.min, luma.max), (0, 255));
        assert!((luma.mean - 127.5).abs() < 1e-9, "{luma:?}");
        // A uniform ramp over 0..=255: stddev sqrt((256^2 - 1) / 12) = 73.9.
        assert!((luma.stddev - 73.9003).abs() < 1e-3, "{luma:?}");
        assert!(
            (luma.near_black_fraction - 17.0 / 256.0).abs() < 1e-9,
            "{luma:?}"
        );
        assert!(!m.blank && !m.black);
        assert_eq!(m.error, None);
        assert!(m
            .sha256
            .as_deref()
            .is_some_and(|s| s.starts_with("sha256:") && s.len() == 71));
    }

    #[test]
    fn a_black_square_is_blank_and_black() {
        let m = measure(&uniform(64, 64, [0, 0, 0]), Some((64, 64)));
        let luma = m.luma.as_ref().expect("luma");
        assert_eq!(
            (luma.mean, luma.stddev, luma.min, luma.max),
            (0.0, 0.0, 0, 0)
        );
        assert_eq!(luma.near_black_fraction, 1.0);
        assert!(m.blank && m.black);
    }

    #[test]
    fn a_uniform_grey_is_blank_but_not_black() {
        let m = measure(&uniform(32, 48, [128, 128, 128]), None);
        let luma = m.luma.as_ref().expect("luma");
        assert_eq!((luma.mean, luma.stddev), (128.0, 0.0));
        assert_eq!(luma.near_black_fraction, 0.0);
        assert!(m.blank && !m.black);
        assert_eq!(m.expected_size, None, "no size expected");
    }

    #[test]
    fn noise_on_black_is_black_but_not_blank() {
        // Every other pixel at 12, the rest at 0: mean 6 (black), stddev 6 (not blank).
        let img = ImageBuffer::from_fn(32, 32, |x, _| {
            Rgb(if x % 2 == 0 { [12; 3] } else { [0; 3] })
        });
        let m = measure(&encode(&img), None);
        let luma = m.luma.as_ref().expect("luma");
        assert_eq!((luma.mean, luma.stddev), (6.0, 6.0));
        assert!(m.black && !m.blank);
    }

    #[test]
    fn a_wrong_size_is_measured_as_such() {
        let m = measure(&gradient(768, 512), Some((512, 512)));
        assert!(m.decoded);
        assert_eq!(
            (m.width, m.height, m.expected_size),
            (Some(768), Some(512), Some(false))
        );
    }

    #[test]
    fn garbage_bytes_record_the_decoder_error() {
        let m = measure(b"this is not a PNG at all", Some((512, 512)));
        assert!(!m.decoded);
        assert!(m.error.as_deref().is_some_and(|e| !e.is_empty()), "{m:?}");
        assert_eq!(
            (m.width, m.luma.as_ref(), m.expected_size),
            (None, None, None)
        );
        assert!(!m.blank && !m.black);
        assert_eq!(m.bytes, 24);
        let empty = measure(&[], None);
        assert!(!empty.decoded && empty.error.is_some());
    }

    #[test]
    fn a_truncated_png_records_the_decoder_error() {
        let png = gradient(128, 128);
        for cut in [8, 33, png.len() / 2, png.len() - 12] {
            let m = measure(&png[..cut], Some((128, 128)));
            assert!(!m.decoded, "cut at {cut}: {m:?}");
            assert!(m.error.is_some(), "cut at {cut}");
        }
    }

    #[test]
    fn a_png_larger_than_the_limit_is_refused_before_allocating() {
        // A valid PNG one pixel wider than the limit: refused from its header, not decoded.
        let m = measure(&uniform(MAX_IMAGE_SIDE + 1, 1, [9, 9, 9]), None);
        assert!(!m.decoded);
        assert!(m.error.is_some());
    }

    #[test]
    fn base64_is_accepted_plain_or_as_a_data_uri() {
        let png = uniform(4, 4, [1, 2, 3]);
        let plain = base64::engine::general_purpose::STANDARD.encode(&png);
        assert_eq!(decode_base64_image(&plain).as_ref(), Ok(&png));
        assert_eq!(
            decode_base64_image(&format!("data:image/png;base64,{plain}")).as_ref(),
            Ok(&png)
        );
        assert_eq!(
            decode_base64_image(&format!("DATA:image/png;BASE64,{plain}\n")).as_ref(),
            Ok(&png)
        );
        let unpadded = plain.trim_end_matches('=');
        assert_eq!(decode_base64_image(unpadded).as_ref(), Ok(&png));
        let wrapped: String = plain
            .chars()
            .enumerate()
            .flat_map(|(i, c)| if i % 76 == 75 { vec![c, '\n'] } else { vec![c] })
            .collect();
        assert_eq!(decode_base64_image(&wrapped).as_ref(), Ok(&png));
    }

    #[test]
    fn bad_base64_and_bad_data_uris_are_errors() {
        assert!(matches!(
            decode_base64_image("not base64!"),
            Err(EvidenceError::Base64(_))
        ));
        assert!(matches!(
            decode_base64_image("data:image/png,abc"),
            Err(EvidenceError::DataUri(_))
        ));
        assert!(matches!(
            decode_base64_image("data:image/png;base64"),
            Err(EvidenceError::DataUri(_))
        ));
        assert_eq!(decode_base64_image(""), Ok(Vec::new()));
    }
}

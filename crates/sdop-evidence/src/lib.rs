//! sdop-evidence: what an evaluation of a candidate model measures, pure.
//!
//! Issue #24's evaluation sends a fixed prompt set with fixed seeds to a staging endpoint and keeps
//! an evidence bundle: every image, a contact sheet and a JSON record of what was measured. This
//! crate is the measuring part, with bytes in and bytes (or values) out: no AWS SDK, no async
//! runtime, no file or network I/O, so every rule is a unit test. The AWS side (`sdop-aws`)
//! invokes the endpoint, times each invocation, reads the images back and stores what this crate
//! returns.
//!
//! - [`measure`]: one PNG's decode, size and luma statistics, and the `blank`/`black` flags;
//!   [`decode_base64_image`] for the WebUI's `images` entries.
//! - [`ContactSheet`]: the PNG grid a person opens to compare versions on the same cases.
//! - [`EvidenceRecord`], [`CaseRecord`], [`Summary`] and [`digest`]: the JSON record and a
//!   digest of its content (approvals quote the SHA-256 of the stored `evidence.json`).
//! - [`Thresholds`] and [`judge`]: the promotion rules and a [`Verdict`] whose reasons carry the
//!   measured values.
//! - [`percentile`] and [`cost_per_image_usd`]: the latency and cost arithmetic.
//! - [`Scorer`] and [`Scorers`]: the hook for a model-based score (none is shipped).

mod error;
mod judge;
mod measure;
mod record;
mod scorer;
mod sheet;

pub use error::EvidenceError;
pub use judge::{judge, Thresholds, Verdict};
pub use measure::{
    decode_base64_image, measure, ImageMeasurement, LumaStats, BLACK_MAX_MEAN_LUMA,
    BLANK_MAX_LUMA_STDDEV, MAX_IMAGE_SIDE, NEAR_BLACK_LUMA,
};
pub use record::{
    cost_per_image_usd, digest, percentile, Case, CaseRecord, Evaluation, EvidenceRecord,
    SheetRecord, Summary,
};
pub use scorer::{Scorer, Scorers};
pub use sheet::{
    CellContent, ContactSheet, RenderedSheet, SheetCell, SheetColumn, SheetLayout, SheetRow,
    BAND_HEIGHT, CELL_SIZE, COLUMN_COLOURS, MARGIN, MAX_SHEET_SIDE,
};

/// What the tests share: PNGs made in memory (real encodings by the `image` crate), and cases.
#[cfg(test)]
pub(crate) mod test_support {
    use image::{ImageBuffer, ImageFormat, Rgb, RgbImage};
    use std::io::Cursor;

    /// A 64x64 case.
    pub fn case(prompt: &str, seed: u64) -> crate::Case {
        crate::Case {
            prompt: prompt.into(),
            negative_prompt: None,
            seed,
            width: 64,
            height: 64,
        }
    }

    pub fn encode(img: &RgbImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png)
            .expect("encode a test PNG");
        out.into_inner()
    }

    pub fn uniform(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
        encode(&ImageBuffer::from_pixel(width, height, Rgb(rgb)))
    }

    /// A horizontal grey ramp from 0 to 255: mean 127.5, the full range.
    pub fn gradient(width: u32, height: u32) -> Vec<u8> {
        encode(&ImageBuffer::from_fn(width, height, |x, _| {
            let v = (x * 255 / (width - 1)) as u8;
            Rgb([v, v, v])
        }))
    }
}

//! The contact sheet: one PNG a person opens to compare versions on the same prompts and seeds.
//!
//! Rows are cases (prompt, seed), columns are the versions compared ("production v2" |
//! "candidate v3"), each cell the version's image for that case as a thumbnail. The sheet draws no
//! text: rendering text needs a font shipped and laid out, and the labels already live where they
//! are read as text, in the JSON record ([`SheetLayout`], which says which cell is which case and
//! column) and on the status page. A thin coloured band on top of each column ties the column to
//! its label there ([`SheetColumn::colour`]).

use crate::measure::decode_png;
use crate::EvidenceError;
use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::imageops::{self, FilterType};
use image::{ExtendedColorType, ImageEncoder, Rgb, RgbImage};
use serde::{Deserialize, Serialize};

/// A cell's side in pixels: each image is scaled, keeping its aspect, to fit in a square this size
/// (a 512x512 output at half size, large enough to see a face and small enough that a dozen cases
/// by two versions stay one screenful of scrolling).
pub const CELL_SIZE: u32 = 256;
/// The white space around and between cells, in pixels.
pub const MARGIN: u32 = 16;
/// The height of the coloured band on top of each column, in pixels.
pub const BAND_HEIGHT: u32 = 6;
/// The largest width or height of a sheet, in pixels (about 120 rows or columns): a bigger grid is
/// no longer something a person looks at, and the limit bounds the memory a sheet takes.
pub const MAX_SHEET_SIDE: u32 = 32_768;
/// The column bands' colours, in order, then again from the first: the Okabe-Ito palette, told
/// apart by colour-blind readers too.
pub const COLUMN_COLOURS: [[u8; 3]; 7] = [
    [0x00, 0x72, 0xB2], // blue
    [0xE6, 0x9F, 0x00], // orange
    [0x00, 0x9E, 0x73], // bluish green
    [0xCC, 0x79, 0xA7], // reddish purple
    [0x56, 0xB4, 0xE9], // sky blue
    [0xD5, 0x5E, 0x00], // vermillion
    [0xF0, 0xE4, 0x42], // yellow
];

const BACKGROUND: [u8; 3] = [255, 255, 255];
/// A 1-pixel frame around each thumbnail, so a white (blank) image does not vanish into the
/// background.
const FRAME: [u8; 3] = [200, 200, 200];
/// A missing or undecodable image: a neutral grey square crossed from corner to corner.
const PLACEHOLDER: [u8; 3] = [192, 192, 192];
const PLACEHOLDER_CROSS: [u8; 3] = [96, 96, 96];
/// Half the cross's stroke width, in pixels.
const CROSS_HALF_WIDTH: i64 = 3;

/// A contact sheet being assembled: the columns first, then one row per case.
#[derive(Debug, Clone)]
pub struct ContactSheet<'a> {
    columns: Vec<String>,
    rows: Vec<Row<'a>>,
}

#[derive(Debug, Clone)]
struct Row<'a> {
    prompt: String,
    seed: u64,
    cells: Vec<Option<&'a [u8]>>,
}

/// A rendered sheet: the PNG bytes and where everything is in them.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedSheet {
    pub png: Vec<u8>,
    pub layout: SheetLayout,
}

/// Where everything is on a sheet, in pixels from the top left: for the JSON record, which carries
/// the labels the sheet does not draw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SheetLayout {
    pub width: u32,
    pub height: u32,
    pub cell_size: u32,
    pub columns: Vec<SheetColumn>,
    pub rows: Vec<SheetRow>,
    /// Row by row, each row's cells left to right.
    pub cells: Vec<SheetCell>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SheetColumn {
    pub label: String,
    /// The band's colour, `#rrggbb`.
    pub colour: String,
    /// The left edge of the column's cells.
    pub x: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SheetRow {
    pub prompt: String,
    pub seed: u64,
    /// The top edge of the row's cells.
    pub y: u32,
}

/// One cell: its row and column (indices into the layout's lists) and the rectangle its content
/// fills (a thumbnail is centred in its cell; a placeholder fills it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SheetCell {
    pub row: usize,
    pub column: usize,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub content: CellContent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum CellContent {
    /// The image, scaled; its size before scaling.
    Thumbnail {
        source_width: u32,
        source_height: u32,
    },
    /// No image for this case in this column (not requested, failed, timed out).
    Missing,
    /// Bytes that did not decode, and the decoder's error.
    Undecodable { error: String },
}

impl<'a> ContactSheet<'a> {
    /// A sheet comparing these versions, left to right (say, `["production v2", "candidate v3"]`).
    pub fn new(columns: Vec<String>) -> Self {
        ContactSheet {
            columns,
            rows: Vec::new(),
        }
    }

    /// Adds one case: its prompt and seed, and one cell per column, each the version's PNG bytes
    /// or None when it has no image for this case.
    pub fn add_row(
        &mut self,
        prompt: impl Into<String>,
        seed: u64,
        cells: Vec<Option<&'a [u8]>>,
    ) -> Result<(), EvidenceError> {
        if cells.len() != self.columns.len() {
            return Err(EvidenceError::SheetRow {
                row: self.rows.len(),
                got: cells.len(),
                expected: self.columns.len(),
            });
        }
        self.rows.push(Row {
            prompt: prompt.into(),
            seed,
            cells,
        });
        Ok(())
    }

    /// Draws the sheet: the same inputs give the same bytes (no timestamps, a fixed encoder
    /// setting, integer placement, and the resampling is plain arithmetic).
    ///
    /// The grid: a margin, the bands, a margin, then rows of cells with a margin after each; the
    /// columns likewise, a margin before each and after the last.
    pub fn render(&self) -> Result<RenderedSheet, EvidenceError> {
        if self.columns.is_empty() {
            return Err(EvidenceError::SheetWithoutColumns);
        }
        let too_large = || EvidenceError::SheetTooLarge {
            columns: self.columns.len(),
            rows: self.rows.len(),
            max: MAX_SHEET_SIDE,
        };
        let pitch = u64::from(CELL_SIZE + MARGIN);
        let top = u64::from(MARGIN + BAND_HEIGHT + MARGIN);
        let width = u64::from(MARGIN) + pitch * self.columns.len() as u64;
        let height = top + pitch * self.rows.len() as u64;
        let (Ok(width), Ok(height)) = (u32::try_from(width), u32::try_from(height)) else {
            return Err(too_large());
        };
        if width > MAX_SHEET_SIDE || height > MAX_SHEET_SIDE {
            return Err(too_large());
        }
        // Within MAX_SHEET_SIDE, every coordinate below fits in u32.
        let column_x = |c: usize| MARGIN + (CELL_SIZE + MARGIN) * c as u32;
        let row_y = |r: usize| MARGIN + BAND_HEIGHT + MARGIN + (CELL_SIZE + MARGIN) * r as u32;

        let mut sheet = RgbImage::from_pixel(width, height, Rgb(BACKGROUND));
        let mut columns = Vec::with_capacity(self.columns.len());
        for (c, label) in self.columns.iter().enumerate() {
            let colour = COLUMN_COLOURS[c % COLUMN_COLOURS.len()];
            fill(
                &mut sheet,
                column_x(c),
                MARGIN,
                CELL_SIZE,
                BAND_HEIGHT,
                colour,
            );
            columns.push(SheetColumn {
                label: label.clone(),
                colour: format!("#{:02x}{:02x}{:02x}", colour[0], colour[1], colour[2]),
                x: column_x(c),
            });
        }

        let mut rows = Vec::with_capacity(self.rows.len());
        let mut cells = Vec::with_capacity(self.rows.len() * self.columns.len());
        for (r, row) in self.rows.iter().enumerate() {
            rows.push(SheetRow {
                prompt: row.prompt.clone(),
                seed: row.seed,
                y: row_y(r),
            });
            for (c, bytes) in row.cells.iter().enumerate() {
                let (x, y) = (column_x(c), row_y(r));
                let decoded = bytes.map(decode_png);
                let cell = match decoded {
                    Some(Ok(image)) => {
                        let thumb = image
                            .resize(CELL_SIZE, CELL_SIZE, FilterType::Triangle)
                            .into_rgb8();
                        // `resize` fits within the square; clamp anyway so a cell never spills.
                        let (tw, th) =
                            (thumb.width().min(CELL_SIZE), thumb.height().min(CELL_SIZE));
                        let (tx, ty) = (x + (CELL_SIZE - tw) / 2, y + (CELL_SIZE - th) / 2);
                        let thumb = imageops::crop_imm(&thumb, 0, 0, tw, th).to_image();
                        // The frame: one pixel outside the thumbnail, inside the margin.
                        fill(&mut sheet, tx - 1, ty - 1, tw + 2, th + 2, FRAME);
                        imageops::replace(&mut sheet, &thumb, i64::from(tx), i64::from(ty));
                        SheetCell {
                            row: r,
                            column: c,
                            x: tx,
                            y: ty,
                            width: tw,
                            height: th,
                            content: CellContent::Thumbnail {
                                source_width: image.width(),
                                source_height: image.height(),
                            },
                        }
                    }
                    Some(Err(e)) => {
                        placeholder(&mut sheet, x, y);
                        let error = match e {
                            EvidenceError::Decode(text) => text,
                            other => other.to_string(),
                        };
                        placeholder_cell(r, c, x, y, CellContent::Undecodable { error })
                    }
                    None => {
                        placeholder(&mut sheet, x, y);
                        placeholder_cell(r, c, x, y, CellContent::Missing)
                    }
                };
                cells.push(cell);
            }
        }

        let mut png = Vec::new();
        PngEncoder::new_with_quality(&mut png, CompressionType::Default, PngFilter::Adaptive)
            .write_image(sheet.as_raw(), width, height, ExtendedColorType::Rgb8)
            .map_err(|e| EvidenceError::Encode(e.to_string()))?;
        Ok(RenderedSheet {
            png,
            layout: SheetLayout {
                width,
                height,
                cell_size: CELL_SIZE,
                columns,
                rows,
                cells,
            },
        })
    }
}

fn placeholder_cell(row: usize, column: usize, x: u32, y: u32, content: CellContent) -> SheetCell {
    SheetCell {
        row,
        column,
        x,
        y,
        width: CELL_SIZE,
        height: CELL_SIZE,
        content,
    }
}

/// Fills a rectangle that lies within the sheet (the layout guarantees it).
fn fill(sheet: &mut RgbImage, x: u32, y: u32, width: u32, height: u32, colour: [u8; 3]) {
    for py in y..y + height {
        for px in x..x + width {
            if let Some(p) = sheet.get_pixel_mut_checked(px, py) {
                *p = Rgb(colour);
            }
        }
    }
}

/// A grey cell with both diagonals drawn across it.
fn placeholder(sheet: &mut RgbImage, x: u32, y: u32) {
    let last = i64::from(CELL_SIZE) - 1;
    for dy in 0..CELL_SIZE {
        for dx in 0..CELL_SIZE {
            let (i, j) = (i64::from(dx), i64::from(dy));
            let on_cross =
                (i - j).abs() <= CROSS_HALF_WIDTH || (i + j - last).abs() <= CROSS_HALF_WIDTH;
            if let Some(p) = sheet.get_pixel_mut_checked(x + dx, y + dy) {
                *p = Rgb(if on_cross {
                    PLACEHOLDER_CROSS
                } else {
                    PLACEHOLDER
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{gradient, uniform};

    fn decode(png: &[u8]) -> RgbImage {
        image::load_from_memory_with_format(png, image::ImageFormat::Png)
            .expect("the sheet decodes")
            .into_rgb8()
    }

    fn centre(cell: &SheetCell) -> (u32, u32) {
        (cell.x + cell.width / 2, cell.y + cell.height / 2)
    }

    #[test]
    fn a_sheet_is_a_png_of_the_grid_with_thumbnails_and_placeholders() {
        let red = uniform(512, 512, [200, 30, 30]);
        let green = uniform(512, 512, [30, 180, 60]);
        let wide = uniform(512, 256, [20, 40, 220]);
        let garbage = b"not a png".as_slice();
        let mut sheet = ContactSheet::new(vec!["production v2".into(), "candidate v3".into()]);
        sheet
            .add_row("photo of jpstyle girl", 1, vec![Some(&red), Some(&green)])
            .expect("row");
        sheet
            .add_row("jpstyle street at night", 2, vec![None, Some(&wide)])
            .expect("row");
        sheet
            .add_row("jpstyle cat", 3, vec![Some(garbage), Some(&red)])
            .expect("row");
        let RenderedSheet { png, layout } = sheet.render().expect("render");

        let image = decode(&png);
        // 16 + 2 * (256 + 16) = 560 wide; 16 + 6 + 16 + 3 * (256 + 16) = 854 high.
        assert_eq!((image.width(), image.height()), (560, 854));
        assert_eq!((layout.width, layout.height), (560, 854));
        assert_eq!(layout.cells.len(), 6);
        assert_eq!(layout.columns[1].label, "candidate v3");
        assert_eq!(layout.rows[2].prompt, "jpstyle cat");

        let at = |row: usize, column: usize| {
            let cell = layout
                .cells
                .iter()
                .find(|c| c.row == row && c.column == column)
                .expect("cell");
            (cell, image.get_pixel(centre(cell).0, centre(cell).1).0)
        };
        let (cell, pixel) = at(0, 0);
        assert_eq!(pixel, [200, 30, 30]);
        assert_eq!((cell.width, cell.height), (256, 256));
        assert_eq!(
            cell.content,
            CellContent::Thumbnail {
                source_width: 512,
                source_height: 512
            }
        );
        assert_eq!(at(0, 1).1, [30, 180, 60]);

        // Missing: the grey placeholder, crossed through its centre.
        let (cell, pixel) = at(1, 0);
        assert_eq!(cell.content, CellContent::Missing);
        assert_eq!(pixel, PLACEHOLDER_CROSS);
        assert_eq!(image.get_pixel(cell.x + 128, cell.y + 20).0, PLACEHOLDER);
        assert_eq!(
            image.get_pixel(cell.x + 20, cell.y + 20).0,
            PLACEHOLDER_CROSS
        );

        // 512x256 fits as 256x128, centred: the cell's top rows stay background.
        let (cell, pixel) = at(1, 1);
        assert_eq!((cell.width, cell.height), (256, 128));
        assert_eq!(pixel, [20, 40, 220]);
        assert_eq!(image.get_pixel(cell.x + 10, cell.y - 10).0, BACKGROUND);
        assert_eq!(image.get_pixel(cell.x + 10, cell.y - 1).0, FRAME);
        assert_eq!(image.get_pixel(cell.x - 1, cell.y + 10).0, FRAME);

        let (cell, pixel) = at(2, 0);
        assert!(matches!(&cell.content, CellContent::Undecodable { error } if !error.is_empty()));
        assert_eq!(pixel, PLACEHOLDER_CROSS);

        // The bands, in the palette's first two colours.
        assert_eq!(image.get_pixel(16 + 100, 18).0, COLUMN_COLOURS[0]);
        assert_eq!(image.get_pixel(16 + 272 + 100, 18).0, COLUMN_COLOURS[1]);
        assert_eq!(layout.columns[0].colour, "#0072b2");
        // Margins are background.
        assert_eq!(image.get_pixel(8, 400).0, BACKGROUND);
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let a = gradient(512, 512);
        let b = uniform(640, 480, [10, 100, 200]);
        let render = || {
            let mut sheet = ContactSheet::new(vec!["a".into(), "b".into()]);
            sheet
                .add_row("p", 7, vec![Some(&a), Some(&b)])
                .expect("row");
            sheet.add_row("q", 8, vec![None, Some(&a)]).expect("row");
            sheet.render().expect("render")
        };
        assert_eq!(render(), render());
    }

    #[test]
    fn a_thumbnail_of_a_gradient_keeps_its_ramp() {
        let g = gradient(512, 512);
        let mut sheet = ContactSheet::new(vec!["only".into()]);
        sheet.add_row("ramp", 0, vec![Some(&g)]).expect("row");
        let RenderedSheet { png, layout } = sheet.render().expect("render");
        let image = decode(&png);
        let cell = &layout.cells[0];
        let left = image.get_pixel(cell.x + 2, cell.y + 128).0[0];
        let right = image.get_pixel(cell.x + 253, cell.y + 128).0[0];
        assert!(left < 8 && right > 247, "{left} {right}");
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let mut sheet = ContactSheet::new(vec!["a".into(), "b".into()]);
        assert_eq!(
            sheet.add_row("p", 1, vec![None]),
            Err(EvidenceError::SheetRow {
                row: 0,
                got: 1,
                expected: 2
            })
        );
        assert_eq!(
            ContactSheet::new(Vec::new()).render(),
            Err(EvidenceError::SheetWithoutColumns)
        );
        let mut tall = ContactSheet::new(vec!["a".into()]);
        for seed in 0..200 {
            tall.add_row("p", seed, vec![None]).expect("row");
        }
        assert!(matches!(
            tall.render(),
            Err(EvidenceError::SheetTooLarge { rows: 200, .. })
        ));
        // No rows: just the bands.
        let empty = ContactSheet::new(vec!["a".into()])
            .render()
            .expect("render");
        assert_eq!((empty.layout.width, empty.layout.height), (288, 38));
    }

    #[test]
    fn the_layout_serialises_in_camel_case_with_tagged_contents() {
        let mut sheet = ContactSheet::new(vec!["a".into()]);
        sheet.add_row("p", 1, vec![None]).expect("row");
        let json = serde_json::to_value(sheet.render().expect("render").layout).expect("json");
        assert_eq!(json["cellSize"], 256);
        assert_eq!(
            json["cells"][0]["content"],
            serde_json::json!({"kind": "missing"})
        );
        let thumb = serde_json::to_value(CellContent::Thumbnail {
            source_width: 1,
            source_height: 2,
        })
        .expect("json");
        assert_eq!(
            thumb,
            serde_json::json!({"kind": "thumbnail", "sourceWidth": 1, "sourceHeight": 2})
        );
    }
}

use thiserror::Error;

/// What can go wrong in this crate: bad input bytes, or a contact sheet that cannot be laid out.
/// Measurements never return it: a PNG that does not decode is a measured fact
/// ([`crate::ImageMeasurement::error`]), not a failure of the measuring.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EvidenceError {
    #[error("not base64: {0}")]
    Base64(String),
    #[error("a data URI that is not `data:...;base64,...`: {0}")]
    DataUri(String),
    #[error("not a decodable PNG: {0}")]
    Decode(String),
    #[error("a contact sheet needs at least one column")]
    SheetWithoutColumns,
    #[error("contact sheet row {row}: {got} cells for {expected} columns")]
    SheetRow {
        row: usize,
        got: usize,
        expected: usize,
    },
    #[error("a contact sheet of {columns} columns and {rows} rows is larger than {max} px a side")]
    SheetTooLarge {
        columns: usize,
        rows: usize,
        max: u32,
    },
    #[error("encoding the contact sheet as PNG: {0}")]
    Encode(String),
    #[error("a scorer named {0:?} is already registered")]
    DuplicateScorer(String),
}

//! Writes one token-table part file: one row per clip, `clip_id`, `split`,
//! the dataset's conditioning columns (as in clips.parquet), `frames` (the
//! first `context_frames` frames as a fixed-size list of uint8, when the
//! table keeps them), and `tokens`, a fixed-size list of uint16 in (t, h, w)
//! raster order. ZSTD; the table's metadata in the file's key-value
//! metadata. Atomic.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeListArray, RecordBatch, StringArray, UInt8Array, UInt16Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::meta::TokenTableMeta;
use crate::error::{IoContext, PipelineError, Result};
use crate::shards::ClipRecord;
use crate::shards::metadata::{conditioning_columns, write_parquet_atomic};

/// ZSTD level of the part files: tokens are near-incompressible beyond the
/// dictionary's bit packing, so a higher level buys little.
const ZSTD_LEVEL: i32 = 3;

/// The Arrow type of the `tokens` column for `len` tokens per clip.
pub fn tokens_type(len: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::UInt16, false)),
        len as i32,
    )
}

/// Writes `records` (clips, in clip-id order) with their `tokens`
/// (`records.len() * meta.tokens_per_clip()` values) and, when the table
/// keeps context frames, their `frames` (`records.len() *
/// meta.context_len()` bytes) to `path`. Returns the file size in bytes.
pub fn write_token_part(
    path: &Path,
    meta: &TokenTableMeta,
    records: &[ClipRecord],
    tokens: &[u16],
    frames: Option<&[u8]>,
    action_dim: Option<usize>,
) -> Result<u64> {
    let len = meta.tokens_per_clip();
    let frame_len = meta.context_len();
    let frames_given = frames.map_or(0, <[u8]>::len);
    if frames_given != records.len() * frame_len {
        return Err(PipelineError::config(format!(
            "{}: {frames_given} context-frame bytes for {} clips of {frame_len} bytes each",
            path.display(),
            records.len()
        )));
    }
    if tokens.len() != records.len() * len {
        return Err(PipelineError::config(format!(
            "{}: {} tokens for {} clips of {len} tokens each",
            path.display(),
            tokens.len(),
            records.len()
        )));
    }
    if let Some(bad) = tokens.iter().find(|&&t| t as usize >= meta.codebook_size) {
        return Err(PipelineError::config(format!(
            "{}: token {bad} is outside the codebook of {}",
            path.display(),
            meta.codebook_size
        )));
    }
    let arrow_err = |e| PipelineError::Arrow {
        path: path.into(),
        source: e,
    };
    let mut fields = vec![
        Field::new("clip_id", DataType::UInt64, false),
        Field::new("split", DataType::Utf8, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(records.iter().map(|r| r.clip_id))),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|_| meta.split.as_str()),
        )),
    ];
    for (field, column) in conditioning_columns(records, action_dim).map_err(arrow_err)? {
        fields.push(field);
        columns.push(column);
    }
    if let Some(frames) = frames.filter(|_| frame_len > 0) {
        let item = Arc::new(Field::new("item", DataType::UInt8, false));
        let list = FixedSizeListArray::try_new(
            item.clone(),
            frame_len as i32,
            Arc::new(UInt8Array::from(frames.to_vec())),
            None,
        )
        .map_err(arrow_err)?;
        fields.push(Field::new(
            "frames",
            DataType::FixedSizeList(item, frame_len as i32),
            false,
        ));
        columns.push(Arc::new(list));
    }
    let values = UInt16Array::from(tokens.to_vec());
    let item = Arc::new(Field::new("item", DataType::UInt16, false));
    let list = FixedSizeListArray::try_new(item, len as i32, Arc::new(values), None)
        .map_err(arrow_err)?;
    fields.push(Field::new("tokens", tokens_type(len), false));
    columns.push(Arc::new(list));
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow_err)?;

    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(ZSTD_LEVEL).expect("valid level"),
        ))
        // Min/max of a token list tell nothing; skip them.
        .set_column_statistics_enabled(
            ColumnPath::new(vec!["tokens".into(), "list".into(), "item".into()]),
            EnabledStatistics::None,
        )
        .set_key_value_metadata(Some(meta.to_key_values()))
        .build();
    write_parquet_atomic(path, &batch, props)?;
    Ok(std::fs::metadata(path).at(path)?.len())
}

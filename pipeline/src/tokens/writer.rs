//! Writes one token-table part file: one row per clip, `clip_id`, `split`,
//! `table` (the table's name), the dataset's conditioning columns (as in
//! clips.parquet), `frames` (the first `context_frames` frames, uint8
//! `[k][H][W][C]`, when the table keeps them), and `tokens`, uint16
//! `[t][h][w]`. Both are nested fixed-size lists, so readers see the shape
//! in the column type (polars `Array(UInt16, shape=(t, h, w))`, HF
//! `datasets` nested `List(..., length=)`, DuckDB `USMALLINT[][][]`); Arrow's
//! `fixed_shape_tensor` extension would be dropped to a flat list by DuckDB
//! and polars and refused by HF `datasets`. ZSTD; the table's metadata in the
//! file's key-value metadata. Atomic.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, FixedSizeListArray, RecordBatch, StringArray, UInt8Array, UInt16Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::meta::TokenTableMeta;
use crate::error::{IoContext, PipelineError, Result};
use crate::shards::ClipRecord;
use crate::shards::metadata::{Conditioning, conditioning_columns, write_parquet_atomic};

/// ZSTD level of the part files: tokens are near-incompressible beyond the
/// dictionary's bit packing, so a higher level buys little.
const ZSTD_LEVEL: i32 = 3;

/// `values` (`rows * shape.product()` of them) as a fixed-size list nested
/// once per axis of `shape`, outermost first.
pub fn nested_list(values: ArrayRef, shape: &[usize]) -> arrow::error::Result<FixedSizeListArray> {
    let mut array = values;
    for &side in shape.iter().rev() {
        let item = Arc::new(Field::new("item", array.data_type().clone(), false));
        array = Arc::new(FixedSizeListArray::try_new(item, side as i32, array, None)?);
    }
    Ok(array.as_any().downcast_ref::<FixedSizeListArray>().expect("a shape has at least one axis").clone())
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
    columns_wanted: Conditioning,
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
    if !meta.table.is_empty() {
        fields.push(Field::new("table", DataType::Utf8, false));
        columns.push(Arc::new(StringArray::from_iter_values(records.iter().map(|_| meta.table.as_str()))));
    }
    for (field, column) in conditioning_columns(records, columns_wanted).map_err(arrow_err)? {
        fields.push(field);
        columns.push(column);
    }
    if let (Some(frames), Some(shape)) = (frames, meta.context_shape()) {
        let list = nested_list(Arc::new(UInt8Array::from(frames.to_vec())), &shape).map_err(arrow_err)?;
        fields.push(Field::new("frames", list.data_type().clone(), false));
        columns.push(Arc::new(list));
    }
    let list = nested_list(Arc::new(UInt16Array::from(tokens.to_vec())), &meta.latent_grid).map_err(arrow_err)?;
    fields.push(Field::new("tokens", list.data_type().clone(), false));
    columns.push(Arc::new(list));
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(arrow_err)?;

    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(ZSTD_LEVEL).expect("valid level"),
        ))
        // Min/max of a token list tell nothing; skip them.
        .set_column_statistics_enabled(tokens_leaf(meta.latent_grid.len()), EnabledStatistics::None)
        .set_key_value_metadata(Some(meta.to_key_values()))
        .build();
    write_parquet_atomic(path, &batch, props)?;
    Ok(std::fs::metadata(path).at(path)?.len())
}

/// The Parquet leaf column of `tokens` nested `depth` times.
fn tokens_leaf(depth: usize) -> ColumnPath {
    let mut path = vec!["tokens".to_string()];
    for _ in 0..depth {
        path.extend(["list".to_string(), "item".to_string()]);
    }
    ColumnPath::new(path)
}

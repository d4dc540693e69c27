//! `clips.parquet`: one row per clip with where it came from and its
//! conditioning (label, text, actions). Arrow + Parquet (ZSTD), readable by
//! polars, pyarrow and DuckDB.
//!
//! Columns: `clip_id` u64, `split` utf8, `shard` u32, `index_in_shard` u32, `video` u64
//! (index of the source video in the split), `source` utf8 (file, with
//! `#record` for multi-record files), `start_frame` u32, `decode_errors` u32
//! (damage FFmpeg concealed in the video, kept by `--on-damage keep`; absent
//! in tables written before it, read as 0), and when the dataset
//! has them `label` i32, `text` utf8, `actions` list<fixed_size_list<f32, D>>
//! (one action vector per clip frame). Which of the last three a split has
//! is decided by its dataset ([`Conditioning`]), so every split, empty or
//! not, has the same schema.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, Int32Array, ListArray, RecordBatch,
    StringArray, UInt32Array, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Float32Type, Int32Type, Schema, UInt32Type, UInt64Type};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use super::index::{CLIPS_TABLE_FILE, ClipIndex, INDEX_FILE};
use crate::error::{IoContext, PipelineError, Result};

/// Per-clip metadata, as stored in a shard's sidecar and in clips.parquet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipRecord {
    pub clip_id: u64,
    pub shard: u32,
    pub index_in_shard: u32,
    pub video: u64,
    pub source: String,
    pub start_frame: u32,
    pub label: Option<i32>,
    pub text: Option<String>,
    /// `[T, D]` row-major, when the dataset has actions.
    pub actions: Option<Vec<f32>>,
    /// Damage FFmpeg reported and concealed in the clip's video (0: none;
    /// above 0 only under `--on-damage keep`).
    #[serde(default)]
    pub decode_errors: u32,
}

/// The conditioning columns a dataset's tables carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Conditioning {
    /// `label` (i32): UCF-101's class.
    pub label: bool,
    /// `text` (utf8): TGIF's description.
    pub text: bool,
    /// `D` of the `actions` column (BAIR, ViZDoom).
    pub action_dim: Option<usize>,
}

impl Conditioning {
    /// The conditioning columns of a clips.parquet file, from its schema.
    pub fn of_clips_table(path: &Path) -> Result<Self> {
        let file = File::open(path).at(path)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| PipelineError::Parquet {
            path: path.into(),
            source: e,
        })?;
        let schema = builder.schema();
        let has = |name: &str, ty: &DataType| schema.field_with_name(name).is_ok_and(|f| f.data_type() == ty);
        let action_dim = schema.field_with_name("actions").ok().and_then(|f| match f.data_type() {
            DataType::List(vector) => match vector.data_type() {
                DataType::FixedSizeList(_, d) => Some(*d as usize),
                _ => None,
            },
            _ => None,
        });
        Ok(Self {
            label: has("label", &DataType::Int32),
            text: has("text", &DataType::Utf8),
            action_dim,
        })
    }
}

/// Writes the clips of `split` to `path` atomically, with the dataset's
/// conditioning columns.
pub fn write_clips_table(
    path: &Path,
    split: &str,
    records: &[ClipRecord],
    columns: Conditioning,
) -> Result<()> {
    let batch = to_batch(split, records, columns).map_err(|e| PipelineError::Arrow {
        path: path.into(),
        source: e,
    })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            "videogpt.format".into(),
            "videogpt-clips-table v1".to_string(),
        )]))
        .build();
    write_parquet_atomic(path, &batch, props)
}

/// Writes one record batch as a Parquet file, atomically (temp + rename).
pub fn write_parquet_atomic(path: &Path, batch: &RecordBatch, props: WriterProperties) -> Result<()> {
    crate::atomic::write_atomic(path, |w| {
        let mut writer =
            ArrowWriter::try_new(w, batch.schema(), Some(props)).map_err(std::io::Error::other)?;
        writer.write(batch).map_err(std::io::Error::other)?;
        writer.close().map_err(std::io::Error::other)?;
        Ok(())
    })
    .at(path)
}

fn to_batch(
    split: &str,
    records: &[ClipRecord],
    columns: Conditioning,
) -> arrow::error::Result<RecordBatch> {
    let mut fields = vec![
        Field::new("clip_id", DataType::UInt64, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("shard", DataType::UInt32, false),
        Field::new("index_in_shard", DataType::UInt32, false),
        Field::new("video", DataType::UInt64, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("start_frame", DataType::UInt32, false),
        Field::new("decode_errors", DataType::UInt32, false),
    ];
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(
            records.iter().map(|r| r.clip_id),
        )),
        Arc::new(StringArray::from_iter_values(records.iter().map(|_| split))),
        Arc::new(UInt32Array::from_iter_values(
            records.iter().map(|r| r.shard),
        )),
        Arc::new(UInt32Array::from_iter_values(
            records.iter().map(|r| r.index_in_shard),
        )),
        Arc::new(UInt64Array::from_iter_values(
            records.iter().map(|r| r.video),
        )),
        Arc::new(StringArray::from_iter_values(
            records.iter().map(|r| r.source.as_str()),
        )),
        Arc::new(UInt32Array::from_iter_values(
            records.iter().map(|r| r.start_frame),
        )),
        Arc::new(UInt32Array::from_iter_values(
            records.iter().map(|r| r.decode_errors),
        )),
    ];
    for (field, column) in conditioning_columns(records, columns)? {
        fields.push(field);
        arrays.push(column);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
}

/// The conditioning columns of `records` that the dataset has: `label`
/// (i32), `text` (utf8), `actions` (list of `action_dim`-vectors). Shared by
/// clips.parquet and the token tables, so both carry the same columns.
pub fn conditioning_columns(
    records: &[ClipRecord],
    columns: Conditioning,
) -> arrow::error::Result<Vec<(Field, ArrayRef)>> {
    let mut out: Vec<(Field, ArrayRef)> = Vec::new();
    if columns.label {
        out.push((
            Field::new("label", DataType::Int32, true),
            Arc::new(Int32Array::from_iter(records.iter().map(|r| r.label))),
        ));
    }
    if columns.text {
        out.push((
            Field::new("text", DataType::Utf8, true),
            Arc::new(StringArray::from_iter(
                records.iter().map(|r| r.text.as_deref()),
            )),
        ));
    }
    if let Some(dim) = columns.action_dim {
        out.push(actions_column(records, dim)?);
    }
    Ok(out)
}

fn actions_column(records: &[ClipRecord], dim: usize) -> arrow::error::Result<(Field, ArrayRef)> {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let vector = Arc::new(Field::new(
        "item",
        DataType::FixedSizeList(item.clone(), dim as i32),
        false,
    ));
    let mut values = Vec::new();
    let mut lengths = Vec::with_capacity(records.len());
    let mut valid = Vec::with_capacity(records.len());
    for r in records {
        let a = r.actions.as_deref().unwrap_or(&[]);
        if a.len() % dim != 0 {
            return Err(arrow::error::ArrowError::InvalidArgumentError(format!(
                "clip {}: {} action values are not a multiple of {dim}",
                r.clip_id,
                a.len()
            )));
        }
        values.extend_from_slice(a);
        lengths.push(a.len() / dim);
        valid.push(r.actions.is_some());
    }
    let vectors =
        FixedSizeListArray::try_new(item, dim as i32, Arc::new(Float32Array::from(values)), None)?;
    let list = ListArray::try_new(
        vector.clone(),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(vectors),
        Some(valid.into()),
    )?;
    Ok((
        Field::new("actions", DataType::List(vector), true),
        Arc::new(list),
    ))
}

/// Row `i` of an `actions` column (`[T * D]` values), `None` when null.
/// The `actions` column of `batch`, when it has one, checked to be
/// list<fixed_size_list<float32, D>> so that [`actions_row`] cannot fail.
pub fn checked_actions<'a>(batch: &'a RecordBatch, path: &Path) -> Result<Option<&'a ListArray>> {
    let Some(column) = batch.column_by_name("actions") else {
        return Ok(None);
    };
    let list = column.as_list_opt::<i32>().filter(|l| {
        matches!(l.value_type(), DataType::FixedSizeList(item, _) if item.data_type() == &DataType::Float32)
    });
    list.map(Some).ok_or_else(|| {
        PipelineError::format(
            path,
            format!("column `actions` is {}, not list<fixed_size_list<float32, D>>", column.data_type()),
        )
    })
}

/// Row `i` of an `actions` column checked by [`checked_actions`].
pub fn actions_row(actions: &ListArray, i: usize) -> Option<Vec<f32>> {
    actions.is_valid(i).then(|| {
        actions
            .value(i)
            .as_fixed_size_list()
            .values()
            .as_primitive::<Float32Type>()
            .values()
            .to_vec()
    })
}

/// All record batches of a Parquet file (every column), errors naming it.
pub fn read_parquet_batches(path: &Path) -> Result<impl Iterator<Item = Result<RecordBatch>>> {
    let file = File::open(path).at(path)?;
    let parquet_err = |e| PipelineError::Parquet {
        path: path.into(),
        source: e,
    };
    let len = file.metadata().at(path)?.len();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err)?;
    check_column_chunks(path, builder.metadata(), len)?;
    let reader = builder.build().map_err(parquet_err)?;
    // Decoded here, inside the guard: the parquet crate panics on some damage.
    let batches = crate::parquet_guard::guarded(path, || {
        reader
            .map(|batch| {
                batch.map_err(|e| PipelineError::Arrow {
                    path: path.into(),
                    source: e,
                })
            })
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(batches.into_iter().map(Ok))
}

/// Every column chunk of `metadata` lies inside the file's `len` bytes.
/// The parquet crate asserts (panics) on a negative offset or size when it
/// reads the pages, so a damaged footer is refused here, naming the file.
pub fn check_column_chunks(path: &Path, metadata: &ParquetMetaData, len: u64) -> Result<()> {
    for (g, group) in metadata.row_groups().iter().enumerate() {
        for column in group.columns() {
            let start = column.dictionary_page_offset().unwrap_or(column.data_page_offset());
            let size = column.compressed_size();
            let inside = start >= 0 && size >= 0 && (start as u64).checked_add(size as u64).is_some_and(|end| end <= len);
            if !inside {
                return Err(PipelineError::format(
                    path,
                    format!(
                        "damaged Parquet footer: row group {g}, column {} claims bytes {start}..+{size} of a {len}-byte file",
                        column.column_path()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Reads clips.parquet back into records (all columns, all rows).
/// The split's clips.parquet, checked against its index.json: one row per
/// clip, in clip-id order, each pointing at a clip its shard holds. A
/// disagreement is an error naming both files.
pub fn read_split_clips(split_dir: &Path, index: &ClipIndex) -> Result<Vec<ClipRecord>> {
    let table = split_dir.join(CLIPS_TABLE_FILE);
    if let Some(expected) = &index.clips_table_sha256 {
        super::format::check_sha256(&table, expected, &split_dir.join(INDEX_FILE))?;
    }
    let records = read_clips_table(&table)?;
    disagreement(&records, index).map_or(Ok(records), |what| {
        Err(PipelineError::format(
            &table,
            format!("disagrees with {}: {what}", split_dir.join(INDEX_FILE).display()),
        ))
    })
}

/// How clips.parquet's rows disagree with the index, if they do.
pub fn disagreement(records: &[ClipRecord], index: &ClipIndex) -> Option<String> {
    if records.len() as u64 != index.num_clips {
        return Some(format!(
            "{} rows, the index lists {} clips",
            records.len(),
            index.num_clips
        ));
    }
    for (i, r) in records.iter().enumerate() {
        if r.clip_id != i as u64 {
            return Some(format!("row {i} has clip id {}, expected {i}", r.clip_id));
        }
        let in_shard = index
            .shards
            .get(r.shard as usize)
            .is_some_and(|s| (r.index_in_shard as usize) < s.clips);
        if !in_shard {
            return Some(format!(
                "row {i} points at clip {} of shard {}, which the index does not have",
                r.index_in_shard, r.shard
            ));
        }
    }
    None
}

pub fn read_clips_table(path: &Path) -> Result<Vec<ClipRecord>> {
    let reader = read_parquet_batches(path)?;
    let missing = |name: &str| {
        PipelineError::format(
            path,
            format!("column `{name}` missing or of the wrong type"),
        )
    };
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        let u64col = |n: &str| {
            batch
                .column_by_name(n)
                .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                .ok_or_else(|| missing(n))
        };
        let u32col = |n: &str| {
            batch
                .column_by_name(n)
                .and_then(|c| c.as_primitive_opt::<UInt32Type>())
                .ok_or_else(|| missing(n))
        };
        let (clip_id, video) = (u64col("clip_id")?, u64col("video")?);
        let (shard, index_in_shard, start) = (
            u32col("shard")?,
            u32col("index_in_shard")?,
            u32col("start_frame")?,
        );
        let source = batch
            .column_by_name("source")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| missing("source"))?;
        let label = batch
            .column_by_name("label")
            .and_then(|c| c.as_primitive_opt::<Int32Type>());
        let text = batch
            .column_by_name("text")
            .and_then(|c| c.as_string_opt::<i32>());
        let decode_errors = match batch.column_by_name("decode_errors") {
            None => None,
            Some(_) => Some(u32col("decode_errors")?),
        };
        let actions = checked_actions(&batch, path)?;
        for i in 0..batch.num_rows() {
            let actions = actions.and_then(|a| actions_row(a, i));
            out.push(ClipRecord {
                clip_id: clip_id.value(i),
                shard: shard.value(i),
                index_in_shard: index_in_shard.value(i),
                video: video.value(i),
                source: source.value(i).to_owned(),
                start_frame: start.value(i),
                label: label.filter(|l| l.is_valid(i)).map(|l| l.value(i)),
                text: text
                    .filter(|t| t.is_valid(i))
                    .map(|t| t.value(i).to_owned()),
                actions,
                decode_errors: decode_errors.map_or(0, |d| d.value(i)),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every conditioning column, actions of `dim` values per frame.
    fn actions(dim: usize) -> Conditioning {
        Conditioning { label: true, text: true, action_dim: Some(dim) }
    }

    fn record(i: u64, actions: Option<Vec<f32>>) -> ClipRecord {
        ClipRecord {
            clip_id: i,
            shard: (i / 2) as u32,
            index_in_shard: (i % 2) as u32,
            video: i,
            source: format!("v{i}.avi"),
            start_frame: 3,
            label: Some(i as i32),
            text: (i == 1).then(|| "a cat".to_string()),
            actions,
            decode_errors: (i == 2) as u32 * 7,
        }
    }

    #[test]
    fn records_round_trip_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clips.parquet");
        let records = vec![
            record(0, Some(vec![0.5, 1.0, 2.0, 3.0, 4.0, 5.0])),
            record(1, Some(vec![9.0, 8.0, 7.0, 6.0, 5.0, 4.0])),
            record(2, None),
        ];
        write_clips_table(&path, "train", &records, actions(2)).unwrap();
        assert_eq!(read_clips_table(&path).unwrap(), records);
    }

    #[test]
    fn action_values_must_fill_whole_vectors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clips.parquet");
        let err = write_clips_table(&path, "train", &[record(0, Some(vec![1.0; 5]))], actions(2)).unwrap_err();
        assert!(err.to_string().contains("multiple of 2"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn an_actions_column_of_another_type_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clips.parquet");
        let base = to_batch("train", &[record(0, None), record(1, None)], Conditioning::default()).unwrap();
        // Ragged: list<list<float32>> where list<fixed_size_list<float32, D>> belongs.
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let inner = ListArray::new(item.clone(), OffsetBuffer::from_lengths([1, 2, 3]), Arc::new(Float32Array::from(vec![1.0; 6])), None);
        let inner_field = Arc::new(Field::new("item", DataType::List(item), true));
        let actions = ListArray::new(inner_field.clone(), OffsetBuffer::from_lengths([1, 2]), Arc::new(inner), None);
        let mut fields: Vec<Field> = base.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("actions", DataType::List(inner_field), true));
        let mut columns = base.columns().to_vec();
        columns.push(Arc::new(actions));
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let mut writer = ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let e = read_clips_table(&path).unwrap_err().to_string();
        assert!(e.contains("column `actions`") && e.contains("clips.parquet"), "{e}");
    }
}

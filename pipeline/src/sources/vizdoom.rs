//! ViZDoom gameplay recorded by `just collect vizdoom`
//! (`pipeline/scripts/collect_vizdoom.py`, the real engine from PyPI
//! `vizdoom`):
//!
//! ```text
//! <raw>/episodes/<scenario>/episode-NNNNN.mkv   lossless FFV1 video, one per episode
//! <raw>/actions.parquet                          episode (path under <raw>), frame, action
//! <raw>/collection.json                          scenarios, seed, resolution, policy, buttons
//! ```
//!
//! `action` is the button vector (0/1 per button of `collection.json`'s
//! `buttons`) chosen at that frame; it becomes the clips' `actions`. Episodes
//! are split by a [`HashSplit`] on their path (10% test by default).

use crate::shards::metadata::Conditioning;
use std::collections::HashMap;
use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::{Float32Type, Int32Type};

use super::video_files::{HashSplit, VideoFile, VideoFiles};
use crate::error::{PipelineError, Result};
use crate::shards::Reject;
use crate::shards::metadata::read_parquet_batches;
use crate::video::DecodeOptions;

pub const ACTIONS_FILE: &str = "actions.parquet";
pub const COLLECTION_FILE: &str = "collection.json";

/// Per episode (its path under raw), the actions `[frames, D]`, and `D`.
pub struct ActionTable {
    pub dim: usize,
    pub episodes: Vec<(String, Vec<f32>)>,
}

/// Reads actions.parquet; frames of each episode must run 0, 1, 2, ...
pub fn read_actions(path: &Path) -> Result<ActionTable> {
    let reader = read_parquet_batches(path)?;
    let bad = |what: String| PipelineError::format(path, what);
    let mut order: Vec<String> = Vec::new();
    let mut rows: HashMap<String, (usize, Vec<f32>)> = HashMap::new();
    let mut dim = None;
    for batch in reader {
        let batch = batch?;
        let episode = batch
            .column_by_name("episode")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| bad("column `episode` (string) missing".into()))?;
        let frame = batch
            .column_by_name("frame")
            .and_then(|c| c.as_primitive_opt::<Int32Type>())
            .ok_or_else(|| bad("column `frame` (int32) missing".into()))?;
        let action = batch
            .column_by_name("action")
            .and_then(|c| c.as_fixed_size_list_opt())
            .ok_or_else(|| bad("column `action` (fixed_size_list<float32>) missing".into()))?;
        let d = action.value_length() as usize;
        if *dim.get_or_insert(d) != d {
            return Err(bad("`action` changes length between row groups".into()));
        }
        let values = action
            .values()
            .as_primitive_opt::<Float32Type>()
            .ok_or_else(|| bad("`action` values are not float32".into()))?;
        for i in 0..batch.num_rows() {
            let name = episode.value(i);
            let entry = rows.entry(name.to_owned()).or_insert_with(|| {
                order.push(name.to_owned());
                (0, Vec::new())
            });
            if frame.value(i) as usize != entry.0 {
                return Err(bad(format!(
                    "episode {name}: frame {} where {} was expected (frames must run 0, 1, 2, ...)",
                    frame.value(i),
                    entry.0
                )));
            }
            entry.0 += 1;
            let at = action.value_offset_at(i);
            entry.1.extend_from_slice(&values.values()[at..at + d]);
        }
    }
    let dim = dim.ok_or_else(|| bad("has no rows".into()))?;
    let episodes = order
        .into_iter()
        .map(|name| {
            let (_, a) = rows.remove(&name).expect("listed");
            (name, a)
        })
        .collect();
    Ok(ActionTable { dim, episodes })
}

/// The recorded episodes of `split` ("train" or "test").
pub fn open(
    raw: &Path,
    split: &str,
    test_percent: u32,
    options: DecodeOptions,
) -> Result<VideoFiles> {
    let members = HashSplit::new("ViZDoom recordings", split, test_percent)?;
    let actions_path = raw.join(ACTIONS_FILE);
    if !actions_path.is_file() {
        return Err(PipelineError::format(
            &actions_path,
            "not found; record gameplay first with `just collect vizdoom`",
        ));
    }
    let table = read_actions(&actions_path)?;
    let collection: serde_json::Value = {
        let p = raw.join(COLLECTION_FILE);
        match std::fs::read_to_string(&p) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| PipelineError::format(&p, format!("not valid JSON: {e}")))?,
            Err(_) => serde_json::Value::Null,
        }
    };
    let mut files = Vec::new();
    let mut rejects = Vec::new();
    for (episode, actions) in table.episodes {
        if !members.contains(&episode) {
            continue;
        }
        let path = crate::names::join_entry(raw, &episode, &actions_path)?;
        if path.is_file() {
            files.push(VideoFile {
                path,
                label: None,
                text: None,
                actions: Some(actions),
            });
        } else {
            rejects.push(Reject {
                file: episode,
                record: None,
                reason: format!("listed in {ACTIONS_FILE} but its video is missing"),
            });
        }
    }
    let describe = serde_json::json!({
        "kind": "vizdoom",
        "collection": collection,
        "split_rule": "test when SHA-256(episode path)[0..8] as big-endian u64 % 100 < test_percent",
        "test_percent": test_percent,
    });
    Ok(VideoFiles::new(
        "vizdoom",
        split,
        raw,
        options,
        files,
        Conditioning { action_dim: Some(table.dim), ..Conditioning::default() },
        rejects,
        describe,
    ))
}

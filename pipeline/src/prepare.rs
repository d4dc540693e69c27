//! `prepare`: turns a source's videos into the clip shards of one split.
//!
//! Plan: the source lists its videos; videos are grouped `videos_per_shard`
//! at a time, so every shard is an independent unit of work whose contents
//! depend only on the plan (never on thread count or timing). Shards are
//! built in parallel (rayon, across shards and across the videos of a shard),
//! each written atomically and then committed by an atomic sidecar
//! `shard-NNNNN.meta.json` (its clip rows, rejects, checksum). A rerun skips
//! every committed shard of the same plan fingerprint, so `prepare` is
//! resumable after a crash or `kill -9`. The split is finished by writing
//! clips.parquet and, last, index.json.
//!
//! Split over tasks (a job array, MPI ranks: [`TaskSlice`]), task `I` of `N`
//! builds shards `I, I + N, ...`; whichever task finds every shard
//! committed when it is done writes the tables (or `--merge` does, later).
//! The tables come from the sidecars alone, so they are the bytes one
//! process would write.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic::{remove_stale_temps, write_bytes_atomic};
use crate::clip_cutter::ClipCutter;
use crate::clip_sampling::ClipSampling;
use crate::error::{IoContext, PipelineError, Result};
use crate::rng::SplitMix64;
use crate::shards::format::sha256_hex;
use crate::shards::index::{
    CLIPS_TABLE_FILE, FORMAT_NAME, FORMAT_VERSION, INDEX_FILE, VALUE_RANGE_U8,
};
use crate::shards::{
    ClipIndex, ClipRecord, Preprocessing, Reject, ShardBuilder, ShardEntry, compress_clip,
    write_clips_table,
};
use crate::sources::{ClipSource, FrameSpec};
use crate::tasks::TaskSlice;

#[derive(Debug, Clone)]
pub struct PrepareConfig {
    pub sampling: ClipSampling,
    pub seed: u64,
    pub videos_per_shard: usize,
    pub zstd_level: i32,
    /// Replace an existing split prepared with other settings.
    pub overwrite: bool,
    pub progress: bool,
    /// This process's share of the shards.
    pub task: TaskSlice,
    /// Build nothing: write the tables from the shards the tasks committed
    /// (an error naming the missing ones if any are).
    pub merge: bool,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        Self {
            sampling: ClipSampling::default(),
            seed: 0,
            videos_per_shard: 1000,
            zstd_level: 3,
            overwrite: false,
            progress: true,
            task: TaskSlice::WHOLE,
            merge: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PrepareSummary {
    pub dataset: String,
    pub split: String,
    pub dir: PathBuf,
    pub num_videos: usize,
    pub num_clips: u64,
    pub shards_written: usize,
    pub shards_skipped: usize,
    pub raw_bytes: u64,
    pub compressed_bytes: u64,
    pub rejects: Vec<Reject>,
    pub elapsed: Duration,
    /// Shards of other tasks not committed yet: the tables are written once
    /// there are none (then the counts above are the split's; before, this
    /// task's).
    pub shards_pending: usize,
}

impl PrepareSummary {
    pub fn compression_ratio(&self) -> f64 {
        self.raw_bytes as f64 / self.compressed_bytes.max(1) as f64
    }
}

/// The commit record of one finished shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShardSidecar {
    plan_fingerprint: String,
    entry: ShardEntry,
    clips: Vec<ClipRecord>,
    rejects: Vec<Reject>,
}

pub fn shard_file_name(k: usize) -> String {
    format!("shard-{k:05}.clips")
}

fn sidecar_path(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("shard-{k:05}.meta.json"))
}

/// Prepares one split of `source` into `split_dir`.
pub fn prepare_split(
    source: &dyn ClipSource,
    split_dir: &Path,
    config: &PrepareConfig,
) -> Result<PrepareSummary> {
    let started = Instant::now();
    config.sampling.validate().map_err(PipelineError::config)?;
    if !(1..=100_000).contains(&config.videos_per_shard) {
        return Err(PipelineError::config(format!(
            "--videos-per-shard {}: must be 1 to 100000",
            config.videos_per_shard
        )));
    }
    if !(-7..=22).contains(&config.zstd_level) {
        return Err(PipelineError::config(format!(
            "--zstd-level {}: must be -7 to 22",
            config.zstd_level
        )));
    }
    let spec = source.frame_spec();
    let preprocessing = Preprocessing {
        resolution: [spec.shape[0], spec.shape[1]],
        resize: spec.resize.clone(),
        crop: spec.crop.clone(),
        sampling: config.sampling,
        fps: spec.fps,
        seed: config.seed,
        value_range: VALUE_RANGE_U8.into(),
    };
    let videos = source.videos();
    let fingerprint = plan_fingerprint(source, &preprocessing, config);
    std::fs::create_dir_all(split_dir).at(split_dir)?;
    // Other tasks may be writing this folder now: their temporary files are
    // not stale.
    let shared = config.task.is_split() || config.merge;
    if !shared {
        remove_stale_temps(split_dir).at(split_dir)?;
    }
    guard_existing_split(split_dir, &fingerprint, config.overwrite, shared)?;

    let num_shards = videos.len().div_ceil(config.videos_per_shard);
    let ours: Vec<usize> = (0..num_shards).filter(|&k| !config.merge && config.task.owns(k)).collect();
    let our_videos: usize = ours.iter().map(|&k| shard_videos(k, config.videos_per_shard, videos.len()).len()).sum();
    let bar = crate::progress::bar(our_videos as u64, "videos", config.progress);
    let clips_done = AtomicU64::new(0);
    let ctx = ShardContext {
        source,
        spec: &spec,
        split_dir,
        config,
        fingerprint: &fingerprint,
        bar: &bar,
        clips_done: &clips_done,
        started,
    };
    let built: Vec<(ShardSidecar, bool)> = ours
        .par_iter()
        .map(|&k| ctx.finished_or_build(k))
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    // Every shard in order: this task's, then those other tasks committed.
    let mut built = built.into_iter();
    let outcomes: Vec<Option<(ShardSidecar, bool)>> = (0..num_shards)
        .map(|k| match ours.binary_search(&k) {
            Ok(_) => built.next(),
            Err(_) => ctx.committed(k).map(|sidecar| (sidecar, false)),
        })
        .collect();
    let missing: Vec<usize> = (0..num_shards).filter(|&k| outcomes[k].is_none()).collect();
    if !missing.is_empty() {
        if config.merge {
            return Err(PipelineError::format(
                split_dir,
                format!(
                    "{} of {num_shards} shards are not prepared yet ({}); run the prepare tasks that own them first",
                    missing.len(),
                    crate::tasks::first_ten(&missing.iter().map(|&k| shard_file_name(k)).collect::<Vec<_>>())
                ),
            ));
        }
        let mine: Vec<&(ShardSidecar, bool)> = outcomes.iter().flatten().collect();
        return Ok(PrepareSummary {
            dataset: source.dataset().into(),
            split: source.split().into(),
            dir: split_dir.to_owned(),
            num_videos: our_videos,
            num_clips: mine.iter().map(|(s, _)| s.entry.clips as u64).sum(),
            shards_written: mine.iter().filter(|(_, built)| *built).count(),
            shards_skipped: mine.iter().filter(|(_, built)| !*built).count(),
            raw_bytes: mine.iter().map(|(s, _)| s.entry.raw_bytes).sum(),
            compressed_bytes: mine.iter().map(|(s, _)| s.entry.bytes).sum(),
            rejects: mine.iter().flat_map(|(s, _)| s.rejects.iter().cloned()).collect(),
            elapsed: started.elapsed(),
            shards_pending: missing.len(),
        });
    }
    let outcomes: Vec<(ShardSidecar, bool)> = outcomes.into_iter().flatten().collect();

    // Finalise: global clip ids, clips.parquet, then index.json.
    let mut records = Vec::new();
    let mut shards = Vec::with_capacity(num_shards);
    let mut rejects = source.plan_rejects();
    let mut next_id = 0u64;
    for (sidecar, _) in &outcomes {
        let mut entry = sidecar.entry.clone();
        entry.first_clip = next_id;
        for r in &sidecar.clips {
            records.push(ClipRecord {
                clip_id: next_id + r.index_in_shard as u64,
                ..r.clone()
            });
        }
        next_id += entry.clips as u64;
        shards.push(entry);
        rejects.extend(sidecar.rejects.iter().cloned());
    }
    let clips_table = split_dir.join(CLIPS_TABLE_FILE);
    write_clips_table(&clips_table, source.split(), &records, source.conditioning())?;
    let clips_table_sha256 = Some(crate::shards::format::sha256_file(&clips_table)?);
    write_rejects_table(&split_dir.join(REJECTS_TABLE_FILE), &rejects)?;
    let index = ClipIndex {
        format: FORMAT_NAME.into(),
        format_version: FORMAT_VERSION,
        dataset: source.dataset().into(),
        split: source.split().into(),
        clip_shape: [
            config.sampling.seq_len as usize,
            spec.shape[0],
            spec.shape[1],
            spec.shape[2],
        ],
        dtype: "uint8".into(),
        layout: "THWC".into(),
        compression: "zstd".into(),
        zstd_level: config.zstd_level,
        preprocessing,
        source: source.describe(),
        plan_fingerprint: fingerprint,
        num_videos: videos.len(),
        num_clips: next_id,
        shards,
        rejects: rejects.clone(),
        clips_table_sha256,
    };
    index.write(split_dir)?;
    Ok(PrepareSummary {
        dataset: index.dataset,
        split: index.split,
        dir: split_dir.to_owned(),
        num_videos: videos.len(),
        num_clips: next_id,
        shards_written: outcomes.iter().filter(|(_, built)| *built).count(),
        shards_skipped: outcomes.iter().filter(|(_, built)| !*built).count(),
        raw_bytes: index.shards.iter().map(|s| s.raw_bytes).sum(),
        compressed_bytes: index.shards.iter().map(|s| s.bytes).sum(),
        rejects,
        elapsed: started.elapsed(),
        shards_pending: 0,
    })
}

/// The videos of shard `k`: `per_shard` at a time, the last shard the rest.
fn shard_videos(k: usize, per_shard: usize, videos: usize) -> std::ops::Range<usize> {
    k * per_shard..((k + 1) * per_shard).min(videos)
}

/// Name of the per-split rejects table: one line per rejected input.
pub const REJECTS_TABLE_FILE: &str = "rejects.tsv";

/// `file<TAB>record<TAB>reason`, with a header; tabs and newlines inside a
/// field become spaces. Written (atomically) even when empty, so a reader can
/// tell "nothing rejected" from "not prepared".
fn write_rejects_table(path: &Path, rejects: &[Reject]) -> Result<()> {
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    let mut text = String::from("file\trecord\treason\n");
    for r in rejects {
        text += &format!(
            "{}\t{}\t{}\n",
            clean(&r.file),
            r.record.map(|n| n.to_string()).unwrap_or_default(),
            clean(&r.reason)
        );
    }
    write_bytes_atomic(path, text.as_bytes()).at(path)
}

/// SHA-256 over everything that decides the shards' bytes.
fn plan_fingerprint(
    source: &dyn ClipSource,
    preprocessing: &Preprocessing,
    config: &PrepareConfig,
) -> String {
    let videos: Vec<_> = source
        .videos()
        .iter()
        .map(|v| (&v.source, v.label, &v.text))
        .collect();
    let plan = serde_json::json!({
        "format_version": FORMAT_VERSION,
        "dataset": source.dataset(),
        "split": source.split(),
        "source": source.describe(),
        "preprocessing": preprocessing,
        "videos_per_shard": config.videos_per_shard,
        "zstd_level": config.zstd_level,
        "videos": videos,
    });
    let mut h = Sha256::new();
    h.update(plan.to_string().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses to mix shards of different plans in one folder unless asked to
/// overwrite; with `overwrite`, removes the old split's files first. When
/// other tasks may be writing the same folder (`shared`), only the files of
/// the old plan go: its sidecars with their shards, and the tables.
fn guard_existing_split(dir: &Path, fingerprint: &str, overwrite: bool, shared: bool) -> Result<()> {
    // The files `prepare` owns in a split folder.
    let mut ours = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.starts_with("shard-")
            || name == INDEX_FILE
            || name == CLIPS_TABLE_FILE
            || name == REJECTS_TABLE_FILE
        {
            ours.push((path, name));
        }
    }
    let is_stale = |path: &Path| !std::fs::read_to_string(path).is_ok_and(|t| t.contains(fingerprint));
    // Shard pixels and the table are judged through their sidecar / index.
    let stale = ours
        .iter()
        .find(|(path, name)| (name.ends_with(".meta.json") || name == INDEX_FILE) && is_stale(path));
    let Some((_, stale_name)) = stale else {
        return Ok(());
    };
    if !overwrite {
        return Err(PipelineError::format(
            dir,
            format!(
                "holds a split prepared with other settings or inputs ({stale_name} differs); \
                 pass --overwrite to replace it, or choose another --root"
            ),
        ));
    }
    for (path, name) in &ours {
        let remove = match name.strip_suffix(".meta.json") {
            _ if !shared => true,
            Some(_) => is_stale(path),
            // A shard goes with its stale sidecar; one without a sidecar
            // may be another task's, being committed.
            None if name.ends_with(".clips") => {
                let sidecar = dir.join(name.replace(".clips", ".meta.json"));
                sidecar.is_file() && is_stale(&sidecar)
            }
            None => true,
        };
        if remove && path.exists() {
            std::fs::remove_file(path).at(path)?;
        }
    }
    Ok(())
}

struct ShardContext<'a> {
    source: &'a dyn ClipSource,
    spec: &'a FrameSpec,
    split_dir: &'a Path,
    config: &'a PrepareConfig,
    fingerprint: &'a str,
    bar: &'a crate::progress::Progress,
    clips_done: &'a AtomicU64,
    started: Instant,
}

/// One video's contribution to a shard: compressed clips with their rows.
type VideoClips = Result<Vec<(Vec<u8>, ClipRecord)>, Reject>;

impl ShardContext<'_> {
    fn video_range(&self, k: usize) -> std::ops::Range<usize> {
        shard_videos(k, self.config.videos_per_shard, self.source.videos().len())
    }

    fn advance(&self, videos: u64, clips: u64) {
        let done = self.clips_done.fetch_add(clips, Ordering::Relaxed) + clips;
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar.inc(videos);
        self.bar
            .set_message(format!("{done} clips, {rate:.0} clips/s"));
    }

    /// The committed shard `k` if a previous run of the same plan finished
    /// it, else builds it. The bool says whether it was built now.
    fn finished_or_build(&self, k: usize) -> Result<(ShardSidecar, bool)> {
        if let Some(sidecar) = self.committed(k) {
            self.advance(self.video_range(k).len() as u64, sidecar.entry.clips as u64);
            return Ok((sidecar, false));
        }
        Ok((self.build(k)?, true))
    }

    /// Shard `k`'s sidecar if a run of this plan committed it (and its shard
    /// file has the committed size).
    fn committed(&self, k: usize) -> Option<ShardSidecar> {
        let meta = sidecar_path(self.split_dir, k);
        let text = std::fs::read_to_string(&meta).ok()?;
        let sidecar = serde_json::from_str::<ShardSidecar>(&text).ok()?;
        let whole = sidecar.plan_fingerprint == self.fingerprint
            && sidecar.entry.file == shard_file_name(k)
            && std::fs::metadata(self.split_dir.join(&sidecar.entry.file)).is_ok_and(|m| m.len() == sidecar.entry.bytes);
        whole.then_some(sidecar)
    }

    fn build(&self, k: usize) -> Result<ShardSidecar> {
        let per_video: Vec<VideoClips> = self
            .video_range(k)
            .into_par_iter()
            .map(|v| {
                let clips = self.clips_of_video(v);
                self.advance(1, clips.as_ref().map_or(0, |c| c.len() as u64));
                clips
            })
            .collect();
        let mut builder = ShardBuilder::new();
        let mut clips = Vec::new();
        let mut rejects = Vec::new();
        let mut raw_bytes = 0u64;
        let clip_len = self.clip_len() as u64;
        for result in per_video {
            match result {
                Ok(video_clips) => {
                    for (compressed, mut record) in video_clips {
                        record.shard = k as u32;
                        record.index_in_shard = builder.len() as u32;
                        builder.push(&compressed);
                        raw_bytes += clip_len;
                        clips.push(record);
                    }
                }
                Err(reject) => rejects.push(reject),
            }
        }
        let file = shard_file_name(k);
        let bytes = builder.finish();
        let path = self.split_dir.join(&file);
        write_bytes_atomic(&path, &bytes).at(&path)?;
        let entry = ShardEntry {
            file,
            clips: clips.len(),
            first_clip: 0,
            bytes: bytes.len() as u64,
            raw_bytes,
            sha256: sha256_hex(&bytes),
        };
        let sidecar = ShardSidecar {
            plan_fingerprint: self.fingerprint.to_owned(),
            entry,
            clips,
            rejects,
        };
        let meta = sidecar_path(self.split_dir, k);
        write_bytes_atomic(
            &meta,
            &serde_json::to_vec(&sidecar).expect("sidecar serialises"),
        )
        .at(&meta)?;
        Ok(sidecar)
    }

    fn clip_len(&self) -> usize {
        let [h, w, c] = self.spec.shape;
        self.config.sampling.seq_len as usize * h * w * c
    }

    /// Streams video `v` through a [`ClipCutter`], compressing each clip.
    fn clips_of_video(&self, v: usize) -> VideoClips {
        let item = &self.source.videos()[v];
        let reject = |reason: String| Reject {
            file: item.source.clone(),
            record: None,
            reason,
        };
        let sampling = &self.config.sampling;
        let spec = self.spec;
        let frame_len: usize = spec.shape.iter().product();
        let purpose = format!(
            "{}/{}/clip-starts",
            self.source.dataset(),
            self.source.split()
        );
        let rng = SplitMix64::for_item(self.config.seed, &purpose, v as u64);
        let level = self.config.zstd_level;
        let mut compress_error = None;
        let mut cutter = ClipCutter::new(*sampling, frame_len, rng, |raw| {
            compress_clip(&raw, level).unwrap_or_else(|e| {
                compress_error.get_or_insert(e.to_string());
                Vec::new()
            })
        });
        let mut bad_frame = None;
        // Whether the cutter stopped the stream before the video's end.
        let mut stopped = false;
        let streamed = self.source.stream(v, &mut |frame: &[u8]| {
            if frame.len() != frame_len {
                bad_frame = Some(frame.len());
                return false;
            }
            stopped = !cutter.push(frame);
            !stopped
        })?;
        if let Some(len) = bad_frame {
            return Err(reject(format!(
                "decoder returned a frame of {len} bytes, expected {frame_len} ({:?})",
                spec.shape
            )));
        }
        let seen = cutter.frames_seen();
        let clips = cutter.into_clips();
        if let Some(e) = compress_error {
            return Err(reject(format!("zstd compression failed: {e}")));
        }
        if clips.is_empty() {
            return Err(reject(format!(
                "{seen} frames, shorter than one clip ({} frames at stride {})",
                sampling.seq_len, sampling.frame_stride
            )));
        }
        // One action per frame: exactly, when the whole video was streamed;
        // at least, when the cutter stopped it early.
        let actions = match (&streamed.actions, spec.action_dim) {
            (Some(a), Some(d))
                if a.len() < streamed.frames * d
                    || (!stopped && a.len() != streamed.frames * d) =>
            {
                return Err(reject(format!(
                    "{} action values for {} frames of dimension {d}",
                    a.len(),
                    streamed.frames
                )));
            }
            (None, Some(_)) => return Err(reject("actions missing".into())),
            (a, d) => a.as_ref().zip(d),
        };
        Ok(clips
            .into_iter()
            .map(|clip| {
                let actions = actions.map(|(all, d)| {
                    sampling
                        .frame_indices(clip.start)
                        .flat_map(|f| all[f * d..(f + 1) * d].iter().copied())
                        .collect()
                });
                let record = ClipRecord {
                    clip_id: 0,
                    shard: 0,
                    index_in_shard: 0,
                    video: v as u64,
                    source: item.source.clone(),
                    start_frame: clip.start as u32,
                    label: item.label,
                    text: item.text.clone(),
                    actions,
                    decode_errors: streamed.decode_errors,
                };
                (clip.bytes, record)
            })
            .collect())
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip_sampling::StartPolicy;
    use crate::sources::{DecodedVideo, VideoItem};

    /// One 1x1x1 video of `frames` frames with `actions` one-dimensional actions.
    struct WithActions {
        frames: usize,
        actions: usize,
        items: Vec<VideoItem>,
    }

    impl WithActions {
        fn new(frames: usize, actions: usize) -> Self {
            let items = vec![VideoItem {
                source: "v".into(),
                label: None,
                text: None,
            }];
            Self {
                frames,
                actions,
                items,
            }
        }
    }

    impl ClipSource for WithActions {
        fn dataset(&self) -> &str {
            "fake"
        }
        fn split(&self) -> &str {
            "train"
        }
        fn frame_spec(&self) -> FrameSpec {
            FrameSpec {
                shape: [1, 1, 1],
                resize: "none".into(),
                crop: "none".into(),
                fps: None,
                action_dim: Some(1),
            }
        }
        fn videos(&self) -> &[VideoItem] {
            &self.items
        }
        fn decode(&self, _: usize) -> Result<DecodedVideo, Reject> {
            Ok(DecodedVideo {
                frames: (0..self.frames as u8).collect(),
                num_frames: self.frames,
                actions: Some(vec![0.5; self.actions]),
            })
        }
        fn describe(&self) -> serde_json::Value {
            serde_json::json!({})
        }
    }

    fn rejects(source: &WithActions, start: StartPolicy) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let config = PrepareConfig {
            sampling: ClipSampling {
                seq_len: 4,
                frame_stride: 1,
                start,
            },
            progress: false,
            ..Default::default()
        };
        let summary = prepare_split(source, &dir.path().join("split"), &config).unwrap();
        summary.rejects.iter().map(|r| r.reason.clone()).collect()
    }

    #[test]
    fn actions_must_match_the_frames_of_a_whole_video() {
        let all = StartPolicy::Sliding { step: 4 };
        assert!(rejects(&WithActions::new(20, 20), all).is_empty());
        assert_eq!(
            rejects(&WithActions::new(20, 21), all),
            ["21 action values for 20 frames of dimension 1"]
        );
        assert_eq!(
            rejects(&WithActions::new(20, 19), all),
            ["19 action values for 20 frames of dimension 1"]
        );
        // `first` stops after 4 frames: more actions than frames seen is fine.
        assert!(rejects(&WithActions::new(20, 20), StartPolicy::First).is_empty());
    }
}

//! `vgpt-data`: prepare, verify and inspect clip shards; token statistics. Parses arguments
//! and calls into the `videogpt_pipeline` library; nothing else.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use videogpt_pipeline::datasets::dataset_dir;
use videogpt_pipeline::names::check_name;
use videogpt_pipeline::shards::index::find_split_dirs;
use videogpt_pipeline::shards::{ClipIndex, verify_split};
use videogpt_pipeline::sources::ClipSource;
use videogpt_pipeline::sources::bair::{self, Bair};
use videogpt_pipeline::sources::moving_mnist::{self, GeneratorConfig, MnistRaw, MovingMnist};
use videogpt_pipeline::sources::{tgif, ucf101, vizdoom};
use videogpt_pipeline::video::{DamagePolicy, DecodeOptions, ResizeFilter};
use videogpt_pipeline::tokens::{TokenTable, find_table, table_splits, token_stats};
use videogpt_pipeline::{ClipSampling, PrepareConfig, PrepareSummary, StartPolicy, prepare_split};

/// Largest output frame side (the paper's largest is 128).
const MAX_RESOLUTION: u32 = 1024;
/// Most worker threads.
const MAX_THREADS: usize = 1024;
/// Most generated Moving MNIST sequences per split, and frames per sequence.
const MAX_SEQUENCES: usize = 1_000_000;
const MAX_FRAMES: usize = 10_000;

#[derive(Parser)]
#[command(
    name = "vgpt-data",
    version,
    about = "VideoGPT datasets: prepare, verify and inspect clip shards"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Seconds between plain progress lines (position, rate, ETA, loss) when
    /// stderr is not a terminal: a log file, a cluster job, `| tee`.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = videogpt_pipeline::progress::DEFAULT_LOG_EVERY_SECS)]
    progress_every: u64,
}

#[derive(Subcommand)]
enum Command {
    /// Turn a dataset's raw files into clip shards under <root>/<dataset>/clips/<split>.
    Prepare {
        #[command(subcommand)]
        dataset: Dataset,
    },
    /// Re-check every shard's size and SHA-256 against index.json; name the bad ones.
    Verify {
        /// A split folder, a dataset's clips folder, or a dataset name under --root.
        target: String,
        /// Data root: holds <dataset>/clips and <dataset>/tokens.
        #[arg(long, default_value = "datasets")]
        root: PathBuf,
        /// Also decompress every clip (checks each zstd frame's checksum).
        #[arg(long)]
        deep: bool,
    },
    /// Print a prepared split's manifest summary.
    Info {
        /// A dataset name under --root, a dataset folder, its clips folder or one split folder.
        target: String,
        /// Data root: holds <dataset>/clips and <dataset>/tokens.
        #[arg(long, default_value = "datasets")]
        root: PathBuf,
    },
    /// Write one clip's pixels as a NumPy .npy file (uint8 [T, H, W, C]).
    Clip {
        /// A prepared split folder (datasets/<dataset>/clips/<split>).
        split: PathBuf,
        /// The clip id (its row in clips.parquet).
        clip: u64,
        /// The .npy file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Token statistics of a dataset's token table (polars): code usage,
    /// entropy, perplexity, dead codes, entropy per position, per label.
    Stats {
        /// Dataset name under --root (as prepared: e.g. moving-mnist, bair, ucf101-64, tgif, vizdoom).
        dataset: String,
        /// Data root: holds <dataset>/clips and <dataset>/tokens.
        #[arg(long, default_value = "datasets")]
        root: PathBuf,
        /// Table name under <root>/<dataset>/tokens (default: the newest).
        #[arg(long)]
        table: Option<String>,
        /// Splits to summarise (default: all in the table).
        #[arg(long, value_delimiter = ',')]
        splits: Vec<String>,
        /// How many of the most used codes to list.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
}

#[derive(Subcommand)]
enum Dataset {
    /// Moving MNIST from mnist_test_seq.npy, or generated from real MNIST digits.
    MovingMnist(MovingMnistArgs),
    /// BAIR robot pushing from softmotion30_44k/{train,test}/*.tfrecords.
    Bair(BairArgs),
    /// UCF-101 from UCF-101/<Class>/*.avi and ucfTrainTestlist/ (decoded with FFmpeg).
    Ucf101(Ucf101Args),
    /// TGIF from tgif-v1.0.tsv and the downloaded GIFs (decoded with FFmpeg).
    Tgif(TgifArgs),
    /// ViZDoom episodes recorded by `just collect vizdoom` (videos + actions.parquet).
    Vizdoom(VizdoomArgs),
}

/// How compressed video is decoded, resized and cropped.
#[derive(Args)]
struct VideoArgs {
    /// Output frames are RESOLUTION x RESOLUTION: the shorter side is resized to it, then center-cropped.
    #[arg(long, default_value_t = 64)]
    resolution: u32,
    /// Resize filter (swscale): bilinear (the reference's), bicubic or area.
    #[arg(long, default_value = "bilinear")]
    resize: ResizeFilter,
    /// Lower the frame rate to this many frames per second by dropping frames.
    #[arg(long)]
    fps: Option<f64>,
    /// A video FFmpeg reports damage in (errors it concealed, corrupt frames): reject lists it in
    /// rejects.tsv; keep prepares it and counts the reports in clips.parquet's decode_errors.
    #[arg(long, default_value = "reject")]
    on_damage: DamagePolicy,
}

impl VideoArgs {
    fn options(&self) -> Result<DecodeOptions> {
        if !(8..=MAX_RESOLUTION).contains(&self.resolution) {
            bail!("--resolution {}: must be 8 to {MAX_RESOLUTION}", self.resolution);
        }
        if let Some(fps) = self.fps
            && !(fps > 0.0 && fps.is_finite())
        {
            bail!("--fps {fps}: must be a positive number");
        }
        Ok(DecodeOptions {
            resolution: self.resolution,
            filter: self.resize,
            fps: self.fps,
            threads: 1,
            on_damage: self.on_damage,
        })
    }
}

#[derive(Args)]
struct Ucf101Args {
    /// Folder holding UCF-101/ and ucfTrainTestlist/; default <root>/ucf101/raw.
    raw: Option<PathBuf>,
    /// Which of the three official train/test splits (trainlistNN.txt / testlistNN.txt).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=3))]
    split_number: u32,
    #[command(flatten)]
    video: VideoArgs,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct TgifArgs {
    /// Folder holding tgif-v1.0.tsv and the GIFs (in gifs/ or beside it); default <root>/tgif/raw.
    raw: Option<PathBuf>,
    /// Share of GIFs in the test split, by a hash of the file name.
    #[arg(long, default_value_t = 10)]
    test_percent: u32,
    #[command(flatten)]
    video: VideoArgs,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct VizdoomArgs {
    /// Folder written by `just collect vizdoom`; default <root>/vizdoom/raw.
    raw: Option<PathBuf>,
    /// Share of episodes in the test split, by a hash of the episode path.
    #[arg(long, default_value_t = 10)]
    test_percent: u32,
    /// Output frames are RESOLUTION x RESOLUTION (shorter side resized, center crop).
    #[arg(long, default_value_t = 64)]
    resolution: u32,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct CommonArgs {
    /// Data root holding <dataset>/raw and <dataset>/clips.
    #[arg(long, default_value = "datasets")]
    root: PathBuf,
    /// Splits to prepare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "train,test")]
    splits: Vec<String>,
    /// Frames per clip.
    #[arg(long, default_value_t = 16)]
    seq_len: u32,
    /// Take every N-th source frame.
    #[arg(long, default_value_t = 1)]
    frame_stride: u32,
    /// Clip starts per video: first, all, random[:N], sliding:STEP.
    #[arg(long, default_value = "random:1")]
    start: StartPolicy,
    /// Seed of every random choice (same seed, same shards).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Source videos per shard (default depends on the dataset).
    #[arg(long)]
    videos_per_shard: Option<usize>,
    /// zstd level of the clip shards (default 3; 1 for decoded video).
    #[arg(long)]
    zstd_level: Option<i32>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Replace a split prepared with other settings.
    #[arg(long)]
    overwrite: bool,
    /// No progress: neither the bar on a terminal nor the periodic lines in a log.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    tasks: videogpt_pipeline::tasks::TaskArgs,
}

#[derive(Args)]
struct MovingMnistArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Raw folder (default <root>/moving-mnist/raw).
    #[arg(long)]
    raw: Option<PathBuf>,
    /// Generated sequences in the train split.
    #[arg(long, default_value_t = 10_000)]
    train_sequences: usize,
    /// Generated sequences in the test split.
    #[arg(long, default_value_t = 1_000)]
    test_sequences: usize,
    /// Frames per generated sequence.
    #[arg(long, default_value_t = 20)]
    frames: usize,
    /// With mnist_test_seq.npy: how many of its last sequences form the test split.
    #[arg(long, default_value_t = 1_000)]
    npy_test_sequences: usize,
}

#[derive(Args)]
struct BairArgs {
    /// Folder holding softmotion30_44k/ (or train/ and test/); default <root>/bair/raw.
    raw: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

impl CommonArgs {
    /// Decoded video (UCF-101, TGIF, ViZDoom) defaults to zstd level 1: it
    /// compresses within 2% of level 3 (`just bench`) and keeps prepare at the
    /// decoder's speed.
    fn config(&self, default_videos_per_shard: usize, default_zstd_level: i32) -> Result<PrepareConfig> {
        Ok(PrepareConfig {
            sampling: ClipSampling {
                seq_len: self.seq_len,
                frame_stride: self.frame_stride,
                start: self.start,
            },
            seed: self.seed,
            videos_per_shard: self.videos_per_shard.unwrap_or(default_videos_per_shard),
            zstd_level: self.zstd_level.unwrap_or(default_zstd_level),
            overwrite: self.overwrite,
            progress: !self.no_progress,
            task: self.tasks.slice()?,
            merge: self.tasks.merge,
        })
    }

    fn split_dir(&self, dataset: &str, split: &str) -> PathBuf {
        self.root.join(dataset).join("clips").join(split)
    }
}

fn main() -> ExitCode {
    videogpt_pipeline::cli::main_with(|| run(videogpt_pipeline::cli::parse_args()))
}

fn run(cli: Cli) -> Result<ExitCode> {
    videogpt_pipeline::progress::set_log_every(cli.progress_every);
    match cli.command {
        Command::Prepare { dataset } => {
            let common = match &dataset {
                Dataset::MovingMnist(a) => &a.common,
                Dataset::Bair(a) => &a.common,
                Dataset::Ucf101(a) => &a.common,
                Dataset::Tgif(a) => &a.common,
                Dataset::Vizdoom(a) => &a.common,
            };
            // Split names become folders under <root>/<dataset>/clips.
            for split in &common.splits {
                check_name("--splits", split)?;
            }
            if let Some(n) = common.threads {
                if !(1..=MAX_THREADS).contains(&n) {
                    bail!("--threads {n}: must be 1 to {MAX_THREADS}");
                }
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build_global()
                    .context("--threads")?;
            }
            let summaries = match &dataset {
                Dataset::MovingMnist(a) => prepare_moving_mnist(a)?,
                Dataset::Bair(a) => prepare_bair(a)?,
                Dataset::Ucf101(a) => prepare_ucf101(a)?,
                Dataset::Tgif(a) => prepare_tgif(a)?,
                Dataset::Vizdoom(a) => prepare_vizdoom(a)?,
            };
            // The dataset card lists every prepared split and token table.
            let complete = summaries.iter().all(|s| s.shards_pending == 0);
            if let Some(dataset_dir) = summaries.first().and_then(|s| s.dir.parent()).and_then(Path::parent).filter(|_| complete) {
                videogpt_pipeline::card::write_dataset_card(dataset_dir)?;
            }
            report(&summaries)
        }
        Command::Verify { target, root, deep } => {
            let mut bad = 0;
            for dir in find_split_dirs(&target, &root)? {
                let report = verify_split(&dir, deep)?;
                for p in &report.problems {
                    println!("CORRUPT {}: {}", dir.join(&p.file).display(), p.what);
                }
                let verdict = if report.ok() { "ok" } else { "FAILED" };
                println!(
                    "{verdict}: {} ({} shards, {} clips, {} problems)",
                    dir.display(),
                    report.shards_checked,
                    report.clips_checked,
                    report.problems.len()
                );
                bad += report.problems.len();
            }
            Ok(if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Stats {
            dataset,
            root,
            table,
            splits,
            top,
        } => {
            for split in &splits {
                check_name("--splits", split)?;
            }
            let table = find_table(&dataset_dir(&root, &dataset)?.join("tokens"), table.as_deref())?;
            let splits = if splits.is_empty() { table_splits(&table)? } else { splits };
            for split in splits {
                let split_table = TokenTable::open_split(&table, &split)?;
                let stats = token_stats(&split_table, top)?;
                print!("{}", stats.report());
                let json = videogpt_pipeline::tokens::layout::stats_path(split_table.dir());
                videogpt_pipeline::atomic::write_bytes_atomic(
                    &json,
                    &serde_json::to_vec_pretty(&stats).expect("stats serialise"),
                )
                .with_context(|| format!("writing {}", json.display()))?;
                println!("  written to {}", json.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Clip { split, clip, out } => {
            let shards = videogpt_pipeline::shards::ClipShards::open(&split)?;
            let pixels = shards.clip(clip)?;
            videogpt_pipeline::testing::write_npy_u8(&out, &shards.clip_shape(), &pixels)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Info { target, root } => {
            for dir in find_split_dirs(&target, &root)? {
                println!("{}: {}", dir.display(), ClipIndex::read(&dir)?.summary());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn prepare_moving_mnist(a: &MovingMnistArgs) -> Result<Vec<PrepareSummary>> {
    let raw_dir = a
        .raw
        .clone()
        .unwrap_or_else(|| a.common.root.join("moving-mnist/raw"));
    let raw = moving_mnist::discover(&raw_dir)?;
    let config = a.common.config(1000, 3)?;
    let span = config.sampling.span();
    if !matches!(raw, MnistRaw::Npy(_)) && a.frames < span {
        bail!(
            "--frames {} is shorter than one clip ({span} frames for --seq-len {} at --frame-stride {})",
            a.frames,
            a.common.seq_len,
            a.common.frame_stride
        );
    }
    let mut out: Vec<SplitSource> = Vec::new();
    for split in &a.common.splits {
        let source = match &raw {
            MnistRaw::Npy(path) => MovingMnist::from_npy(path, split, a.npy_test_sequences)?,
            digits => {
                let (sequences, flag) = if split == "test" {
                    (a.test_sequences, "--test-sequences")
                } else {
                    (a.train_sequences, "--train-sequences")
                };
                if !(1..=MAX_SEQUENCES).contains(&sequences) {
                    bail!("{flag} {sequences}: must be 1 to {MAX_SEQUENCES}");
                }
                if a.frames > MAX_FRAMES {
                    bail!("--frames {}: at most {MAX_FRAMES}", a.frames);
                }
                let generator = GeneratorConfig {
                    sequences,
                    frames: a.frames,
                    ..Default::default()
                };
                MovingMnist::generated(digits, split, generator, config.seed)?
            }
        };
        out.push(split_source(source, a.common.split_dir("moving-mnist", split)));
    }
    run_splits(out, &config)
}

fn prepare_bair(a: &BairArgs) -> Result<Vec<PrepareSummary>> {
    let raw = a
        .raw
        .clone()
        .unwrap_or_else(|| a.common.root.join("bair/raw"));
    let config = a.common.config(256, 3)?;
    let mut out: Vec<SplitSource> = Vec::new();
    for split in &a.common.splits {
        let source = Bair::open(&bair::find_split_dir(&raw, split)?, split)?;
        out.push(split_source(source, a.common.split_dir("bair", split)));
    }
    run_splits(out, &config)
}

fn prepare_ucf101(a: &Ucf101Args) -> Result<Vec<PrepareSummary>> {
    let raw = a.raw.clone().unwrap_or_else(|| a.common.root.join("ucf101/raw"));
    let layout = ucf101::discover(&raw)?;
    let options = a.video.options()?;
    let config = a.common.config(64, 1)?;
    let mut out: Vec<SplitSource> = Vec::new();
    for split in &a.common.splits {
        let source = ucf101::open(&layout, split, a.split_number, options.clone())?;
        // `ucf101-64` / `ucf101-128`: the VQ-VAE presets of the same names.
        let dir = a.common.split_dir(&format!("ucf101-{}", a.video.resolution), split);
        out.push(split_source(source, dir));
    }
    run_splits(out, &config)
}

fn prepare_tgif(a: &TgifArgs) -> Result<Vec<PrepareSummary>> {
    let raw = a.raw.clone().unwrap_or_else(|| a.common.root.join("tgif/raw"));
    let options = a.video.options()?;
    let config = a.common.config(256, 1)?;
    let mut out: Vec<SplitSource> = Vec::new();
    for split in &a.common.splits {
        let source = tgif::open(&raw, split, a.test_percent, options.clone())?;
        // `tgif` at the paper's 64 (the VQ-VAE preset's name), `tgif-R` otherwise.
        let name = match a.video.resolution {
            64 => "tgif".to_owned(),
            r => format!("tgif-{r}"),
        };
        let dir = a.common.split_dir(&name, split);
        out.push(split_source(source, dir));
    }
    run_splits(out, &config)
}

fn prepare_vizdoom(a: &VizdoomArgs) -> Result<Vec<PrepareSummary>> {
    let raw = a.raw.clone().unwrap_or_else(|| a.common.root.join("vizdoom/raw"));
    let options = VideoArgs {
        resolution: a.resolution,
        resize: ResizeFilter::Bilinear,
        fps: None,
        on_damage: DamagePolicy::Reject,
    }
    .options()?;
    let config = a.common.config(32, 1)?;
    let mut out: Vec<SplitSource> = Vec::new();
    for split in &a.common.splits {
        let source = vizdoom::open(&raw, split, a.test_percent, options.clone())?;
        out.push(split_source(source, a.common.split_dir("vizdoom", split)));
    }
    run_splits(out, &config)
}

/// One split to prepare: its source and its folder.
type SplitSource<'a> = (Box<dyn ClipSource + 'a>, PathBuf);

fn split_source<'a>(source: impl ClipSource + 'a, dir: PathBuf) -> SplitSource<'a> {
    (Box::new(source), dir)
}

/// Prepares each split. As one of several tasks, then looks again at the
/// splits whose other shards were not all committed: its own are now, and
/// the task that finishes last finds every split complete and writes their
/// tables (and, after, the dataset card).
fn run_splits(splits: Vec<SplitSource<'_>>, config: &PrepareConfig) -> Result<Vec<PrepareSummary>> {
    let mut out = Vec::new();
    for (source, dir) in &splits {
        out.push(run_split(source.as_ref(), dir, config)?);
    }
    for (summary, (source, dir)) in out.iter_mut().zip(&splits) {
        if summary.shards_pending > 0 {
            let again = prepare_split(source.as_ref(), dir, config)?;
            if again.shards_pending == 0 {
                // The whole split's numbers; the shards this task built.
                *summary = PrepareSummary {
                    shards_written: summary.shards_written,
                    shards_skipped: again.shards_skipped - summary.shards_written,
                    elapsed: summary.elapsed + again.elapsed,
                    ..again
                };
            }
        }
    }
    Ok(out)
}

fn run_split(
    source: &dyn ClipSource,
    dir: &Path,
    config: &PrepareConfig,
) -> Result<PrepareSummary> {
    tracing::info!(
        dataset = source.dataset(),
        split = source.split(),
        videos = source.videos().len(),
        "preparing {}",
        dir.display()
    );
    Ok(prepare_split(source, dir, config)?)
}

fn report(summaries: &[PrepareSummary]) -> Result<ExitCode> {
    println!(
        "{:<14} {:<6} {:>8} {:>9} {:>14} {:>10} {:>10} {:>7} {:>9} {:>8}",
        "dataset",
        "split",
        "videos",
        "clips",
        "shards new/old",
        "raw MB",
        "zstd MB",
        "ratio",
        "clips/s",
        "rejects"
    );
    let mut rejects = 0;
    for s in summaries {
        println!(
            "{:<14} {:<6} {:>8} {:>9} {:>14} {:>10.1} {:>10.1} {:>6.1}x {:>9.0} {:>8}",
            s.dataset,
            s.split,
            s.num_videos,
            s.num_clips,
            format!("{}/{}", s.shards_written, s.shards_skipped),
            s.raw_bytes as f64 / 1e6,
            s.compressed_bytes as f64 / 1e6,
            s.compression_ratio(),
            s.num_clips as f64 / s.elapsed.as_secs_f64().max(1e-9),
            s.rejects.len()
        );
        rejects += s.rejects.len();
    }
    for s in summaries {
        if s.shards_pending > 0 {
            println!(
                "wrote this task's shards of {}; {} shards of other tasks to come (the last task to finish, or --merge, writes the tables)",
                s.dir.display(),
                s.shards_pending
            );
            continue;
        }
        println!("wrote {}", s.dir.display());
        for r in &s.rejects {
            eprintln!("{}", videogpt_pipeline::cli::short_line(&format!("rejected: {r}")));
        }
    }
    if rejects > 0 {
        eprintln!(
            "error: {rejects} inputs rejected (listed above and in each split's rejects.tsv); the rest was prepared"
        );
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

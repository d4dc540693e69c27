//! `vgpt`: train and evaluate VideoGPT models. Parses arguments and calls
//! into the `videogpt_model` library; nothing else. Most of its length is the
//! documented options of its seven subcommands, which `--help` prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use videogpt_model::backend::BackendKind;
use videogpt_model::encode::{EncodeOptions, encode_latents};
use videogpt_model::checkpoint::newest_run;
use videogpt_model::eval::eval_split_and_write;
use videogpt_model::fvd::protocol::clip_set;
use videogpt_model::fvd::{Distance, FvdOptions, compute_fvd};
use videogpt_model::patches::write_code_patches;
use videogpt_model::prior::generate::{GenerateOptions, generate, read_actions};
use videogpt_model::ops::{KvPrecision, Precision};
use videogpt_model::run_config::apply_precision;
use videogpt_model::prior::sample::SampleOptions;
use videogpt_model::prior::train::{Conditioning, PriorOverrides, PriorTrainOptions, prior_setup, train_prior};
use videogpt_model::schedule::LrSchedule;
use videogpt_model::train::{RunMode, TrainOptions, VqVaeOverrides, dataset_splits, default_run_dir, model_config, train_vqvae};

#[derive(Parser)]
#[command(name = "vgpt", version = version_line(), about = "VideoGPT: train the VQ-VAE, encode token tables, train the prior, sample")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Seconds between plain progress lines (position, rate, ETA, loss) when
    /// stderr is not a terminal: a log file, a cluster job, `| tee`.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = videogpt_pipeline::progress::DEFAULT_LOG_EVERY_SECS)]
    progress_every: u64,
    /// Compute threads of this process (default: the cores, shared among the
    /// ranks on this node when `mpirun`/`srun` started several).
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=MAX_THREADS as i64))]
    threads: Option<u16>,
}

/// The most compute threads one process may ask for.
const MAX_THREADS: u16 = 1024;

#[derive(Subcommand)]
enum Command {
    /// Train the VQ-VAE on a prepared dataset's clip shards.
    TrainVqvae {
        /// Dataset name under --root (its clips/train split is used).
        dataset: String,
        /// Architecture preset: bair, ucf101-64, ucf101-128, tgif, vizdoom,
        /// moving-mnist, tiny. Default: the dataset's own preset.
        preset: Option<String>,
        /// Data root: holds <dataset>/clips and <dataset>/tokens.
        #[arg(long, default_value = "datasets")]
        root: PathBuf,
        /// Run folder (default runs/vqvae-<dataset>-<preset>).
        #[arg(long)]
        run: Option<PathBuf>,
        /// Clips per batch.
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        /// Train until this step (a resumed run continues to it).
        #[arg(long, default_value_t = 10_000)]
        steps: u64,
        /// Peak learning rate (Adam).
        #[arg(long, default_value_t = 3e-4)]
        lr: f64,
        /// Learning-rate schedule over --steps: constant (the reference) or cosine.
        #[arg(long, default_value = "constant")]
        lr_schedule: LrSchedule,
        /// Linear warm-up steps.
        #[arg(long, default_value_t = 0)]
        warmup: u64,
        /// Seed of every random choice (initialisation, data order, code restarts).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write a checkpoint every N steps (and at the end).
        #[arg(long, default_value_t = 1000)]
        checkpoint_every: u64,
        /// Append a line to metrics.jsonl every N steps.
        #[arg(long, default_value_t = 10)]
        log_every: u64,
        /// flex (CPU, default) or wgpu (GPU; lavapipe without one).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
        /// Products' arithmetic: f32, or bf16 operands with f32 sums (AMX or
        /// AVX-512-BF16 on the CPU; f32 where the CPU has neither). Recorded in
        /// the run; a resumed run keeps its own unless given. Default f32.
        #[arg(long)]
        precision: Option<Precision>,
        /// Continue the run from its latest checkpoint.
        #[arg(long)]
        resume: bool,
        /// Drop axial attention from the residual blocks (the paper's ablation).
        #[arg(long)]
        no_attention: bool,
        /// Override the preset's codebook size.
        #[arg(long)]
        codes: Option<usize>,
        /// Override the preset's hidden width.
        #[arg(long)]
        hidden: Option<usize>,
        /// Override the preset's downsampling per axis, T,H,W (powers of two), e.g. 2,2,2.
        #[arg(long, value_delimiter = ',')]
        downsample: Option<Vec<usize>>,
        /// No progress: neither the bar on a terminal nor the periodic lines in a log.
        #[arg(long)]
        no_progress: bool,
    },
    /// NMSE and codebook usage of a trained VQ-VAE on a split.
    EvalVqvae {
        /// A run folder (its latest checkpoint) or a checkpoint folder.
        checkpoint: PathBuf,
        /// Split to evaluate, next to the training split.
        #[arg(long, default_value = "test")]
        split: String,
        /// Clips per batch.
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// Evaluate only the first N clips.
        #[arg(long)]
        max_clips: Option<u64>,
        /// flex (CPU, default) or wgpu (GPU; lavapipe without one).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
        /// No progress: neither the bar on a terminal nor the periodic lines in a log.
        #[arg(long)]
        no_progress: bool,
    },
    /// Train the GPT prior on a dataset's token tables.
    TrainPrior {
        /// Dataset name under --root (as prepared: e.g. moving-mnist, bair, ucf101-64, tgif, vizdoom).
        dataset: String,
        /// Architecture: bair, vizdoom, ucf101, tgif, moving-mnist, reference-bench, tiny
        /// (default: the dataset's own).
        preset: Option<String>,
        /// Data root: holds <dataset>/clips and <dataset>/tokens.
        #[arg(long, default_value = "datasets")]
        root: PathBuf,
        /// Token table name under <root>/<dataset>/tokens (default: the newest).
        #[arg(long)]
        table: Option<String>,
        /// Run folder (default runs/prior-<dataset>-<preset>).
        #[arg(long)]
        run: Option<PathBuf>,
        /// none, class (the `label` column), action (the `actions` column) or
        /// frames (the `frames` column: `encode-latents --context-frames K`).
        #[arg(long, default_value = "none")]
        condition: Conditioning,
        /// Width of the frame encoder (--condition frames; default 240 as
        /// the reference, 64 for the tiny and moving-mnist presets).
        #[arg(long)]
        frame_width: Option<usize>,
        /// Embed tokens with the VQ-VAE's frozen codebook (as the reference) instead of a learned table.
        #[arg(long)]
        codebook_embedding: bool,
        /// Override the preset's width.
        #[arg(long)]
        hidden: Option<usize>,
        /// Override the preset's number of layers.
        #[arg(long)]
        layers: Option<usize>,
        /// Override the preset's number of attention heads.
        #[arg(long)]
        heads: Option<usize>,
        /// Override the preset's dropout.
        #[arg(long)]
        dropout: Option<f64>,
        /// Override the preset's attention dropout.
        #[arg(long)]
        attention_dropout: Option<f64>,
        /// Clips per batch.
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        /// Train until this step (a resumed run continues to it).
        #[arg(long, default_value_t = 10_000)]
        steps: u64,
        /// Peak learning rate (Adam).
        #[arg(long, default_value_t = 3e-4)]
        lr: f64,
        /// Linear warm-up steps.
        #[arg(long, default_value_t = 200)]
        warmup: u64,
        /// Seed of every random choice (initialisation, data order, dropout).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write a checkpoint every N steps (and at the end).
        #[arg(long, default_value_t = 1000)]
        checkpoint_every: u64,
        /// Append a line to metrics.jsonl every N steps.
        #[arg(long, default_value_t = 10)]
        log_every: u64,
        /// Test bits/dim every N steps (and at the end).
        #[arg(long, default_value_t = 500)]
        eval_every: u64,
        /// Test clips per evaluation.
        #[arg(long, default_value_t = 256)]
        eval_clips: usize,
        /// flex (CPU, default) or wgpu (GPU; lavapipe without one).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
        /// Products' arithmetic: f32, or bf16 operands with f32 sums (AMX or
        /// AVX-512-BF16 on the CPU; f32 where the CPU has neither). Recorded in
        /// the run; a resumed run keeps its own unless given. Default f32.
        #[arg(long)]
        precision: Option<Precision>,
        /// Continue the run folder from its latest checkpoint.
        #[arg(long)]
        resume: bool,
        /// No progress: neither the bar on a terminal nor the periodic lines in a log.
        #[arg(long)]
        no_progress: bool,
    },
    /// Sample videos from a trained prior (KV cache), decode them with its VQ-VAE.
    Sample {
        /// Prior run or checkpoint folder.
        prior: PathBuf,
        /// Samples to draw (the GIF, PNG and MP4 show the first 16; all go to clips/ for vgpt fvd).
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Divide the logits by this before drawing (1 = the model's distribution).
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
        /// Draw from the k most likely codes only.
        #[arg(long)]
        top_k: Option<usize>,
        /// Draw from the smallest set of codes whose probability reaches p (nucleus).
        #[arg(long)]
        top_p: Option<f64>,
        /// Seed of the draws; each sample row has its own stream (seed, row).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// How the CPU keeps cached keys and values: f16 (half the memory
        /// traffic, logits within about 1e-3) or f32 (exact).
        #[arg(long, default_value_t = KvPrecision::F16)]
        kv_cache: KvPrecision,
        /// Class of the samples (class-conditional priors).
        #[arg(long)]
        label: Option<i32>,
        /// JSON file with the flattened T x D actions (action-conditional priors).
        #[arg(long)]
        actions: Option<PathBuf>,
        /// Frame-conditioned priors: take the conditioning frames of this clip
        /// id of the token table's --context-split (default: the split's first
        /// `--batch` clips, one per sample).
        #[arg(long)]
        context_clip: Option<u64>,
        /// Token-table split the conditioning frames come from (--condition frames priors).
        #[arg(long, default_value = "test")]
        context_split: String,
        /// VQ-VAE checkpoint (default: the one named in the token tables).
        #[arg(long)]
        vqvae: Option<PathBuf>,
        /// Instead of the prior, draw every token independently from the code
        /// frequencies of its train tokens: the floor that sample FVD is judged against.
        #[arg(long)]
        unigram: bool,
        /// Output folder (default <prior run>/samples/seed-<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Skip the MP4 (it needs the ffmpeg command).
        #[arg(long)]
        no_mp4: bool,
        /// flex (CPU, default) or wgpu (GPU; lavapipe without one).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
        /// Products' arithmetic: f32, or bf16 operands with f32 sums (AMX or
        /// AVX-512-BF16 on the CPU; f32 where the CPU has neither).
        #[arg(long, default_value_t = Precision::F32)]
        precision: Precision,
        /// No progress: neither the bar on a terminal nor the periodic lines in a log.
        #[arg(long)]
        no_progress: bool,
    },
    /// Fréchet Video Distance with the Kinetics-400 I3D: FVD of generated
    /// clips against real ones; with --vqvae also R-FVD (real against their
    /// reconstructions) and FVD* (generated against reconstructions).
    Fvd {
        /// Real clips: a clip-shard split folder, or a dataset name under
        /// --root (its test split).
        real: PathBuf,
        /// Generated clips: a `vgpt sample` output folder or a split folder.
        /// Optional with --vqvae (then only R-FVD).
        generated: Option<PathBuf>,
        /// Data root: holds <dataset>/clips and <dataset>/tokens.
        #[arg(long, default_value = "datasets")]
        root: PathBuf,
        /// Clips drawn from each set per trial (paper: 256; later work 2048).
        #[arg(long, default_value_t = 256)]
        clips: usize,
        /// Independent draws of --clips clips (paper: 1); mean and std are reported.
        #[arg(long, default_value_t = 1)]
        trials: usize,
        /// Seed of the clips each trial draws (trial k uses seed + k).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// VQ-VAE checkpoint or run folder: adds R-FVD and FVD*.
        #[arg(long)]
        vqvae: Option<PathBuf>,
        /// A second generated set (e.g. a `vgpt sample --unigram` folder) scored
        /// against the same real clips in the same run: its FVD is the baseline.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Clips per I3D forward pass.
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        /// The converted I3D weights (./setup.sh makes them).
        #[arg(long, default_value = videogpt_model::fvd::weights::DEFAULT_WEIGHTS)]
        i3d: PathBuf,
        /// Also write the report here (JSON).
        #[arg(long)]
        out: Option<PathBuf>,
        /// flex (CPU, default) or wgpu (GPU; lavapipe without one).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
        /// Products' arithmetic: f32, or bf16 operands with f32 sums (AMX or
        /// AVX-512-BF16 on the CPU; f32 where the CPU has neither).
        #[arg(long, default_value_t = Precision::F32)]
        precision: Precision,
        /// No progress: neither the bar on a terminal nor the periodic lines in a log.
        #[arg(long)]
        no_progress: bool,
    },
    /// Draw what each code decodes to (PNG, one tile per code).
    CodePatches {
        /// Checkpoint or run folder.
        checkpoint: PathBuf,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
        /// Only the first N codes.
        #[arg(long)]
        codes: Option<usize>,
        /// flex (CPU, default) or wgpu (GPU; lavapipe without one).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
        /// No progress: neither the bar on a terminal nor the periodic lines in a log.
        #[arg(long)]
        no_progress: bool,
    },
    /// Encode every clip of a dataset with a VQ-VAE checkpoint into token
    /// tables under <root>/<dataset>/tokens/<run>-<step>/<split>.
    EncodeLatents {
        /// Dataset name under --root (as prepared: e.g. moving-mnist, bair, ucf101-64, tgif, vizdoom).
        dataset: String,
        /// Checkpoint or run folder (default: the newest runs/vqvae-<dataset>-*).
        checkpoint: Option<PathBuf>,
        /// Data root: holds <dataset>/clips and <dataset>/tokens.
        #[arg(long, default_value = "datasets")]
        root: PathBuf,
        /// Splits to encode, comma-separated (default: every prepared split).
        #[arg(long, value_delimiter = ',')]
        splits: Vec<String>,
        /// Clips per batch.
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// Clips per Parquet part file.
        #[arg(long, default_value_t = videogpt_pipeline::tokens::ROWS_PER_PART)]
        rows_per_part: usize,
        /// flex (CPU, default) or wgpu (GPU; lavapipe without one).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
        /// Products' arithmetic: f32, or bf16 operands with f32 sums (AMX or
        /// AVX-512-BF16 on the CPU; f32 where the CPU has neither).
        #[arg(long, default_value_t = Precision::F32)]
        precision: Precision,
        /// Replace a table of the same name written by other weights.
        #[arg(long)]
        overwrite: bool,
        /// Also keep the first K frames of every clip (a `frames` column) for
        /// frame-conditioned priors; the table is named `<...>-context-K`.
        #[arg(long, default_value_t = 0)]
        context_frames: usize,
        /// No progress: neither the bar on a terminal nor the periodic lines in a log.
        #[arg(long)]
        no_progress: bool,
        #[command(flatten)]
        tasks: videogpt_pipeline::tasks::TaskArgs,
    },
}

/// `vgpt --version`: the version and the CPU path `--precision bf16` takes.
fn version_line() -> &'static str {
    let bf16 = match videogpt_model::ops::cpu_path() {
        videogpt_model::ops::CpuPath::F32 => "f32 (no AMX or AVX-512-BF16 in use)".to_string(),
        path => path.to_string(),
    };
    Box::leak(format!("{} (CPU products: --precision bf16 runs on {bf16})", env!("CARGO_PKG_VERSION")).into_boxed_str())
}

/// The folder under `root` of the dataset the user named (`ucf101` finds
/// the one prepared `ucf101-64`), and its name.
fn prepared_dataset(root: &Path, dataset: &str) -> Result<(String, PathBuf)> {
    let dir = videogpt_pipeline::datasets::dataset_dir(root, dataset)?;
    let name = dir.file_name().map_or_else(|| dataset.to_string(), |n| n.to_string_lossy().into_owned());
    Ok((name, dir))
}

/// The prior preset named like the dataset: `ucf101-64` trains `ucf101`'s.
fn default_prior_preset(dataset: &str) -> String {
    let presets = videogpt_model::prior::PRIOR_PRESETS;
    if presets.contains(&dataset) {
        return dataset.to_string();
    }
    match dataset.rsplit_once('-') {
        Some((base, res)) if res.chars().all(|c| c.is_ascii_digit()) && presets.contains(&base) => base.to_string(),
        _ => dataset.to_string(),
    }
}

fn main() -> ExitCode {
    let launched = videogpt_model::distributed::launch::launched();
    // Ranks other than 0 log warnings and errors only, unless RUST_LOG says
    // otherwise: rank 0 speaks for the job.
    if launched.as_ref().is_some_and(|l| l.rank != 0) && std::env::var_os("RUST_LOG").is_none() {
        // SAFETY: no other thread exists yet to read the environment.
        unsafe { std::env::set_var("RUST_LOG", "warn") };
    }
    videogpt_model::backend::keep_default_device_on_cpu();
    videogpt_model::ops::tune_allocator();
    videogpt_pipeline::cli::main_with(|| {
        let cli: Cli = videogpt_pipeline::cli::parse_args();
        // MPI first: the default thread count depends on the ranks per node.
        let mpi = videogpt_model::distributed::init()?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cli
            .threads
            .map_or_else(|| videogpt_model::distributed::launch::default_threads(cores, launched.as_ref()), usize::from);
        videogpt_model::ops::make_calling_thread_a_worker_of(Some(threads));
        let result = run(cli);
        let ranks = videogpt_model::distributed::world();
        if let (Err(e), true) = (&result, ranks.size() > 1) {
            // One failing rank ends them all, so none waits for it; one
            // write, so the ranks' lines do not interleave.
            let line = format!("error (rank {} of {}): {}\n", ranks.rank(), ranks.size(), videogpt_pipeline::cli::error_line(e));
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
            ranks.abort(1);
        }
        drop(mpi);
        result
    })
}

/// Whether this process prints results: rank 0, or a process on its own.
fn lead() -> bool {
    videogpt_model::distributed::world().rank() == 0
}

fn run(cli: Cli) -> Result<ExitCode> {
    videogpt_pipeline::progress::set_log_every(cli.progress_every);
    let ranks = videogpt_model::distributed::world().size();
    let shared = matches!(
        cli.command,
        Command::TrainVqvae { .. } | Command::TrainPrior { .. } | Command::EncodeLatents { .. }
    );
    if ranks > 1 && !shared {
        anyhow::bail!(
            "started as {ranks} ranks, but only train-vqvae and train-prior (data-parallel) and encode-latents (a task per rank) share work; run this command as one process (without mpirun/srun)"
        );
    }
    match cli.command {
        Command::TrainVqvae {
            dataset,
            preset,
            root,
            run,
            batch_size,
            steps,
            lr,
            lr_schedule,
            warmup,
            seed,
            checkpoint_every,
            log_every,
            backend,
            precision,
            resume,
            no_attention,
            codes,
            hidden,
            downsample,
            no_progress,
        } => {
            let (dataset, _) = prepared_dataset(&root, &dataset)?;
            let preset = preset.unwrap_or_else(|| dataset.clone());
            let overrides = VqVaeOverrides { no_attention, codes, hidden, downsample };
            let model = model_config(&preset, &overrides)?;
            let (train_split, test_split) = dataset_splits(&root, &dataset)?;
            let run = run.unwrap_or_else(|| default_run_dir(&dataset, &preset, no_attention));
            let options = TrainOptions {
                preview_split: test_split,
                batch_size,
                steps,
                learning_rate: lr,
                lr_schedule,
                warmup_steps: warmup,
                seed,
                checkpoint_every,
                log_every,
                backend,
                precision,
                ..TrainOptions::new(train_split, &preset)
            };
            let mode = if resume { RunMode::Resume } else { RunMode::Fresh };
            let summary = train_vqvae(&run, model, options, mode, !no_progress)?;
            if !lead() {
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(m) = &summary.last {
                println!(
                    "step {}: loss {:.4}, train NMSE {:.4}, perplexity {:.1}, {} codes in the last batch",
                    m.step, m.loss, m.nmse, m.perplexity, m.codes_used
                );
            }
            println!("{:.2} steps/s", summary.steps_per_second);
            println!("checkpoint: {}", summary.checkpoint.display());
            println!("log: {}", summary.run.join("metrics.jsonl").display());
            println!("previews: {}", summary.run.join("previews").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::EvalVqvae {
            checkpoint,
            split,
            batch_size,
            max_clips,
            backend,
            no_progress,
        } => {
            let (report, out) = eval_split_and_write(&checkpoint, &split, batch_size, max_clips, backend, !no_progress)?;
            println!(
                "{} clips of {}: NMSE {:.4} (MSE {:.5}, variance {:.5}); codebook perplexity {:.1}, {}/{} codes used",
                report.clips,
                report.split.display(),
                report.nmse,
                report.mse,
                report.data_variance,
                report.perplexity,
                report.codes_used,
                report.codes
            );
            println!("report: {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::TrainPrior {
            dataset,
            preset,
            root,
            table,
            run,
            condition,
            frame_width,
            codebook_embedding,
            hidden,
            layers,
            heads,
            dropout,
            attention_dropout,
            batch_size,
            steps,
            lr,
            warmup,
            seed,
            checkpoint_every,
            log_every,
            eval_every,
            eval_clips,
            backend,
            precision,
            resume,
            no_progress,
        } => {
            let (dataset, dataset_dir) = prepared_dataset(&root, &dataset)?;
            let preset = preset.unwrap_or_else(|| default_prior_preset(&dataset));
            let overrides = PriorOverrides {
                hidden,
                layers,
                heads,
                dropout,
                attention_dropout,
                frame_width,
                codebook_embedding,
            };
            let setup = prior_setup(&dataset_dir.join("tokens"), table.as_deref(), &preset, condition, &overrides, backend)?;
            let run = run.unwrap_or_else(|| PathBuf::from("runs").join(format!("prior-{dataset}-{preset}")));
            let options = PriorTrainOptions {
                conditioning: condition,
                batch_size,
                steps,
                learning_rate: lr,
                warmup_steps: warmup,
                seed,
                checkpoint_every,
                log_every,
                eval_every,
                eval_clips,
                backend,
                precision,
                ..PriorTrainOptions::new(setup.table.clone(), &preset)
            };
            let unigram = setup.unigram_bits;
            let summary = train_prior(&run, setup.model, options, setup.codebook, resume, !no_progress)?;
            if !lead() {
                return Ok(ExitCode::SUCCESS);
            }
            if let Some(m) = &summary.last {
                println!("step {}: train {:.4} bits/dim", m.step, m.bits_per_dim);
                if let Some(test) = m.test_bits_per_dim {
                    println!(
                        "test {test:.4} bits/dim; unigram entropy of the train tokens {unigram:.4} bits ({:.1}% below it)",
                        100.0 * (1.0 - test / unigram)
                    );
                }
            }
            println!("{:.2} steps/s", summary.steps_per_second);
            println!("checkpoint: {}", summary.checkpoint.display());
            println!("log: {}", summary.run.join("metrics.jsonl").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Sample {
            prior,
            batch,
            temperature,
            top_k,
            top_p,
            seed,
            kv_cache,
            label,
            actions,
            context_clip,
            context_split,
            vqvae,
            unigram,
            out,
            no_mp4,
            backend,
            precision,
            no_progress,
        } => {
            apply_precision(Some(precision), None);
            let actions = actions.as_deref().map(read_actions).transpose()?;
            let out = out.unwrap_or_else(|| prior.join("samples").join(format!("seed-{seed}")));
            let options = GenerateOptions {
                batch,
                sample: SampleOptions { temperature, top_k, top_p, seed, kv_cache },
                label,
                actions,
                context_clip,
                context_split,
                vqvae,
                unigram,
                out,
                mp4: !no_mp4,
                backend,
                progress: !no_progress,
            };
            let summary = generate(&prior, &options)?;
            println!(
                "{} samples, {} tokens in {:.1} s: {:.0} tokens/s",
                summary.samples, summary.tokens, summary.sampling_seconds, summary.tokens_per_second
            );
            println!("png: {}", summary.png.display());
            if let Some(mp4) = &summary.mp4 {
                println!("mp4: {}", mp4.display());
            }
            println!("gif: {}", summary.gif.display());
            println!("clips (for vgpt fvd): {}", summary.clips.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Fvd {
            real,
            generated,
            root,
            clips,
            trials,
            seed,
            vqvae,
            baseline,
            batch_size,
            i3d,
            out,
            backend,
            precision,
            no_progress,
        } => {
            apply_precision(Some(precision), None);
            let real = clip_set(&real, &root)?;
            let generated = generated.map(|g| clip_set(&g, &root)).transpose()?;
            let baseline = baseline.map(|g| clip_set(&g, &root)).transpose()?;
            let options = FvdOptions {
                clips,
                trials,
                seed,
                batch_size,
                weights: i3d,
                vqvae,
                baseline,
                backend,
                progress: !no_progress,
            };
            let report = compute_fvd(&real, generated.as_deref(), &options)?;
            let show = |name: &str, d: &Option<Distance>| {
                if let Some(d) = d {
                    println!("{name:6} {:.2} ± {:.2} ({} trial(s): {:?})", d.mean, d.std, d.trials.len(), d.trials.iter().map(|v| (v * 100.0).round() / 100.0).collect::<Vec<_>>());
                }
            };
            println!(
                "{} clips per set, real {}{}",
                report.clips,
                report.real.display(),
                report.generated.as_ref().map(|g| format!(", generated {}", g.display())).unwrap_or_default()
            );
            show("FVD", &report.fvd);
            show("R-FVD", &report.r_fvd);
            show("FVD*", &report.fvd_star);
            show("baseline", &report.fvd_baseline);
            println!(
                "{} clips through I3D in {:.1} s ({:.2} clips/s)",
                report.clips_embedded,
                report.seconds,
                report.clips_embedded as f64 / report.seconds.max(1e-9)
            );
            if let Some(out) = out {
                videogpt_pipeline::atomic::write_bytes_atomic(&out, &serde_json::to_vec_pretty(&report)?)
                    .with_context(|| out.display().to_string())?;
                println!("report: {}", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::CodePatches {
            checkpoint,
            out,
            codes,
            backend,
            no_progress,
        } => {
            let [h, w] = write_code_patches(&checkpoint, &out, codes, backend, !no_progress)?;
            println!("{h}x{w} patch per code: {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::EncodeLatents {
            dataset,
            checkpoint,
            root,
            splits,
            batch_size,
            rows_per_part,
            backend,
            precision,
            overwrite,
            context_frames,
            no_progress,
            tasks,
        } => {
            apply_precision(Some(precision), None);
            let (dataset, dataset_dir) = prepared_dataset(&root, &dataset)?;
            let checkpoint = match checkpoint {
                Some(c) => c,
                None => {
                    let run = newest_run(Path::new("runs"), &format!("vqvae-{dataset}-"))?;
                    println!("checkpoint: newest run {}", run.display());
                    run
                }
            };
            let options = EncodeOptions {
                splits,
                batch_size,
                backend,
                rows_per_part,
                overwrite,
                context_frames,
                progress: !no_progress,
                task: tasks.slice()?,
                merge: tasks.merge,
            };
            let started = std::time::Instant::now();
            let summaries = encode_latents(
                &checkpoint,
                &dataset_dir.join("clips"),
                &dataset_dir.join("tokens"),
                &options,
            )?;
            for s in &summaries {
                if s.parts_pending > 0 {
                    println!(
                        "{}: this task's parts written ({} clips now); {} of {} parts to come from other tasks (the last to finish, or --merge, writes the manifest)",
                        s.split, s.encoded, s.parts_pending, s.parts
                    );
                    continue;
                }
                println!(
                    "{}: {} clips ({} encoded now) in {} parts, {:.2} MB, {:.1} s -> {}",
                    s.split,
                    s.clips,
                    s.encoded,
                    s.parts,
                    s.bytes as f64 / 1e6,
                    s.seconds,
                    s.table.display()
                );
            }
            println!("done in {:.1} s", started.elapsed().as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
    }
}

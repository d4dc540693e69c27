//! `vgpt`: train and evaluate VideoGPT models. Parses arguments and calls
//! into the `videogpt_model` library; nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use videogpt_model::backend::BackendKind;
use videogpt_model::eval::eval_vqvae;
use videogpt_model::train::{RunMode, TrainOptions, train_vqvae};
use videogpt_model::vqvae::{PRESETS, VqVaeConfig};

#[derive(Parser)]
#[command(name = "vgpt", version, about = "VideoGPT: train and evaluate the VQ-VAE")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the VQ-VAE on a prepared dataset's clip shards.
    TrainVqvae {
        /// Dataset name under --root (its clips/train split is used).
        dataset: String,
        /// Architecture preset: bair, ucf101-64, ucf101-128, tgif, vizdoom,
        /// moving-mnist, tiny. Default: the dataset's own preset.
        preset: Option<String>,
        #[arg(long, default_value = "datasets")]
        root: PathBuf,
        /// Run folder (default runs/vqvae-<dataset>-<preset>).
        #[arg(long)]
        run: Option<PathBuf>,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        #[arg(long, default_value_t = 10_000)]
        steps: u64,
        #[arg(long, default_value_t = 3e-4)]
        lr: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 1000)]
        checkpoint_every: u64,
        #[arg(long, default_value_t = 10)]
        log_every: u64,
        /// flex (CPU, default) or wgpu (GPU; lavapipe without one).
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
        /// Continue the run from its latest checkpoint.
        #[arg(long)]
        resume: bool,
        /// Drop axial attention from the residual blocks (the paper's ablation).
        #[arg(long)]
        no_attention: bool,
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
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// Evaluate only the first N clips.
        #[arg(long)]
        max_clips: Option<u64>,
        #[arg(long, default_value = "flex")]
        backend: BackendKind,
        #[arg(long)]
        no_progress: bool,
    },
}

fn main() -> ExitCode {
    videogpt_pipeline::cli::main_with(|| run(Cli::parse()))
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::TrainVqvae {
            dataset,
            preset,
            root,
            run,
            batch_size,
            steps,
            lr,
            seed,
            checkpoint_every,
            log_every,
            backend,
            resume,
            no_attention,
            no_progress,
        } => {
            let preset = preset.unwrap_or_else(|| dataset.clone());
            let Some(mut model) = VqVaeConfig::preset(&preset) else {
                bail!("unknown preset `{preset}`; expected one of {}", PRESETS.join(", "));
            };
            if no_attention {
                model = model.with_attention(false);
            }
            if batch_size == 0 {
                bail!("--batch-size must be at least 1");
            }
            let clips = root.join(&dataset).join("clips");
            let train_split = clips.join("train");
            if !train_split.join("index.json").is_file() {
                bail!(
                    "{} has no prepared clips (run `just prepare {dataset}` first)",
                    train_split.display()
                );
            }
            let test_split = clips.join("test");
            let suffix = if no_attention { "-no-attention" } else { "" };
            let run = run.unwrap_or_else(|| {
                PathBuf::from("runs").join(format!("vqvae-{dataset}-{preset}{suffix}"))
            });
            let options = TrainOptions {
                preview_split: test_split.join("index.json").is_file().then_some(test_split),
                batch_size,
                steps,
                learning_rate: lr,
                seed,
                checkpoint_every,
                log_every,
                backend,
                ..TrainOptions::new(train_split, &preset)
            };
            let mode = if resume { RunMode::Resume } else { RunMode::Fresh };
            let summary = train_vqvae(&run, model, options, mode, !no_progress)?;
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
            if batch_size == 0 {
                bail!("--batch-size must be at least 1");
            }
            let resolved = videogpt_model::checkpoint::resolve(&checkpoint)?;
            let config: videogpt_model::checkpoint::VqVaeRunConfig =
                videogpt_model::checkpoint::read_json(&resolved.join("config.json"))?;
            let split_dir = config
                .train
                .train_split
                .parent()
                .context("training split has no parent folder")?
                .join(&split);
            let report = eval_vqvae(&resolved, &split_dir, batch_size, max_clips, backend, !no_progress)?;
            println!(
                "{} clips of {}: NMSE {:.4} (MSE {:.5}, variance {:.5}); codebook perplexity {:.1}, {}/{} codes used",
                report.clips,
                split_dir.display(),
                report.nmse,
                report.mse,
                report.data_variance,
                report.perplexity,
                report.codes_used,
                report.codes
            );
            let run_dir = resolved
                .parent()
                .and_then(|p| p.parent())
                .map(PathBuf::from)
                .unwrap_or_else(|| resolved.clone());
            let out = run_dir.join(format!("eval-{split}.json"));
            videogpt_pipeline::atomic::write_bytes_atomic(
                &out,
                &serde_json::to_vec_pretty(&report)?,
            )
            .with_context(|| out.display().to_string())?;
            println!("report: {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

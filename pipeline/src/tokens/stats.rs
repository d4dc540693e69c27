//! Token statistics with polars over a split's token table: the code-usage
//! histogram, unigram entropy (bits/token) and perplexity, dead codes, the
//! most used codes, entropy per position of the latent grid (and per time
//! step), and a per-label breakdown when the table has labels.
//!
//! polars does the scanning, exploding and counting (a group-by over
//! (position, code) and (label, code)); the entropies are computed here from
//! those counts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::reader::TokenTable;
use crate::error::{PipelineError, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeShare {
    pub code: u16,
    pub count: u64,
    /// Fraction of all tokens.
    pub share: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelStats {
    pub label: i32,
    pub clips: u64,
    pub entropy_bits: f64,
    pub codes_used: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenStats {
    pub table: PathBuf,
    pub dataset: String,
    pub split: String,
    pub clips: u64,
    pub latent_grid: [usize; 3],
    pub codebook_size: usize,
    pub tokens: u64,
    /// Tokens per code, indexed by code.
    pub code_counts: Vec<u64>,
    /// Unigram entropy of the codes, bits/token.
    pub entropy_bits: f64,
    /// 2^entropy.
    pub perplexity: f64,
    pub codes_used: usize,
    /// Codes never used in this split.
    pub dead_codes: usize,
    pub top_codes: Vec<CodeShare>,
    /// Entropy of the code at each grid position, (t, h, w) raster order.
    pub entropy_per_position: Vec<f64>,
    /// Mean of `entropy_per_position` over each time step.
    pub entropy_per_time: Vec<f64>,
    pub per_label: Option<Vec<LabelStats>>,
}

/// Entropy in bits of a histogram.
pub fn entropy_bits(counts: impl IntoIterator<Item = u64> + Clone) -> f64 {
    let total: u64 = counts.clone().into_iter().sum();
    if total == 0 {
        return 0.0;
    }
    let total = total as f64;
    counts
        .into_iter()
        .filter(|&n| n > 0)
        .map(|n| {
            let p = n as f64 / total;
            -p * p.log2()
        })
        .sum()
}

fn polars_err(dir: &Path) -> impl Fn(PolarsError) -> PipelineError + '_ {
    move |e| PipelineError::format(dir, format!("polars: {e}"))
}

/// Computes the statistics of one split's table; `top` codes are listed.
pub fn token_stats(table: &TokenTable, top: usize) -> Result<TokenStats> {
    let dir = table.dir();
    let err = polars_err(dir);
    let meta = table.meta();
    let per_clip = meta.tokens_per_clip();
    // The checks train-prior applies, so both accept the same tables; then
    // polars reads exactly the parts the manifest lists.
    table.validate()?;
    let parts = table
        .manifest()
        .parts
        .iter()
        .map(|p| PlRefPath::new(dir.join(&p.file).to_string_lossy().into_owned()))
        .collect();
    let args = ScanArgsParquet {
        glob: false,
        ..ScanArgsParquet::default()
    };
    let scan = LazyFrame::scan_parquet_files(parts, args).map_err(&err)?;
    let schema = scan.clone().collect_schema().map_err(&err)?;
    let has_label = schema.get("label").is_some();

    // One row per token: its code and position in the grid.
    let explode = ExplodeOptions {
        empty_as_null: false,
        keep_nulls: false,
    };
    // `tokens` is a list per axis (version 2) or one flat list (version 1).
    let mut depth = 0;
    let mut item = schema.get("tokens");
    while let Some(DataType::Array(inner, _) | DataType::List(inner)) = item {
        depth += 1;
        item = Some(inner.as_ref());
    }
    let list_type = (0..depth).fold(DataType::UInt16, |t, _| DataType::List(Box::new(t)));
    let mut columns = vec![col("tokens").cast(list_type).alias("code")];
    if has_label {
        columns.push(col("label"));
    }
    let mut long = scan.select(columns);
    for _ in 0..depth {
        long = long.explode(cols(["code"]), explode.clone());
    }
    let long = long
        .with_row_index("i", None)
        .with_column((col("i") % lit(per_clip as IdxSize)).alias("pos"));

    let by_position = long
        .clone()
        .group_by([col("pos"), col("code")])
        .agg([len().alias("n")])
        .collect()
        .map_err(&err)?;
    let pos = by_position.column("pos").and_then(|c| c.idx()).map_err(&err)?;
    let code = by_position.column("code").and_then(|c| c.u16()).map_err(&err)?;
    let n = by_position.column("n").and_then(|c| c.idx()).map_err(&err)?;
    let mut code_counts = vec![0u64; meta.codebook_size];
    let mut position_counts: Vec<BTreeMap<u16, u64>> = vec![BTreeMap::new(); per_clip];
    for ((p, c), n) in pos
        .into_no_null_iter()
        .zip(code.into_no_null_iter())
        .zip(n.into_no_null_iter())
    {
        let (p, c, n) = (p as usize, c, n as u64);
        if c as usize >= meta.codebook_size || p >= per_clip {
            return Err(PipelineError::format(
                dir,
                format!("token {c} at position {p} is outside the codebook of {}", meta.codebook_size),
            ));
        }
        code_counts[c as usize] += n;
        position_counts[p].insert(c, n);
    }
    let tokens: u64 = code_counts.iter().sum();
    let entropy = entropy_bits(code_counts.iter().copied());
    let entropy_per_position: Vec<f64> = position_counts
        .iter()
        .map(|m| entropy_bits(m.values().copied()))
        .collect();
    let per_frame = per_clip / meta.latent_grid[0].max(1);
    let entropy_per_time = entropy_per_position
        .chunks(per_frame.max(1))
        .map(|c| c.iter().sum::<f64>() / c.len() as f64)
        .collect();
    let mut ranked: Vec<(u16, u64)> = code_counts
        .iter()
        .enumerate()
        .map(|(c, &n)| (c as u16, n))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let top_codes = ranked
        .iter()
        .take(top)
        .filter(|(_, n)| *n > 0)
        .map(|&(code, count)| CodeShare {
            code,
            count,
            share: count as f64 / tokens.max(1) as f64,
        })
        .collect();

    let per_label = if has_label {
        let by_label = long
            .filter(col("label").is_not_null())
            .group_by([col("label"), col("code")])
            .agg([len().alias("n")])
            .collect()
            .map_err(&err)?;
        let label = by_label.column("label").and_then(|c| c.i32()).map_err(&err)?;
        let n = by_label.column("n").and_then(|c| c.idx()).map_err(&err)?;
        let mut hist: BTreeMap<i32, Vec<u64>> = BTreeMap::new();
        for (l, n) in label.into_no_null_iter().zip(n.into_no_null_iter()) {
            hist.entry(l).or_default().push(n as u64);
        }
        Some(
            hist.into_iter()
                .map(|(label, counts)| LabelStats {
                    label,
                    clips: counts.iter().sum::<u64>() / per_clip as u64,
                    entropy_bits: entropy_bits(counts.iter().copied()),
                    codes_used: counts.len(),
                })
                .collect(),
        )
    } else {
        None
    };

    let codes_used = code_counts.iter().filter(|&&n| n > 0).count();
    Ok(TokenStats {
        table: dir.to_path_buf(),
        dataset: meta.dataset.clone(),
        split: meta.split.clone(),
        clips: tokens / per_clip as u64,
        latent_grid: meta.latent_grid,
        codebook_size: meta.codebook_size,
        tokens,
        entropy_bits: entropy,
        perplexity: entropy.exp2(),
        codes_used,
        dead_codes: meta.codebook_size - codes_used,
        code_counts,
        top_codes,
        entropy_per_position,
        entropy_per_time,
        per_label,
    })
}

impl TokenStats {
    /// The printed table of `vgpt-data stats`.
    pub fn report(&self) -> String {
        let s = self;
        let mut out = format!(
            "{} / {} ({})\n  clips {:>10}   grid {:?} = {} tokens/clip   codebook {}\n  entropy {:.3} bits/token   perplexity {:.1}   codes used {}   dead {}\n",
            s.dataset,
            s.split,
            s.table.display(),
            s.clips,
            s.latent_grid,
            s.latent_grid.iter().product::<usize>(),
            s.codebook_size,
            s.entropy_bits,
            s.perplexity,
            s.codes_used,
            s.dead_codes
        );
        let per_time: Vec<String> = s.entropy_per_time.iter().map(|e| format!("{e:.2}")).collect();
        out += &format!("  entropy per time step (bits): {}\n", per_time.join(" "));
        out += "  top codes:  code     count   share\n";
        for c in &s.top_codes {
            out += &format!("            {:>5} {:>9} {:>6.2}%\n", c.code, c.count, 100.0 * c.share);
        }
        if let Some(labels) = &s.per_label {
            out += "  per label: label   clips  entropy  codes\n";
            for l in labels {
                out += &format!(
                    "            {:>6} {:>7} {:>8.3} {:>6}\n",
                    l.label, l.clips, l.entropy_bits, l.codes_used
                );
            }
        }
        out
    }
}


//! What every model benchmark shares: the median of repeated timings and
//! writing the results to target/bench/<name>.json.
#![allow(dead_code)]

pub mod peak;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn write_results<T: serde::Serialize>(name: &str, results: &T) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/bench")
        .join(format!("{name}.json"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_vec_pretty(results).unwrap()).unwrap();
    println!("wrote {}", path.display());
}

/// `--precision f32|bf16` from the command line (f32 without it), set for
/// the process; with the CPU path the products run on, for the results.
pub fn precision_from_args() -> (String, String) {
    use videogpt_model::ops::{Precision, cpu_path, set_precision};
    let args: Vec<String> = std::env::args().collect();
    let precision: Precision = args
        .iter()
        .position(|a| a == "--precision")
        .and_then(|i| args.get(i + 1))
        .map(|p| p.parse().expect("--precision"))
        .unwrap_or_default();
    set_precision(precision);
    let path = match precision {
        Precision::F32 => "f32".to_owned(),
        Precision::Bf16 => cpu_path().to_string(),
    };
    (precision.to_string(), path)
}

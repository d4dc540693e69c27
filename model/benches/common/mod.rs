//! What every model benchmark shares: the median of repeated timings and
//! writing the results to target/bench/<name>.json.
#![allow(dead_code)]

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

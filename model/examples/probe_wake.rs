// Throwaway probe (not committed): how long a sleeping rayon worker takes to join a parallel op.
use rayon::prelude::*;
use std::time::{Duration, Instant};

fn spin(us: u64) { let t = Instant::now(); while t.elapsed() < Duration::from_micros(us) { std::hint::spin_loop(); } }

fn main() {
    if std::env::args().any(|a| a == "--worker") { videogpt_model::backend::make_calling_thread_a_worker(); }
    let awake = std::env::args().any(|a| a == "--awake");
    let stop = std::sync::atomic::AtomicBool::new(false);
    rayon::in_place_scope(|scope| {
    if awake {
        for _ in 1..rayon::current_num_threads() {
            scope.spawn(|_| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) { std::thread::yield_now(); }
                }
            });
        }
    }
    for gap_us in [0u64, 20, 100, 1000, 5000] {
        let mut v = vec![];
        for _ in 0..200 {
            spin(gap_us);
            let t = Instant::now();
            (0..8).into_par_iter().for_each(|_| spin(125));
            v.push(t.elapsed().as_secs_f64() * 1e6);
        }
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("gap {gap_us:5} us: 8 x 125 us tasks took min {:.0} median {:.0} p90 {:.0} us (ideal 500)", v[0], v[100], v[180]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

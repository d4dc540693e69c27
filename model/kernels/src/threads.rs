//! Thread-pool and allocator tuning for the host kernels: the binary's
//! main thread joins rayon's pool, the other workers stay awake through a
//! training step's serial stretches, and freed buffers stay in the heap.

use std::sync::atomic::{AtomicBool, Ordering};

/// Makes the calling thread (the binary's main thread) worker 0 of rayon's
/// global pool, with the other workers one per remaining core, so that the
/// parallel ops it calls (every host convolution, projection and norm on
/// flex) split their work in place and run part of it themselves. Called
/// from outside the pool, each op would be queued to the pool's threads,
/// which have to wake up first, while the caller sleeps until the last one
/// wakes it again: a training step makes hundreds of such ops. Measured on
/// 2 cores: a reference-64 step takes 0.174-0.184 s this way and
/// 0.198-0.209 s without it. Call it first thing in `main`, before anything uses the pool; if
/// the pool exists already it is left as it is. Work that other threads
/// hand to the pool runs on the other workers, and on the caller only
/// while it is inside a rayon call itself: the clip loader does not use
/// rayon, and sampling's extra threads (one per further core) find those
/// workers free.
pub fn make_calling_thread_a_worker() {
    make_calling_thread_a_worker_of(None)
}

/// [`make_calling_thread_a_worker`] with `threads` workers in all (the
/// caller included; rayon's default, one per core, when `None`).
pub fn make_calling_thread_a_worker_of(threads: Option<usize>) {
    let mut builder = rayon::ThreadPoolBuilder::new().use_current_thread();
    if let Some(threads) = threads {
        builder = builder.num_threads(threads.max(1));
    }
    if let Err(e) = builder.build_global() {
        tracing::debug!("rayon's global pool was already built: {e}");
    }
}

/// Runs `f` on the calling thread while rayon's other workers wait for
/// work busily (checking for it, yielding the core to any other runnable
/// thread in between) instead of going to sleep, if the caller is itself a
/// worker of the pool ([`make_calling_thread_a_worker`]); otherwise runs
/// `f` alone. A training step alternates short serial stretches (burn's
/// bookkeeping, element-wise ops) with hundreds of parallel ops, and a
/// worker that fell asleep in a serial stretch joins the next op late:
/// here, 8 tasks of 125 us on 2 cores took a median 503 us with the worker
/// awake, 560 us after a 20 us pause and 670 us after 1 ms (a throwaway
/// probe, 200 ops each).
pub fn with_workers_awake<R>(f: impl FnOnce() -> R) -> R {
    let Some(caller) = rayon::current_thread_index() else {
        return f();
    };
    /// Tells the waiting workers to stop, also when `f` panics (the scope
    /// waits for them before it returns or unwinds).
    struct Release<'a>(&'a AtomicBool);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let done = AtomicBool::new(false);
    rayon::in_place_scope(|scope| {
        // One job per worker (the caller's returns at once): each takes
        // work from the pool as it appears until `f` is done.
        scope.spawn_broadcast(|_, worker| {
            if worker.index() == caller {
                return;
            }
            while !done.load(Ordering::Acquire) {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::thread::yield_now();
                }
            }
        });
        let _release = Release(&done);
        f()
    })
}

/// Keeps freed tensor buffers in the process heap instead of handing them
/// back to the kernel. glibc serves blocks above a (dynamic) threshold with
/// fresh `mmap`s and trims the heap eagerly, so every step that allocates a
/// few megabytes (the KV cache grows by one position per sampled token)
/// pays page faults and page zeroing: measured here, sampling 8 x 1024
/// tokens took 24 s with the defaults and 7 s with this. No-op elsewhere.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only adjusts allocator parameters; called before
        // any worker threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Runs `f` on a pool of `threads` workers, from one of them, and
    /// fails instead of hanging if it does not return within a minute.
    fn on_a_worker<R: Send + 'static>(threads: usize, f: fn() -> R) -> std::thread::Result<R> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.install(f)));
            let _ = tx.send(result);
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("with_workers_awake did not return")
    }

    /// Parallel work inside `with_workers_awake` runs and gives its result,
    /// on pools of one to three workers and from outside a pool.
    #[test]
    fn work_inside_runs_and_returns() {
        fn sums() -> Vec<u64> {
            (0..20)
                .map(|k| {
                    with_workers_awake(|| {
                        (0..10_000u64).into_par_iter().map(|i| i * k).sum::<u64>()
                    })
                })
                .collect()
        }
        let expected: Vec<u64> = (0..20).map(|k| k * 9_999 * 10_000 / 2).collect();
        for threads in 1..=3 {
            assert_eq!(
                on_a_worker(threads, sums).unwrap(),
                expected,
                "{threads} workers"
            );
        }
        assert_eq!(sums(), expected);
    }

    /// A panic inside releases the waiting workers and reaches the caller.
    #[test]
    fn a_panic_inside_reaches_the_caller() {
        fn panics() {
            with_workers_awake(|| {
                let _ = (0..100).into_par_iter().sum::<i32>();
                panic!("inside");
            })
        }
        assert!(on_a_worker(2, panics).is_err());
    }
}

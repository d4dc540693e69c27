//! Bounds on what a command may be asked to do, checked before anything is
//! built: the step and batch counts a run accepts, and a lower bound of the
//! memory a training step needs against what this process may use (the
//! machine's memory, or a smaller `ulimit -v`). A request beyond them is a
//! one-line error, not an allocation failure or a run that never ends.

use crate::error::{ModelError, Result};

/// Most optimisation steps of one run (the paper's longest is 200 000).
pub const MAX_STEPS: u64 = 100_000_000;
/// Largest batch (the paper's largest is 64).
pub const MAX_BATCH: usize = 4096;

/// Refuses a batch size (given as `flag`) outside 1..=[`MAX_BATCH`].
pub fn check_batch(flag: &str, batch_size: usize) -> Result<()> {
    if !(1..=MAX_BATCH).contains(&batch_size) {
        return Err(ModelError::Config(format!("{flag} {batch_size}: must be 1 to {MAX_BATCH}")));
    }
    Ok(())
}

/// Refuses a step count, batch size or learning rate out of range.
pub fn check_schedule(batch_size: usize, steps: u64, learning_rate: f64) -> Result<()> {
    check_batch("--batch-size", batch_size)?;
    if steps > MAX_STEPS {
        return Err(ModelError::Config(format!("--steps {steps}: at most {MAX_STEPS}")));
    }
    if !(learning_rate.is_finite() && learning_rate > 0.0 && learning_rate < 1.0) {
        return Err(ModelError::Config(format!("--lr {learning_rate}: must be in (0, 1)")));
    }
    Ok(())
}

/// Refuses a run whose `needed` bytes (a lower bound) exceed what this
/// process may allocate; `what` says what was estimated.
pub fn check_memory(what: &str, needed: u128) -> Result<()> {
    let Some(budget) = budget_bytes() else {
        return Ok(());
    };
    if needed > budget as u128 {
        return Err(ModelError::Config(format!(
            "{what} needs at least {:.1} GB, but this process may use {:.1} GB; use a smaller batch or model",
            needed as f64 / 1e9,
            budget as f64 / 1e9
        )));
    }
    Ok(())
}

/// The smaller of the machine's memory and the address-space limit, when
/// they can be read (Linux `/proc`).
pub fn budget_bytes() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    let limit = std::fs::read_to_string("/proc/self/limits").ok().and_then(|text| {
        let line = text.lines().find(|l| l.starts_with("Max address space"))?;
        line.split_whitespace().nth(3)?.parse::<u64>().ok()
    });
    match (total, limit) {
        (Some(t), Some(l)) => Some(t.min(l)),
        (t, l) => t.or(l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_requests_are_refused_and_usual_ones_pass() {
        assert!(check_schedule(32, 100_000, 3e-4).is_ok());
        for (batch, steps, lr) in [(0, 10, 1e-3), (5000, 10, 1e-3), (8, u64::MAX, 1e-3), (8, 10, f64::NAN), (8, 10, 0.0)] {
            assert!(check_schedule(batch, steps, lr).is_err(), "{batch} {steps} {lr}");
        }
        assert!(budget_bytes().is_some_and(|b| b > 1 << 28));
        assert!(check_memory("a step", 1 << 20).is_ok());
        let e = check_memory("a step", 1 << 80).unwrap_err().to_string();
        assert!(e.starts_with("a step needs at least") && e.len() < 200, "{e}");
    }
}

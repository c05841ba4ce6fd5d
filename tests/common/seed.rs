//! The seed of a randomised test, printed so that a failure can be
//! replayed: the part of `data` that the in-memory tests use too.

/// Prints the seed of a randomised test (shown with the test's output when
/// it fails), so that a failure can be replayed, and returns it.
pub fn seeded(what: &str, seed: u64) -> u64 {
    println!("{what}: seed {seed}");
    seed
}

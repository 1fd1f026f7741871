//! Sync under simulated faults (turmoil) over many seeds: see `sim/mod.rs`. Skipped by
//! `cargo test`; run it with `cargo xtask sim`, i.e.
//! `cargo test -p horde --release --test sync_sim_soak -- --ignored`.
//! `HORDE_SIM_SEEDS=K` changes the count, `HORDE_SIM_SEED=N` replays one seed.

mod sim;

/// Seeds in the soak run.
const SEEDS: u64 = 1_000;

#[test]
#[ignore = "a thousand simulated runs: `cargo xtask sim`"]
fn sync_converges_under_faults_soak() {
    sim::run_seeds(&sim::seeds(SEEDS));
}

//! Sync under simulated faults (turmoil), a few seeds: see `sim/mod.rs`. The thousand-seed
//! run is `sync_sim_soak` (`cargo xtask sim`). `HORDE_SIM_SEEDS=K` runs K seeds,
//! `HORDE_SIM_SEED=N` replays one.

mod sim;

/// Seeds in the default run.
const SEEDS: u64 = 32;

#[test]
fn sync_converges_under_faults() {
    sim::run_seeds(&sim::seeds(SEEDS));
}

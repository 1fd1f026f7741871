//! `restore`: writing the tree of one point of a long history into a fresh directory, with
//! `horde restore` vs `git checkout` of the same tree from a git repository holding the same
//! history, and with a 100k-event history vs the shortest history of the same tree.
//!
//! Set-up (outside every clock): a deterministic tree (`--files` files in `--dirs` nested
//! directories, `--megabytes` in all: 1% of the files 1–3 MB, the rest 2–40 kB, scaled to the
//! total; pseudo-random bytes, so zlib gains nothing) is recorded with `horde::record::init`,
//! then changed in steps of `--changes-per-step` changes (60% rewrites of part of a small
//! file, 15% new small files, 15% deletions, 10% renames into another directory; large files
//! are never rewritten, which bounds blob storage) until the ledger holds `--events` events.
//! Each step is recorded in-process with `Recorder::step` and, on the same tree, committed
//! with `git add -A && git commit` into a git repository kept beside it (`.horde` excluded),
//! so both hold exactly the same history. Git runs with no global or system config and
//! `gc.auto=0` while it is built, then `git gc` packs it (the state auto-gc converges to).
//! The restore point is the last event of the middle step. A second horde repository holds
//! the same tree with as short a history as horde allows: `init` of that tree minus 9 files
//! (which records a create per entry, then a checkpoint), then 3 steps putting them back, so
//! the restore point is 9 changes past a checkpoint. (The issue says "10 events"; since
//! `init` writes one event per entry, the shortest history of a 5,000-file tree is ~5,000
//! events. The long history's writer adds a checkpoint every `checkpoint_interval` changes
//! and a quarter of the tree, so its point is up to that many changes past one.)
//!
//! Timed, alternating, after one warm-up round (page cache warm for all sides; dropping it
//! needs root): `horde -C REPO restore --at EVENT_ID --to OUT` (the release CLI, end to end)
//! for both horde repositories, and `git checkout COMMIT -- .` with `GIT_WORK_TREE=OUT` and a
//! fresh `GIT_INDEX_FILE` (a whole fresh checkout; the repository's own index is untouched).
//! Neither side fsyncs. Every output directory starts empty, and `sync` runs before each
//! timed command (outside the clock) so none inherits the previous one's dirty pages. After
//! a run its files are truncated and moved into a trash directory, deleted at the end: as in
//! `run-overhead`, freeing inodes makes creating files slow for a while on journal-less ext4
//! (creates took up to 10x longer right after a deletion), while freeing blocks does not. The
//! warm-up round's three outputs are compared file by file (paths, kinds, executable bits,
//! bytes) and with the generator's model; any difference fails the run. Last, in-process
//! `horde::timetravel::state_at` on both repositories shows the part of a restore that
//! depends on history (the checkpoint's manifest and the changes folded after it).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use horde::record::Recorder;
use horde::store::writer::Appended;
use horde_core::DeviceKey;

use crate::util::{Rng, horde, horde_bin, median, ms, print_missing_horde, thousands, timed};

/// Goal for horde/git.
const GOAL_GIT: f64 = 1.2;
/// Goal for the long history / the shortest history.
const GOAL_HISTORY: f64 = 1.1;
/// Files held back from the short-history repository's `init` and restored by its steps.
const HELD_BACK: usize = 9;
/// Files per step of the short-history repository.
const HELD_BACK_PER_STEP: usize = 3;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Files in the tree [default: 5000; 500 with --quick].
    #[arg(long, env = "HORDE_BENCH_RESTORE_FILES")]
    pub files: Option<usize>,
    /// Total size of the tree in MB [default: 200; 20 with --quick].
    #[arg(long, env = "HORDE_BENCH_RESTORE_MB")]
    pub megabytes: Option<u64>,
    /// Events in the long history [default: 100000; 10000 with --quick].
    #[arg(long, env = "HORDE_BENCH_RESTORE_EVENTS")]
    pub events: Option<u64>,
    /// Directories holding the files (nested two levels) [default: 50; 10 with --quick].
    #[arg(long, env = "HORDE_BENCH_RESTORE_DIRS")]
    pub dirs: Option<usize>,
    /// Changes per recorded step (each is about one event).
    #[arg(long, default_value_t = 100, env = "HORDE_BENCH_RESTORE_CHANGES")]
    pub changes_per_step: usize,
    /// Timed rounds after the warm-up; medians are reported.
    #[arg(long, default_value_t = 15, env = "HORDE_BENCH_RESTORE_ITERATIONS")]
    pub iterations: usize,
    /// Small sizes for trying the benchmark out: 500 files, 20 MB, 10,000 events.
    #[arg(long)]
    pub quick: bool,
    /// Keep the temporary directory (its path is printed) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
}

struct Sizes {
    files: usize,
    bytes: u64,
    events: u64,
    dirs: usize,
    per_step: usize,
}

impl Args {
    fn sizes(&self) -> Sizes {
        let q = self.quick;
        Sizes {
            files: self.files.unwrap_or(if q { 500 } else { 5000 }),
            bytes: self.megabytes.unwrap_or(if q { 20 } else { 200 }) * 1_000_000,
            events: self.events.unwrap_or(if q { 10_000 } else { 100_000 }),
            dirs: self.dirs.unwrap_or(if q { 10 } else { 50 }),
            per_step: self.changes_per_step,
        }
    }
}

/// One file of the generated tree.
#[derive(Debug, Clone)]
struct FileRec {
    id: u64,
    dir: usize,
    size: u64,
    big: bool,
}

/// `src/m3/d27/f000123.bin`-like paths: 10 directories per top-level directory.
fn dir_path(dir: usize) -> String {
    format!("src/m{}/d{dir:02}", dir / 10)
}

impl FileRec {
    fn rel(&self) -> String {
        format!("{}/f{:06}.bin", dir_path(self.dir), self.id)
    }
}

/// The tree and how it changes: a deterministic model of what is on disk.
struct Generator {
    rng: Rng,
    root: PathBuf,
    files: Vec<FileRec>,
    next_id: u64,
    dirs: usize,
    /// Multiplies the raw sizes so the first tree has the requested total.
    scale: f64,
}

const SMALL: (usize, usize) = (2_000, 40_000);
const BIG: (usize, usize) = (1_000_000, 3_000_000);

impl Generator {
    fn new(root: &Path, s: &Sizes) -> Self {
        let mut rng = Rng::new(0x5eed_0005);
        let big_every = 100; // 1% of the files
        let raw: Vec<(bool, usize)> = (0..s.files)
            .map(|i| {
                let big = i % big_every == big_every / 2;
                let (lo, hi) = if big { BIG } else { SMALL };
                (big, rng.range(lo, hi))
            })
            .collect();
        let raw_total: usize = raw.iter().map(|(_, n)| n).sum();
        let scale = s.bytes as f64 / raw_total.max(1) as f64;
        let files = raw
            .into_iter()
            .enumerate()
            .map(|(i, (big, n))| FileRec {
                id: i as u64,
                dir: i % s.dirs,
                size: ((n as f64 * scale) as u64).max(1),
                big,
            })
            .collect::<Vec<_>>();
        Self {
            rng,
            root: root.to_owned(),
            next_id: files.len() as u64,
            files,
            dirs: s.dirs,
            scale,
        }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.rng.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    fn small_size(&mut self) -> u64 {
        ((self.rng.range(SMALL.0, SMALL.1) as f64 * self.scale) as u64).max(1)
    }

    fn write_initial(&mut self) -> Result<()> {
        for d in 0..self.dirs {
            fs::create_dir_all(self.root.join(dir_path(d)))?;
        }
        for i in 0..self.files.len() {
            let data = self.bytes(self.files[i].size as usize);
            let p = self.root.join(self.files[i].rel());
            fs::write(&p, data).with_context(|| format!("cannot write {}", p.display()))?;
        }
        Ok(())
    }

    /// Applies one step of `n` changes to the tree on disk.
    fn step(&mut self, n: usize) -> Result<()> {
        let modify = n * 60 / 100;
        let create = n * 15 / 100;
        let delete = n * 15 / 100;
        let rename = n - modify - create - delete;
        // Distinct small files, so every change is its own event.
        let small = self.files.iter().filter(|f| !f.big).count();
        ensure!(
            modify + delete + rename <= small / 2,
            "{} changes per step need more small files than {small}",
            modify + delete + rename
        );
        let mut picked: Vec<usize> = Vec::with_capacity(modify + delete + rename);
        while picked.len() < modify + delete + rename {
            let i = self.rng.range(0, self.files.len() - 1);
            if !self.files[i].big && !picked.contains(&i) {
                picked.push(i);
            }
        }
        for &i in &picked[..modify] {
            // Rewrite part of the file and let it grow or shrink by up to 1 kB.
            let p = self.root.join(self.files[i].rel());
            let mut data = fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
            let len = self.rng.range(256, 2048).min(data.len());
            let at = self.rng.range(0, data.len() - len);
            let patch = self.bytes(len);
            data[at..at + len].copy_from_slice(&patch);
            let delta = self.rng.range(0, 2048) as i64 - 1024;
            let new_len = (data.len() as i64 + delta).max(1) as usize;
            if new_len > data.len() {
                let more = self.bytes(new_len - data.len());
                data.extend_from_slice(&more);
            } else {
                data.truncate(new_len);
            }
            fs::write(&p, &data)?;
            self.files[i].size = data.len() as u64;
        }
        for &i in &picked[modify..modify + rename] {
            let from = self.root.join(self.files[i].rel());
            self.files[i].dir = self.rng.range(0, self.dirs - 1);
            self.files[i].id = self.next_id;
            self.next_id += 1;
            fs::rename(&from, self.root.join(self.files[i].rel()))?;
        }
        let mut gone: Vec<usize> = picked[modify + rename..].to_vec();
        gone.sort_unstable_by(|a, b| b.cmp(a));
        for i in gone {
            fs::remove_file(self.root.join(self.files[i].rel()))?;
            self.files.swap_remove(i);
        }
        for _ in 0..create {
            let f = FileRec {
                id: self.next_id,
                dir: self.rng.range(0, self.dirs - 1),
                size: self.small_size(),
                big: false,
            };
            self.next_id += 1;
            let data = self.bytes(f.size as usize);
            fs::write(self.root.join(f.rel()), data)?;
            self.files.push(f);
        }
        Ok(())
    }

    fn total(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Git with no global or system config, on the repository `git_dir` and the tree `work`.
fn git(git_dir: &Path, work: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("git");
    c.args(args)
        .current_dir(work)
        .env("GIT_DIR", git_dir)
        .env("GIT_WORK_TREE", work)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_INDEX_FILE")
        .stdin(std::process::Stdio::null());
    c
}

fn run_git(git_dir: &Path, work: &Path, args: &[&str]) -> Result<String> {
    let (out, _) = timed(&mut git(git_dir, work, args))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Bytes under `dir`, as `du` would count file sizes.
fn du(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() { du(&e.path())? } else { m.len() };
    }
    Ok(total)
}

/// Moves `dir` into `trash` with its files truncated: their blocks are freed now, their
/// inodes only when the trash is deleted after the timed runs.
fn discard(dir: &Path, trash: &Path) -> Result<()> {
    fn truncate(dir: &Path) -> Result<()> {
        for e in fs::read_dir(dir)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                truncate(&e.path())?;
            } else if t.is_file() {
                fs::OpenOptions::new()
                    .write(true)
                    .open(e.path())?
                    .set_len(0)?;
            }
        }
        Ok(())
    }
    truncate(dir)?;
    let name = dir.file_name().expect("an output directory has a name");
    fs::rename(dir, trash.join(name))
        .with_context(|| format!("cannot move {} into the trash", dir.display()))
}

/// Copies the tree under `from` (not `.horde`) to `to`.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        if e.file_name() == ".horde" {
            continue;
        }
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            fs::copy(&src, &dst).with_context(|| format!("cannot copy {}", src.display()))?;
        }
    }
    Ok(())
}

/// A file's kind and executable bits, or a directory, keyed by relative path.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File { size: u64, exec: u32 },
    Link(PathBuf),
}

fn listing(root: &Path) -> Result<BTreeMap<String, Node>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) -> Result<()> {
        for e in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let p = e?.path();
            let rel = p
                .strip_prefix(root)
                .expect("walked from root")
                .to_string_lossy()
                .into_owned();
            let m = fs::symlink_metadata(&p)?;
            if m.file_type().is_symlink() {
                out.insert(rel, Node::Link(fs::read_link(&p)?));
            } else if m.is_dir() {
                out.insert(rel, Node::Dir);
                walk(root, &p, out)?;
            } else {
                let exec = m.permissions().mode() & 0o111;
                out.insert(
                    rel,
                    Node::File {
                        size: m.len(),
                        exec,
                    },
                );
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out)?;
    Ok(out)
}

/// Fails unless `a` and `b` hold the same paths, kinds, executable bits and bytes.
fn same_tree(a: &Path, b: &Path) -> Result<()> {
    let (la, lb) = (listing(a)?, listing(b)?);
    let only = |x: &BTreeMap<String, Node>, y: &BTreeMap<String, Node>| {
        x.keys()
            .filter(|k| !y.contains_key(*k))
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
    };
    if la.len() != lb.len() || la.keys().ne(lb.keys()) {
        bail!(
            "{} and {} differ: {} vs {} entries; only in the first: {:?}; only in the second: {:?}",
            a.display(),
            b.display(),
            la.len(),
            lb.len(),
            only(&la, &lb),
            only(&lb, &la)
        );
    }
    for (rel, na) in &la {
        let nb = &lb[rel];
        ensure!(
            na == nb,
            "{rel} differs between {} ({na:?}) and {} ({nb:?})",
            a.display(),
            b.display()
        );
        if let Node::File { .. } = na {
            ensure!(
                fs::read(a.join(rel))? == fs::read(b.join(rel))?,
                "{rel} has different bytes in {} and {}",
                a.display(),
                b.display()
            );
        }
    }
    Ok(())
}

/// A horde repository to restore from: where, the point to restore, its event count.
struct HordeRepo {
    root: PathBuf,
    /// The last event of the point's step; `--at` takes its id, since `#SEQ` names a seq of
    /// the CLI's own device (the bench's config dir has another key than the recorder).
    point: Appended,
    events: u64,
}

/// How long computing the tree at the repository's point takes in-process (`state_at`, the
/// part of a restore that depends on history), the median of `n`; with the events between
/// the checkpoint it starts from and the point, and the tree's entry count.
fn fold_time(repo: &HordeRepo, n: usize) -> Result<(f64, i64, usize)> {
    use horde::timetravel as tt;
    let ledger = horde::store::Ledger::open(horde::store::Layout::new(&repo.root))?;
    let at = tt::resolve_point(
        &ledger.conn,
        &repo.point.id.to_string(),
        ledger.meta.timeline,
        None,
    )?;
    let checkpoint: i64 = ledger.conn.query_row(
        "SELECT COALESCE(MAX(id), 0) FROM checkpoints WHERE id <= ?1",
        [at.point.id],
        |r| r.get(0),
    )?;
    let mut times = Vec::with_capacity(n);
    let mut entries = 0;
    for _ in 0..n.max(1) {
        let t0 = Instant::now();
        let state = tt::state_at(&ledger, at.point)?;
        times.push(ms(t0.elapsed()));
        entries = state.len();
    }
    Ok((median(&times), at.point.id - checkpoint, entries))
}

fn event_count(store: &horde::store::Store) -> Result<u64> {
    Ok(horde::store::read::counts(&store.ledger.conn)?.events)
}

fn gib(b: u64) -> String {
    format!("{:.2} GB", b as f64 / 1e9)
}

pub fn run(args: &Args) -> Result<()> {
    let s = args.sizes();
    ensure!(
        s.files >= 100 && s.dirs >= 1 && s.per_step >= 10 && args.iterations > 0,
        "need --files >= 100, --dirs >= 1, --changes-per-step >= 10, --iterations >= 1"
    );
    let bin = horde_bin()?;
    let base = tempfile::Builder::new()
        .prefix("horde-bench-restore")
        .tempdir()?;
    let work = base.path();
    println!(
        "restore       {} files in {} dirs ({:.0} MB), {} events of history in steps of {} changes; temp dir {}",
        thousands(s.files as f64),
        s.dirs,
        s.bytes as f64 / 1e6,
        thousands(s.events as f64),
        s.per_step,
        work.display()
    );
    let result = bench(args, &s, bin.as_deref(), work);
    if args.keep {
        let kept = base.keep();
        println!("  kept {}", kept.display());
    }
    result
}

fn bench(args: &Args, s: &Sizes, bin: Option<&Path>, work: &Path) -> Result<()> {
    let tree = work.join("tree");
    let git_dir = work.join("git");
    let staged = work.join("staged");
    let mut tree_gen = Generator::new(&tree, s);

    // --- The long history, recorded by horde and git side by side. ---
    let started = Instant::now();
    tree_gen.write_initial()?;
    let t_write = started.elapsed();
    let t0 = Instant::now();
    let init = horde::record::init(&tree, DeviceKey::generate()?)?;
    let t_horde_init = t0.elapsed();
    ensure!(
        init.entries == s.files + s.dirs + s.dirs.div_ceil(10) + 1,
        "horde init recorded {} entries, expected {}",
        init.entries,
        s.files + s.dirs + s.dirs.div_ceil(10) + 1
    );
    let t0 = Instant::now();
    fs::create_dir_all(&git_dir)?;
    run_git(&git_dir, &tree, &["init", "-q"])?;
    for (k, v) in [
        ("user.name", "bench"),
        ("user.email", "bench@example.com"),
        ("commit.gpgsign", "false"),
        ("gc.auto", "0"),
    ] {
        run_git(&git_dir, &tree, &["config", k, v])?;
    }
    fs::write(git_dir.join("info/exclude"), "/.horde/\n")?;
    run_git(&git_dir, &tree, &["add", "-A"])?;
    run_git(&git_dir, &tree, &["commit", "-q", "-m", "init"])?;
    let t_git_init = t0.elapsed();

    let store = init.store;
    let mut rec = Recorder::new(&store)?;
    // `init` records a create per entry and a checkpoint; the steps make up the rest.
    let init_events = event_count(&store)?;
    let steps = (s.events.saturating_sub(init_events))
        .div_ceil(s.per_step as u64)
        .max(2) as usize;
    let middle = steps / 2;
    let (mut t_horde, mut t_git, mut t_gen) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut at: Option<(Appended, String, usize, u64)> = None; // event, commit, files, bytes
    for i in 1..=steps {
        let t0 = Instant::now();
        tree_gen.step(s.per_step)?;
        t_gen += t0.elapsed();
        let t0 = Instant::now();
        let step = rec.step("bench", None, Vec::new(), false)?;
        t_horde += t0.elapsed();
        ensure!(
            step.changes > 0 && step.warnings.is_empty() && step.skipped.is_empty(),
            "step {i}: horde recorded {} changes, warnings {:?}, skipped {:?}",
            step.changes,
            step.warnings,
            step.skipped
        );
        let t0 = Instant::now();
        run_git(&git_dir, &tree, &["add", "-A"])?;
        run_git(
            &git_dir,
            &tree,
            &["commit", "-q", "-m", &format!("step {i}")],
        )?;
        t_git += t0.elapsed();
        if i == middle {
            let point = step.appended.last().expect("changes > 0").clone();
            let commit = run_git(&git_dir, &tree, &["rev-parse", "HEAD"])?;
            at = Some((point, commit, tree_gen.files.len(), tree_gen.total()));
            copy_tree(&tree, &staged)?;
        }
        if i % 100 == 0 || i == steps {
            eprintln!(
                "  step {i}/{steps}: {} events, {:.0} s",
                thousands(event_count(&store)? as f64),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let long_events = event_count(&store)?;
    drop(rec);
    drop(store);
    let (point, commit, at_files, at_bytes) = at.expect("the middle step ran");
    let t0 = Instant::now();
    let loose = du(&git_dir.join("objects"))?;
    run_git(&git_dir, &tree, &["gc", "-q"])?;
    let t_gc = t0.elapsed();
    let packed = du(&git_dir.join("objects"))?;
    let horde_size = du(&tree.join(".horde"))?;
    println!(
        "  set-up: tree written in {:.1} s; horde init {:.1} s + {steps} steps {:.1} s (in-process Recorder::step); \
         git init+commit {:.1} s + {steps} steps {:.1} s (add -A && commit), gc {:.1} s; generator {:.1} s; total {:.0} s",
        t_write.as_secs_f64(),
        t_horde_init.as_secs_f64(),
        t_horde.as_secs_f64(),
        t_git_init.as_secs_f64(),
        t_git.as_secs_f64(),
        t_gc.as_secs_f64(),
        t_gen.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "  long history: {} events, {} commits; .horde {}; git objects {} loose -> {} after `git gc` (packed)",
        thousands(long_events as f64),
        steps + 1,
        gib(horde_size),
        gib(loose),
        gib(packed),
    );
    println!(
        "  restore point: step {middle} of {steps} = horde #{} ({}) = git {}: {} files, {:.1} MB",
        point.seq,
        point.id,
        &commit[..12.min(commit.len())],
        thousands(at_files as f64),
        at_bytes as f64 / 1e6
    );
    let long = HordeRepo {
        root: tree.clone(),
        point,
        events: long_events,
    };

    // --- The same tree with a short history. ---
    let held = work.join("held");
    fs::create_dir_all(&held)?;
    let mut held_back = Vec::new();
    for f in tree_gen
        .files
        .iter()
        .filter(|f| !f.big)
        .filter(|f| staged.join(f.rel()).is_file())
        .take(HELD_BACK)
    {
        let name = format!("{}", f.id);
        fs::rename(staged.join(f.rel()), held.join(&name))?;
        held_back.push((name, f.rel()));
    }
    ensure!(held_back.len() == HELD_BACK, "too few files to hold back");
    let short = {
        let init = horde::record::init(&staged, DeviceKey::generate()?)?;
        let store = init.store;
        let mut rec = Recorder::new(&store)?;
        let mut last = None;
        for chunk in held_back.chunks(HELD_BACK_PER_STEP) {
            for (name, rel) in chunk {
                fs::rename(held.join(name), staged.join(rel))?;
            }
            let step = rec.step("bench", None, Vec::new(), false)?;
            ensure!(
                step.changes == chunk.len(),
                "short history: a step recorded {} changes, expected {}",
                step.changes,
                chunk.len()
            );
            last = step.appended.last().cloned();
        }
        let events = event_count(&store)?;
        HordeRepo {
            root: staged.clone(),
            point: last.expect("a step ran"),
            events,
        }
    };
    println!(
        "  short history: {} events (init of the tree minus {HELD_BACK} files: a create per entry and a checkpoint; then {} steps adding them), restore at #{}",
        thousands(short.events as f64),
        HELD_BACK.div_ceil(HELD_BACK_PER_STEP),
        short.point.seq
    );

    // --- Timed restores. ---
    let Some(bin) = bin else {
        print_missing_horde("restore");
        return Ok(());
    };
    let probe = Command::new(bin)
        .args(["restore", "--help"])
        .output()
        .context("cannot run horde")?;
    if !probe.status.success() {
        println!(
            "restore       horde side skipped: `{} restore` does not exist in this build",
            bin.display()
        );
        // Still time git, so its figure is known.
    }
    let has_restore = probe.status.success();
    let config = work.join("config");
    fs::create_dir_all(&config)?;
    let out = work.join("out");
    fs::create_dir_all(&out)?;
    let idx = work.join("idx");
    fs::create_dir_all(&idx)?;

    let restore_git = |dir: &Path, n: usize| -> Result<Duration> {
        let index = idx.join(format!("index-{n}"));
        let mut c = git(&git_dir, dir, &["checkout", "-f", &commit, "--", "."]);
        c.env("GIT_INDEX_FILE", &index);
        // The index stays until the end: deleting it would free an inode (see `discard`).
        let (_, took) = timed(&mut c)?;
        Ok(took)
    };
    let restore_horde = |repo: &HordeRepo, dir: &Path| -> Result<Duration> {
        let root = repo.root.to_string_lossy().into_owned();
        let to = dir.to_string_lossy().into_owned();
        let at = repo.point.id.to_string();
        let (_, took) = timed(&mut horde(
            bin,
            &config,
            work,
            &["-C", &root, "restore", "--at", &at, "--to", &to],
        ))?;
        Ok(took)
    };

    let trash = work.join("trash");
    fs::create_dir_all(&trash)?;
    let settle = || -> Result<()> {
        timed(&mut Command::new("sync"))?;
        Ok(())
    };
    let (mut tg, mut tl, mut ts) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=args.iterations {
        let dirs: Vec<PathBuf> = ["git", "long", "short"]
            .iter()
            .map(|n| out.join(format!("{n}-{round}")))
            .collect();
        for d in &dirs {
            fs::create_dir(d)?;
        }
        // Rotate who goes first, so no side always follows the same one.
        for k in 0..3 {
            let side = (round + k) % 3;
            if side > 0 && !has_restore {
                continue;
            }
            settle()?;
            let took = match side {
                0 => restore_git(&dirs[0], round)?,
                1 => restore_horde(&long, &dirs[1])?,
                _ => restore_horde(&short, &dirs[2])?,
            };
            if round > 0 {
                [&mut tg, &mut tl, &mut ts][side].push(ms(took));
            }
        }
        if round == 0 {
            let (files, bytes) =
                listing(&dirs[0])?
                    .values()
                    .fold((0, 0), |(n, b), node| match node {
                        Node::File { size, .. } => (n + 1, b + size),
                        _ => (n, b),
                    });
            ensure!(
                files == at_files && bytes == at_bytes,
                "git checked out {files} files / {bytes} bytes; the generator wrote {at_files} files / {at_bytes} bytes"
            );
            if has_restore {
                same_tree(&dirs[1], &dirs[0])
                    .context("horde restore (long history) differs from git checkout")?;
                same_tree(&dirs[2], &dirs[0])
                    .context("horde restore (short history) differs from git checkout")?;
                println!(
                    "  checked: both horde restores equal the git checkout ({} files, {:.1} MB, byte for byte)",
                    thousands(files as f64),
                    bytes as f64 / 1e6
                );
            }
        }
        for d in &dirs {
            discard(d, &trash)?;
        }
    }
    println!(
        "  timed: median of {} rounds after 1 warm-up round, warm page cache on every side; git checkout.workers=1 (default)",
        args.iterations
    );
    let spread = |xs: &[f64]| {
        let (lo, hi) = xs
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!("{lo:.0}-{hi:.0} ms")
    };
    println!(
        "  spread (min-max): git {}{}",
        spread(&tg),
        if has_restore {
            format!(
                ", horde long history {}, horde short history {}",
                spread(&tl),
                spread(&ts)
            )
        } else {
            String::new()
        }
    );
    let g = median(&tg);
    if has_restore {
        for (name, repo) in [("long", &long), ("short", &short)] {
            let (took, past, entries) = fold_time(repo, args.iterations)?;
            println!(
                "  in-process state_at (checkpoint manifest + {} changes after it, {} entries): {name} history {took:.1} ms",
                thousands(past as f64),
                thousands(entries as f64)
            );
        }
    }
    println!(
        "  {:<44} {:>12} {:>14} {:>8} {:>8}",
        "figure", "horde", "anchor", "ratio", "goal"
    );
    if !has_restore {
        println!(
            "  {:<44} {:>12} {:>11.1} ms {:>8} {:>8}",
            "restore at a point vs git checkout", "-", g, "-", "-"
        );
        return Ok(());
    }
    let (l, sh) = (median(&tl), median(&ts));
    println!(
        "  {:<44} {:>9.1} ms {:>11.1} ms {:>7.2}x {:>7}",
        format!(
            "restore ({} events) vs git checkout",
            thousands(long.events as f64)
        ),
        l,
        g,
        l / g,
        format!("<= {GOAL_GIT}")
    );
    println!(
        "  {:<44} {:>9.1} ms {:>11.1} ms {:>7.2}x {:>7}",
        format!(
            "restore: {} vs {} events of history",
            thousands(long.events as f64),
            thousands(short.events as f64)
        ),
        l,
        sh,
        l / sh,
        format!("<= {GOAL_HISTORY}")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_keeps_its_model() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Sizes {
            files: 200,
            bytes: 2_000_000,
            events: 0,
            dirs: 12,
            per_step: 20,
        };
        let mut g = Generator::new(dir.path(), &s);
        let total = g.total();
        assert!((total as f64 - 2e6).abs() < 2e4, "{total}");
        g.write_initial().expect("write");
        for _ in 0..5 {
            g.step(s.per_step).expect("step");
        }
        assert_eq!(g.files.len(), 200);
        let on_disk = listing(dir.path()).expect("listing");
        let files: Vec<(&String, u64)> = on_disk
            .iter()
            .filter_map(|(p, n)| match n {
                Node::File { size, .. } => Some((p, *size)),
                _ => None,
            })
            .collect();
        assert_eq!(files.len(), g.files.len());
        assert_eq!(files.iter().map(|(_, n)| n).sum::<u64>(), g.total());
        for f in &g.files {
            assert!(dir.path().join(f.rel()).is_file(), "{}", f.rel());
        }
    }
}

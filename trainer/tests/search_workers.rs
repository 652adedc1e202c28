//! Many workers on one study through the real engines: the store's rules (claims, heartbeats,
//! silent workers, releases, finishing once) and racing claimers on SQLite and PostgreSQL, then
//! worker processes training tiny trials on the committed sample while one is killed with
//! SIGKILL mid-trial: its trial is queued again and finished by another, nothing is lost or run
//! twice, and the results equal a single worker's.
//!
//! The PostgreSQL test starts a throwaway cluster (`initdb` and `pg_ctl` in a temporary
//! folder, on a free port; as root, as the `postgres` user).
#![cfg(unix)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::{sample, temp};
use trainer::search::store::{Claim, Claimed, Recovery, Silent, Store, Study, TrialEnd};
use trainer::search::{self, SearchArgs, Storage, Trial, TrialState};

/// The trial processes of these tests share two cores, and the store's rules are timed: one
/// test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const RULES: &str = "method = \"grid\"\nepochs = 1\n[space]\nlr = { choices = [0.1, 0.2, 0.3] }\n";

fn end(score: f64) -> TrialEnd {
    TrialEnd {
        state: TrialState::Done,
        score: Some(score),
        test_accuracy: Some(score),
        seconds: 0.1,
        checkpoint: None,
        error: None,
        epochs: Vec::new(),
    }
}

fn claim(store: &mut Store, study: &Study, worker: &str, recovery: &Recovery) -> Option<Claimed> {
    match store.claim(study, worker, recovery).unwrap().0 {
        Claim::Trial(claimed) => Some(claimed),
        Claim::Wait => None,
        Claim::Finished => panic!("the study is not over"),
    }
}

/// The store's rules, with two connections standing for two workers.
fn store_rules(storage: &Storage) {
    let mut a = storage.open().unwrap();
    let (study, created) = a.create_or_join("rules", RULES).unwrap();
    assert!(created && study.total == 3);
    let mut b = storage.open().unwrap();
    let (joined, created) = b.create_or_join("rules", RULES).unwrap();
    assert!(!created);
    assert_eq!(joined, study);
    let other = format!(
        "{:#}",
        b.create_or_join("rules", &RULES.replace("0.3", "0.4"))
            .unwrap_err()
    );
    assert!(
        other.contains("space.lr") && other.contains("0.4"),
        "the difference is named: {other}"
    );

    let patient = Recovery {
        grace: 60.0,
        retries: 1,
    };
    let t0 = claim(&mut a, &study, "a", &patient).unwrap();
    let t1 = claim(&mut b, &study, "b", &patient).unwrap();
    let t2 = claim(&mut a, &study, "a", &patient).unwrap();
    let numbers = [&t0, &t1, &t2].map(|c| (c.ticket.number, c.params[0].1.as_float().unwrap()));
    assert_eq!(
        numbers,
        [(0, 0.1), (1, 0.2), (2, 0.3)],
        "the grid in order, once"
    );
    assert!(claim(&mut b, &study, "b", &patient).is_none(), "wait");

    assert!(a.finish(&t0.ticket, &end(0.5)).unwrap());
    assert!(!a.finish(&t0.ticket, &end(0.9)).unwrap(), "finished once");

    // Ctrl-C: the trial goes back to the queue without spending a retry.
    assert!(a.release(&t2.ticket).unwrap());
    let again = claim(&mut b, &study, "b", &patient).unwrap();
    assert_eq!((again.ticket.number, again.ticket.attempt), (2, 2));

    // Worker b goes silent on trial 1 while trial 2 keeps beating.
    let hasty = Recovery {
        grace: 1.0,
        retries: 1,
    };
    thread::sleep(Duration::from_millis(1300));
    assert!(b.heartbeat(&again.ticket).unwrap());
    let (taken, silent) = a.claim(&study, "a", &hasty).unwrap();
    assert_eq!(
        silent,
        [Silent {
            number: 1,
            worker: "b".into(),
            state: TrialState::Queued
        }]
    );
    let Claim::Trial(retaken) = taken else {
        panic!("trial 1 is claimed again: {taken:?}")
    };
    assert_eq!((retaken.ticket.number, retaken.ticket.attempt), (1, 2));
    assert!(
        !b.heartbeat(&t1.ticket).unwrap(),
        "b learns it was given up"
    );
    assert!(
        !b.finish(&t1.ticket, &end(0.1)).unwrap(),
        "and its result is not kept"
    );

    // Silent again with no retry left: failed.
    thread::sleep(Duration::from_millis(1300));
    assert!(b.heartbeat(&again.ticket).unwrap());
    let (wait, silent) = b.claim(&study, "b", &hasty).unwrap();
    assert_eq!(wait, Claim::Wait, "trial 2 still runs");
    assert_eq!(silent[0].state, TrialState::Failed);
    assert!(b.finish(&again.ticket, &end(0.7)).unwrap());
    assert_eq!(b.claim(&study, "b", &hasty).unwrap().0, Claim::Finished);

    let trials = a.trials(&study).unwrap();
    let states: Vec<_> = trials
        .iter()
        .map(|t| (t.state, t.attempts, t.lost))
        .collect();
    assert_eq!(
        states,
        [
            (TrialState::Done, 1, 0),
            (TrialState::Failed, 2, 2),
            (TrialState::Done, 2, 0)
        ]
    );
    assert!(
        trials[1].error.as_deref().unwrap().contains("no heartbeat"),
        "{:?}",
        trials[1].error
    );
    assert_eq!(trials[2].score, Some(0.7));
}

/// Six threads, each its own connection, claim and finish a Bayesian study's 24 trials as
/// fast as they can: each trial once, none lost.
fn racing_claims(storage: &Storage) {
    let spec = "method = \"bayesian\"\ntrials = 24\nepochs = 1\nseed = 3\n\
                [space]\nlr = { log-uniform = [1e-4, 1e-1] }\n";
    let study = storage
        .open()
        .unwrap()
        .create_or_join("race", spec)
        .unwrap()
        .0;
    let claimed: Vec<Vec<usize>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..6)
            .map(|w| {
                let study = &study;
                scope.spawn(move || {
                    let mut store = storage.open().unwrap();
                    let recovery = Recovery {
                        grace: 60.0,
                        retries: 0,
                    };
                    let mut mine = Vec::new();
                    loop {
                        match store.claim(study, &format!("w{w}"), &recovery).unwrap().0 {
                            Claim::Trial(c) => {
                                let lr = c.params[0].1.as_float().unwrap();
                                mine.push(c.ticket.number);
                                assert!(store.finish(&c.ticket, &end(-lr.ln().abs())).unwrap());
                            }
                            Claim::Wait => thread::sleep(Duration::from_millis(5)),
                            Claim::Finished => return mine,
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut all: Vec<usize> = claimed.concat();
    all.sort();
    assert_eq!(all, (0..24).collect::<Vec<_>>(), "{claimed:?}");
    let trials = storage.open().unwrap().trials(&study).unwrap();
    assert!(
        trials
            .iter()
            .all(|t| t.state == TrialState::Done && t.attempts == 1)
    );
}

#[test]
fn sqlite_store_rules_and_racing_claims() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp("store-rules");
    let storage = Storage::parse(&format!("sqlite:{}", dir.join("study.db").display())).unwrap();
    store_rules(&storage);
    racing_claims(&storage);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A grid of three tiny-cnn trials of three epochs on the sample.
fn grid(dir: &Path) -> PathBuf {
    let file = dir.join("grid.toml");
    std::fs::write(
        &file,
        format!(
            "method = \"grid\"\nepochs = 3\n[fixed]\nmodel = \"tiny-cnn\"\nbackend = \"flex\"\n\
             data-dir = \"{}\"\nlimit = 300\nbatch-size = 16\nval-ratio = 0.2\n\
             [space]\nlr = {{ choices = [0.002, 0.01, 0.05] }}\n",
            sample().display()
        ),
    )
    .unwrap();
    file
}

/// What must not depend on how many workers ran the study.
fn results(trials: &[Trial]) -> Vec<String> {
    let six = |v: Option<f64>| v.map(|v| format!("{v:.6}"));
    trials
        .iter()
        .map(|t| {
            format!(
                "{} {} {:?} {:?} {:?}",
                t.number,
                t.status(),
                six(t.score),
                six(t.test_accuracy),
                t.params
            )
        })
        .collect()
}

/// The grid's results with one worker in this process (once per test binary).
fn reference(dir: &Path) -> Vec<String> {
    static REFERENCE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut kept = REFERENCE.lock().unwrap();
    if kept.is_empty() {
        let file = grid(dir);
        let runs = dir.join("reference");
        let args = SearchArgs::parse(&[
            "--config".as_ref(),
            file.as_os_str(),
            "--runs-dir".as_ref(),
            runs.as_os_str(),
        ])
        .unwrap();
        *kept = results(&search::run(&args).unwrap());
        assert_eq!(kept.len(), 3);
    }
    kept.clone()
}

fn trainer(args: &[&str], log: &Path) -> Child {
    let file = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap()
}

/// Waits (two minutes at most) for a trial of study `name` that trains (its run folder has
/// its configuration) and has at least `epochs` epochs recorded and saved (`state.json`, which
/// is written after `metrics.csv`), and fewer than all three.
fn training_trial(storage: &Storage, name: &str, epochs: usize) -> Trial {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let running = storage.open().ok().and_then(|mut store| {
            let study = store.study(name).ok()?;
            store.trials(&study).ok()?.into_iter().find(|t| {
                let run = Path::new(t.run_dir.as_deref().unwrap_or_default());
                t.state == TrialState::Running
                    && run.join("config.toml").is_file()
                    && (epochs == 0 || run.join("state.json").is_file())
                    && (epochs..3).contains(&t.epochs.len())
            })
        });
        if let Some(trial) = running {
            return trial;
        }
        thread::sleep(Duration::from_millis(30));
    }
    panic!("no trial of `{name}` trained with {epochs} epochs recorded within two minutes");
}

/// Kills the worker of a trial that trains with at least `epochs` epochs recorded, with
/// SIGKILL; returns the trial's number and the worker.
fn kill_a_worker_mid_trial(storage: &Storage, name: &str, epochs: usize) -> (usize, String) {
    let trial = training_trial(storage, name, epochs);
    let worker = trial.worker.unwrap();
    signal(
        worker.rsplit(':').next().unwrap().parse().unwrap(),
        libc::SIGKILL,
    );
    (trial.number, worker)
}

/// Sends `signal` to process `pid`.
fn signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) with a process id and a signal number touches no memory of this process.
    assert_eq!(
        unsafe { libc::kill(pid, signal) },
        0,
        "kill -{signal} {pid}"
    );
}

/// Every trial done once, the killed worker's trial finished by another on a second attempt,
/// and the same results as one worker's.
fn check_study(storage: &Storage, name: &str, killed: &(usize, String), expected: &[String]) {
    let mut store = storage.open().unwrap();
    let study = store.study(name).unwrap();
    let trials = store.trials(&study).unwrap();
    assert_eq!(trials.len(), 3);
    for t in &trials {
        assert_eq!(t.state, TrialState::Done, "{t:?}");
        assert_eq!(t.epochs.len(), 3, "{t:?}");
        if t.number == killed.0 {
            assert_eq!((t.attempts, t.lost), (2, 1), "{t:?}");
            assert_ne!(t.worker.as_ref(), Some(&killed.1), "{t:?}");
        } else {
            assert_eq!((t.attempts, t.lost), (1, 0), "run once: {t:?}");
        }
    }
    assert_eq!(results(&trials), expected);
}

#[test]
fn two_local_workers_on_sqlite_survive_a_killed_worker() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp("workers-sqlite");
    let expected = reference(&dir);
    let file = grid(&dir);
    let runs = dir.join("runs");
    let start = Instant::now();
    let mut search = trainer(
        &[
            "search",
            "--config",
            file.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
            "--workers",
            "2",
            "--heartbeat",
            "0.2",
            "--grace",
            "3",
            "--retries",
            "1",
        ],
        &dir.join("search.log"),
    );
    let storage = Storage::Sqlite(runs.join("grid/study.db"));
    // After its first epoch: the trial resumes from its run folder.
    let killed = kill_a_worker_mid_trial(&storage, "grid", 1);
    let status = search.wait().unwrap();
    let log = std::fs::read_to_string(dir.join("search.log")).unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("ended (signal: 9"), "{log}");
    eprintln!(
        "two workers, one killed: {:.1} s",
        start.elapsed().as_secs_f64()
    );
    check_study(&storage, "grid", &killed, &expected);

    let logs: String = std::fs::read_dir(runs.join("grid/logs"))
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    assert!(
        logs.contains(&format!("trial {}: resuming", killed.0)) && logs.contains("Resuming"),
        "{logs}"
    );
    let csv = std::fs::read_to_string(runs.join("grid/search.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    let (best, _) = search::report(&search::SearchReportArgs {
        search: runs.join("grid").display().to_string(),
        name: None,
        out: None,
    })
    .unwrap();
    assert!(
        best.checkpoint
            .as_deref()
            .is_some_and(|c| Path::new(c).is_file())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ctrl_c_gives_the_trial_back_and_the_same_command_finishes_the_study() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp("workers-ctrl-c");
    let file = grid(&dir);
    let runs = dir.join("runs");
    let args = [
        "search",
        "--config",
        file.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
        "--heartbeat",
        "0.2",
        "--grace",
        "60",
    ];
    let mut worker = trainer(&args, &dir.join("first.log"));
    let storage = Storage::Sqlite(runs.join("grid/study.db"));
    let trial = training_trial(&storage, "grid", 0);
    signal(worker.id().try_into().unwrap(), libc::SIGINT);
    let status = worker.wait().unwrap();
    let log = std::fs::read_to_string(dir.join("first.log")).unwrap();
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("goes back to the study"), "{log}");
    let mut store = storage.open().unwrap();
    let study = store.study("grid").unwrap();
    let released = &store.trials(&study).unwrap()[trial.number];
    assert_eq!(
        (released.state, released.attempts, released.lost),
        (TrialState::Queued, 1, 0),
        "queued at once, no retry spent: {released:?}"
    );

    // No grace to wait for: the same command claims it again at once and finishes the study.
    let start = Instant::now();
    let status = trainer(&args, &dir.join("second.log")).wait().unwrap();
    assert!(status.success());
    assert!(start.elapsed() < Duration::from_secs(60));
    let trials = store.trials(&study).unwrap();
    assert!(
        trials.iter().all(|t| t.state == TrialState::Done),
        "{trials:?}"
    );
    assert_eq!(trials[trial.number].attempts, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Where PostgreSQL's server programs are: `$PG_BIN`, Debian's newest
/// `/usr/lib/postgresql/*/bin`, or the `PATH`.
fn postgres_programs() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|dir| dir.join("initdb").is_file());
    }
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|versions| {
            versions
                .flatten()
                .map(|v| v.path().join("bin"))
                .filter(|bin| bin.join("initdb").is_file())
                .max_by_key(|bin| {
                    let version = bin.parent().unwrap().file_name().unwrap().to_string_lossy();
                    version.parse::<u32>().unwrap_or(0)
                })
        });
    debian.or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?).find(|dir| dir.join("initdb").is_file())
    })
}

/// A throwaway PostgreSQL cluster, stopped and removed when dropped.
struct Cluster {
    dir: PathBuf,
    programs: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    fn start() -> Self {
        let programs = postgres_programs().unwrap_or_else(|| {
            panic!(
                "PostgreSQL's server programs (initdb, pg_ctl) are not installed (or not in \
                 $PG_BIN): ./check installs Debian's `postgresql`; elsewhere set PG_BIN to \
                 their folder"
            )
        });
        // PostgreSQL refuses to run as root: there it runs as the user Debian's package made.
        // SAFETY: geteuid(2) only reads the process's user id.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = temp("postgres");
        if as_postgres {
            let owned = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(owned.success(), "chown postgres {}", dir.display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self {
            dir,
            programs,
            port,
            as_postgres,
        };
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "search",
                "--auth=trust",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            cluster.dir.display()
        );
        let log = cluster.dir.join("server.log");
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        cluster
    }

    fn url(&self) -> String {
        format!("postgres://search@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, program: &str, args: &[&str]) {
        let path = self.programs.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = command.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
#[ignore = "needs PostgreSQL's server programs (Debian's postgresql): run ./check"]
fn three_workers_on_postgres_survive_a_killed_worker() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::start();
    let storage = Storage::parse(&cluster.url()).unwrap();
    store_rules(&storage);
    racing_claims(&storage);

    let dir = temp("workers-postgres");
    let expected = reference(&dir);
    let file = grid(&dir);
    let runs = dir.join("runs");
    let url = cluster.url();
    let start = Instant::now();
    let mut workers: Vec<Child> = (0..3)
        .map(|i| {
            trainer(
                &[
                    "search",
                    "--storage",
                    &url,
                    "--config",
                    file.to_str().unwrap(),
                    "--runs-dir",
                    runs.to_str().unwrap(),
                    "--heartbeat",
                    "0.2",
                    "--grace",
                    "3",
                    "--retries",
                    "1",
                ],
                &dir.join(format!("worker-{i}.log")),
            )
        })
        .collect();
    // Before its first epoch ends: the trial starts again from scratch.
    let killed = kill_a_worker_mid_trial(&storage, "grid", 0);
    let pid: u32 = killed.1.rsplit(':').next().unwrap().parse().unwrap();
    let mut survivors = BTreeSet::new();
    for (i, worker) in workers.iter_mut().enumerate() {
        let status = worker.wait().unwrap();
        if worker.id() != pid {
            let log = std::fs::read_to_string(dir.join(format!("worker-{i}.log"))).unwrap();
            assert!(status.success(), "{log}");
            survivors.insert(i);
        }
    }
    assert_eq!(survivors.len(), 2);
    eprintln!(
        "three workers, one killed: {:.1} s",
        start.elapsed().as_secs_f64()
    );
    check_study(&storage, "grid", &killed, &expected);

    // The report from the store, as on any machine that reaches it.
    let out = dir.join("report");
    let (best, page) = search::report(&search::SearchReportArgs {
        search: url.clone(),
        name: Some("grid".into()),
        out: Some(out.clone()),
    })
    .unwrap();
    assert!(page.is_file() && out.join("curves.png").is_file());
    assert!(
        best.checkpoint
            .as_deref()
            .is_some_and(|c| Path::new(c).is_file())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

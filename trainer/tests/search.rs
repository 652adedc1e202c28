//! Hyperparameter search: the samplers on a cheap synthetic objective, and real searches on
//! the committed sample (the study store, failures, joining a study, the report).

mod common;

use std::path::Path;

use common::{sample, temp};
use trainer::search::{self, Method, Params, Sampler, SearchArgs, SearchSpec, TrialState};

/// The options of `trainer search --config FILE --runs-dir RUNS` and `extra`.
fn search_args(file: &Path, runs: &Path, extra: &[&str]) -> SearchArgs {
    let mut args = vec![
        "--config",
        file.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ];
    args.extend(extra);
    SearchArgs::parse(&args).unwrap()
}

const SPACE: &str = r#"
epochs = 1
[space]
lr = { log-uniform = [1e-5, 1.0] }
dropout = { uniform = [0.0, 0.8] }
optimizer = { choices = ["sgd", "adam", "rmsprop", "adamw"] }
hidden = { int = [16, 2048] }
"#;

/// A stand-in for validation accuracy, best (1.0) at lr 3e-3, dropout 0.2, adam, 600 units.
fn objective(params: &Params) -> f64 {
    let get = |name: &str| &params.iter().find(|(n, _)| n == name).unwrap().1;
    let lr = get("lr").as_float().unwrap();
    let dropout = get("dropout").as_float().unwrap();
    let hidden = get("hidden").as_integer().unwrap() as f64;
    let optimizer_penalty = if get("optimizer").as_str() == Some("adam") {
        0.0
    } else {
        0.15
    };
    1.0 - ((lr.ln() - 3e-3f64.ln()) / 4.0).powi(2)
        - (dropout - 0.2).powi(2)
        - ((hidden - 600.0) / 2000.0).powi(2)
        - optimizer_penalty
}

fn best_of(method: &str, seed: u64, trials: usize) -> f64 {
    let spec = SearchSpec::parse(&format!(
        "method = \"{method}\"\nseed = {seed}\ntrials = {trials}\n{SPACE}"
    ))
    .unwrap();
    let mut sampler = Sampler::new(&spec).unwrap();
    let mut best = f64::MIN;
    for k in 0..sampler.trials(&spec) {
        let params = sampler.ask(k).unwrap();
        let score = objective(&params);
        sampler.tell(&params, Some(score)).unwrap();
        best = best.max(score);
    }
    best
}

#[test]
fn bayesian_search_beats_random_search_on_a_synthetic_objective() {
    let seeds = 0..8u64;
    let bayes: Vec<f64> = seeds.clone().map(|s| best_of("bayesian", s, 60)).collect();
    let random: Vec<f64> = seeds.map(|s| best_of("random", s, 60)).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let wins = bayes.iter().zip(&random).filter(|(b, r)| b > r).count();
    assert!(
        mean(&bayes) > mean(&random) && wins >= 6,
        "bayesian {bayes:?} vs random {random:?}"
    );
}

#[test]
fn the_grid_covers_every_combination_and_bad_files_are_refused() {
    let spec = SearchSpec::parse(
        "method = \"grid\"\nepochs = 1\n[space]\nlr = { log-uniform = [1e-4, 1e-2] }\nflip = { choices = [true, false] }\n",
    )
    .unwrap();
    assert_eq!(spec.method, Method::Grid);
    let mut sampler = Sampler::new(&spec).unwrap();
    assert_eq!(sampler.trials(&spec), 6);
    let all: Vec<Params> = (0..6).map(|k| sampler.ask(k).unwrap()).collect();
    let lrs: Vec<f64> = all.iter().map(|p| p[1].1.as_float().unwrap()).collect();
    // Keys in name order (flip, lr), the last one varying fastest; lr at 3 log-spaced points.
    assert_eq!(all[0][0].1, toml::Value::Boolean(true));
    for (lr, expected) in lrs.iter().zip([1e-4, 1e-3, 1e-2]) {
        assert!((lr / expected - 1.0).abs() < 1e-9, "{lrs:?}");
    }
    for k in 0..6 {
        for j in 0..k {
            assert_ne!(all[k], all[j], "trials {j} and {k} repeat");
        }
    }
    for file in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/searches")).unwrap() {
        let path = file.unwrap().path();
        SearchSpec::parse(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    for bad in [
        "method = \"grid\"\nepochs = 1\n[space]\n",
        "method = \"grid\"\nepochs = 1\n[space]\nlr = { log-uniform = [0.0, 1.0] }\n",
        "method = \"grid\"\nepochs = 1\n[space]\nlr = { normal = [0.0, 1.0] }\n",
        "method = \"genetic\"\nepochs = 1\n[space]\nlr = { uniform = [0.0, 1.0] }\n",
        "method = \"grid\"\nepochs = 1\n[fixed]\nlr = 0.1\n[space]\nlr = { uniform = [0.0, 1.0] }\n",
    ] {
        assert!(SearchSpec::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_search_records_each_trial_in_its_store_survives_a_failure_and_is_joined_again() {
    let dir = temp("search");
    let file = dir.join("tiny.toml");
    let spec = |lr: &str| {
        format!(
            "method = \"grid\"\nepochs = 1\n[fixed]\nmodel = \"tiny-cnn\"\nbackend = \"flex\"\ndata-dir = \"{}\"\n\
             [space]\nactivation = {{ choices = [\"relu\", \"no-such-activation\"] }}\nlr = {{ choices = [{lr}] }}\n",
            sample().display()
        )
    };
    std::fs::write(&file, spec("0.003")).unwrap();
    let runs = dir.join("runs");
    let trials = search::run(&search_args(&file, &runs, &[])).unwrap();
    assert_eq!(trials.len(), 2);
    assert_eq!(trials[0].state, TrialState::Done);
    assert!(trials[0].score.unwrap() > 0.0 && trials[0].test_accuracy.is_some());
    assert_eq!(trials[0].epochs.len(), 1, "the epochs are in the store");
    assert!(trials[0].epochs[0].val.is_some());
    assert_eq!(trials[1].state, TrialState::Failed);
    assert!(
        trials[1].status().contains("no-such-activation"),
        "{:?}",
        trials[1]
    );
    let search_dir = runs.join("tiny");
    let best = search_dir.join("trial-000/best.safetensors");
    assert!(best.exists(), "a normal run folder");
    assert_eq!(
        trials[0].checkpoint.as_deref(),
        Some(best.to_str().unwrap())
    );
    assert!(search_dir.join("study.db").is_file(), "the default store");
    let csv = std::fs::read_to_string(search_dir.join("search.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.starts_with(
            "trial,status,score,test_accuracy,seconds,attempts,worker,run_dir,activation,lr"
        ),
        "{csv}"
    );

    // The same command again joins the finished study and re-runs nothing.
    let written = std::fs::metadata(&best).unwrap().modified().unwrap();
    let again = search::run(&search_args(&file, &runs, &["--resume"])).unwrap();
    assert_eq!(again, trials);
    assert_eq!(
        std::fs::metadata(&best).unwrap().modified().unwrap(),
        written
    );

    // Another search under the same name is refused, naming the difference.
    std::fs::write(&file, spec("0.003, 0.01")).unwrap();
    let err = format!(
        "{:#}",
        search::run(&search_args(&file, &runs, &[])).unwrap_err()
    );
    assert!(err.contains("space.lr") && err.contains("0.01"), "{err}");
    // --resume only continues a study that exists.
    let err = format!(
        "{:#}",
        search::run(&search_args(&file, &runs, &["--name", "other", "--resume"])).unwrap_err()
    );
    assert!(err.contains("no study `other`"), "{err}");
}

#[test]
fn the_analysis_finds_the_best_trial_and_the_correlations() {
    let dir = temp("search-report");
    std::fs::write(
        dir.join("search.toml"),
        "method = \"random\"\nepochs = 1\n[space]\nlr = { log-uniform = [1e-4, 1e-1] }\nflip = { choices = [true, false] }\n",
    )
    .unwrap();
    // The score rises with log10(lr) exactly: correlation +1. Trial 3 failed.
    // A search.csv of an older build: status `ok`, no attempts, worker or run folder.
    let mut csv = String::from("trial,status,score,test_accuracy,seconds,flip,lr\n");
    for (k, lr) in [1e-4f64, 1e-3, 1e-2, 5e-2, 1e-1].into_iter().enumerate() {
        let score = 0.5 + 0.1 * lr.log10();
        if k == 3 {
            csv.push_str(&format!("{k},failed: diverged,,,1.0,true,{lr}\n"));
        } else {
            csv.push_str(&format!("{k},ok,{score},{score},1.0,{},{lr}\n", k % 2 == 0));
        }
    }
    std::fs::write(dir.join("search.csv"), csv).unwrap();
    let spec =
        SearchSpec::parse(&std::fs::read_to_string(dir.join("search.toml")).unwrap()).unwrap();
    let results = search::read_csv(&dir.join("search.csv"), &spec).unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[3].score, None);
    assert_eq!(results[3].state, TrialState::Failed);
    assert_eq!(results[0].state, TrialState::Done);
    let ok: Vec<_> = results.iter().filter(|r| r.score.is_some()).collect();
    let series = search::numeric_series(&spec, &ok);
    assert_eq!(series[0].0, "log10(lr)");
    assert!((search::pearson(&series[0].1, &series[1].1) - 1.0).abs() < 1e-9);
    assert!((search::pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    let (best, _) = search::report(&search::SearchReportArgs {
        search: dir.display().to_string(),
        name: None,
        out: None,
    })
    .unwrap();
    assert_eq!(best.number, 4, "lr 0.1 scores highest");
    assert!(image::open(dir.join("params.png")).is_ok());
}

#[test]
fn hopeless_trials_are_cut_after_their_first_epoch() {
    let dir = temp("search-cut");
    let file = dir.join("cut.toml");
    std::fs::write(
        &file,
        format!(
            "method = \"grid\"\nepochs = 3\ncut-below = 0.99\n[fixed]\npreset = \"seed004-tiny-cnn\"\nbackend = \"flex\"\n\
             data-dir = \"{}\"\n[space]\nlr = {{ choices = [0.003] }}\n",
            sample().display()
        ),
    )
    .unwrap();
    let results = search::run(&search_args(&file, &dir, &[])).unwrap();
    assert_eq!(results[0].state, TrialState::Cut);
    assert!(results[0].score.is_some(), "a cut trial keeps its score");
    let metrics = std::fs::read_to_string(dir.join("cut/trial-000/metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "one epoch of three: {metrics}");
    // The preset named in [fixed] under the search's own options.
    let config = std::fs::read_to_string(dir.join("cut/trial-000/config.toml")).unwrap();
    assert!(
        config.contains("model = \"tiny-cnn\"") && config.contains("gamma = 0.995"),
        "{config}"
    );
    assert!(config.contains("epochs = 3.0"), "{config}");
}

#[test]
fn a_search_named_train_over_list_values_records_and_resumes_from_the_command_line() {
    let dir = temp("search-fc");
    let file = dir.join("s.toml");
    std::fs::write(
        &file,
        format!(
            "method = \"grid\"\nepochs = 1\n[fixed]\nmodel = \"configurable-cnn\"\nfilters = \"8,16\"\n\
             backend = \"flex\"\nlimit = 96\nbatch-size = 32\nval-ratio = 0.25\ndata-dir = \"{}\"\n\
             [space]\nfc = {{ choices = [\"32,16\", \"none\"] }}\n",
            sample().display()
        ),
    )
    .unwrap();
    // `train` as the search's name once made the command line read it as `trainer train`.
    let search = |resume: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_trainer"));
        command.args(["search", "--name", "train", "--config"]);
        command.arg(&file).arg("--runs-dir").arg(dir.join("runs"));
        if resume {
            command.arg("--resume");
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    search(false);
    let search_dir = dir.join("runs/train");
    let spec = SearchSpec::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let results = search::read_csv(&search_dir.join("search.csv"), &spec).unwrap();
    assert_eq!(results.len(), 2);
    assert!(
        results.iter().all(|r| r.state == TrialState::Done),
        "{results:?}"
    );
    // A value with a comma survives the CSV as the string it was.
    assert_eq!(results[0].params[0].1, toml::Value::String("32,16".into()));
    let config = std::fs::read_to_string(search_dir.join("trial-000/config.toml")).unwrap();
    assert!(config.contains("fc = \"32,16\""), "{config}");

    // Resuming a finished search re-runs nothing and keeps both rows.
    let kept = search_dir.join("trial-000/best.safetensors");
    let written = std::fs::metadata(&kept).unwrap().modified().unwrap();
    search(true);
    assert_eq!(
        std::fs::metadata(&kept).unwrap().modified().unwrap(),
        written
    );
    let again = search::read_csv(&search_dir.join("search.csv"), &spec).unwrap();
    assert_eq!(again, results);
    let report = search::report(&search::SearchReportArgs {
        search: search_dir.display().to_string(),
        name: None,
        out: None,
    });
    assert!(report.is_ok(), "{report:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

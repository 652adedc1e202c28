//! A `trainer search` file: any text gives a search whose first trials' configurations are
//! made (or refused with an error), or an error; never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainer::search::{Sampler, SearchSpec, trial_config};

fuzz_target!(|text: &str| {
    let Ok(spec) = SearchSpec::parse(text) else {
        return;
    };
    let Ok(mut sampler) = Sampler::new(&spec) else {
        return;
    };
    let trials = sampler.trials(&spec);
    let dir = std::path::Path::new("runs/fuzz");
    for k in 0..trials.min(3) {
        let Ok(params) = sampler.ask(k) else {
            return;
        };
        let _ = trial_config(&spec, dir, k, &params, format!("t{k}"));
        let _ = sampler.tell(&params, Some(0.5));
    }
});

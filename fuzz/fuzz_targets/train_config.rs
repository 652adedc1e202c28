//! A `--config` TOML file merged over the defaults (and over a preset, when the file names
//! one): any text gives a configuration that writes and re-reads as itself, or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trainer::train::TrainConfig;
use trainer::train::config::preset_layer;

fuzz_target!(|text: &str| {
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return;
    };
    let mut layers = Vec::new();
    if let Some(toml::Value::String(name)) = table.get("preset")
        && let Ok(layer) = preset_layer(name)
    {
        layers.push(layer);
    }
    let mut table = table;
    table.remove("preset");
    layers.push(("the fuzz input".to_string(), table));
    if let Ok(config) = TrainConfig::layered(&layers) {
        let written = config.to_toml().expect("a configuration writes as TOML");
        let table: toml::Table = toml::from_str(&written).expect("written TOML parses");
        let again = TrainConfig::layered(&[("config.toml".to_string(), table)])
            .expect("a written configuration reads back");
        assert_eq!(again.to_toml().unwrap(), written);
        let _ = model::ModelConfig::from_name(&config.model.model, &config.model.options);
    }
});

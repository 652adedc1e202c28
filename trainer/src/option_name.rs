//! The name a command-line option value is written with.

use clap::ValueEnum;

/// The name clap parses as `value` (`mirror-translate`, `flex`, …): what its `Display` and a
/// configuration file write.
pub fn option_name(value: &impl ValueEnum) -> String {
    value
        .to_possible_value()
        .expect("no skipped variants")
        .get_name()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::option_name;

    #[derive(clap::ValueEnum, Clone)]
    enum Fill {
        Black,
        MirrorTranslate,
    }

    #[test]
    fn a_value_is_named_as_the_command_line_parses_it() {
        assert_eq!(option_name(&Fill::Black), "black");
        assert_eq!(option_name(&Fill::MirrorTranslate), "mirror-translate");
    }
}

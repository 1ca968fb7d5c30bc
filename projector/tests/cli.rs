//! The operator's command line: `--help` answers for the binary and each of its commands,
//! without settings or services.

use infra::testing::help;

const BINARY: &str = env!("CARGO_BIN_EXE_projector");

#[test]
fn help_describes_the_binary_and_each_command() {
    let commands: &[&str] = &["rebuild", "rebuild-redis", "redrive", "waiting"];
    let usage = help(BINARY, &[]);
    for command in commands {
        assert!(usage.contains(command), "{command} is listed: {usage}");
        assert!(help(BINARY, &[command]).contains("Usage:"));
    }
}

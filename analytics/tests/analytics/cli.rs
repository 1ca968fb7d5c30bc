//! The command line: `--help` answers for the binary and each command, without settings or
//! services.

use infra::testing::help;

const BINARY: &str = env!("CARGO_BIN_EXE_analytics");

#[test]
fn help_describes_the_binary_and_each_command() {
    let usage = help(BINARY, &[]);
    for command in ["run", "catch-up", "report"] {
        assert!(usage.contains(command), "{command} is listed: {usage}");
        assert!(help(BINARY, &[command]).contains("Usage:"));
    }
    assert!(help(BINARY, &["report"]).contains("--hours"));
}

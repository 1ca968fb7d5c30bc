//! The command line: `--help` answers for the binary and each command, without settings or
//! services.

use infra::testing::{assert_help_lists, help};

const BINARY: &str = env!("CARGO_BIN_EXE_analytics");

#[test]
fn help_describes_the_binary_and_each_command() {
    assert_help_lists(BINARY, &["run", "catch-up", "report"]);
    assert!(help(BINARY, &["report"]).contains("--hours"));
}

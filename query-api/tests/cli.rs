//! The operator's command line: `--help` answers for the binary and each of its commands,
//! without settings or services.

use infra::testing::assert_help_lists;

#[test]
fn help_describes_the_binary_and_each_command() {
    assert_help_lists(env!("CARGO_BIN_EXE_query-api"), &[]);
}

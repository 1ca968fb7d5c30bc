//! The operator's command line: `--help` answers for the binary and each of its commands,
//! without settings or services.

use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_command-api");

fn help(args: &[&str]) -> String {
    let output = Command::new(BINARY)
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{args:?} --help: {output:?}");
    String::from_utf8(output.stdout).expect("help is text")
}

#[test]
fn help_describes_the_binary_and_each_command() {
    let commands: &[&str] = &["sweep-media"];
    let usage = help(&[]);
    for command in commands {
        assert!(usage.contains(command), "{command} is listed: {usage}");
        assert!(help(&[command]).contains("Usage:"));
    }
}

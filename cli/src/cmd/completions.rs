//! `shoal completions bash|zsh|fish`: the shell completion script, on stdout.

use clap::CommandFactory;

use crate::error::Result;

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

pub fn run(args: CompletionsArgs) -> Result<i32> {
    let mut cmd = crate::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "shoal", &mut buf);
    let text = String::from_utf8_lossy(&buf);
    outln!("{}", text.trim_end());
    Ok(0)
}

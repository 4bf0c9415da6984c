//! `capsule completions SHELL` and `capsule man [COMMAND]`: generated from the clap
//! definitions, so they always match the flags the binary takes.

use std::io::Write;

use anyhow::anyhow;
use clap::{Args, CommandFactory, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: Shell,
}

pub const COMPLETIONS_ABOUT: &str = "\
Print the completion script of SHELL on standard output. Install it with, for example:
  capsule completions bash > ~/.local/share/bash-completion/completions/capsule
  capsule completions zsh > ~/.zfunc/_capsule      # with fpath+=(~/.zfunc) in .zshrc
  capsule completions fish > ~/.config/fish/completions/capsule.fish";

#[derive(Debug, Args)]
pub struct ManArgs {
    /// A subcommand (run, ps, image…): its page, capsule-COMMAND(1); default: capsule(1)
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

pub const MAN_ABOUT: &str = "\
Print a man page (roff) on standard output: capsule(1), or capsule-COMMAND(1) for a \
subcommand. Read it with `capsule man | man -l -`, or install it with, for example, \
`capsule man > ~/.local/share/man/man1/capsule.1`.";

pub fn completions(args: CompletionsArgs) -> anyhow::Result<()> {
    let mut command = super::Cli::command();
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "capsule", &mut out);
    std::io::stdout().lock().write_all(&out)?;
    Ok(())
}

pub fn man(args: ManArgs) -> anyhow::Result<()> {
    let mut command = super::Cli::command();
    command.build();
    let page = match &args.command {
        None => command,
        Some(name) => {
            let sub = command
                .find_subcommand(name)
                .ok_or_else(|| anyhow!("man {name}: no such command"))?;
            // Built, a subcommand is displayed as capsule-NAME.
            sub.clone()
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out)?;
    std::io::stdout().lock().write_all(&out)?;
    Ok(())
}

use clap::{Parser, Subcommand};
use medfm::commands;

#[derive(Parser)]
#[command(
    name = "medfm",
    about = "Fine-tune natural-image foundation models on medical image classification",
    disable_version_flag = true,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Print the version, the libtorch version and whether CUDA is available.
    #[arg(short = 'V', long = "version")]
    version: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: commands::train::Args,
}

#[derive(Subcommand)]
enum Cmd {}

fn main() {
    let cli = Cli::parse();
    if cli.version {
        println!("medfm {} ({})", env!("CARGO_PKG_VERSION"), medfm::device::runtime_summary());
        return;
    }
    let result = match &cli.cmd {
        None => commands::train::run(&cli.run),
        Some(cmd) => match *cmd {},
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

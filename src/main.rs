use clap::{Parser, Subcommand};
use medfm::commands;

#[derive(Parser)]
#[command(
    name = "medfm",
    about = "Fine-tune natural-image foundation models on medical image classification",
    disable_version_flag = true,
    args_conflicts_with_subcommands = true,
    // `--lr -1` reaches validation (which names the setting) instead of parsing as a flag.
    allow_negative_numbers = true
)]
struct Cli {
    /// Print the version, the libtorch version, whether CUDA is available and how the JPEG
    /// decoder was built.
    #[arg(short = 'V', long = "version")]
    version: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: commands::train::Args,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate config and data; print per-split class counts; write/reuse val_ids.json.
    // The run flags' negative numbers reach validation here too (see `Cli`).
    #[command(allow_negative_numbers = true)]
    Inspect(commands::inspect::Args),
    /// Write trunk features (pooled, tokens) of an input tensor file.
    Features(commands::features::Args),
    /// List every supported backbone.
    Backbones(commands::backbones::Args),
    /// Write a small synthetic dataset in a real dataset's layout.
    Synth(commands::synth::Args),
    /// One table and figure of every run's test metrics.
    Report(commands::report::Args),
    /// Test two runs' metrics against each other (DeLong, McNemar, paired bootstrap).
    Compare(commands::compare::Args),
    /// The reference's learning-rate grid search (lr_finder.grid_search_params).
    // The run flags it refuses (it evaluates no saved model) stay out of its help.
    #[command(
        allow_negative_numbers = true,
        mut_arg("test", |a| a.hide(true)),
        mut_arg("checkpoint", |a| a.hide(true))
    )]
    LrFinder(commands::lr_finder::Args),
    /// Class probabilities of image files from a trained run or an exported model.
    Predict(commands::predict::Args),
    /// Write a run's model as one self-contained safetensors file for `predict --model`.
    Export(commands::export::Args),
    /// Where the model looks: Grad-CAM, Grad-CAM++ or attention rollout maps of image files.
    Explain(commands::explain::Args),
    /// Linear probes (DINOv2's linear heads, logistic regression) on the frozen trunk's
    /// features, over a grid and label fractions.
    // The run flags it refuses (it evaluates no saved model and replaces no run) stay out of
    // its help.
    #[command(
        allow_negative_numbers = true,
        mut_arg("test", |a| a.hide(true)),
        mut_arg("checkpoint", |a| a.hide(true)),
        mut_arg("overwrite", |a| a.hide(true))
    )]
    Probe(commands::probe::Args),
}

fn main() {
    medfm::device::use_passive_openmp_threads();
    medfm::device::number_gpus_by_pci_bus();
    medfm::device::keep_tensors_in_heap();
    let cli = Cli::parse();
    // `--debug` is a run flag (the main job, inspect, lr-finder); MEDFM_DEBUG for any command.
    let debug_flag = match &cli.cmd {
        None => cli.run.debug,
        Some(Cmd::Inspect(a)) => a.run.debug,
        Some(Cmd::LrFinder(a)) => a.run.debug,
        Some(Cmd::Probe(a)) => a.run.debug,
        Some(_) => false,
    };
    medfm::messages::set_debug(debug_flag || medfm::messages::debug_from_env());
    if cli.version {
        medfm::info!(
            "medfm {} ({})",
            env!("CARGO_PKG_VERSION"),
            medfm::device::runtime_summary()
        );
        medfm::info!("{}", medfm::data::jpeg::decoder_summary());
        return;
    }
    let result = match &cli.cmd {
        None => commands::train::run(&cli.run),
        Some(Cmd::Inspect(a)) => commands::inspect::run(a),
        Some(Cmd::Features(a)) => commands::features::run(a),
        Some(Cmd::Backbones(a)) => commands::backbones::run(a),
        Some(Cmd::Synth(a)) => commands::synth::run(a),
        Some(Cmd::Report(a)) => commands::report::run(a),
        Some(Cmd::Compare(a)) => commands::compare::run(a),
        Some(Cmd::LrFinder(a)) => commands::lr_finder::run(a),
        Some(Cmd::Predict(a)) => commands::predict::run(a),
        Some(Cmd::Export(a)) => commands::export::run(a),
        Some(Cmd::Explain(a)) => commands::explain::run(a),
        Some(Cmd::Probe(a)) => commands::probe::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

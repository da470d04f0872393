//! Command-line arguments (clap derive; no logic here).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Examples:
  loraforge base add ./Qwen2.5-7B-Instruct --name qw2.5-7-i --template qwen.Modelfile
  loraforge trained add ./runs/support-bot --base qw2.5-7-i --train-name support-bot
  loraforge trained save qw2.5-7-i_support-bot_20261123_3f2a
  loraforge saved deploy qw2.5-7-i_support-bot_20261123_3f2a_s_9c1d --quant q4_K_M
  loraforge demo

Environment:
  LORAFORGE_HOME          store root (default: the platform data folder, ~/.local/share/loraforge)
  OLLAMA_HOST             Ollama server (default http://127.0.0.1:11434)
  LORAFORGE_LOCK_TIMEOUT  seconds to wait for the store lock (default 30)
  LORAFORGE_SERVE_TOKEN   access token of `loraforge serve` (default: random per start)
  HF_TOKEN                Hugging Face token for `push` (else --token, else the `hf auth login` token file)
  HF_ENDPOINT             Hugging Face Hub (default https://huggingface.co)";

/// loraforge: from a trained LoRA adapter to a model running in Ollama.
#[derive(Debug, Parser)]
#[command(name = "loraforge", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// The store root (overrides LORAFORGE_HOME).
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars or status lines.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Base models: local Hugging Face folders adapters are trained on.
    #[command(subcommand)]
    Base(BaseCommand),
    /// Trained models: LoRA adapters (or trainer output folders) tied to a base.
    #[command(subcommand)]
    Trained(TrainedCommand),
    /// Saved models: adapters merged into their base, standalone.
    #[command(subcommand)]
    Saved(SavedCommand),
    /// Deployed models: saved models running in Ollama.
    #[command(subcommand)]
    Deployed(DeployedCommand),
    /// Background jobs (saves).
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Merge a PEFT LoRA adapter into its base model (no store involved).
    Merge(MergeArgs),
    /// Convert a Hugging Face model folder to GGUF.
    Convert(ConvertArgs),
    /// Convert a PEFT LoRA adapter to a LoRA GGUF (llama.cpp `--lora`), like convert_lora_to_gguf.py.
    ConvertLora(ConvertLoraArgs),
    /// Quantize a GGUF file like llama-quantize.
    Quantize(QuantizeArgs),
    /// Show a GGUF file's metadata and tensors.
    Inspect(InspectArgs),
    /// Run the whole lifecycle on a small generated model.
    Demo(DemoArgs),
    /// Serve the web UI (Trained / Saved / Deployed pages with Save, Deploy, Delete).
    Serve(ServeArgs),
    /// Check the store: name every record that cannot be read (lists skip them), and settle
    /// jobs no process can finish.
    Doctor,
}

/// `loraforge base …`
#[derive(Debug, Subcommand)]
pub enum BaseCommand {
    /// Register a local Hugging Face model folder.
    Add {
        /// The model folder (config.json + safetensors).
        path: PathBuf,
        /// Technical name: short and unique, `[a-z0-9][a-z0-9._-]{0,31}` (e.g. `qw2.5-7-i`).
        #[arg(long)]
        name: String,
        /// Deployment template: an Ollama Modelfile fragment (TEMPLATE, SYSTEM, PARAMETER…).
        #[arg(long, value_name = "MODELFILE")]
        template: Option<PathBuf>,
        /// Copy the folder into the store instead of referencing it where it is.
        #[arg(long)]
        copy: bool,
    },
    /// List base models.
    List,
    /// Show a base model and its card.
    Show(ShowArgs),
    /// Remove a base model (refused while trained models use it, unless --force).
    Rm {
        /// Technical name.
        name: String,
        /// Remove even if trained models use it.
        #[arg(long)]
        force: bool,
    },
}

/// `show NAME` options shared by every kind.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The entry's name.
    pub name: String,
    /// Print the model card as Markdown (README.md) instead of a summary.
    #[arg(long)]
    pub readme: bool,
}

/// `loraforge trained …`
#[derive(Debug, Subcommand)]
pub enum TrainedCommand {
    /// Register a PEFT adapter folder or a trainer output folder.
    Add {
        /// Adapter folder (adapter_config.json + adapter_model.safetensors) or trainer output (checkpoint-N/).
        path: PathBuf,
        /// The base model's technical name.
        #[arg(long)]
        base: String,
        /// A short name for this training run ([A-Za-z0-9.-], spaces become '-').
        #[arg(long)]
        train_name: String,
        /// Use checkpoint-N instead of the final adapter.
        #[arg(long, value_name = "N")]
        checkpoint: Option<u64>,
    },
    /// List trained models (those whose adapter was removed only with --all).
    List {
        /// Also list trained models whose adapter files were removed (`trained rm`).
        #[arg(long)]
        all: bool,
    },
    /// Show a trained model and its card.
    Show(ShowArgs),
    /// Remove a trained model's adapter files (saved models made from it stay).
    Rm {
        /// Trained model name.
        name: String,
        /// Also forget its record and card.
        #[arg(long)]
        purge: bool,
    },
    /// Save: merge the adapter into its base as a new saved model (a job).
    Save {
        /// Trained model name.
        name: String,
        /// Return at once with the job id; the merge continues in the background.
        #[arg(long)]
        background: bool,
        /// Output dtype.
        #[arg(long, default_value = "auto", value_parser = ["auto", "bf16", "f16", "f32"])]
        dtype: String,
        /// Test aid (hidden): the job's worker pauses this long at every progress step, so tests
        /// can stop it mid-job deterministically.
        #[arg(long, hide = true, value_name = "MS")]
        test_progress_delay_ms: Option<u64>,
    },
    /// Export the adapter alone (save method `lora`) as the folder PEFT writes, with the base's
    /// tokenizer files and a README card.
    Export {
        /// Trained model name.
        name: String,
        /// Output folder (must not exist, or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Also write the LoRA GGUF (adapter.gguf) for llama.cpp's --lora.
        #[arg(long)]
        gguf: bool,
        /// Type of the LoRA GGUF.
        #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16", "q8_0", "auto"])]
        outtype: String,
    },
    /// Push the adapter to the Hugging Face Hub: the folder `trained export` writes (PEFT files,
    /// the base's tokenizer files, the card as README.md).
    Push(TrainedPushArgs),
}

/// Where a push goes on the Hugging Face Hub (`HF_ENDPOINT` changes the Hub).
#[derive(Debug, Args)]
pub struct HubArgs {
    /// The repository: owner/name (created when missing).
    pub repo_id: String,
    /// Create the repository private (an existing one keeps its visibility).
    #[arg(long)]
    pub private: bool,
    /// The branch to commit to.
    #[arg(long, default_value = "main", value_name = "BRANCH")]
    pub revision: String,
    /// Hub token (else HF_TOKEN, else the token file `hf auth login` writes).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// `loraforge trained push …`
#[derive(Debug, Args)]
pub struct TrainedPushArgs {
    /// Trained model name.
    pub name: String,
    /// Where to push.
    #[command(flatten)]
    pub hub: HubArgs,
    /// Also push the LoRA GGUF (adapter.gguf, llama.cpp's --lora), as `trained export --gguf`.
    #[arg(long)]
    pub gguf: bool,
    /// Type of the LoRA GGUF.
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16", "q8_0", "auto"], requires = "gguf")]
    pub outtype: String,
}

/// `loraforge saved push …`
#[derive(Debug, Args)]
pub struct SavedPushArgs {
    /// Saved model name.
    pub name: String,
    /// Where to push.
    #[command(flatten)]
    pub hub: HubArgs,
    /// What to push: the merged 16-bit folder, the same in 4-bit NF4 (bitsandbytes), or GGUF files.
    #[arg(long, default_value = "merged_16bit", value_parser = ["merged_16bit", "merged_4bit", "gguf"])]
    pub format: String,
    /// GGUF types, comma-separated (with --format gguf; default q4_K_M): no_quantization (the
    /// saved dtype) or a file type as `loraforge quantize` names them (q8_0, q6_K, q5_K_M,
    /// q4_K_M, q4_0, q3_K_M, q2_K …). Each file is NAME.TYPE.gguf.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub quant: Vec<String>,
}

/// `loraforge saved …`
#[derive(Debug, Subcommand)]
pub enum SavedCommand {
    /// List saved models.
    List,
    /// Show a saved model and its card.
    Show(ShowArgs),
    /// Remove a saved model's folder (deployments made from it stay).
    Rm {
        /// Saved model name.
        name: String,
    },
    /// Export to GGUF and deploy to Ollama.
    Deploy(DeployArgs),
    /// Read every file of a saved model again and check it against the SHA-256 recorded when it
    /// was saved. (Deployments re-hash only files written since the save; this checks them all.)
    Verify {
        /// Saved model name.
        name: String,
    },
    /// Export as a standalone folder: merged_16bit (as saved), merged_4bit (bitsandbytes NF4),
    /// or gguf (one GGUF file per --quant type, all from one read of the lossless GGUF).
    Export {
        /// Saved model name.
        name: String,
        /// The save method of the folder.
        #[arg(long, value_parser = ["merged_16bit", "merged_4bit", "gguf"])]
        format: String,
        /// With --format gguf: the types, comma-separated (e.g. q4_K_M,q5_K_M,q8_0), each
        /// written as `NAME.TYPE.gguf`; no_quantization is the saved dtype.
        #[arg(long, value_name = "TYPE,…", value_delimiter = ',', value_parser = quant_types(), ignore_case = true)]
        quant: Vec<String>,
        /// Output folder (must not exist, or be empty).
        #[arg(long)]
        out: PathBuf,
    },
    /// Push to the Hugging Face Hub: merged folder (16-bit or 4-bit) or GGUF files.
    Push(SavedPushArgs),
}

/// Every `--quant` choice of `saved deploy`, in the product's order.
fn quant_types() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        loraforge_naming::QuantType::ALL.map(|q| clap::builder::PossibleValue::new(q.as_str())),
    )
}

/// `loraforge saved deploy …`
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// Saved model name.
    pub name: String,
    /// Quantization: no_quantization (the saved model's 16-bit type) or any GGUF type, made
    /// by loraforge's quantizer (Ollama runs every GGUF type llama.cpp runs, so every one can
    /// be deployed).
    #[arg(long, value_name = "TYPE", value_parser = quant_types(), ignore_case = true)]
    pub quant: String,
    /// Ollama server (overrides OLLAMA_HOST).
    #[arg(long, value_name = "URL")]
    pub host: Option<String>,
    /// Upload F16 and let Ollama quantize instead of loraforge's quantizer. Ollama keeps its
    /// own choices: no_quantization, q8_0, q4_K_M and q4_K_S; any other --quant type is made
    /// by loraforge's quantizer all the same.
    #[arg(long)]
    pub server_quantize: bool,
    /// Generate one token after creating the model, to check it loads (a model that fails is
    /// deleted from the server again).
    #[arg(long)]
    pub smoke_test: bool,
    /// Fail an upload when the server accepts no bytes for this many seconds (never a limit on
    /// the upload's total time).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_timeout: Option<u64>,
}

/// `loraforge deployed …`
#[derive(Debug, Subcommand)]
pub enum DeployedCommand {
    /// List deployed models.
    List {
        /// Ask each Ollama server whether the model is still there.
        #[arg(long)]
        check: bool,
    },
    /// Show a deployed model and its card.
    Show(ShowArgs),
    /// Delete the model from Ollama, then forget it.
    Rm {
        /// Deployed model name.
        name: String,
        /// Forget the local record even if Ollama cannot be reached.
        #[arg(long)]
        forget: bool,
    },
}

/// `loraforge jobs …`
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs.
    List,
    /// Show one job (id or unique prefix).
    Show {
        /// Job id.
        id: String,
    },
    /// Wait for a job to finish, with a progress bar.
    Wait {
        /// Job id.
        id: String,
        /// Give up after this many seconds.
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
    },
    /// Cancel a job (its partial output is removed).
    Cancel {
        /// Job id.
        id: String,
    },
    /// Run a queued job in this process (used by --background workers).
    #[command(hide = true)]
    Run {
        /// Job id.
        id: String,
        /// Test aid: pause this long at every progress step (see `trained save`).
        #[arg(long, value_name = "MS")]
        test_progress_delay_ms: Option<u64>,
    },
}

/// `loraforge merge …`
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Base model folder.
    #[arg(long)]
    pub base: PathBuf,
    /// PEFT adapter folder.
    #[arg(long)]
    pub adapter: PathBuf,
    /// Output folder (must not exist unless --force).
    #[arg(long)]
    pub out: PathBuf,
    /// Output dtype.
    #[arg(long, default_value = "auto", value_parser = ["auto", "bf16", "f16", "f32"])]
    pub dtype: String,
    /// merged_16bit: the merged model in its dtype; merged_4bit: then quantized to bitsandbytes
    /// NF4 with double quantization, as transformers' save_pretrained writes a 4-bit model.
    #[arg(long, default_value = "merged_16bit", value_parser = ["merged_16bit", "merged_4bit"])]
    pub save_method: String,
    /// Largest weight file, like save_pretrained's max_shard_size (5GB, 500MB, 2GiB…);
    /// default 5GB for merged_16bit, 50GB for merged_4bit (transformers 5.23's default, which
    /// its 4-bit reference saves use).
    #[arg(long, value_name = "SIZE")]
    pub max_shard_size: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = thread_count)]
    pub threads: Option<usize>,
    /// Replace an existing output folder.
    #[arg(long)]
    pub force: bool,
    /// Write NaN/Inf produced by the merge instead of failing.
    #[arg(long)]
    pub allow_non_finite: bool,
    /// Also compute the SHA-256 of every output file (listed with --json). Hashing takes about
    /// as much CPU as writing the files.
    #[arg(long)]
    pub sha256: bool,
}

/// `loraforge convert …`
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// Hugging Face model folder.
    pub model_dir: PathBuf,
    /// Output GGUF file.
    pub out: PathBuf,
    /// Output type: f32, f16, bf16, q8_0, q4_K_M, q4_K_S or auto (the weights' 16-bit type).
    #[arg(long, default_value = "auto")]
    pub outtype: String,
    /// A PEFT LoRA adapter folder to merge in while converting, in one pass (the merged model
    /// is never written): the same file as `merge` then `convert` of the merged folder.
    #[arg(long, value_name = "ADAPTER_DIR")]
    pub adapter: Option<PathBuf>,
    /// Worker threads.
    #[arg(long, value_parser = thread_count)]
    pub threads: Option<usize>,
    /// Also compute the file's SHA-256 (printed, and in --json). Hashing takes about as much
    /// CPU as writing the file.
    #[arg(long)]
    pub sha256: bool,
}

/// `loraforge convert-lora …`
#[derive(Debug, Args)]
pub struct ConvertLoraArgs {
    /// PEFT adapter folder (adapter_config.json + adapter_model.safetensors).
    pub adapter_dir: PathBuf,
    /// Output GGUF file.
    pub out: PathBuf,
    /// The base model folder the adapter was trained on (its config.json is read).
    #[arg(long)]
    pub base: PathBuf,
    /// Output type: f32 (the script's default), f16, bf16, q8_0 or auto (the adapter's 16-bit type).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16", "q8_0", "auto"])]
    pub outtype: String,
    /// Also compute the file's SHA-256 (printed, and in --json).
    #[arg(long)]
    pub sha256: bool,
}

/// `loraforge quantize …`
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Input GGUF (F32/F16/BF16 tensors).
    pub input: PathBuf,
    /// Output GGUF.
    pub output: PathBuf,
    /// q8_0, q4_K_M, q4_K_S, f16, bf16 (case-insensitive).
    #[arg(value_name = "TYPE")]
    pub file_type: String,
    /// Worker threads (default: all cores); 1 does all the work, writing included, on one core.
    #[arg(long, value_parser = thread_count)]
    pub threads: Option<usize>,
    /// Accept already-quantized input tensors.
    #[arg(long)]
    pub allow_requantize: bool,
    /// Fail instead of falling back to another type when a row length does not fit.
    #[arg(long)]
    pub no_fallback: bool,
}

/// `loraforge inspect …`
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// GGUF file.
    pub file: PathBuf,
}

/// `loraforge demo …`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to generate the demo model files (default: a folder under the store).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Ollama server (overrides OLLAMA_HOST).
    #[arg(long, value_name = "URL")]
    pub host: Option<String>,
}

/// Worker threads asked for on the command line: at least 1, at most 4 per CPU core (more only
/// adds switching; `--threads 100000` would exhaust the process before any work is done).
fn thread_count(text: &str) -> Result<usize, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let most = cpus.saturating_mul(4);
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1 (leave --threads out to use every core)".into()),
        Ok(n) if n <= most => Ok(n),
        Ok(n) => Err(format!(
            "{n} is more than 4 per CPU core ({cpus} cores here): use at most {most}"
        )),
        Err(_) => Err(format!("{text:?} is not a whole number of threads")),
    }
}

/// `loraforge serve …`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. Anything but a loopback address needs LORAFORGE_SERVE_TOKEN.
    #[arg(long, default_value = loraforge_web::DEFAULT_BIND, value_name = "HOST:PORT")]
    pub bind: std::net::SocketAddr,
    /// Test hook: pause this long at every progress step of the jobs it starts.
    #[arg(long, hide = true, value_name = "MS")]
    pub test_progress_delay_ms: Option<u64>,
}

//! `fused-loss`: describe the adapter (`info`) and cross-check every loss on it (`check`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fused_loss::bench;
use fused_loss::check::{self, Case};
use fused_loss::{DType, Gpu};

#[derive(Parser)]
#[command(version, about = "Fused GPU loss kernels: adapter info and GPU-vs-CPU checks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the adapter, backend, driver, limits and features in use.
    Info,
    /// Time every loss on the GPU and the CPU reference (after checking they agree);
    /// print CPU ms, GPU ms, speed-up, effective GB/s and the adapter's copy GB/s.
    Bench {
        /// `default` (a few minutes on a software adapter) or `large` (real-GPU sizes).
        #[arg(long, default_value = "default")]
        suite: String,
        /// Only losses whose name contains one of these (comma-separated).
        #[arg(long)]
        loss: Option<String>,
        /// Only these element types (comma-separated: `f32`, `f16`, `bf16`).
        #[arg(long)]
        dtype: Option<String>,
        /// Also write every figure, with the adapter, as JSON.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Also draw effective bandwidth against size per loss as an SVG.
        #[arg(long)]
        plot: Option<std::path::PathBuf>,
        /// Also write the table as markdown.
        #[arg(long)]
        markdown: Option<std::path::PathBuf>,
        /// Put PyTorch's times from `bench/torch_compare.py --json FILE` beside ours.
        #[arg(long)]
        torch: Option<std::path::PathBuf>,
        /// Scalar loads only (no `vec4`), to measure what vectorised loads bring.
        #[arg(long)]
        no_vec4: bool,
        /// Workgroup-memory reductions only (no subgroup operations), likewise.
        #[arg(long)]
        no_subgroups: bool,
        /// Compare with another library in the same run instead: `burn` (burn's own
        /// losses, fused-loss called from burn, and the embedding path, on one burn wgpu
        /// device; needs `--features burn-defaults`).
        #[arg(long)]
        peer: Option<String>,
    },
    /// Run every registry loss on the GPU and the CPU reference and compare them.
    Check {
        /// Comma-separated shapes for the elementwise losses, each like `1000` or
        /// `64x33` (default: the test suite's).
        #[arg(long)]
        sizes: Option<String>,
        /// Comma-separated shapes `NxC` or `NxCxD1...` for the row-wise losses
        /// (cross-entropy, NLL) (default: the test suite's).
        #[arg(long)]
        row_shapes: Option<String>,
        /// Only losses whose name contains one of these (comma-separated, e.g.
        /// `cross_entropy,nll`).
        #[arg(long)]
        loss: Option<String>,
        /// Comma-separated element types to check (`f32`, `f16`, `bf16`; default all).
        #[arg(long)]
        dtype: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let gpu = match Gpu::new() {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    software_adapter_notice(gpu.adapter_info());
    match cli.command {
        Command::Info => {
            info(&gpu);
            ExitCode::SUCCESS
        }
        Command::Bench { peer: Some(peer), loss, json, markdown, .. } => {
            peer_bench(&peer, &list(loss.as_deref()), json, markdown)
        }
        Command::Bench { suite, loss, dtype, json, plot, markdown, torch, no_vec4, no_subgroups, peer: None } => {
            let (losses, dtypes) = match (list(loss.as_deref()), dtypes(dtype.as_deref())) {
                (losses, Ok(dtypes)) => (losses, dtypes),
                (_, Err(e)) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let gpu = gpu.with_vector_loads(!no_vec4).with_subgroups(!no_subgroups);
            let suite = match suite.as_str() {
                "default" => bench::Suite::Default,
                "large" => bench::Suite::Large,
                other => {
                    eprintln!("error: unknown suite {other:?} (default, large)");
                    return ExitCode::FAILURE;
                }
            };
            match run_bench(&gpu, suite, &losses, &dtypes, Outputs { json, plot, markdown, torch }) {
                Ok(0) => ExitCode::SUCCESS,
                Ok(failed) => {
                    eprintln!("{failed} rows disagreed with the CPU reference (marked FAIL, not timed)");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { sizes, row_shapes, loss, dtype } => {
            let parse = |text: Option<String>, default: &[&[usize]]| match text {
                Some(text) => parse_sizes(&text),
                None => Ok(default.iter().map(|d| d.to_vec()).collect()),
            };
            match (parse(sizes, check::ELEMENTWISE_DIMS), parse(row_shapes, check::ROW_DIMS)) {
                (Ok(elementwise), Ok(rows)) => {
                    let elementwise: Vec<&[usize]> = elementwise.iter().map(Vec::as_slice).collect();
                    let rows: Vec<&[usize]> = rows.iter().map(Vec::as_slice).collect();
                    let mut cases = check::standard_cases(&elementwise, &rows);
                    let losses = list(loss.as_deref());
                    if !losses.is_empty() {
                        cases.retain(|c| losses.iter().any(|f| c.loss.name().contains(f.as_str())));
                    }
                    match dtypes(dtype.as_deref()) {
                        Ok(types) if !types.is_empty() => cases.retain(|c| types.contains(&c.dtype)),
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                    run_check(&gpu, &cases)
                }
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn parse_sizes(text: &str) -> Result<Vec<Vec<usize>>, String> {
    text.split(',')
        .map(|size| {
            size.split('x').map(|d| d.trim().parse::<usize>().map_err(|e| format!("bad size {size:?}: {e}"))).collect()
        })
        .collect()
}

fn info(gpu: &Gpu) {
    let a = gpu.adapter_info();
    let l = gpu.limits();
    println!("adapter:   {} ({:?})", a.name, a.device_type);
    println!("backend:   {:?}", a.backend);
    println!("driver:    {} {}", a.driver, a.driver_info);
    println!("vendor:    {:#06x}  device: {:#06x}", a.vendor, a.device);
    println!("limits:");
    println!("  max_storage_buffer_binding_size  {}", l.max_storage_buffer_binding_size);
    println!("  max_buffer_size                  {}", l.max_buffer_size);
    println!("  max_compute_workgroup_storage    {}", l.max_compute_workgroup_storage_size);
    println!("  max_compute_invocations_per_wg   {}", l.max_compute_invocations_per_workgroup);
    println!("  max_compute_workgroups_per_dim   {}", l.max_compute_workgroups_per_dimension);
    println!("  min_storage_buffer_offset_align  {}", l.min_storage_buffer_offset_alignment);
    println!("  subgroup size                    {}..{}", a.subgroup_min_size, a.subgroup_max_size);
    let f = gpu.features();
    println!(
        "features:  SHADER_F16={} SUBGROUP={}",
        f.contains(wgpu::Features::SHADER_F16),
        f.contains(wgpu::Features::SUBGROUP)
    );
    println!("chunking:  operands above {} bytes are processed in chunks", gpu.max_binding_bytes());
}

fn run_check(gpu: &Gpu, cases: &[Case]) -> ExitCode {
    let a = gpu.adapter_info();
    println!("checking on {} ({:?})", a.name, a.backend);
    println!("{:<96} {:>9} {:>9} {:>9}  result", "case", "value", "grad", "lse/class");
    let (mut failed, mut refused) = (0, 0);
    for case in cases {
        let must_refuse = check::must_refuse(gpu, case);
        let (cells, ok) = match check::run_case(gpu, case) {
            Ok(a) if !must_refuse => {
                let counts = if a.counts_equal { "" } else { "  counts differ" };
                (format!("{:>9.3} {:>9.3} {:>9.3}{counts}", a.value, a.grad, a.lse.max(a.per_class)), a.passes())
            }
            Ok(_) => ("computed f16 without SHADER_F16".to_string(), false),
            Err(e) if must_refuse && check::is_expected_refusal(&e) => {
                refused += 1;
                (format!("refused as required: {e}"), true)
            }
            Err(e) => (format!("error: {e}"), false),
        };
        failed += usize::from(!ok);
        println!("{:<64} {cells}  {}", case.to_string(), if ok { "pass" } else { "FAIL" });
    }
    println!(
        "(errors are multiples of the allowed error: rel {:e} (f16/bf16 gradients {:e}) + abs floor; <= 1 passes)",
        check::REL_TOL,
        check::HALF_REL_TOL
    );
    println!(
        "{} passed ({refused} of them f16 cases refused for lack of SHADER_F16), {} failed",
        cases.len() - failed,
        failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `bench --peer NAME`.
fn peer_bench(
    peer: &str,
    losses: &[String],
    json: Option<std::path::PathBuf>,
    markdown: Option<std::path::PathBuf>,
) -> ExitCode {
    if peer != "burn" {
        eprintln!("error: unknown peer {peer:?} (burn)");
        return ExitCode::FAILURE;
    }
    #[cfg(feature = "burn")]
    {
        let run = || -> Result<bool, Box<dyn std::error::Error>> {
            let device = fused_loss::burn::device(burn::backend::wgpu::WgpuDevice::default())?.autodiff();
            let report = fused_loss::bench_burn::run(&device, losses)?;
            let table = fused_loss::bench_burn::table(&report);
            print!("{table}");
            if let Some(path) = json {
                std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
            }
            if let Some(path) = markdown {
                std::fs::write(path, &table)?;
            }
            Ok(report.rows.iter().all(|r| r.fused_burn_status == "pass"))
        };
        match run() {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("fused-loss from burn disagreed with the CPU reference (marked, not timed)");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
    #[cfg(not(feature = "burn"))]
    {
        let _ = (losses, json, markdown);
        eprintln!(
            "error: this build has no burn; run `cargo run --release --features burn-defaults -- bench --peer burn`"
        );
        ExitCode::FAILURE
    }
}

/// Files `fused-loss bench` reads or writes besides stdout.
struct Outputs {
    json: Option<std::path::PathBuf>,
    plot: Option<std::path::PathBuf>,
    markdown: Option<std::path::PathBuf>,
    torch: Option<std::path::PathBuf>,
}

/// A comma-separated list (empty when absent).
fn list(text: Option<&str>) -> Vec<String> {
    text.map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default()
}

/// A comma-separated list of element types (empty when absent).
fn dtypes(text: Option<&str>) -> Result<Vec<DType>, String> {
    list(text)
        .iter()
        .map(|name| DType::from_name(name).ok_or(format!("--dtype: unknown element type `{name}` (f32, f16, bf16)")))
        .collect()
}

fn run_bench(
    gpu: &Gpu,
    suite: bench::Suite,
    losses: &[String],
    dtypes: &[DType],
    Outputs { json, plot, markdown, torch }: Outputs,
) -> Result<usize, Box<dyn std::error::Error>> {
    let mut report = bench::run(gpu, suite, losses, dtypes)?;
    let mut table = String::new();
    if let Some(path) = torch {
        table += &format!("torch column: {}\n", bench::merge_torch(&mut report, &std::fs::read_to_string(path)?)?);
    }
    table += &bench::table(&report);
    println!("{table}");
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = plot {
        bench::plot(&report, &path)?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = markdown {
        std::fs::write(&path, &table)?;
        println!("wrote {}", path.display());
    }
    Ok(report.rows.iter().filter(|r| r.status.starts_with("FAIL")).count())
}

/// Says up front when the chosen adapter is a software one (a real GPU would have been
/// chosen first): what it means for the numbers, and, on GL, the one-line install that
/// brings lavapipe.
fn software_adapter_notice(info: &wgpu::AdapterInfo) {
    if info.device_type != wgpu::DeviceType::Cpu {
        return;
    }
    eprintln!(
        "note: {} is a software adapter (the CPU runs the kernels): results are right, times are not a GPU's.",
        info.name
    );
    if info.backend == wgpu::Backend::Gl {
        eprintln!(
            "note: through GL, Mesa compiles each kernel in seconds (a cold `bench` or `check` takes many minutes).\n      \
             `sudo apt-get install mesa-vulkan-drivers libvulkan1` installs lavapipe (Vulkan), which compiles them in \
             milliseconds; it is then picked first (or set WGPU_BACKEND=vulkan)."
        );
    }
}

//! How the tuned loss passes are launched, and the choice of launch per adapter.
//!
//! The elementwise pass (`shaders/lib/pointwise.wgsl`) and the two row kernels
//! (`shaders/lib/rows.wgsl`) take any [`Launch`]: the order of every sum they make is a
//! function of the input's shape alone (lanes folded by one fixed tree,
//! `shaders/lib/reduce.wgsl`), so a launch changes how fast a call runs, never its bits.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::{Bindings, Gpu, Loss, Reduction, Shape};

/// A launch of a tuned loss pass: invocations per workgroup and the most workgroups one
/// dispatch uses (each workgroup takes blocks `wid`, `wid + workgroups`, ... of the
/// input). Results do not depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Launch {
    workgroup_size: u32,
    max_workgroups: u32,
}

impl Launch {
    /// The workgroup sizes the kernels are built for: divisors of the 256 lanes of a
    /// block, each invocation holding 256 / size lanes.
    pub const WORKGROUP_SIZES: [u32; 3] = [64, 128, 256];

    /// The launch the crate used before tuning: 256 invocations, up to 1024 workgroups.
    pub const DEFAULT: Launch = Launch { workgroup_size: 256, max_workgroups: 1024 };

    /// A launch of `workgroup_size` invocations (one of [`Launch::WORKGROUP_SIZES`]) and
    /// at most `max_workgroups` (1 to 65 535) workgroups per dispatch. A dispatch may
    /// still use more workgroups where one invocation would otherwise loop longer than
    /// software adapters run right (see `LOOP_BUDGET`), and fewer where the input has
    /// fewer blocks.
    pub fn new(workgroup_size: u32, max_workgroups: u32) -> Result<Self> {
        if !Self::WORKGROUP_SIZES.contains(&workgroup_size) {
            return Err(Error::InvalidParameter {
                loss: "launch",
                name: "workgroup_size",
                value: workgroup_size as f64,
                requirement: "64, 128 or 256",
            });
        }
        if !(1..=65_535).contains(&max_workgroups) {
            return Err(Error::InvalidParameter {
                loss: "launch",
                name: "max_workgroups",
                value: max_workgroups as f64,
                requirement: "from 1 to 65535",
            });
        }
        Ok(Launch { workgroup_size, max_workgroups })
    }

    /// Invocations per workgroup.
    pub fn workgroup_size(&self) -> u32 {
        self.workgroup_size
    }

    /// Most workgroups per dispatch.
    pub fn max_workgroups(&self) -> u32 {
        self.max_workgroups
    }

    /// Lanes of a block each invocation holds.
    pub(crate) fn lanes_per_invocation(&self) -> u64 {
        (LANES / self.workgroup_size) as u64
    }

    /// The shader define that builds a kernel for this launch (`shaders/lib/reduce.wgsl`).
    pub(crate) fn define(&self) -> (String, String) {
        ("LAUNCH_WG_SIZE".into(), format!("{}u", self.workgroup_size))
    }

    /// The workgroups of a dispatch over `blocks` blocks of which one invocation may
    /// walk at most `blocks_per_invocation`: this launch's count, raised for the budget,
    /// lowered to the blocks there are.
    pub(crate) fn workgroups(&self, blocks: u64, blocks_per_invocation: u64) -> u32 {
        let needed = blocks.div_ceil(blocks_per_invocation.max(1));
        (self.max_workgroups as u64).max(needed).min(blocks).clamp(1, 65_535) as u32
    }
}

impl std::fmt::Display for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.max_workgroups, self.workgroup_size)
    }
}

/// Lanes of a block (`LANES` in `shaders/lib/reduce.wgsl`).
pub(crate) const LANES: u32 = 256;

/// The kinds of tuned pass, each tuned on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PassKind {
    /// The elementwise pass.
    Pointwise,
    /// One invocation per row (rows of at most 32 classes).
    RowPerThread,
    /// One workgroup per row.
    RowPerWorkgroup,
}

impl PassKind {
    /// The name the bench prints.
    pub fn name(self) -> &'static str {
        match self {
            PassKind::Pointwise => "pointwise",
            PassKind::RowPerThread => "row/thread",
            PassKind::RowPerWorkgroup => "row/workgroup",
        }
    }
}

/// The size class of a pass over `bytes` bytes of input: launches are tuned per power of
/// four of bytes (64 KiB, 256 KiB, ... up to 1 GiB and above).
pub(crate) fn size_class(bytes: u64) -> u32 {
    let log4 = (63 - bytes.max(1).leading_zeros()) / 2;
    log4.clamp(8, 15)
}

/// The launches tuned so far in this process, per adapter (name, backend, driver) and
/// pass: the workgroup size, then the workgroup count per size class. Shared by every
/// handle on an adapter of that kind, so a test suite or a training loop tunes once.
#[derive(Default)]
struct Tuned {
    sizes: HashMap<(String, PassKind), u32>,
    counts: HashMap<(String, PassKind, u32), u32>,
    loaded: bool,
}

static TUNED: Mutex<Option<Tuned>> = Mutex::new(None);

/// Whether launches are tuned: on unless `FUSED_LOSS_TUNE=0` (then every pass takes
/// [`Launch::DEFAULT`]).
fn tuning_enabled() -> bool {
    std::env::var("FUSED_LOSS_TUNE").map_or(true, |v| v != "0")
}

/// Where tuned launches persist between processes: the file `FUSED_LOSS_LAUNCH_CACHE`
/// names, if any (one `adapter<TAB>pass<TAB>class<TAB>size<TAB>count` line per choice;
/// class `-` for the workgroup size alone).
fn cache_file() -> Option<PathBuf> {
    std::env::var_os("FUSED_LOSS_LAUNCH_CACHE").map(PathBuf::from)
}

fn adapter_key(gpu: &Gpu) -> String {
    let info = gpu.adapter_info();
    format!("{} / {:?} / {}", info.name, info.backend, info.driver_info).replace('\t', " ")
}

fn kind_from_name(name: &str) -> Option<PassKind> {
    [PassKind::Pointwise, PassKind::RowPerThread, PassKind::RowPerWorkgroup].into_iter().find(|k| k.name() == name)
}

impl Tuned {
    fn load(&mut self) {
        if std::mem::replace(&mut self.loaded, true) {
            return;
        }
        let Some(text) = cache_file().and_then(|path| std::fs::read_to_string(path).ok()) else { return };
        for line in text.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            let [adapter, pass, class, size, count] = fields[..] else { continue };
            let (Some(kind), Ok(size), Ok(count)) = (kind_from_name(pass), size.parse::<u32>(), count.parse::<u32>())
            else {
                continue;
            };
            if Launch::new(size, count.max(1)).is_err() {
                continue;
            }
            match class.parse::<u32>() {
                Ok(class) => self.counts.insert((adapter.to_string(), kind, class), count),
                Err(_) => self.sizes.insert((adapter.to_string(), kind), size),
            };
        }
    }

    fn persist(line: String) {
        if let Some(path) = cache_file() {
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut file| std::io::Write::write_all(&mut file, line.as_bytes()));
            // A cache that cannot be written only costs a tune in the next process.
            let _ = written;
        }
    }
}

/// The largest input a tune measures on; larger size classes take this class's choice.
const TUNE_MAX_CLASS: u32 = 12;
/// The size class whose runs choose the workgroup size of a pass.
const TUNE_SIZE_CLASS: u32 = 11;

/// The launch of a pass of `kind` over `bytes` bytes on `gpu`: the tuned one (tuned now
/// if this process has not yet, and the handle has no pinned launch), or the default
/// where tuning is off or fails.
pub(crate) fn chosen(gpu: &Gpu, kind: PassKind, bytes: u64) -> Launch {
    if !tuning_enabled() {
        return Launch::DEFAULT;
    }
    let class = size_class(bytes).min(TUNE_MAX_CLASS);
    let adapter = adapter_key(gpu);
    // One tune at a time per process: concurrent callers wait for it instead of
    // measuring on a busy device.
    let mut guard = TUNED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let tuned = guard.get_or_insert_with(Tuned::default);
    tuned.load();
    let size = match tuned.sizes.get(&(adapter.clone(), kind)) {
        Some(&size) => size,
        None => {
            let size = tune_workgroup_size(gpu, kind).unwrap_or(Launch::DEFAULT.workgroup_size);
            tuned.sizes.insert((adapter.clone(), kind), size);
            Tuned::persist(format!("{adapter}\t{}\t-\t{size}\t0\n", kind.name()));
            size
        }
    };
    let count = match tuned.counts.get(&(adapter.clone(), kind, class)) {
        Some(&count) => count,
        None => {
            let count = tune_workgroups(gpu, kind, class, size).unwrap_or(Launch::DEFAULT.max_workgroups);
            tuned.counts.insert((adapter.clone(), kind, class), count);
            Tuned::persist(format!("{adapter}\t{}\t{class}\t{size}\t{count}\n", kind.name()));
            count
        }
    };
    Launch::new(size, count).unwrap_or(Launch::DEFAULT)
}

/// The loss, shape and element count a tune of `kind` at `class` measures: mean squared
/// error over the class's bytes of f32; cross-entropy with 10 classes (row per thread)
/// or 1000 (row per workgroup).
fn proxy(kind: PassKind, class: u32) -> (Loss, Shape) {
    let floats = (1usize << (2 * class)) / 4;
    match kind {
        PassKind::Pointwise => (Loss::mse().into(), Shape::elementwise(floats)),
        PassKind::RowPerThread => (Loss::cross_entropy().into(), Shape::new(&[(floats / 10).max(1), 10])),
        PassKind::RowPerWorkgroup => (Loss::cross_entropy().into(), Shape::new(&[(floats / 1000).max(1), 1000])),
    }
}

/// Median ms of the proxy call of `kind` at `class` under `launch` (zeros in, one
/// warm-up call, then 5 calls submitted and waited for one by one).
fn measure(gpu: &Gpu, kind: PassKind, class: u32, launch: Launch) -> Result<f64> {
    let gpu = gpu.with_launch(launch);
    let (loss, shape) = proxy(kind, class);
    let plan = gpu.plan(loss, Reduction::Mean, &shape)?;
    let device = gpu.device();
    let storage = |bytes: u64| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("fused-loss launch tune"),
            size: bytes.max(32),
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    };
    let elements = shape.len() as u64 * 4;
    let target_bytes = if kind == PassKind::Pointwise { elements } else { shape.rows() as u64 * 4 };
    let (input, target, grad, stats) = (storage(elements), storage(target_bytes), storage(elements), storage(32));
    let bindings =
        Bindings::new().input(input.slice(..)).target(target.slice(..)).grad(grad.slice(..)).stats(stats.slice(..));
    let run = || -> Result<f64> {
        let start = Instant::now();
        let mut encoder = device.create_command_encoder(&Default::default());
        plan.encode(&mut encoder, &bindings)?;
        gpu.queue().submit([encoder.finish()]);
        device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Wgpu(e.to_string()))?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    run()?;
    let mut samples = (0..5).map(|_| run()).collect::<Result<Vec<f64>>>()?;
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// The fastest workgroup size for `kind`, at the default workgroup count and
/// [`TUNE_SIZE_CLASS`].
fn tune_workgroup_size(gpu: &Gpu, kind: PassKind) -> Result<u32> {
    let mut best = (f64::INFINITY, Launch::DEFAULT.workgroup_size);
    for size in Launch::WORKGROUP_SIZES {
        let ms = measure(gpu, kind, TUNE_SIZE_CLASS, Launch::new(size, Launch::DEFAULT.max_workgroups)?)?;
        if ms < best.0 {
            best = (ms, size);
        }
    }
    Ok(best.1)
}

/// The fastest workgroup count for `kind` at `class` with workgroups of `size`: powers
/// of four from 1 to 65 536 (dispatches never use more workgroups than blocks, so the
/// larger counts are the same launch on small inputs and are not measured twice).
fn tune_workgroups(gpu: &Gpu, kind: PassKind, class: u32, size: u32) -> Result<u32> {
    let mut best = (f64::INFINITY, Launch::DEFAULT.max_workgroups);
    for count in (0..9).map(|i| (1u32 << (2 * i)).min(65_535)) {
        let ms = measure(gpu, kind, class, Launch::new(size, count)?)?;
        if ms < best.0 {
            best = (ms, count);
        }
    }
    Ok(best.1)
}

//! Adapter and device selection, limits, and the per-device pipeline cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::launch::{Launch, PassKind};
use crate::losses::softmax::RowKernel;
use crate::shader::{self, Defines};

/// What identifies a compiled pipeline: the shader file, its entry point and the
/// defines it was assembled with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: &'static str,
    entry: &'static str,
    defines: Defines,
}

/// A device and queue with the pipelines this crate compiled on them.
///
/// Cheap to clone (the state is shared). Create one with [`Gpu::new`], or wrap the
/// caller's own device with [`Gpu::from_device`].
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<Inner>,
}

struct Inner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    settings: Settings,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
}

/// Choices a handle makes for every plan it creates.
#[derive(Clone, Copy, Debug)]
struct Settings {
    // Largest byte range of one operand bound at once; the adapter's storage binding
    // limit unless lowered by `with_max_binding_bytes`.
    max_binding_bytes: u64,
    // Largest buffer the convenience path creates; larger operands are split into parts.
    max_buffer_bytes: u64,
    // Forced kernel of the softmax family, or the size-based choice.
    row_kernel: Option<RowKernel>,
    // vec4 loads in the elementwise driver where the length allows.
    vector_loads: bool,
    // Subgroup reductions (only when the device has SUBGROUP).
    subgroups: bool,
    // The launch every tuned pass takes (`with_launch`), or the tuned choice.
    launch: Option<Launch>,
}

/// Device features this crate uses when the adapter has them.
pub const WANTED_FEATURES: wgpu::Features = wgpu::Features::SHADER_F16.union(wgpu::Features::SUBGROUP);

fn backend_rank(backend: wgpu::Backend) -> u8 {
    match backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    }
}

fn device_rank(kind: wgpu::DeviceType) -> u8 {
    match kind {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

impl Gpu {
    /// Picks an adapter and opens a device on it (blocking).
    ///
    /// `WGPU_BACKEND` (e.g. `vulkan`, `gl`) restricts the backends searched and
    /// `WGPU_ADAPTER_NAME` picks the first adapter whose name contains it (case
    /// insensitive). Otherwise a real GPU wins over a software one, then Vulkan/Metal/DX12
    /// over GL. The device gets the adapter's own limits (storage binding size, buffer
    /// size, workgroup storage: not wgpu's defaults) and `SHADER_F16` / `SUBGROUP` when
    /// the adapter has them.
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async())
    }

    /// Async form of [`Gpu::new`].
    pub async fn new_async() -> Result<Self> {
        let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        let backends = desc.backends;
        let instance = wgpu::Instance::new(desc);
        let adapters = instance.enumerate_adapters(backends).await;
        let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(wanted) if !wanted.is_empty() => {
                let needle = wanted.to_lowercase();
                let found = adapters.iter().position(|a| a.get_info().name.to_lowercase().contains(&needle));
                match found {
                    Some(i) => adapters.into_iter().nth(i),
                    None => {
                        let available = adapters
                            .iter()
                            .map(|a| {
                                let info = a.get_info();
                                format!("{} ({:?})", info.name, info.backend)
                            })
                            .collect::<Vec<_>>()
                            .join(", ");
                        return Err(Error::AdapterNotFound { wanted, available });
                    }
                }
            }
            _ => adapters.into_iter().min_by_key(|a| {
                let info = a.get_info();
                (device_rank(info.device_type), backend_rank(info.backend))
            }),
        };
        let adapter = adapter.ok_or_else(|| Error::NoAdapter { backends: format!("{backends:?}") })?;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("fused-loss"),
                required_features: Self::wanted_features(&adapter),
                required_limits: Self::wanted_limits(&adapter),
                ..Default::default()
            })
            .await?;
        Ok(Self::from_device(device, queue))
    }

    /// The limits to request when creating a device for this crate from `adapter`
    /// (what [`Gpu::new`] requests): the adapter's own, so that large operands bind in
    /// few chunks and calls with many optional operands fit (a call can bind up to 9
    /// storage buffers; `wgpu::Limits::default()` allows 8).
    pub fn wanted_limits(adapter: &wgpu::Adapter) -> wgpu::Limits {
        adapter.limits()
    }

    /// The features to request from `adapter` ([`WANTED_FEATURES`] that it has).
    pub fn wanted_features(adapter: &wgpu::Adapter) -> wgpu::Features {
        adapter.features() & WANTED_FEATURES
    }

    /// Wraps a device and queue the caller already has. Kernels use only the features
    /// and limits that device was created with.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let limits = device.limits();
        let info = device.adapter_info();
        let max_binding_bytes = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let subgroups = device.features().contains(wgpu::Features::SUBGROUP);
        let max_buffer_bytes = limits.max_buffer_size;
        Self {
            inner: Arc::new(Inner {
                device,
                queue,
                info,
                limits,
                settings: Settings {
                    max_binding_bytes,
                    max_buffer_bytes,
                    row_kernel: None,
                    vector_loads: true,
                    subgroups,
                    launch: None,
                },
                pipelines: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Lowers the largest byte range bound per operand, so that smaller inputs are
    /// processed in chunks. For tests of the chunked path and for callers who want
    /// smaller bindings; values above the adapter's limit are capped to it. Returns a
    /// new handle on the same device, with its own pipeline cache.
    pub fn with_max_binding_bytes(&self, bytes: u64) -> Self {
        let cap = self.inner.settings.max_binding_bytes;
        self.derive(|s| s.max_binding_bytes = bytes.clamp(4096, cap))
    }

    /// Lowers the largest buffer [`Gpu::compute`] creates per operand (the device's
    /// `max_buffer_size` by default); larger inputs are computed in parts of whole batch
    /// items. For tests of the split path on small inputs. Returns a new handle.
    pub fn with_max_buffer_bytes(&self, bytes: u64) -> Self {
        let cap = self.limits().max_buffer_size;
        self.derive(|s| s.max_buffer_bytes = bytes.clamp(4096, cap))
    }

    /// Largest buffer the convenience path creates per operand.
    pub fn max_buffer_bytes(&self) -> u64 {
        self.inner.settings.max_buffer_bytes
    }

    /// Forces the row kernel of the softmax family (cross-entropy, NLL) instead of
    /// choosing by the number of classes. Both compute the same result; this is for
    /// tests and tuning. Returns a new handle on the same device.
    pub fn with_row_kernel(&self, kernel: RowKernel) -> Self {
        self.derive(|s| s.row_kernel = Some(kernel))
    }

    /// Turns the vectorised (`vec4`) loads of the elementwise losses off or on. They are
    /// used by default whenever the length allows (a multiple of 4 elements; bf16: 8);
    /// this is for tests and for measuring what they bring. Returns a new handle.
    pub fn with_vector_loads(&self, enabled: bool) -> Self {
        self.derive(|s| s.vector_loads = enabled)
    }

    /// Turns the subgroup reductions off (the workgroup-memory tree is used instead) or
    /// back on where the device has `SUBGROUP`. For tests and measurements. Returns a
    /// new handle.
    pub fn with_subgroups(&self, enabled: bool) -> Self {
        let available = self.features().contains(wgpu::Features::SUBGROUP);
        self.derive(|s| s.subgroups = enabled && available)
    }

    /// Pins the launch of every tuned pass (the elementwise pass and both row kernels)
    /// instead of the one chosen for the adapter. Results are the same bits whatever the
    /// launch; this is for tests and benchmarks. Returns a new handle on the same device.
    pub fn with_launch(&self, launch: Launch) -> Self {
        self.derive(|s| s.launch = Some(launch))
    }

    /// The pinned launch, if any (see [`Gpu::with_launch`]).
    pub fn pinned_launch(&self) -> Option<Launch> {
        self.inner.settings.launch
    }

    /// The launch a pass of `kind` over `bytes` bytes of input takes on this handle: the
    /// pinned one, else the adapter's choice for that size class.
    pub fn launch(&self, kind: PassKind, bytes: u64) -> Launch {
        match self.inner.settings.launch {
            Some(launch) => launch,
            None => crate::launch::chosen(self, kind, bytes),
        }
    }

    /// Whether elementwise losses use `vec4` loads where the length allows.
    pub fn vector_loads(&self) -> bool {
        self.inner.settings.vector_loads
    }

    /// Whether reductions use subgroup operations.
    pub fn subgroups(&self) -> bool {
        self.inner.settings.subgroups
    }

    fn derive(&self, change: impl FnOnce(&mut Settings)) -> Self {
        let inner = &self.inner;
        let mut settings = inner.settings;
        change(&mut settings);
        Self {
            inner: Arc::new(Inner {
                device: inner.device.clone(),
                queue: inner.queue.clone(),
                info: inner.info.clone(),
                limits: inner.limits.clone(),
                settings,
                pipelines: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The device.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// The adapter the device came from.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }

    /// The device's limits.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    /// The device's features.
    pub fn features(&self) -> wgpu::Features {
        self.inner.device.features()
    }

    /// Largest number of bytes of one operand bound in one dispatch; longer operands
    /// are processed in chunks.
    pub fn max_binding_bytes(&self) -> u64 {
        self.inner.settings.max_binding_bytes
    }

    /// The forced row kernel, if any (see [`Gpu::with_row_kernel`]).
    pub fn row_kernel(&self) -> Option<RowKernel> {
        self.inner.settings.row_kernel
    }

    /// The compute pipeline for `shader` (path under `shaders/`, no extension) and
    /// `entry` under `defines`, compiled on first use and cached for the device's life.
    pub(crate) fn pipeline(
        &self,
        shader: &'static str,
        entry: &'static str,
        defines: &Defines,
    ) -> Result<wgpu::ComputePipeline> {
        let key = PipelineKey { shader, entry, defines: defines.clone() };
        if let Some(found) = self.inner.pipelines.lock().unwrap().get(&key) {
            return Ok(found.clone());
        }
        let code = shader::assemble(shader, defines)?;
        let storage = shader::storage_bindings(&code);
        let available = self.inner.limits.max_storage_buffers_per_shader_stage as u64;
        let device = &self.inner.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(shader),
            source: wgpu::ShaderSource::Wgsl(code.into()),
        });
        let label = format!("{shader}:{entry}:{defines:?}");
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(error) = pollster::block_on(scope.pop()) {
            // The declarations bound what the entry point uses (equal for files with one
            // entry point), so a failure with more declared than allowed is that limit.
            if storage > available {
                let flags: Vec<&str> = defines.keys().map(String::as_str).collect();
                return Err(Error::DeviceLimit {
                    what: format!("{shader} with {}", flags.join(", ")),
                    limit: "max_storage_buffers_per_shader_stage",
                    needed: storage,
                    available,
                });
            }
            return Err(Error::Wgpu(format!("compiling {label}: {error}")));
        }
        self.inner.pipelines.lock().unwrap().insert(key, pipeline.clone());
        Ok(pipeline)
    }
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let info = &self.inner.info;
        f.debug_struct("Gpu")
            .field("adapter", &info.name)
            .field("backend", &info.backend)
            .field("settings", &self.inner.settings)
            .finish()
    }
}

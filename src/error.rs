//! The crate's one error type.

/// Shorthand for `Result<T, fused_loss::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, named after what the caller passed in.
///
/// Validation happens before anything is recorded or uploaded: a call that returns one
/// of the argument errors has touched no buffer of the caller's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No adapter was found on the enabled backends.
    #[error("no GPU adapter found on backends {backends}; set WGPU_BACKEND (vulkan, gl, ...) or install a driver (e.g. mesa-vulkan-drivers)")]
    NoAdapter {
        /// The backends that were searched.
        backends: String,
    },
    /// `WGPU_ADAPTER_NAME` is set but no adapter's name contains it.
    #[error("WGPU_ADAPTER_NAME={wanted:?} matches no adapter; available: {available}")]
    AdapterNotFound {
        /// The requested name fragment.
        wanted: String,
        /// Names of the adapters that were found.
        available: String,
    },
    /// The adapter refused to create a device.
    #[error("requesting a device failed: {0}")]
    RequestDevice(#[from] wgpu::RequestDeviceError),
    /// A loss parameter is outside its valid range.
    #[error("{loss}: parameter `{name}` = {value} is invalid; it must be {requirement}")]
    InvalidParameter {
        /// The loss that rejected it.
        loss: &'static str,
        /// The parameter's name (as in the loss's fields).
        name: &'static str,
        /// The value given.
        value: f64,
        /// The valid range, in words.
        requirement: &'static str,
    },
    /// An operand's length does not match the problem's shape.
    #[error("`{argument}` has {actual} elements but {expected} are required")]
    LengthMismatch {
        /// Which operand.
        argument: &'static str,
        /// What was required, in words (e.g. "1000 (one per element) or 10 (last dimension)").
        expected: String,
        /// What was given.
        actual: usize,
    },
    /// The input is empty and the loss with this reduction is undefined there
    /// (a mean over zero elements).
    #[error("`input` is empty; {loss} with reduction `{reduction}` is undefined on empty input (use `sum` or `none`)")]
    EmptyInput {
        /// The loss.
        loss: &'static str,
        /// The reduction asked for.
        reduction: &'static str,
    },
    /// The shape is malformed (a zero dimension with elements, more elements than
    /// a kernel can index).
    #[error("invalid shape {shape:?}: {why}")]
    InvalidShape {
        /// The dimensions given.
        shape: Vec<usize>,
        /// What is wrong with them.
        why: String,
    },
    /// The loss does not take this reduction (e.g. `batchmean` for MSE).
    #[error("{loss} does not take reduction `{reduction}`")]
    UnsupportedReduction {
        /// The loss.
        loss: &'static str,
        /// The reduction asked for.
        reduction: &'static str,
    },
    /// The adapter lacks a feature the call needs (f16 operands need `SHADER_F16`).
    #[error("{what} needs the adapter feature {feature}, which {adapter} does not have")]
    MissingFeature {
        /// What was asked for.
        what: String,
        /// The missing feature.
        feature: &'static str,
        /// The adapter's name.
        adapter: String,
    },
    /// The loss does not take this operand (e.g. `pos_weight` for MSE).
    #[error("{loss} does not take `{argument}`")]
    UnsupportedArgument {
        /// The loss.
        loss: &'static str,
        /// The operand given.
        argument: &'static str,
    },
    /// An operand the call needs is missing (e.g. the per-element loss buffer for
    /// reduction `none`).
    #[error("`{argument}` is required: {why}")]
    MissingArgument {
        /// The operand.
        argument: &'static str,
        /// Why it is needed.
        why: &'static str,
    },
    /// The bindings of an `encode` differ from what the plan declared ([`crate::Options`]):
    /// an optional operand bound but not declared, or declared but not bound.
    #[error(
        "`{operand}` {}: declare the same optional operands when planning (Gpu::plan_for with Options) as the call binds",
        if *declared { "was declared when planning but is not bound" } else { "is bound but was not declared when planning" }
    )]
    NotPlanned {
        /// The operand.
        operand: &'static str,
        /// True when the plan declared it (and the bindings lack it).
        declared: bool,
    },
    /// A caller's buffer lacks a usage the call needs.
    #[error("buffer for `{argument}` lacks usage {missing:?} (it has {has:?})")]
    BufferUsage {
        /// Which operand.
        argument: &'static str,
        /// The usages that are missing.
        missing: wgpu::BufferUsages,
        /// The usages the buffer has.
        has: wgpu::BufferUsages,
    },
    /// A caller's buffer slice is smaller than the operand.
    #[error("buffer slice for `{argument}` holds {actual} bytes but {required} are needed")]
    BufferTooSmall {
        /// Which operand.
        argument: &'static str,
        /// Bytes needed.
        required: u64,
        /// Bytes in the slice.
        actual: u64,
    },
    /// A caller's buffer slice starts at an offset the adapter cannot bind.
    #[error("buffer slice for `{argument}` starts at byte {offset}, which is not a multiple of the adapter's storage offset alignment {alignment}")]
    MisalignedOffset {
        /// Which operand.
        argument: &'static str,
        /// The slice's offset.
        offset: u64,
        /// The required alignment.
        alignment: u32,
    },
    /// Elements of an operand lie outside the loss's domain (probabilities outside
    /// [0, 1], labels out of range). Counted on the GPU.
    #[error("{count} elements of `{argument}` are outside {domain}")]
    OutOfDomain {
        /// Which operand.
        argument: &'static str,
        /// How many elements.
        count: u64,
        /// The valid domain, in words.
        domain: &'static str,
    },
    /// The call needs more of a device limit than the device was created with (e.g. a
    /// call binding many optional operands on a device with `Limits::default()`'s 8
    /// storage buffers per stage). [`crate::Gpu::wanted_limits`] gives the limits to
    /// request from the adapter.
    #[error("{what} needs {needed} of the device limit `{limit}`, which this device has at {available}; request the adapter's limits when creating the device (Gpu::wanted_limits(&adapter))")]
    DeviceLimit {
        /// What was asked for.
        what: String,
        /// The limit's field name in `wgpu::Limits`.
        limit: &'static str,
        /// What the call needs.
        needed: u64,
        /// What the device has.
        available: u64,
    },
    /// Two bindings of one call clash: two outputs overlap, or an output overlaps an
    /// input (other than the gradient over the input that [`crate::Bindings::in_place`]
    /// asks for), or an input the call only reads shares a buffer with an output (wgpu
    /// refuses one buffer bound read-only and read-write in one dispatch).
    #[error("`{first}` and `{second}` are in one buffer and {why}")]
    Aliased {
        /// One operand.
        first: &'static str,
        /// The other operand.
        second: &'static str,
        /// How they clash, in words.
        why: String,
    },
    /// A caller's buffer cannot be bound now: mapped, or destroyed, or of another device.
    #[error("buffer for `{argument}` cannot be bound: {why}")]
    BufferState {
        /// Which operand.
        argument: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// A burn tensor (feature `burn`) is on a device other than the call's, or on a
    /// device fused-loss cannot reach (not wgpu, or not set up through
    /// `fused_loss::burn::device` / `fused_loss::burn::register`).
    #[error("`{argument}`: {why}")]
    Device {
        /// Which operand.
        argument: &'static str,
        /// What is wrong with its device.
        why: String,
    },
    /// A burn tensor (feature `burn`) has an element type the call cannot take.
    #[error("`{argument}` is {actual}, but {expected}")]
    ElementType {
        /// Which operand.
        argument: &'static str,
        /// Its element type.
        actual: String,
        /// What the call takes.
        expected: &'static str,
    },
    /// burn's wgpu runtime (feature `burn`) refused to set up a device.
    #[error("setting up the burn wgpu device failed: {0}")]
    BurnSetup(String),
    /// A shader failed to assemble (preprocessor error).
    #[error("shader {name}: {message}")]
    Shader {
        /// The entry shader.
        name: String,
        /// What went wrong, with file and line.
        message: String,
    },
    /// wgpu reported a validation or out-of-memory error for work this crate created.
    #[error("wgpu error: {0}")]
    Wgpu(String),
    /// Mapping a readback buffer failed.
    #[error("mapping a readback buffer failed: {0}")]
    Map(#[from] wgpu::BufferAsyncError),
    /// Waiting for the device failed.
    #[error("waiting for the device failed: {0}")]
    Poll(#[from] wgpu::PollError),
}

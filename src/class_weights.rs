//! Class weights from the data: a GPU label histogram and per-class weights by inverse
//! frequency, inverse square root or effective number of samples (Cui et al. 2019), for
//! the batch or for an exponential moving average of per-step class counts that the
//! caller keeps on the GPU. The weights buffer plugs straight into a loss's `weight`
//! (cross-entropy and its label functions, focal's per-class α). From multi-hot targets
//! ([`Gpu::positive_weights`]) it is BCE's per-class `pos_weight` instead.
//!
//! Weights are `raw_c · K / Σ raw` over the K classes present (absent classes get 0),
//! `raw_c` = `1/n_c`, `1/√n_c` or `(1 − β)/(1 − β^n_c)`. The scale cancels in a `mean`
//! of weighted cross-entropy; `Σ w = K` keeps `sum` at the unweighted loss's size, as in
//! Cui et al. The shader is `shaders/classification/class_weights.wgsl`; the CPU twins
//! [`crate::cpu::class_weights`] and [`crate::cpu::positive_weights`].

use wgpu::util::DeviceExt;

use crate::context::Gpu;
use crate::error::{Error, Result};
use crate::losses::plan::{
    bind_group, record, refused_buffer, sub, uniform, SliceChecks, ELEM_BYTES, MAX_GROUPS, WG_SIZE,
};
use crate::shader::Defines;

/// How class counts become weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightScheme {
    /// `1 / n_c` (scikit-learn's "balanced", up to the normalisation).
    InverseFrequency,
    /// `1 / √n_c`, a milder correction.
    InverseSqrt,
    /// `(1 − β) / (1 − β^n_c)`, the inverse effective number of samples; `beta` in
    /// [0, 1): 0 is no reweighting, → 1 approaches inverse frequency (Cui et al. use
    /// 0.9 to 0.9999).
    EffectiveNumber {
        /// β in [0, 1).
        beta: f32,
    },
}

impl WeightScheme {
    fn code(self) -> u32 {
        match self {
            WeightScheme::InverseFrequency => 0,
            WeightScheme::InverseSqrt => 1,
            WeightScheme::EffectiveNumber { .. } => 2,
        }
    }

    fn beta(self) -> f32 {
        match self {
            WeightScheme::EffectiveNumber { beta } => beta,
            _ => 0.0,
        }
    }

    /// The unnormalised weight of a class seen `n` times (0 for an absent class).
    pub(crate) fn raw(self, n: f64) -> f64 {
        if n <= 0.0 {
            return 0.0;
        }
        match self {
            WeightScheme::InverseFrequency => 1.0 / n,
            WeightScheme::InverseSqrt => 1.0 / n.sqrt(),
            WeightScheme::EffectiveNumber { beta } if beta <= 0.0 => 1.0,
            WeightScheme::EffectiveNumber { beta } => (1.0 - beta as f64) / -(n * (beta as f64).ln()).exp_m1(),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    classes: u32,
    ignore_index: i32,
    scheme: u32,
    beta: f32,
    momentum: f32,
    _pad: [u32; 2],
}

/// A recorded histogram + weights computation for `rows` labels of `classes` classes.
/// Made by [`Gpu::class_weights`].
pub struct ClassWeights {
    gpu: Gpu,
    rows: usize,
    classes: usize,
    momentum: Option<f32>,
    // Positive weights from (rows, classes) f32 multi-hot targets, not a label histogram.
    multi_hot: bool,
    groups: u32,
    params: wgpu::Buffer,
    counts: wgpu::Buffer,
    // Compiled when planned: the histogram and the weights passes.
    count: wgpu::ComputePipeline,
    weigh: wgpu::ComputePipeline,
}

impl Gpu {
    /// Plans class weights for `rows` labels (`i32`) over `classes` classes, skipping
    /// `ignore_index` and out-of-range labels. With `momentum = Some(m)` the weights
    /// follow a running per-step count `f ← m f + (1 − m) n`, kept by the caller.
    pub fn class_weights(
        &self,
        rows: usize,
        classes: usize,
        ignore_index: i32,
        scheme: WeightScheme,
        momentum: Option<f32>,
    ) -> Result<ClassWeights> {
        self.weights_plan(rows, classes, ignore_index, scheme, momentum, false)
    }

    /// Plans BCE's per-class `pos_weight` from multi-hot targets, `rows × classes` f32
    /// (a target ≥ 0.5 is a positive): `w_c = raw(P_c) / raw(N_c)` with P_c positives and
    /// N_c = rows − P_c negatives of class c, the weight of a positive relative to a
    /// negative (inverse frequency gives PyTorch's recipe N_c / P_c); 1 for a class
    /// without positives or without negatives. With momentum both counts run
    /// (`frequencies` holds 2 × classes f32: positives, then negatives).
    pub fn positive_weights(
        &self,
        rows: usize,
        classes: usize,
        scheme: WeightScheme,
        momentum: Option<f32>,
    ) -> Result<ClassWeights> {
        if rows.checked_mul(classes).is_none_or(|n| n > u32::MAX as usize) {
            return Err(Error::InvalidShape {
                shape: vec![rows, classes],
                why: "positive weights read at most 2^32 - 1 targets".into(),
            });
        }
        self.weights_plan(rows, classes, 0, scheme, momentum, true)
    }

    fn weights_plan(
        &self,
        rows: usize,
        classes: usize,
        ignore_index: i32,
        scheme: WeightScheme,
        momentum: Option<f32>,
        multi_hot: bool,
    ) -> Result<ClassWeights> {
        let invalid = |name: &'static str, value: f32, requirement: &'static str| Error::InvalidParameter {
            loss: "class_weights",
            name,
            value: value as f64,
            requirement,
        };
        if classes == 0 || classes > u32::MAX as usize || rows > u32::MAX as usize {
            return Err(Error::InvalidShape {
                shape: vec![rows, classes],
                why: "class weights need 1 to 2^32 - 1 classes and at most 2^32 - 1 labels".into(),
            });
        }
        if let WeightScheme::EffectiveNumber { beta } = scheme {
            if !(0.0..1.0).contains(&beta) {
                return Err(invalid("beta", beta, "in [0, 1)"));
            }
        }
        if let Some(m) = momentum {
            if !(0.0..=1.0).contains(&m) {
                return Err(invalid("momentum", m, "in [0, 1]"));
            }
        }
        let params = Params {
            rows: rows as u32,
            classes: classes as u32,
            ignore_index,
            scheme: scheme.code(),
            beta: scheme.beta(),
            momentum: momentum.unwrap_or(0.0),
            _pad: [0; 2],
        };
        let counts = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("fused-loss class counts"),
            size: classes as u64 * ELEM_BYTES,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let inputs = if multi_hot { rows * classes } else { rows };
        let mut defines = Defines::new();
        if multi_hot {
            defines.insert("MULTI_HOT".into(), String::new());
        }
        if momentum.is_some() {
            defines.insert("EMA".into(), String::new());
        }
        let shader = "classification/class_weights";
        let count = self.pipeline(shader, "count_classes", &defines)?;
        let weigh = self.pipeline(shader, "class_weights", &defines)?;
        Ok(ClassWeights {
            gpu: self.clone(),
            rows,
            classes,
            momentum,
            multi_hot,
            groups: (inputs as u64).div_ceil(WG_SIZE as u64).clamp(1, MAX_GROUPS as u64) as u32,
            params: uniform(self, "fused-loss class-weight params", &params),
            counts,
            count,
            weigh,
        })
    }
}

/// Every variant of the class-weights shader that [`ClassWeights::encode`] can ask for,
/// as `(shader, entry point, defines)`, for validation ahead of time.
#[cfg(test)]
pub(crate) fn shader_variants() -> Vec<(&'static str, &'static str, Defines)> {
    let mut out = Vec::new();
    for ema in [false, true] {
        for multi_hot in [false, true] {
            let flags = [ema.then_some("EMA"), multi_hot.then_some("MULTI_HOT")];
            let defines: Defines = flags.into_iter().flatten().map(|f| (f.to_string(), String::new())).collect();
            for entry in ["count_classes", "class_weights"] {
                out.push(("classification/class_weights", entry, defines.clone()));
            }
        }
    }
    out
}

impl ClassWeights {
    /// Records the histogram of `labels` (`rows` i32; for [`Gpu::positive_weights`] the
    /// `rows × classes` f32 targets) and writes `classes` f32 weights into `weights`.
    /// With momentum, `frequencies` (`classes` f32, or 2 × `classes` for positive
    /// weights; zeros at the start) is read and updated: pass the same buffer every step.
    /// All checks happen before anything is recorded.
    pub fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        labels: wgpu::BufferSlice,
        frequencies: Option<wgpu::BufferSlice>,
        weights: wgpu::BufferSlice,
    ) -> Result<()> {
        let gpu = &self.gpu;
        let classes = self.classes as u64;
        let (argument, inputs) = self.inputs();
        let mut checks = SliceChecks::new(gpu);
        checks.read(argument, &labels, inputs * ELEM_BYTES)?;
        checks.write("weights", &weights, classes * ELEM_BYTES)?;
        let state = if self.multi_hot { 2 * classes } else { classes };
        match (&frequencies, self.momentum) {
            (Some(slice), Some(_)) => {
                checks.write("frequencies", slice, state * ELEM_BYTES)?;
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(Error::UnsupportedArgument {
                    loss: "class_weights",
                    argument: "frequencies (the plan has no momentum)",
                })
            }
            (None, Some(_)) => {
                return Err(Error::MissingArgument {
                    argument: "frequencies",
                    why: "a plan with momentum keeps its running counts in the caller's buffer",
                })
            }
        }
        // The labels are read by the counting dispatch only and the outputs written by the
        // weighing dispatch only: no dispatch binds one buffer read-only and read-write, so
        // they may share a buffer (burn's pools) as long as they do not overlap.
        checks.shared_buffers = true;
        checks.refuse_overlaps()?;
        let (count, weigh) = (&self.count, &self.weigh);
        let counts = self.counts.as_entire_buffer_binding();
        let scope = gpu.device().push_error_scope(wgpu::ErrorFilter::Validation);
        let count_group = bind_group(
            gpu,
            "fused-loss class counts",
            count,
            vec![(0, self.params.as_entire_buffer_binding()), (1, sub(&labels, 0, inputs.max(1))), (2, counts.clone())],
        );
        let mut entries =
            vec![(0, self.params.as_entire_buffer_binding()), (2, counts), (4, sub(&weights, 0, classes))];
        if let Some(slice) = &frequencies {
            entries.push((3, sub(slice, 0, state)));
        }
        let weigh_group = bind_group(gpu, "fused-loss class weights", weigh, entries);
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(refused_buffer(gpu, &checks, &error));
        }
        encoder.clear_buffer(&self.counts, 0, None);
        record(encoder, "fused-loss class weights", &[(count, &count_group, self.groups), (weigh, &weigh_group, 1)]);
        Ok(())
    }

    /// The operand the plan reads and its length: labels, or multi-hot targets.
    fn inputs(&self) -> (&'static str, u64) {
        if self.multi_hot {
            ("targets", (self.rows * self.classes) as u64)
        } else {
            ("labels", self.rows as u64)
        }
    }

    /// Host convenience: uploads `labels`, computes, reads the weights back. With
    /// momentum, `frequencies` is the running state (start with zeros) and is updated.
    pub fn compute(&self, labels: &[i32], frequencies: Option<&mut [f32]>) -> Result<Vec<f32>> {
        if self.multi_hot {
            return Err(Error::UnsupportedArgument {
                loss: "positive_weights",
                argument: "integer labels (it reads multi-hot targets: use compute_positive)",
            });
        }
        self.run(bytemuck::cast_slice(labels), labels.len(), frequencies)
    }

    /// Host convenience of [`Gpu::positive_weights`]: `targets` is `rows × classes` f32.
    pub fn compute_positive(&self, targets: &[f32], frequencies: Option<&mut [f32]>) -> Result<Vec<f32>> {
        if !self.multi_hot {
            return Err(Error::UnsupportedArgument {
                loss: "class_weights",
                argument: "multi-hot targets (it reads integer labels: use compute)",
            });
        }
        self.run(bytemuck::cast_slice(targets), targets.len(), frequencies)
    }

    fn run(&self, input: &[u8], len: usize, frequencies: Option<&mut [f32]>) -> Result<Vec<f32>> {
        let (argument, want) = self.inputs();
        if len as u64 != want {
            return Err(Error::LengthMismatch {
                argument,
                expected: format!("{want} (the plan's rows{})", if self.multi_hot { " × classes" } else { "" }),
                actual: len,
            });
        }
        let state = if self.multi_hot { 2 * self.classes } else { self.classes };
        if let Some(f) = frequencies.as_ref().filter(|f| f.len() != state) {
            return Err(Error::LengthMismatch {
                argument: "frequencies",
                expected: format!("{state} (the running counts)"),
                actual: f.len(),
            });
        }
        let device = self.gpu.device();
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        let upload = |label: &str, data: &[u8]| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: data,
                usage: storage,
            })
        };
        // A zero-row call still binds one word.
        let label_bytes: Vec<u8> = if input.is_empty() { vec![0; 4] } else { input.to_vec() };
        let labels_buffer = upload(argument, &label_bytes);
        let frequencies_buffer = frequencies.as_ref().map(|f| upload("frequencies", bytemuck::cast_slice(f)));
        let weights = upload("weights", &vec![0u8; self.classes * 4]);
        let mut encoder = device.create_command_encoder(&Default::default());
        self.encode(
            &mut encoder,
            labels_buffer.slice(..),
            frequencies_buffer.as_ref().map(|b| b.slice(..)),
            weights.slice(..),
        )?;
        let bytes = self.classes as u64 * 4;
        let state_bytes = state as u64 * 4;
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("class weights readback"),
            size: bytes + state_bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_buffer_to_buffer(&weights, 0, &readback, 0, bytes);
        if let Some(b) = &frequencies_buffer {
            encoder.copy_buffer_to_buffer(b, 0, &readback, bytes, state_bytes);
        }
        self.gpu.queue().submit([encoder.finish()]);
        let data = pollster::block_on(crate::read_back(device, &readback))?;
        let (w, f) = data.split_at(bytes as usize);
        if let Some(frequencies) = frequencies {
            frequencies.copy_from_slice(&bytemuck::pod_collect_to_vec::<u8, f32>(f));
        }
        Ok(bytemuck::pod_collect_to_vec(w))
    }
}

#[cfg(test)]
mod mirrors {
    use super::Params;
    use crate::shader::assert_mirrors;

    #[test]
    fn uniform_struct_mirrors_the_shader() {
        assert_mirrors!(Params, "classification/class_weights", "Params" {
            rows: u32, classes: u32, ignore_index: i32, scheme: u32, beta: f32, momentum: f32,
        });
    }
}

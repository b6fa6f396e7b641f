//! Element types of the floating operands that a loss reads and writes in bulk: the
//! input, the target values and the gradient. Everything else (weights, `pos_weight`,
//! upstream gradients, per-element losses, log-sum-exp) stays f32, and all arithmetic
//! and accumulation is f32 whatever the element type.

use half::{bf16, f16};

/// Storage type of input, target values and gradient.
///
/// | type | bytes | GPU storage | needs |
/// |---|---|---|---|
/// | `F32` | 4 | `array<f32>` | — |
/// | `F16` | 2 | `array<f16>` | [`wgpu::Features::SHADER_F16`] |
/// | `BF16` | 2 | `array<u32>`, two per word (element 2w in the low half) | — |
///
/// Half-precision operands occupy whole 32-bit words: `n` elements need
/// `4·⌈n/2⌉` bytes. Gradients are rounded to nearest, ties to even.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE binary32.
    #[default]
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16: the top half of a binary32.
    BF16,
}

impl DType {
    /// Every element type.
    pub const ALL: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

    /// Lower-case name (`f32`, `f16`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }

    /// The element type called `name` (`f32`, `f16`, `bf16`).
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes of one element.
    pub fn size(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Bytes that `elements` elements occupy in a GPU buffer (whole 32-bit words).
    pub fn bytes(self, elements: u64) -> u64 {
        (elements * self.size()).div_ceil(4) * 4
    }

    /// Elements per word of the elementwise driver (`PACK` in `shaders/lib/elem.wgsl`):
    /// one 32-bit word, or with `vector` one `vec4` of the storage type.
    pub(crate) fn per_word(self, vector: bool) -> u64 {
        match (self, vector) {
            (DType::F32 | DType::F16, false) => 1,
            (DType::BF16, false) => 2,
            (DType::F32 | DType::F16, true) => 4,
            (DType::BF16, true) => 8,
        }
    }

    /// The shader define that selects this type in `shaders/lib/elem.wgsl`.
    pub(crate) fn define(self) -> Option<&'static str> {
        match self {
            DType::F32 => None,
            DType::F16 => Some("ELEM_F16"),
            DType::BF16 => Some("ELEM_BF16"),
        }
    }

    /// `v` rounded to this type (nearest, ties to even) and widened back, exactly.
    pub fn round(self, v: f32) -> f32 {
        match self {
            DType::F32 => v,
            DType::F16 => f16::from_f32(v).to_f32(),
            DType::BF16 => bf16::from_f32(v).to_f32(),
        }
    }

    /// `values` rounded to this type, as the GPU buffer's bytes (padded to whole words).
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        let mut bytes: Vec<u8> = match self {
            DType::F32 => bytemuck::cast_slice(values).to_vec(),
            DType::F16 => values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect(),
            DType::BF16 => values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect(),
        };
        bytes.resize(self.bytes(values.len() as u64) as usize, 0);
        bytes
    }

    /// The first `count` elements of a GPU buffer's bytes, widened to f32 (exactly).
    pub fn decode(self, bytes: &[u8], count: usize) -> Vec<f32> {
        let size = self.size() as usize;
        bytes[..count * size]
            .chunks_exact(size)
            .map(|b| match self {
                DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                DType::F16 => f16::from_le_bytes([b[0], b[1]]).to_f32(),
                DType::BF16 => bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            })
            .collect()
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

//! Divergences between distributions given element by element (log-probabilities).
//! Shaders `shaders/distribution/*.wgsl`, twins `src/cpu/distribution.rs`.

use super::definition::{define_loss, pointwise_twin, Definition, Twin};
use super::{Domain, Loss, Spec, TargetGrad};

define_loss! {
    /// KL divergence of an input of log-probabilities from a target:
    /// `y (ln y − x)` (0 where y = 0; y < 0 is out of domain), or with `log_target`
    /// `e^y (y − x)`. Takes `batchmean`. `torch.nn.KLDivLoss`.
    KlDiv, kl_div {
        /// The target holds log-probabilities (PyTorch's default false).
        log_target: bool = false, "true or false", |_v| true;
    }
}

impl Definition for KlDiv {
    fn spec(&self) -> Spec {
        Spec {
            input_domain: Domain::LogProbability,
            target_domain: if self.log_target { Domain::LogProbability } else { Domain::Probability },
            takes_batchmean: true,
            invalid_means: Some(("target", "[0, inf) (probabilities)")),
            ..Spec::pointwise("kl_div", "torch.nn.KLDivLoss", "distribution/kl_div")
        }
    }
    fn twin(&self) -> Twin<Self> {
        pointwise_twin()
    }
    fn variations(&self) -> Vec<Loss> {
        vec![self.log_target(false).into(), self.log_target(true).into()]
    }
}

define_loss! {
    /// Generalised Jensen-Shannon divergence for distillation, Liger-Kernel's `LigerJSD`:
    /// input `x` = the student's log-probabilities, target `y` = the teacher's, per element
    /// `β p (y − ln m) + (1 − β) q (x − ln m)` with `p = e^y`, `q = e^x`, `m = β p + (1 − β) q`
    /// (β = ½ is the Jensen-Shannon divergence); as in Liger, `beta = 0` is forward KL
    /// `p (y − x)` and `beta = 1` reverse KL `q (x − y)`. Liger reduces with `batchmean`
    /// (÷ rows of a `(BT, V)` input); every reduction is accepted. Shapes as the input;
    /// log-probabilities of −inf contribute their limit 0.
    ///
    /// The gradient is the student's; the teacher's (training both) comes from the same
    /// pass on request (`Inputs::with_target_grad`, `Bindings::target_grad`):
    /// `β p (y − ln m)` (β = 0: `p (y − x + 1)`, β = 1: `−q`). The loss is unchanged when
    /// input and target swap and β becomes 1 − β ([`Jsd::teacher_side`]).
    Jsd, jsd {
        /// Weight of the teacher's distribution in the mixture, in [0, 1] (Liger's
        /// default ½).
        beta: f32 = 0.5, "in [0, 1]", |v| (0.0..=1.0).contains(&v);
    }
}

impl Jsd {
    /// The same divergence seen from the teacher's side, whose input gradient on
    /// `(input = teacher, target = student)` is the teacher's gradient (β becomes 1 − β).
    pub fn teacher_side(&self) -> Jsd {
        self.beta(1.0 - self.beta)
    }
}

impl Definition for Jsd {
    fn spec(&self) -> Spec {
        Spec {
            input_domain: Domain::LogProbability,
            target_domain: Domain::LogProbability,
            takes_batchmean: true,
            target_grad: TargetGrad::Own,
            ..Spec::pointwise("jsd", "Liger-Kernel LigerJSD(beta)", "distribution/jsd")
        }
    }
    fn twin(&self) -> Twin<Self> {
        pointwise_twin()
    }
    fn variations(&self) -> Vec<Loss> {
        // Liger's two special cases (forward and reverse KL) and a skewed mixture.
        vec![self.into(), self.beta(0.0).into(), self.beta(1.0).into(), self.beta(0.1).into()]
    }
}

/// The family's registry entries.
pub(super) fn registry() -> Vec<Loss> {
    vec![Loss::kl_div().into(), Loss::jsd().into()]
}

//! The GPU-vs-CPU matrix as named tests: every registry loss × its variations ×
//! reduction × optional operands × element type × awkward sizes, on seeded random
//! inputs, one test per case, generated from the registry at start-up (a custom
//! harness, `libtest-mimic`). A name reads `suite::loss::{params}::reduction::dtype::dims
//! [::options]::seed`, so `cargo test --release --test matrix huber` runs Huber's cases,
//! `-- awkward::cross_entropy` one suite's cross-entropy cases, and a failure names its
//! case. Without an adapter every case is reported ignored (after a loud SKIP), unless
//! `FUSED_LOSS_REQUIRE_GPU=1`, where that is a failure.

mod common;

use fused_loss::check::{self, Case};
use fused_loss::{DType, Gpu, Reduction, RowKernel};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let gpu = common::gpu("matrix");
    let mut trials = Vec::new();
    let mut suite = |name: &str, gpu: Option<Gpu>, cases: Vec<Case>| {
        trials.extend(cases.into_iter().map(|case| trial(name, gpu.clone(), case)));
    };
    let derived = |f: &Derive<'_>| gpu.as_ref().map(f);

    suite("awkward", gpu.clone(), check::standard_cases(check::ELEMENTWISE_DIMS, check::ROW_DIMS));
    // 70 000 rows: a launch of one workgroup per row (or per 256 elements) would exceed
    // 65 535 workgroups in one dimension; 5000 rows of 40 classes, five rows for each of
    // the per-workgroup kernel's 1024 workgroups (66 000 rows cost lavapipe half a second a
    // case and add nothing to that). The launch shape does not depend on the element type
    // (the other suites cover those), so f32 only.
    let many_rows = check::standard_cases(&[&[70_000, 3]], &[&[70_000, 3], &[5_000, 40]]);
    // Likewise it does not depend on a loss's parameters: each loss's registry setting
    // (its other settings run in every other suite).
    let registry = fused_loss::registry();
    let many_rows = many_rows
        .into_iter()
        .filter(|c| c.reduction == Reduction::Mean && c.dtype == DType::F32 && registry.contains(&c.loss));
    suite("many_rows", gpu.clone(), many_rows.collect());
    // C = 32 768, 131 072 and 262 144: the row-per-workgroup kernel with online softmax,
    // every option of cross-entropy.
    let vocabulary = check::standard_cases(&[], &[&[5, 32_768], &[3, 131_072], &[2, 262_144]]);
    // (f32 and bf16: f16 shares bf16's 16-bit path.)
    let vocabulary = vocabulary
        .into_iter()
        .filter(|c| (c.reduction != Reduction::None || c.loss.name() == "cross_entropy") && c.dtype != DType::F16);
    suite("vocabulary", gpu.clone(), vocabulary.collect());
    // The row kernel is chosen by C; forcing each on shapes the other would take checks
    // both paths on the same inputs.
    for (name, kernel) in [("row_per_thread", RowKernel::PerThread), ("row_per_workgroup", RowKernel::PerWorkgroup)] {
        let cases = check::standard_cases(&[], &[&[67, 10], &[9, 100], &[2, 40, 9]]);
        suite(name, derived(&|g| g.with_row_kernel(kernel)), cases);
    }
    // 16 KiB bindings force 100 002 elements into 25 chunks, with broadcast operands
    // whose period (7) does not divide the chunk length; row-wise shapes split into
    // chunks of whole batch items.
    // These suites force a path of the host or the driver (chunks, parts, a reduction,
    // loads) that does not depend on a loss's parameters: each loss's registry setting,
    // with every option (the parameters' own variations run in awkward).
    // f16 is left out of them too: it shares the 16-bit loads and stores with bf16.
    let registered = |cases: Vec<Case>| -> Vec<Case> {
        cases.into_iter().filter(|c| registry.contains(&c.loss) && c.dtype != DType::F16).collect()
    };
    let chunked = check::standard_cases(&[&[14_286, 7]], &[&[300, 40], &[30, 3, 50], &[1000, 3]]);
    suite("chunked", derived(&|g| g.with_max_binding_bytes(16 * 1024)), registered(chunked));
    // Inputs above one buffer (64 KiB here) are computed in parts of whole batch items.
    let split = check::standard_cases(&[&[300, 257], &[100_000]], &[&[70, 1000], &[40, 21, 40]]);
    suite("split", derived(&|g| g.with_max_buffer_bytes(64 * 1024)), registered(split));
    // The paths a device may lack or a length may rule out, forced on shapes where the
    // default path would take the other: workgroup-tree reductions instead of subgroup
    // butterflies, scalar loads instead of vec4 (256 and 100 000 are multiples of 8).
    let fallbacks: [(&str, &Derive<'_>); 3] = [
        ("no_subgroups", &|g| g.with_subgroups(false)),
        ("scalar_loads", &|g| g.with_vector_loads(false)),
        ("no_subgroups_scalar_loads", &|g| g.with_subgroups(false).with_vector_loads(false)),
    ];
    for (name, fallback) in fallbacks {
        let cases = check::standard_cases(&[&[256], &[100_000]], &[&[257, 3], &[7, 1000], &[3, 40, 9]]);
        suite(name, derived(fallback), registered(cases));
    }
    libtest_mimic::run(&args, trials).exit();
}

/// A handle made from the test adapter (a forced path, smaller limits).
type Derive<'a> = dyn Fn(&Gpu) -> Gpu + 'a;

/// One case as a test; ignored when there is no adapter.
fn trial(suite: &str, gpu: Option<Gpu>, case: Case) -> Trial {
    let name = format!("{suite}::{}", case.test_name());
    let ignored = gpu.is_none();
    Trial::test(name, move || match gpu {
        Some(gpu) => agree(&gpu, &case),
        None => Err("no adapter".into()),
    })
    .with_ignored_flag(ignored)
}

/// The case agrees with the f64 reference within the design's tolerances, or (f16 on an
/// adapter without SHADER_F16) is refused with the missing feature named.
fn agree(gpu: &Gpu, case: &Case) -> Result<(), Failed> {
    if check::must_refuse(gpu, case) {
        return match check::run_case(gpu, case) {
            Err(e) if check::is_expected_refusal(&e) => Ok(()),
            other => Err(format!("{case}: expected a SHADER_F16 refusal, got {other:?}").into()),
        };
    }
    match check::run_case(gpu, case) {
        Ok(a) if a.passes() => Ok(()),
        Ok(a) => Err(format!("{case}: {a:?} (errors as multiples of the allowed)").into()),
        Err(e) => Err(format!("{case}: {e}").into()),
    }
}

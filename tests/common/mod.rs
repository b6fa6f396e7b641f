//! The one place GPU tests get their adapter.
#![allow(dead_code)]

use fused_loss::Gpu;

/// The test adapter, or `None` (after a loud SKIP) when there is none. With
/// `FUSED_LOSS_REQUIRE_GPU=1` a missing adapter fails the test instead.
pub fn gpu(test: &str) -> Option<Gpu> {
    match Gpu::new() {
        Ok(gpu) => {
            let info = gpu.adapter_info();
            eprintln!("[{test}] adapter: {} ({:?})", info.name, info.backend);
            Some(gpu)
        }
        Err(e) if std::env::var("FUSED_LOSS_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("[{test}] FUSED_LOSS_REQUIRE_GPU=1 but no adapter: {e}")
        }
        Err(e) => {
            eprintln!(
                "\n*** SKIP [{test}]: no GPU adapter ({e}). Set FUSED_LOSS_REQUIRE_GPU=1 to make this a failure. ***\n"
            );
            None
        }
    }
}

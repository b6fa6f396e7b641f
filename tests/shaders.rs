//! Every assembled shader variant parses and validates with naga. Needs no GPU.

use fused_loss::{registry, shader, Plan};

fn validate(name: &str, entry: &str, defines: &shader::Defines) {
    let code = shader::assemble(name, defines).unwrap_or_else(|e| panic!("{name} {defines:?}: {e}"));
    let module = naga::front::wgsl::parse_str(&code)
        .unwrap_or_else(|e| panic!("{name} {defines:?} does not parse:\n{}", e.emit_to_string(&code)));
    // SHADER_FLOAT16 and SUBGROUP (shuffles in compute): the f16 and SUBGROUPS variants,
    // which the host asks for only when the device has SHADER_F16 / SUBGROUP.
    let capabilities = naga::valid::Capabilities::default()
        | naga::valid::Capabilities::SHADER_FLOAT16
        | naga::valid::Capabilities::SUBGROUP;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::SHUFFLE)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name} {defines:?} does not validate:\n{}", e.emit_to_string(&code)));
    assert!(module.entry_points.iter().any(|e| e.name == entry), "{name} {defines:?} has no entry point {entry}");
}

#[test]
fn every_loss_variant_validates() {
    let mut seen = std::collections::BTreeSet::new();
    for loss in registry() {
        for (name, entry, defines) in Plan::shader_variants(&loss.spec()) {
            if seen.insert(format!("{name} {entry} {defines:?}")) {
                validate(name, entry, &defines);
            }
        }
    }
    for (name, entry, defines) in fused_loss::class_weights::shader_variants() {
        if seen.insert(format!("{name} {entry} {defines:?}")) {
            validate(name, entry, &defines);
        }
    }
    eprintln!("validated {} shader variants", seen.len());
    assert!(seen.len() >= registry().len() * 6);
}

#[test]
fn every_shader_file_is_reached() {
    // A file no loss (or the class-weights pass) uses is dead code or a forgotten registry entry.
    let mut reached: Vec<String> =
        fused_loss::class_weights::shader_variants().into_iter().map(|(name, _, _)| name.to_string()).collect();
    for loss in registry() {
        reached.extend(Plan::shader_variants(&loss.spec()).into_iter().map(|(name, _, _)| name.to_string()));
    }
    for (name, source) in shader::sources() {
        if name.starts_with("lib/") {
            let importer = shader::sources().iter().any(|(_, s)| s.contains(&format!("#import {name}")));
            assert!(importer, "shaders/{name}.wgsl is imported by nothing");
        } else {
            assert!(reached.iter().any(|r| r == name), "shaders/{name}.wgsl is used by no registry loss");
        }
        assert!(!source.is_empty());
    }
}

#[test]
fn unknown_shader_is_an_error() {
    let err = shader::assemble("no/such/shader", &shader::Defines::new()).unwrap_err();
    assert!(err.to_string().contains("no shader named"), "{err}");
}

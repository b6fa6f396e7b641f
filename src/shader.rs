//! The WGSL preprocessor and the embedded shader sources.
//!
//! Directives (each on a line of its own):
//! - `#import path` pastes `shaders/path.wgsl` once per assembled shader (later imports
//!   of the same file are skipped), so shared code lives in `shaders/lib/`.
//! - `#define NAME [value]` defines a name; a name with a value is substituted wherever
//!   it appears as a whole identifier. The host passes its variant flags the same way.
//! - `#if EXPR` / `#else` / `#endif`, where EXPR is `NAME`, `!NAME`, joined by `&&` or
//!   `||` (`&&` binds tighter; no parentheses). A name is true when defined with no
//!   value or any value other than `0`.
//!
//! Variants of a kernel come from these flags, never from copied files.

use std::collections::{BTreeMap, HashSet};

use crate::error::{Error, Result};

include!(concat!(env!("OUT_DIR"), "/shader_sources.rs"));

/// Every embedded shader file, as `(path without extension, source)`.
#[cfg(test)]
pub(crate) fn sources() -> &'static [(&'static str, &'static str)] {
    SOURCES
}

/// Variant flags and values passed to [`assemble`].
pub(crate) type Defines = BTreeMap<String, String>;

/// The storage buffers an assembled shader declares: its `var<storage` lines. In a file
/// with one entry point every one the preprocessor keeps is used by it (the validation
/// tests check that against naga's analysis); otherwise an upper bound.
pub(crate) fn storage_bindings(code: &str) -> u64 {
    code.lines().filter(|line| line.contains("var<storage")).count() as u64
}

/// Assembles `shaders/<entry>.wgsl` with its imports under the given defines.
pub(crate) fn assemble(entry: &str, defines: &Defines) -> Result<String> {
    assemble_from(SOURCES, entry, defines)
}

fn assemble_from(sources: &'static [(&'static str, &'static str)], entry: &str, defines: &Defines) -> Result<String> {
    let mut state = State { sources, defines: defines.clone(), imported: HashSet::new(), out: String::new() };
    state.include(entry, entry)?;
    // WGSL wants enable directives before every declaration, so the f16 variant's goes
    // first rather than into lib/elem where the type is chosen.
    if state.defines.contains_key("ELEM_F16") {
        state.out.insert_str(0, "enable f16;\n");
    }
    // Operands sharing one buffer (Options::shared_buffers): wgpu refuses a buffer bound
    // read-only and read-write in one dispatch, so every storage binding is read_write.
    if state.defines.contains_key(crate::losses::plan::SHARED_BUFFERS) {
        state.out = state.out.replace("var<storage, read>", "var<storage, read_write>");
    }
    Ok(state.out)
}

struct State {
    sources: &'static [(&'static str, &'static str)],
    defines: Defines,
    imported: HashSet<String>,
    out: String,
}

impl State {
    fn include(&mut self, entry: &str, name: &str) -> Result<()> {
        if !self.imported.insert(name.to_string()) {
            return Ok(());
        }
        let err = |line: usize, message: String| Error::Shader {
            name: entry.to_string(),
            message: format!("{name}.wgsl:{line}: {message}"),
        };
        let text = self
            .sources
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .ok_or_else(|| err(0, format!("no shader named {name:?}")))?;
        // Each open #if: (enclosing block active, this branch's condition).
        let mut stack: Vec<(bool, bool)> = Vec::new();
        let active = |stack: &[(bool, bool)]| stack.last().is_none_or(|&(outer, cond)| outer && cond);
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            let trimmed = line.trim();
            if let Some(rest) = trimmed.strip_prefix("#if ") {
                let outer = active(&stack);
                stack.push((outer, self.eval(rest)));
            } else if trimmed == "#else" {
                let top = stack.last_mut().ok_or_else(|| err(number, "#else without #if".into()))?;
                top.1 = !top.1;
            } else if trimmed == "#endif" {
                stack.pop().ok_or_else(|| err(number, "#endif without #if".into()))?;
            } else if !active(&stack) {
                continue;
            } else if let Some(rest) = trimmed.strip_prefix("#import ") {
                self.include(entry, rest.trim()).map_err(|e| err(number, e.to_string()))?;
            } else if let Some(rest) = trimmed.strip_prefix("#define ") {
                let mut parts = rest.split_whitespace();
                let key = parts.next().ok_or_else(|| err(number, "#define without a name".into()))?;
                let value = parts.collect::<Vec<_>>().join(" ");
                self.defines.insert(key.to_string(), value);
            } else if trimmed.starts_with('#') {
                return Err(err(number, format!("unknown directive {trimmed:?}")));
            } else {
                self.out += &self.substitute(line);
                self.out.push('\n');
            }
        }
        if !stack.is_empty() {
            return Err(err(text.lines().count(), "#if without #endif".into()));
        }
        Ok(())
    }

    fn truthy(&self, name: &str) -> bool {
        self.defines.get(name).is_some_and(|v| v != "0")
    }

    fn eval(&self, expr: &str) -> bool {
        expr.split("||").any(|conj| {
            conj.split("&&").all(|term| {
                let term = term.trim();
                match term.strip_prefix('!') {
                    Some(name) => !self.truthy(name.trim()),
                    None => self.truthy(term),
                }
            })
        })
    }

    fn substitute(&self, line: &str) -> String {
        if self.defines.values().all(String::is_empty) {
            return line.to_string();
        }
        let mut out = String::with_capacity(line.len());
        let mut rest = line;
        while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
            out += &rest[..start];
            let tail = &rest[start..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
            let word = &tail[..end];
            match self.defines.get(word) {
                Some(value) if !value.is_empty() => out += value,
                _ => out += word,
            }
            rest = &tail[end..];
        }
        out + rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditionals_nest_and_combine() {
        let mut state = State { sources: &[], defines: Defines::new(), imported: HashSet::new(), out: String::new() };
        state.defines.insert("A".into(), String::new());
        state.defines.insert("Z".into(), "0".into());
        assert!(state.eval("A"));
        assert!(!state.eval("Z"));
        assert!(state.eval("!Z && A"));
        assert!(state.eval("Z || A"));
        assert!(!state.eval("Z || !A"));
    }

    static FILES: &[(&str, &str)] = &[
        ("main", "#import lib/a\n#import lib/a\n#if FLAG\nflag_on\n#else\nflag_off\n#endif\nN"),
        ("lib/a", "#define N 7u\nfn a() {}"),
        ("open", "#if FLAG\nx"),
        ("stray", "#endif"),
        ("unknown", "#pragma once"),
    ];

    #[test]
    fn imports_once_and_selects_branches() {
        let mut defines = Defines::new();
        let off = assemble_from(FILES, "main", &defines).unwrap();
        assert_eq!(off, "fn a() {}\nflag_off\n7u\n");
        defines.insert("FLAG".into(), String::new());
        let on = assemble_from(FILES, "main", &defines).unwrap();
        assert_eq!(on, "fn a() {}\nflag_on\n7u\n");
    }

    #[test]
    fn malformed_sources_are_errors_with_a_line() {
        for (name, want) in
            [("open", "#if without #endif"), ("stray", "#endif without #if"), ("unknown", "unknown directive")]
        {
            let err = assemble_from(FILES, name, &Defines::new()).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains(&format!("{name}.wgsl:")), "{err}");
        }
    }

    #[test]
    fn substitution_is_whole_word() {
        let mut state = State { sources: &[], defines: Defines::new(), imported: HashSet::new(), out: String::new() };
        state.defines.insert("N".into(), "4u".into());
        assert_eq!(state.substitute("let N_2 = N + vec2(N);"), "let N_2 = 4u + vec2(4u);");
    }
}

/// The host's mirrors of WGSL declarations, checked against naga's reflection of the
/// assembled shaders (no GPU needed): a `#[repr(C)]` struct written into a uniform or
/// storage buffer must have the WGSL struct's members, by name, offset and scalar type,
/// and its size. Members named `_…` are padding on both sides and only sized.
#[cfg(test)]
pub(crate) mod reflection {
    use super::{assemble, Defines};

    /// Parses `shader` assembled with `defines` (`FLAG` or `NAME=VALUE`).
    pub(crate) fn module(shader: &str, defines: &[&str]) -> naga::Module {
        let defines: Defines = defines
            .iter()
            .map(|d| match d.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => (d.to_string(), String::new()),
            })
            .collect();
        let code = assemble(shader, &defines).unwrap_or_else(|e| panic!("{shader}: {e}"));
        naga::front::wgsl::parse_str(&code).unwrap_or_else(|e| panic!("{shader}: {}", e.emit_to_string(&code)))
    }

    /// Asserts that WGSL struct `name` of `shader` has exactly the non-padding members
    /// `fields` (name, byte offset, scalar type name) and a size of `size` bytes.
    pub(crate) fn assert_struct(
        shader: &str,
        defines: &[&str],
        name: &str,
        fields: &[(&str, usize, &str)],
        size: usize,
    ) {
        let module = module(shader, defines);
        let (members, span) = module
            .types
            .iter()
            .find_map(|(_, ty)| match &ty.inner {
                naga::TypeInner::Struct { members, span } if ty.name.as_deref() == Some(name) => Some((members, *span)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{shader} declares no struct {name}"));
        let wgsl: Vec<(String, usize, String)> = members
            .iter()
            .filter(|m| !m.name.as_deref().unwrap_or("_").starts_with('_'))
            .map(|m| {
                let ty = match module.types[m.ty].inner {
                    naga::TypeInner::Scalar(scalar) => match (scalar.kind, scalar.width) {
                        (naga::ScalarKind::Float, 4) => "f32",
                        (naga::ScalarKind::Uint, 4) => "u32",
                        (naga::ScalarKind::Sint, 4) => "i32",
                        other => panic!("{name}.{:?}: scalar {other:?} has no mirror", m.name),
                    },
                    ref other => panic!("{name}.{:?}: {other:?} has no mirror", m.name),
                };
                (m.name.clone().unwrap_or_default(), m.offset as usize, ty.to_string())
            })
            .collect();
        let rust: Vec<(String, usize, String)> =
            fields.iter().map(|&(n, o, t)| (n.to_string(), o, t.to_string())).collect();
        assert_eq!(rust, wgsl, "the Rust mirror of {shader}'s {name} (name, offset, type) differs");
        assert_eq!(size, span as usize, "the Rust mirror of {shader}'s {name} has another size");
    }

    /// The value of WGSL `const name: u32` in `shader`.
    pub(crate) fn const_u32(shader: &str, name: &str) -> u32 {
        let module = module(shader, &[]);
        let (_, constant) = module
            .constants
            .iter()
            .find(|(_, c)| c.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{shader} declares no const {name}"));
        match module.global_expressions[constant.init] {
            naga::Expression::Literal(naga::Literal::U32(v)) => v,
            ref other => panic!("{shader}'s {name} is {other:?}, not a u32 literal"),
        }
    }

    /// The byte size of WGSL type `name` in `shader`.
    pub(crate) fn type_size(shader: &str, name: &str) -> u32 {
        let module = module(shader, &[]);
        let gctx = module.to_ctx();
        let (_, ty) = module
            .types
            .iter()
            .find(|(_, ty)| ty.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{shader} declares no type {name}"));
        ty.inner.size(gctx)
    }
}

/// Asserts that the `#[repr(C)]` struct `$rust` mirrors WGSL struct `$wgsl` of shader
/// `$shader` (assembled with the `$define`s, `FLAG` or `NAME=VALUE`): the listed fields, each of the given
/// type on the Rust side (checked by the compiler) and the same name, offset and scalar
/// type in WGSL, and the same size. See [`reflection`].
#[cfg(test)]
macro_rules! assert_mirrors {
    ($rust:ty, $shader:literal $([$($define:literal),*])?, $wgsl:literal { $($field:ident: $ty:ident),* $(,)? }) => {{
        $(let _: fn(&$rust) -> $ty = |s| s.$field;)*
        let fields = [$((stringify!($field), std::mem::offset_of!($rust, $field), stringify!($ty))),*];
        crate::shader::reflection::assert_struct(
            $shader,
            &[$($($define),*)?],
            $wgsl,
            &fields,
            std::mem::size_of::<$rust>(),
        );
    }};
}
#[cfg(test)]
pub(crate) use assert_mirrors;

/// Every assembled shader variant parses and validates with naga. Needs no GPU.
#[cfg(test)]
mod naga_validation {
    use super::{assemble, sources, Defines};
    use crate::{registry, Plan};

    fn validate(name: &str, entry: &str, defines: &Defines) {
        let code = assemble(name, defines).unwrap_or_else(|e| panic!("{name} {defines:?}: {e}"));
        let module = naga::front::wgsl::parse_str(&code)
            .unwrap_or_else(|e| panic!("{name} {defines:?} does not parse:\n{}", e.emit_to_string(&code)));
        // SHADER_FLOAT16 and SUBGROUP (shuffles in compute): the f16 and SUBGROUPS variants,
        // which the host asks for only when the device has SHADER_F16 / SUBGROUP.
        let capabilities = naga::valid::Capabilities::default()
            | naga::valid::Capabilities::SHADER_FLOAT16
            | naga::valid::Capabilities::SUBGROUP;
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities)
            .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
            .subgroup_operations(naga::valid::SubgroupOperationSet::SHUFFLE)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name} {defines:?} does not validate:\n{}", e.emit_to_string(&code)));
        let index = module.entry_points.iter().position(|e| e.name == entry);
        let index = index.unwrap_or_else(|| panic!("{name} {defines:?} has no entry point {entry}"));
        // The device-limit check counts declarations; the layout counts what the entry uses.
        let used = info.get_entry_point(index);
        let storage_used = module
            .global_variables
            .iter()
            .filter(|(handle, var)| {
                matches!(var.space, naga::AddressSpace::Storage { .. }) && !used[*handle].is_empty()
            })
            .count() as u64;
        let declared = super::storage_bindings(&code);
        if module.entry_points.len() == 1 {
            assert_eq!(
                declared, storage_used,
                "{name} {defines:?}: storage buffers declared and used by {entry} differ"
            );
        } else {
            assert!(declared >= storage_used, "{name} {defines:?}: {entry} uses undeclared storage buffers");
        }
    }

    #[test]
    fn every_loss_variant_validates() {
        let mut seen = std::collections::BTreeSet::new();
        for loss in registry() {
            for (name, entry, defines) in Plan::shader_variants(&loss) {
                if seen.insert(format!("{name} {entry} {defines:?}")) {
                    validate(name, entry, &defines);
                }
            }
        }
        for (name, entry, defines) in crate::class_weights::shader_variants() {
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
            crate::class_weights::shader_variants().into_iter().map(|(name, _, _)| name.to_string()).collect();
        for loss in registry() {
            reached.extend(Plan::shader_variants(&loss).into_iter().map(|(name, _, _)| name.to_string()));
        }
        for (name, source) in sources() {
            // Shared code (lib/, a family's file that the losses' files import) is
            // reached through an import; a kernel's entry file through a registry loss.
            let imported = sources().iter().any(|(_, s)| s.lines().any(|l| l.trim() == format!("#import {name}")));
            if name.starts_with("lib/") {
                assert!(imported, "shaders/{name}.wgsl is imported by nothing");
            } else if !imported {
                assert!(reached.iter().any(|r| r == name), "shaders/{name}.wgsl is used by no registry loss");
            }
            assert!(!source.is_empty());
        }
    }

    #[test]
    fn unknown_shader_is_an_error() {
        let err = assemble("no/such/shader", &Defines::new()).unwrap_err();
        assert!(err.to_string().contains("no shader named"), "{err}");
    }
}

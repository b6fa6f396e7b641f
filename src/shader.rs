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
pub fn sources() -> &'static [(&'static str, &'static str)] {
    SOURCES
}

/// Variant flags and values passed to [`assemble`].
pub type Defines = BTreeMap<String, String>;

/// Assembles `shaders/<entry>.wgsl` with its imports under the given defines.
pub fn assemble(entry: &str, defines: &Defines) -> Result<String> {
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

//! Configuration as code: raw YAML types, loading with positions, `compile` to the validated
//! model, and the object diff between two models (for `plan`). No I/O beyond reading the tree; no async.

mod ca;
pub mod compile;
pub mod diagnostic;
pub mod diff;
mod env;
pub mod load;
pub mod model;
pub mod raw;
pub mod schema;
pub mod suggest;
pub mod values;

use std::path::{Path, PathBuf};

pub use ca::read_ca_file;
pub use diagnostic::{Diagnostic, Diagnostics, Level, Location, Sources};
pub use env::{MissingEnv, expand_env};
pub use model::Config;

/// The built-in policy library, embedded from `policies/` at build time.
pub const BUILTIN_POLICIES: &[(&str, &str)] = &[
    ("linux-default.yaml", include_str!("../../policies/linux-default.yaml")),
    ("windows-default.yaml", include_str!("../../policies/windows-default.yaml")),
    ("web-server.yaml", include_str!("../../policies/web-server.yaml")),
    ("database.yaml", include_str!("../../policies/database.yaml")),
];

/// Where shared policies that a tree may reference without defining come from.
#[derive(Debug, Clone, Default)]
pub enum Library {
    /// The policies embedded in the binary.
    #[default]
    Builtin,
    /// A directory of AlertPolicy files replacing the built-in library (`--policies DIR`).
    Dir(PathBuf),
}

/// A tree read and compiled: its files (for rendering), the model, and every diagnostic.
#[derive(Debug)]
pub struct Loaded {
    /// The tree's files, then the policy library's.
    pub sources: Sources,
    pub config: Config,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.level == Level::Error)
    }
}

/// Read, parse and compile the tree under `dir`: the one path lint, plan and serve share.
pub fn load_dir(dir: &Path, library: &Library) -> Loaded {
    load_dir_cached(dir, library, &mut load::ParseCache::default())
}

/// [`load_dir`], re-parsing only files whose content changed since `cache` last saw them.
pub fn load_dir_cached(dir: &Path, library: &Library, cache: &mut load::ParseCache) -> Loaded {
    let mut diags = Diagnostics::default();
    let sources = load::read_dir(dir, &mut diags);
    finish_cached(sources, library, diags, cache)
}

/// Compile an inline tree through the same path lint and serve use; panics on an error (for
/// unit tests of the layers above).
#[cfg(test)]
pub(crate) fn compile_inline(yaml: &str) -> Config {
    let mut diags = Diagnostics::default();
    let mut sources = Sources { root: Path::new("inline").to_path_buf(), ..Sources::default() };
    load::add_bytes(&mut sources, Path::new("tree.yaml").to_path_buf(), yaml.as_bytes().to_vec(), &mut diags);
    let loaded = finish(sources, &Library::Builtin, diags);
    let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.level == Level::Error).collect();
    assert!(errors.is_empty(), "test tree has errors: {errors:#?}");
    loaded.config
}

/// Compile files already read (from a git revision, say); `diags` holds what reading found.
pub fn finish(sources: Sources, library: &Library, diags: Diagnostics) -> Loaded {
    finish_cached(sources, library, diags, &mut load::ParseCache::default())
}

/// [`finish`] with a parse cache (see [`load_dir_cached`]).
pub fn finish_cached(mut sources: Sources, library: &Library, mut diags: Diagnostics, cache: &mut load::ParseCache) -> Loaded {
    let docs = load::parse_cached(&sources, &mut diags, cache);
    if docs.is_empty() && !diags.has_errors() {
        // Most likely lint or serve was pointed at the wrong directory; serve must never
        // apply an empty tree (it would remove every monitor).
        diags
            .error("empty-tree", None, format!("no configuration documents under {}", sources.root.display()))
            .with_hint("lint reads *.yaml and *.yml files, skipping hidden directories and *.test.yaml");
    }
    // The library is read and parsed on its own, then appended to the tree's Sources so its
    // diagnostics render the same way: its file ids are shifted by the tree's file count.
    let mut lib_diags = Diagnostics::default();
    let lib_sources = match library {
        Library::Builtin => Sources {
            files: BUILTIN_POLICIES
                .iter()
                .map(|(name, text)| diagnostic::SourceFile { path: Path::new("<builtin>/policies").join(name), text: text.to_string() })
                .collect(),
            ..Sources::default()
        },
        Library::Dir(dir) => {
            let mut read = load::read_dir(dir, &mut lib_diags);
            for file in &mut read.files {
                file.path = dir.join(&file.path);
            }
            read
        }
    };
    let mut library_docs = load::parse(&lib_sources, &mut lib_diags);
    let offset = sources.files.len() as u32;
    sources.tree_files = sources.files.len();
    sources.files.extend(lib_sources.files);
    for doc in &mut library_docs {
        doc.file.0 += offset;
    }
    for mut d in lib_diags.items {
        if let Some(l) = &mut d.location {
            l.file.0 += offset;
        }
        diags.items.push(d);
    }
    let now_ms = crate::clock::now_ms();
    let config = compile::compile(docs, library_docs, &sources, now_ms, &mut diags);
    Loaded { sources, config, diagnostics: diags.into_sorted() }
}

//! Getting a plan: compile a `.fsql` file, or load a `.plan` artefact.

use std::path::Path;

use fsql_compiler::{CompileOptions, compile_file};
use fsql_plan::Plan;

/// Compiles `file`, printing its diagnostics to stderr; Err if it has errors.
pub fn compile(file: &Path) -> Result<Plan, String> {
    let c = compile_file(file, &CompileOptions::default());
    for d in &c.diagnostics {
        eprint!("{}", d.render(&c.sources));
    }
    c.plan()
        .ok_or_else(|| format!("`{}` has errors; nothing was compiled", file.display()))
}

/// A plan from a `.plan` artefact or by compiling a `.fsql` file.
pub fn load(file: &Path) -> Result<Plan, String> {
    if file.extension().is_some_and(|e| e == "plan") {
        let bytes =
            std::fs::read(file).map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
        return Plan::from_bytes(&bytes)
            .map_err(|e| format!("cannot load `{}`: {e}", file.display()));
    }
    compile(file)
}
